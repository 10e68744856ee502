//! The names each host's DNS server answers (see `corral_dns`): the containers of its
//! environment on the managed network, decided by a pure function of what the control loop
//! placed and what the engines report.
//!
//! Every host of an environment gets the whole environment's list in its desired set
//! ([`NetworkPlan::names`](corral_proto::network::NetworkPlan)), and no host ever gets another
//! environment's. The list is made from the container records as the pass leaves them, so a
//! container leaving the desired state (scale-down, removal, a move) leaves the names in the same
//! desired sets that remove it, and one taken out of load balancers before its removal leaves
//! them as soon as it starts draining.

use crate::validate::agent::managed_address;
use corral_proto::network::NameRecord;
use corral_proto::ContainerState;
use corral_store::network::Lease;
use corral_store::{ContainerRecord, ObservedRecord, Service};
use ipnet::Ipv4Net;
use std::collections::HashMap;

/// Whether a service's containers have names: those on the managed network. A load balancer's
/// instances are the agents' listeners, not containers.
pub fn has_names(service: &Service) -> bool {
    service.spec.lb.is_none() && service.spec.network == corral_proto::network::NetworkMode::Managed
}

/// The names of every environment, by environment id, each list sorted by container name: for
/// each placed container that is not draining, of a service with names, the address its host's
/// engine reports when it lies in that host's lease (see [`managed_address`]) and whether it
/// runs. A container not yet reported, or not yet on the managed network, has no name.
pub fn environment_names(
    services: &HashMap<i64, &Service>,
    records: &[ContainerRecord],
    observed: &[ObservedRecord],
    leases: &[Lease],
) -> HashMap<i64, Vec<NameRecord>> {
    let leases: HashMap<&str, (i64, Ipv4Net)> =
        leases.iter().filter_map(|l| Some((l.host_id.as_str(), (l.environment_id, crate::network::cidr(&l.subnet)?)))).collect();
    let observed: HashMap<(&str, &str), &ObservedRecord> = observed.iter().map(|o| ((o.host_id.as_str(), o.name.as_str()), o)).collect();
    let mut names: HashMap<i64, Vec<NameRecord>> = HashMap::new();
    for record in records.iter().filter(|r| r.draining_since.is_none()) {
        let Some(service) = services.get(&record.service_id).filter(|s| has_names(s)) else { continue };
        // A host's lease is in its own environment; a record on a host of another one is a
        // leftover the pass is about to move, and never crosses over.
        let Some((_, lease)) = leases.get(record.host_id.as_str()).filter(|(env, _)| *env == service.environment_id) else { continue };
        let Some(seen) = observed.get(&(record.host_id.as_str(), record.name.as_str())) else { continue };
        let Some(ip) = managed_address(seen.ip.as_deref(), lease) else { continue };
        names.entry(service.environment_id).or_default().push(NameRecord {
            container: record.name.clone(),
            stack: service.stack.clone(),
            service: service.name.clone(),
            ip,
            running: seen.state == ContainerState::Running,
        });
    }
    for list in names.values_mut() {
        list.sort_by(|a, b| a.container.cmp(&b.container));
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(id: i64, env: i64, stack: &str, name: &str) -> Service {
        serde_json::from_value(serde_json::json!({
            "id": id, "stack_id": id, "stack": stack, "environment_id": env, "name": name,
            "kind": "container", "image": "img", "command": [], "env": [], "ports": [], "labels": {}, "constraints": [],
            "scale": 1, "revision": 1, "state": "active", "adopting_until": null, "created_at": "", "updated_at": "",
        }))
        .unwrap()
    }

    fn record(service: &Service, instance: u32, host: &str) -> ContainerRecord {
        ContainerRecord {
            id: 0,
            service_id: service.id,
            instance,
            host_id: host.into(),
            name: service.container_name(instance),
            created_at: String::new(),
            draining_since: None,
            revision: 1,
            stopped: false,
            restart_generation: 0,
            incarnation: 0,
        }
    }

    fn seen(host: &str, name: &str, ip: &str, state: ContainerState) -> ObservedRecord {
        ObservedRecord {
            host_id: host.into(),
            name: name.into(),
            docker_id: "abc".into(),
            image: "img".into(),
            state,
            status: String::new(),
            ip: Some(ip.into()),
            ports: Vec::new(),
            labels: Default::default(),
            updated_at: String::new(),
        }
    }

    fn lease(host: &str, env: i64, subnet: &str) -> Lease {
        Lease {
            host_id: host.into(),
            host_name: host.into(),
            environment_id: env,
            subnet: subnet.into(),
            address: "192.168.1.5".into(),
            tunnel_key: None,
            tunnel_port: None,
        }
    }

    fn ips(list: &[NameRecord]) -> Vec<(&str, String, bool)> {
        list.iter().map(|n| (n.container.as_str(), n.ip.to_string(), n.running)).collect()
    }

    #[test]
    fn only_services_on_the_managed_network_have_names() {
        let managed = service(1, 1, "shop", "web");
        let mut bridged = service(2, 1, "shop", "db");
        bridged.spec.network = corral_proto::network::NetworkMode::Bridge;
        assert!(has_names(&managed));
        assert!(!has_names(&bridged), "a bridge container's address is not on the managed network");
    }

    #[test]
    fn each_environment_gets_its_own_containers_with_the_addresses_engines_report() {
        let web = service(1, 1, "shop", "web");
        let db = service(2, 1, "shop", "db");
        let dev = service(3, 2, "shop", "web");
        let by_id: HashMap<i64, &Service> = [(1, &web), (2, &db), (3, &dev)].into();
        let records = vec![record(&web, 1, "a"), record(&web, 2, "b"), record(&db, 1, "a"), record(&dev, 1, "d")];
        let observed = vec![
            seen("a", "shop-web-1", "10.42.1.2", ContainerState::Running),
            seen("b", "shop-web-2", "10.42.2.2", ContainerState::Running),
            seen("a", "shop-db-1", "10.42.1.3", ContainerState::Exited),
            seen("d", "shop-web-1", "10.43.1.2", ContainerState::Running),
        ];
        let leases = vec![lease("a", 1, "10.42.1.0/24"), lease("b", 1, "10.42.2.0/24"), lease("d", 2, "10.43.1.0/24")];
        let names = environment_names(&by_id, &records, &observed, &leases);
        assert_eq!(
            ips(&names[&1]),
            [("shop-db-1", "10.42.1.3".into(), false), ("shop-web-1", "10.42.1.2".into(), true), ("shop-web-2", "10.42.2.2".into(), true)]
        );
        assert_eq!(names[&1][1].stack, "shop");
        assert_eq!(names[&1][1].service, "web");
        assert_eq!(ips(&names[&2]), [("shop-web-1", "10.43.1.2".into(), true)], "DEV's own shop-web-1, and only it");
    }

    #[test]
    fn containers_leaving_draining_or_not_yet_reported_have_no_name() {
        let web = service(1, 1, "shop", "web");
        let by_id: HashMap<i64, &Service> = [(1, &web)].into();
        let mut draining = record(&web, 2, "a");
        draining.draining_since = Some("2030-01-01T00:00:00Z".into());
        // Instance 3 was removed from the records by this pass: still reported, never named.
        let records = vec![record(&web, 1, "a"), draining, record(&web, 4, "a")];
        let observed = vec![
            seen("a", "shop-web-1", "10.42.1.2", ContainerState::Running),
            seen("a", "shop-web-2", "10.42.1.3", ContainerState::Running),
            seen("a", "shop-web-3", "10.42.1.4", ContainerState::Running),
        ];
        let names = environment_names(&by_id, &records, &observed, &[lease("a", 1, "10.42.1.0/24")]);
        assert_eq!(ips(&names[&1]), [("shop-web-1", "10.42.1.2".into(), true)]);
    }

    #[test]
    fn addresses_outside_the_hosts_lease_are_not_names() {
        let web = service(1, 1, "shop", "web");
        let by_id: HashMap<i64, &Service> = [(1, &web)].into();
        let records = vec![record(&web, 1, "a"), record(&web, 2, "a"), record(&web, 3, "a"), record(&web, 4, "nolease")];
        let observed = vec![
            // On the default bridge: not on the managed network (yet).
            seen("a", "shop-web-1", "172.17.0.2", ContainerState::Running),
            // Another host's lease: an agent speaks for its own only.
            seen("a", "shop-web-2", "10.42.2.9", ContainerState::Running),
            seen("a", "shop-web-3", "10.42.1.1", ContainerState::Running),
            seen("nolease", "shop-web-4", "10.42.1.9", ContainerState::Running),
        ];
        let names = environment_names(&by_id, &records, &observed, &[lease("a", 1, "10.42.1.0/24")]);
        assert!(names.is_empty(), "{names:?}");
    }

    #[test]
    fn load_balancers_have_no_names() {
        let mut lb = service(1, 1, "shop", "lb");
        lb.spec.lb = Some(corral_store::LbSpec { ports: Vec::new(), targets: Vec::new(), rules: Vec::new(), global: false });
        let by_id: HashMap<i64, &Service> = [(1, &lb)].into();
        let observed = vec![seen("a", "shop-lb-1", "10.42.1.2", ContainerState::Running)];
        let names = environment_names(&by_id, &[record(&lb, 1, "a")], &observed, &[lease("a", 1, "10.42.1.0/24")]);
        assert!(names.is_empty());
    }
}

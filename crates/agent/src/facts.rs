//! What the host says about itself in the hello: name, address, engine version, capacity, OS.

use std::net::IpAddr;

use corral_proto::network::NetworkFacts;
use corral_proto::HostFacts;
use sysinfo::{CpuRefreshKind, MemoryRefreshKind, RefreshKind, System};

use crate::AgentConfig;

/// `local_addr` is the local end of the socket used to reach the control plane: the address
/// other hosts on that network can most likely reach this one at.
/// `subnet` is the managed network's lease the host held before (from its saved desired set).
/// `tunnel` is this host's tunnel key and port, when it runs one.
pub fn gather(config: &AgentConfig, docker_version: &str, local_addr: Option<IpAddr>, subnet: Option<String>, tunnel: Option<(String, u16)>) -> HostFacts {
    let sys = System::new_with_specifics(RefreshKind::nothing().with_cpu(CpuRefreshKind::nothing()).with_memory(MemoryRefreshKind::nothing().with_ram()));
    let cpus = match sys.cpus().len() {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    HostFacts {
        name: config.name.clone().or_else(System::host_name).unwrap_or_else(|| "unknown".to_string()),
        address: config.address.clone().or_else(|| local_addr.map(|a| a.to_string())).unwrap_or_default(),
        docker_version: docker_version.to_string(),
        cpus: u32::try_from(cpus).unwrap_or(u32::MAX),
        memory_bytes: sys.total_memory(),
        os: System::long_os_version().or_else(System::name).unwrap_or_else(|| std::env::consts::OS.to_string()),
        kernel: System::kernel_version().unwrap_or_default(),
        agent_version: env!("CARGO_PKG_VERSION").to_string(),
        labels: config.labels.clone(),
        network: NetworkFacts { subnet, public_key: tunnel.as_ref().map(|t| t.0.clone()), tunnel_port: tunnel.map(|t| t.1), host_networks: host_networks() },
    }
}

/// The IPv4 networks of this machine's interfaces, loopback aside, in CIDR form.
fn host_networks() -> Vec<String> {
    let networks = sysinfo::Networks::new_with_refreshed_list();
    let mut out: Vec<String> = networks
        .values()
        .flat_map(|data| data.ip_networks())
        .filter_map(|n| match n.addr {
            IpAddr::V4(a) if !a.is_loopback() && !a.is_link_local() => ipnet::Ipv4Net::new(a, n.prefix).ok().map(|net| net.trunc().to_string()),
            _ => None,
        })
        .collect();
    out.sort();
    out.dedup();
    out.truncate(64);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn config() -> AgentConfig {
        AgentConfig {
            ca_fingerprint: None,
            server_url: "http://127.0.0.1:1".into(),
            token: "t".into(),
            state_dir: "/tmp/x".into(),
            docker_host: None,
            name: None,
            address: None,
            labels: BTreeMap::from([("zone".to_string(), "a".to_string())]),
            registry_certs_dir: "/tmp/x/certs.d".into(),
            tunnel_port: None,
        }
    }

    #[test]
    fn facts_describe_this_machine() {
        let f = gather(&config(), "28.2.2", Some("10.0.0.7".parse().unwrap()), Some("10.42.1.0/24".into()), None);
        assert!(!f.name.is_empty());
        assert_eq!(f.address, "10.0.0.7");
        assert_eq!(f.docker_version, "28.2.2");
        assert!(f.cpus >= 1);
        assert!(f.memory_bytes > 0);
        assert_eq!(f.agent_version, env!("CARGO_PKG_VERSION"));
        assert_eq!(f.labels["zone"], "a");
        assert_eq!(f.network.subnet.as_deref(), Some("10.42.1.0/24"));
        assert!(f.network.host_networks.iter().all(|n| n.parse::<ipnet::Ipv4Net>().is_ok() && !n.starts_with("127.")), "{:?}", f.network.host_networks);
    }

    #[test]
    fn configured_name_and_address_win() {
        let mut c = config();
        c.name = Some("h1".into());
        c.address = Some("192.168.1.5".into());
        let f = gather(&c, "", Some("10.0.0.7".parse().unwrap()), None, None);
        assert_eq!(f.name, "h1");
        assert_eq!(f.address, "192.168.1.5");
        assert_eq!(gather(&config(), "", None, None, None).address, "");
    }
}

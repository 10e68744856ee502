//! Load-balancer services: parsing what users write, and turning a balancer into the listeners
//! an agent runs, with backends taken from what the engines report running.

use crate::error::ApiError;
use corral_proto::lb::{LbListener, LbMode, LbRoute};
use corral_proto::ContainerState;
use corral_store::{ContainerRecord, Host, HostState, LbPort, LbRule, LbSpec, ObservedRecord, Service};
use std::collections::{BTreeMap, HashMap};

/// `LISTEN:TARGET`, `LISTEN:TARGET/http` or `LISTEN:TARGET/tcp`.
pub fn parse_port(text: &str) -> Result<LbPort, ApiError> {
    let bad = |why: &str| {
        ApiError::invalid(
            "ports",
            format!("invalid load-balancer port {text:?}: {why}; use LISTEN:TARGET for HTTP or LISTEN:TARGET/tcp (e.g. 8080:80, 5432:5432/tcp)"),
        )
    };
    let (ports, mode) = match text.rsplit_once('/') {
        Some((p, "http")) => (p, LbMode::Http),
        Some((p, "tcp")) => (p, LbMode::Tcp),
        Some((_, other)) => return Err(bad(&format!("unknown mode {other:?}"))),
        None => (text, LbMode::Http),
    };
    let (listen, target) = ports.split_once(':').ok_or_else(|| bad("both ports are needed"))?;
    let number = |n: &str| n.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(|| bad(&format!("{n:?} is not a port number between 1 and 65535")));
    Ok(LbPort { listen: number(listen)?, target: number(target)?, mode })
}

/// `host=H,path=/P -> STACK/SERVICE:PORT` (host and path each optional, at least one given).
pub fn parse_rule(text: &str) -> Result<LbRule, ApiError> {
    let bad = |why: &str| {
        ApiError::invalid("rules", format!("invalid rule {text:?}: {why}; use 'host=NAME,path=/PREFIX -> STACK/SERVICE:PORT' (host or path may be left out)"))
    };
    let (matcher, target) = text.split_once("->").ok_or_else(|| bad("there is no '->'"))?;
    let (mut host, mut path) = (None, None);
    for part in matcher.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part.split_once('=').map(|(k, v)| (k.trim(), v.trim())) {
            Some(("host", h)) if !h.is_empty() && !h.contains(char::is_whitespace) => host = Some(h.to_ascii_lowercase()),
            Some(("path", p)) if p.starts_with('/') && !p.contains(char::is_whitespace) => path = Some(p.to_string()),
            Some(("path", _)) => return Err(bad("the path must start with '/'")),
            _ => return Err(bad(&format!("{part:?} is neither host=NAME nor path=/PREFIX"))),
        }
    }
    if host.is_none() && path.is_none() {
        return Err(bad("give host=, path= or both"));
    }
    let (service, port) = target.trim().rsplit_once(':').ok_or_else(|| bad("the target needs a port, STACK/SERVICE:PORT"))?;
    let port = port.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(|| bad(&format!("{port:?} is not a port number")))?;
    target_path(service).map_err(|_| bad("the target must be STACK/SERVICE"))?;
    Ok(LbRule { host, path, service: service.to_string(), port })
}

/// Checks `STACK/SERVICE`.
pub fn target_path(text: &str) -> Result<(), ApiError> {
    match text.split_once('/') {
        Some((stack, service)) if !stack.is_empty() && !service.is_empty() && !service.contains('/') => Ok(()),
        _ => Err(ApiError::invalid("targets", format!("invalid target {text:?}: use STACK/SERVICE"))),
    }
}

/// Where the running containers of each service can be reached from any host:
/// the host's address and the port the engine published for the container port.
pub struct Backends {
    /// `(environment, STACK/SERVICE)` -> `(container port, host port) -> addresses`.
    by_service: HashMap<(i64, String), Vec<(u16, String)>>,
}

impl Backends {
    pub fn new(hosts: &[Host], services: &[Service], records: &[ContainerRecord], observed: &[ObservedRecord]) -> Backends {
        let hosts: HashMap<&str, &Host> = hosts.iter().map(|h| (h.id.as_str(), h)).collect();
        let services: HashMap<i64, &Service> = services.iter().map(|s| (s.id, s)).collect();
        let seen: HashMap<(&str, &str), &ObservedRecord> = observed.iter().map(|o| ((o.host_id.as_str(), o.name.as_str()), o)).collect();
        let mut by_service: HashMap<(i64, String), Vec<(u16, String)>> = HashMap::new();
        for r in records.iter().filter(|r| r.draining_since.is_none()) {
            let (Some(service), Some(host)) = (services.get(&r.service_id), hosts.get(r.host_id.as_str())) else { continue };
            if host.state != HostState::Active {
                continue;
            }
            // Only the container the record wants: during an upgrade the old one may still run
            // after its instance moved on, and must not come back into rotation.
            let revision = r.revision.to_string();
            let wanted = |o: &&&ObservedRecord| o.state == ContainerState::Running && o.labels.get(corral_proto::labels::REVISION) == Some(&revision);
            let Some(o) = seen.get(&(r.host_id.as_str(), r.name.as_str())).filter(wanted) else { continue };
            for p in &o.ports {
                if let Some(public) = p.host_port {
                    by_service.entry((service.environment_id, service.path())).or_default().push((p.container_port, format!("{}:{public}", host.address)));
                }
            }
        }
        for list in by_service.values_mut() {
            list.sort();
            list.dedup();
        }
        Backends { by_service }
    }

    fn of(&self, env: i64, service: &str, port: u16) -> Vec<String> {
        self.by_service.get(&(env, service.to_string())).into_iter().flatten().filter(|(p, _)| *p == port).map(|(_, a)| a.clone()).collect()
    }
}

/// The listeners one instance of balancer `service` runs.
pub fn listeners(service: &Service, spec: &LbSpec, backends: &Backends, labels: &BTreeMap<String, String>) -> Vec<LbListener> {
    // A stopped balancer frees its ports, like a stopped container would.
    if service.is_stopped() {
        return Vec::new();
    }
    let env = service.environment_id;
    spec.ports
        .iter()
        .map(|port| {
            let default = LbRoute { host: None, path_prefix: None, backends: spec.targets.iter().flat_map(|t| backends.of(env, t, port.target)).collect() };
            let mut routes: Vec<LbRoute> = match port.mode {
                LbMode::Tcp => Vec::new(),
                LbMode::Http => spec
                    .rules
                    .iter()
                    .map(|r| LbRoute { host: r.host.clone(), path_prefix: r.path.clone(), backends: backends.of(env, &r.service, r.port) })
                    .collect(),
            };
            if !spec.targets.is_empty() || port.mode == LbMode::Tcp {
                routes.push(default);
            }
            LbListener { port: port.listen, mode: port.mode, service: service.path(), routes, labels: labels.clone() }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_parse() {
        assert_eq!(parse_port("8080:80").unwrap(), LbPort { listen: 8080, target: 80, mode: LbMode::Http });
        assert_eq!(parse_port("5432:5432/tcp").unwrap().mode, LbMode::Tcp);
        for bad in ["80", "a:80", "0:80", "80:70000", "80:80/udp", ""] {
            assert!(parse_port(bad).unwrap_err().to_string().contains("invalid load-balancer port"), "{bad}");
        }
    }

    #[test]
    fn rules_parse() {
        let r = parse_rule("host=A.example.com,path=/api -> WEB-Server/api:8080").unwrap();
        assert_eq!(r, LbRule { host: Some("a.example.com".into()), path: Some("/api".into()), service: "WEB-Server/api".into(), port: 8080 });
        assert_eq!(parse_rule("path=/x->S/b:80").unwrap().host, None);
        for (bad, why) in [
            ("host=a", "no '->'"),
            ("-> S/b:80", "give host=, path="),
            ("path=x -> S/b:80", "must start with '/'"),
            ("colour=red -> S/b:80", "neither host"),
            ("host=a -> S/b", "needs a port"),
            ("host=a -> b:80", "STACK/SERVICE"),
            ("host=a -> S/b:http", "not a port"),
        ] {
            let err = parse_rule(bad).unwrap_err().to_string();
            assert!(err.contains(why), "{bad}: {err}");
        }
    }
}

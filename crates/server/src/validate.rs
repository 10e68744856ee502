//! Checks on what users send, each failing with a message that says what was wrong and what to do.

use crate::error::ApiError;
use corral_proto::PortSpec;
use corral_store::{LbSpec, ServiceKind, ServiceSpec};
use std::collections::BTreeMap;

/// Largest scale one service may ask for.
pub const MAX_SCALE: i64 = 1000;

/// Stack and service names: they become part of Docker container names and of URLs.
pub fn name(field: &'static str, what: &str, value: &str) -> Result<(), ApiError> {
    let ok = !value.is_empty()
        && value.len() <= 63
        && value.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && value.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(ApiError::invalid(
            field,
            format!("invalid {what} name {value:?}: use 1-63 letters, digits, '-', '_' or '.', starting with a letter or digit"),
        ))
    }
}

pub fn scale(value: i64) -> Result<u32, ApiError> {
    if (0..=MAX_SCALE).contains(&value) {
        Ok(value as u32)
    } else {
        Err(ApiError::invalid("scale", format!("invalid scale {value}: it must be between 0 and {MAX_SCALE}")))
    }
}

/// Grace period before a disconnected host's containers are replaced: 0 s to one day.
pub fn reschedule_after(value: Option<i64>) -> Result<u32, ApiError> {
    match value {
        None => Ok(corral_store::DEFAULT_RESCHEDULE_AFTER_SECS),
        Some(v @ 0..=86_400) => Ok(v as u32),
        Some(v) => Err(ApiError::invalid("reschedule_after", format!("invalid reschedule-after {v}: give seconds between 0 and 86400"))),
    }
}

/// A Docker image reference: `[HOST[:PORT]/]PATH[:TAG][@DIGEST]`, as the engine's grammar has it.
pub fn image(value: &str) -> Result<(), ApiError> {
    let bad = |why: &str| {
        Err(ApiError::invalid(
            "image",
            format!("invalid image reference {value:?}: {why}; use e.g. nginx, nginx:1.25, registry.local:5000/team/app:v2"),
        ))
    };
    if value.is_empty() {
        return bad("it is empty");
    }
    if value.len() > 255 {
        return bad("it is longer than 255 characters");
    }
    let (rest, digest) = match value.split_once('@') {
        Some((r, d)) => (r, Some(d)),
        None => (value, None),
    };
    if let Some(d) = digest {
        let valid = d.split_once(':').is_some_and(|(algo, hex)| {
            !algo.is_empty()
                && algo.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+._-".contains(c))
                && hex.len() >= 32
                && hex.chars().all(|c| c.is_ascii_hexdigit())
        });
        if !valid {
            return bad("the digest after '@' must look like sha256:HEX");
        }
    }
    // A ':' after the last '/' starts the tag; one before it belongs to a registry port.
    let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
    let (path, tag) = match rest[last_slash..].rfind(':') {
        Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
        None => (rest, None),
    };
    if let Some(tag) = tag {
        let valid = !tag.is_empty()
            && tag.len() <= 128
            && tag.chars().next().is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
            && tag.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
        if !valid {
            return bad("the tag after ':' may hold only letters, digits, '_', '.' and '-'");
        }
    }
    let mut components: Vec<&str> = path.split('/').collect();
    if components.len() > 1 {
        let first = components[0];
        let is_registry = first.contains('.') || first.contains(':') || first == "localhost";
        if is_registry {
            let (host, port) = match first.split_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (first, None),
            };
            if host.is_empty() || !host.chars().all(|c| c.is_ascii_alphanumeric() || "-.".contains(c)) {
                return bad("the registry host is not a valid host name");
            }
            if port.is_some_and(|p| p.parse::<u16>().is_err()) {
                return bad("the registry port is not a number");
            }
            components.remove(0);
        }
    }
    for c in components {
        let valid = !c.is_empty()
            && c.chars().all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || "._-".contains(ch))
            && c.starts_with(|ch: char| ch.is_ascii_alphanumeric())
            && c.ends_with(|ch: char| ch.is_ascii_alphanumeric());
        if !valid {
            return bad("repository names use lowercase letters, digits and separators ('.', '_', '-') between them");
        }
    }
    Ok(())
}

pub fn ports(values: &[String]) -> Result<Vec<PortSpec>, ApiError> {
    let mut ports: Vec<PortSpec> = Vec::with_capacity(values.len());
    for v in values {
        let port: PortSpec = v.parse().map_err(|e: corral_proto::spec::PortParseError| ApiError::invalid("ports", e.0))?;
        if ports.iter().any(|p| p.container_port == port.container_port && p.protocol == port.protocol) {
            return Err(ApiError::invalid("ports", format!("port {v:?} is given twice")));
        }
        if port.host_port.is_some() && ports.iter().any(|p| p.host_port == port.host_port && p.protocol == port.protocol) {
            return Err(ApiError::invalid("ports", format!("host port in {v:?} is published twice")));
        }
        ports.push(port);
    }
    Ok(ports)
}

pub fn env(values: &[String]) -> Result<(), ApiError> {
    for v in values {
        match v.split_once('=') {
            Some((k, _)) if !k.is_empty() && !k.contains(char::is_whitespace) && !v.contains('\0') => {}
            _ => return Err(ApiError::invalid("env", format!("invalid environment variable {v:?}: use KEY=VALUE"))),
        }
    }
    Ok(())
}

pub fn command(values: &[String]) -> Result<(), ApiError> {
    if values.iter().any(|a| a.contains('\0')) {
        return Err(ApiError::invalid("command", "the command may not contain NUL characters"));
    }
    Ok(())
}

/// Service labels: anything but Corral's own `io.corral.*`, which the control plane sets.
pub fn labels(labels: &BTreeMap<String, String>) -> Result<(), ApiError> {
    for key in labels.keys() {
        if key.is_empty() || key.starts_with("io.corral.") {
            return Err(ApiError::invalid("labels", format!("invalid label {key:?}: label keys may not be empty or start with io.corral.")));
        }
    }
    Ok(())
}

/// Scheduling constraints, returned in their canonical text form.
pub fn constraints(values: &[String]) -> Result<Vec<String>, ApiError> {
    values
        .iter()
        .map(|v| {
            v.parse::<corral_scheduler::Constraint>()
                .map(|c| c.to_string())
                .map_err(|e| ApiError::invalid("constraints", e.to_string()))
        })
        .collect()
}

/// A service spec that already has its types (read from a backup): the rules creating it
/// through the API follows.
pub fn service_spec(spec: &ServiceSpec) -> Result<(), ApiError> {
    match (spec.kind, &spec.lb) {
        (ServiceKind::Container, None) => image(&spec.image)?,
        (ServiceKind::Container, Some(_)) => return Err(ApiError::invalid("lb", "only a load-balancer service takes lb settings")),
        (ServiceKind::LoadBalancer, None) => return Err(ApiError::invalid("lb", "a load balancer needs ports and targets")),
        (ServiceKind::LoadBalancer, Some(_)) if !spec.image.is_empty() || !spec.command.is_empty() => {
            return Err(ApiError::invalid("image", "a load balancer runs inside the agents: it has no image or command"))
        }
        (ServiceKind::LoadBalancer, Some(lb)) => load_balancer(lb)?,
    }
    command(&spec.command)?;
    env(&spec.env)?;
    labels(&spec.labels)?;
    ports(&spec.ports.iter().map(ToString::to_string).collect::<Vec<_>>())?;
    constraints(&spec.constraints)?;
    reschedule_after(Some(i64::from(spec.reschedule_after_secs)))?;
    Ok(())
}

fn load_balancer(lb: &LbSpec) -> Result<(), ApiError> {
    if lb.ports.is_empty() {
        return Err(ApiError::invalid("ports", "a load balancer needs at least one port, LISTEN:TARGET (e.g. 8080:80)"));
    }
    for port in &lb.ports {
        crate::lb::parse_port(&format!("{}:{}", port.listen, port.target))?;
    }
    if lb.targets.is_empty() && lb.rules.is_empty() {
        return Err(ApiError::invalid("targets", "a load balancer needs a target (STACK/SERVICE) or a rule"));
    }
    lb.targets.iter().chain(lb.rules.iter().map(|r| &r.service)).try_for_each(|t| crate::lb::target_path(t))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_references() {
        for good in [
            "nginx",
            "nginx:1.25",
            "library/nginx:latest",
            "corral-test/busybox:latest",
            "registry.local:5000/team/app:v2",
            "localhost/app",
            "a.b/c@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        ] {
            assert!(image(good).is_ok(), "{good}");
        }
        for bad in ["", "NGINX", "nginx:", "nginx::1", "-nginx", "nginx:bad tag", "a//b", "nginx@sha256:xyz", "reg:port/x"] {
            let err = image(bad).unwrap_err().to_string();
            assert!(err.contains("invalid image reference"), "{bad}: {err}");
        }
    }

    #[test]
    fn names_scales_and_ports() {
        assert!(name("name", "stack", "WEB-Server").is_ok());
        for bad in ["", "-x", "a b", "a/b", &"x".repeat(64)] {
            assert!(name("name", "stack", bad).is_err(), "{bad}");
        }
        assert_eq!(scale(10).unwrap(), 10);
        assert!(scale(-1).unwrap_err().to_string().contains("between 0 and"));
        assert!(ports(&["80".into(), "8080:81".into()]).is_ok());
        assert!(ports(&["80".into(), "80".into()]).unwrap_err().to_string().contains("twice"));
        assert!(ports(&["http".into()]).unwrap_err().to_string().contains("invalid port"));
        assert!(env(&["A=1".into(), "B=".into()]).is_ok());
        assert!(env(&["A".into()]).is_err());
        assert!(labels(&[("io.corral.stack".to_string(), "x".to_string())].into()).is_err());
        assert_eq!(constraints(&["host.zone=a".into()]).unwrap(), ["host.zone=a"]);
        assert!(constraints(&["zone=a".into()]).is_err());
    }

    #[test]
    fn stored_specs_follow_the_rules_of_the_api() {
        let spec = ServiceSpec {
            kind: ServiceKind::Container,
            image: "nginx:1.27".into(),
            command: vec!["sleep".into(), "1".into()],
            env: vec!["A=1".into()],
            ports: vec!["8080:80".parse().unwrap()],
            labels: [("team".to_string(), "a".to_string())].into(),
            constraints: vec!["host.zone=a".into()],
            reschedule_after_secs: 60,
            lb: None,
            hot_spare: false,
        };
        assert!(service_spec(&spec).is_ok());
        let broken = |change: fn(&mut ServiceSpec)| {
            let mut s = spec.clone();
            change(&mut s);
            service_spec(&s).unwrap_err().to_string()
        };
        assert!(broken(|s| s.image = "Not An Image".into()).contains("invalid image reference"));
        assert!(broken(|s| s.env = vec!["NO_EQUALS".into()]).contains("KEY=VALUE"));
        assert!(broken(|s| s.labels = [("io.corral.stack".to_string(), "x".to_string())].into()).contains("io.corral."));
        assert!(broken(|s| s.ports = vec!["80".parse().unwrap(), "80".parse().unwrap()]).contains("twice"));
        assert!(broken(|s| s.constraints = vec!["zone".into()]).contains("zone"));
        assert!(broken(|s| s.reschedule_after_secs = 100_000).contains("reschedule-after"));
        assert!(broken(|s| s.kind = ServiceKind::LoadBalancer).contains("ports and targets"));
        assert!(broken(|s| {
            s.kind = ServiceKind::LoadBalancer;
            s.image.clear();
            s.command.clear();
            s.lb = Some(LbSpec { ports: vec![corral_store::LbPort { listen: 0, target: 80, mode: corral_proto::lb::LbMode::Http }], targets: vec!["A/b".into()], rules: vec![], global: false });
        })
        .contains("between 1 and 65535"));
    }
}

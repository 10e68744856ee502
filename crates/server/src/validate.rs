//! Checks on what users send, each failing with a message that says what was wrong and what to do.
//! What agents send is checked by the same rules, in [`agent`].

pub mod agent;

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

/// Service labels: anything but Corral's own `io.corral.*`, which the control plane sets, and
/// control characters, which would reach terminals and logs as they are.
pub fn labels(labels: &BTreeMap<String, String>) -> Result<(), ApiError> {
    for (key, value) in labels {
        if key.is_empty() || key.starts_with("io.corral.") {
            return Err(ApiError::invalid("labels", format!("invalid label {key:?}: label keys may not be empty or start with io.corral.")));
        }
        if key.chars().chain(value.chars()).any(char::is_control) {
            return Err(ApiError::invalid("labels", format!("invalid label {key:?}: label keys and values may not hold control characters (new lines, tabs, escape codes)")));
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

/// A whole service spec, by the rules the API applies to each of its fields: for a spec that
/// arrives whole (rebuilt from container labels), and as the last check on one the API built.
pub fn service_spec(spec: &ServiceSpec) -> Result<(), ApiError> {
    command(&spec.command)?;
    env(&spec.env)?;
    labels(&spec.labels)?;
    ports(&spec.ports.iter().map(PortSpec::to_string).collect::<Vec<_>>())?;
    constraints(&spec.constraints)?;
    if let Some(c) = spec.constraints.iter().find(|c| c.chars().any(char::is_control)) {
        return Err(ApiError::invalid("constraints", format!("invalid constraint {c:?}: it may not hold control characters")));
    }
    reschedule_after(Some(i64::from(spec.reschedule_after_secs)))?;
    match (spec.kind, &spec.lb) {
        (ServiceKind::Container, None) => image(&spec.image)?,
        (ServiceKind::Container, Some(_)) => return Err(ApiError::invalid("lb", "only a load-balancer service takes lb settings")),
        (ServiceKind::LoadBalancer, None) => {
            return Err(ApiError::invalid("lb", "a load balancer needs ports and targets: e.g. --port 8080:80 --target STACK/SERVICE"))
        }
        (ServiceKind::LoadBalancer, Some(_)) if !spec.image.is_empty() || !spec.command.is_empty() => {
            return Err(ApiError::invalid("image", "a load balancer runs inside the agents: give it no image or command"))
        }
        (ServiceKind::LoadBalancer, Some(lb)) => lb_spec(lb)?,
    }
    if spec.hot_spare && spec.kind != ServiceKind::Container {
        return Err(ApiError::invalid("hot_spare", "a load balancer runs inside the agents and has no container to keep spare"));
    }
    if spec.hot_spare && spec.ports.iter().any(|p| p.host_port.is_some()) {
        return Err(ApiError::invalid("hot_spare", "a hot spare cannot share a fixed host port with the instance on its host"));
    }
    Ok(())
}

/// A balancer's listeners, targets and rules: each must read back the same from the text the
/// API parses, so nothing gets in that the API's own syntax could not say.
fn lb_spec(lb: &LbSpec) -> Result<(), ApiError> {
    if lb.ports.is_empty() {
        return Err(ApiError::invalid("ports", "a load balancer needs at least one port, LISTEN:TARGET (e.g. 8080:80)"));
    }
    for port in &lb.ports {
        let mode = match port.mode {
            corral_proto::lb::LbMode::Http => "http",
            corral_proto::lb::LbMode::Tcp => "tcp",
        };
        crate::lb::parse_port(&format!("{}:{}/{mode}", port.listen, port.target))?;
    }
    if lb.targets.is_empty() && lb.rules.is_empty() {
        return Err(ApiError::invalid("targets", "a load balancer needs a target (--target STACK/SERVICE) or a rule"));
    }
    for target in lb.targets.iter().chain(lb.rules.iter().map(|r| &r.service)) {
        crate::lb::target_path(target)?;
        let (stack, service) = target.split_once('/').expect("checked above");
        name("targets", "stack", stack)?;
        name("targets", "service", service)?;
    }
    for rule in &lb.rules {
        let matcher: Vec<String> = rule.host.iter().map(|h| format!("host={h}")).chain(rule.path.iter().map(|p| format!("path={p}"))).collect();
        let text = format!("{} -> {}:{}", matcher.join(","), rule.service, rule.port);
        if text.chars().any(char::is_control) || crate::lb::parse_rule(&text)? != *rule {
            return Err(ApiError::invalid("rules", format!("invalid rule {text:?}: use 'host=NAME,path=/PREFIX -> STACK/SERVICE:PORT'")));
        }
    }
    Ok(())
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
        assert!(labels(&[("team".to_string(), "web\n".to_string())].into()).unwrap_err().to_string().contains("control characters"));
    }

    fn container_spec() -> ServiceSpec {
        ServiceSpec {
            kind: ServiceKind::Container,
            image: "busybox".into(),
            command: vec!["httpd".into()],
            env: vec!["A=1".into()],
            ports: vec!["8080:80".parse().unwrap()],
            labels: [("team".to_string(), "web".to_string())].into(),
            constraints: vec!["host.zone=a".into()],
            reschedule_after_secs: 60,
            lb: None,
            hot_spare: false,
        }
    }

    #[test]
    fn whole_specs_follow_the_fields_rules() {
        assert!(service_spec(&container_spec()).is_ok());
        let refused = |change: &dyn Fn(&mut ServiceSpec), field: &str| {
            let mut spec = container_spec();
            change(&mut spec);
            match service_spec(&spec) {
                Err(ApiError::Invalid { field: f, .. }) => assert_eq!(f, field),
                other => panic!("{spec:?} was not refused for its {field}: {other:?}"),
            }
        };
        refused(&|s| s.image = "Not An Image".into(), "image");
        refused(&|s| s.env = vec!["A=1\0".into()], "env");
        refused(&|s| s.command = vec!["a\0".into()], "command");
        refused(&|s| s.labels = [("io.corral.managed".to_string(), "x".to_string())].into(), "labels");
        refused(&|s| s.ports = vec![PortSpec { host_port: None, container_port: 0, protocol: corral_proto::Protocol::Tcp }], "ports");
        refused(&|s| s.constraints = vec!["zone=a".into()], "constraints");
        refused(&|s| s.constraints = vec!["host.zone=a\u{1b}[2J".into()], "constraints");
        refused(&|s| s.reschedule_after_secs = 4_000_000_000, "reschedule_after");
        refused(&|s| s.hot_spare = true, "hot_spare");
        refused(&|s| s.kind = ServiceKind::LoadBalancer, "lb");

        let lb = LbSpec {
            ports: vec![crate::lb::parse_port("8080:80").unwrap()],
            targets: vec!["S/web".into()],
            rules: vec![crate::lb::parse_rule("host=a.example,path=/api -> S/api:80").unwrap()],
            global: false,
        };
        let balancer = ServiceSpec { kind: ServiceKind::LoadBalancer, image: String::new(), command: Vec::new(), ports: Vec::new(), lb: Some(lb.clone()), ..container_spec() };
        assert!(service_spec(&balancer).is_ok());
        assert!(service_spec(&ServiceSpec { image: "busybox".into(), ..balancer.clone() }).is_err());
        let mut bad = lb.clone();
        bad.rules[0].host = Some("A b".into());
        assert!(service_spec(&ServiceSpec { lb: Some(bad), ..balancer.clone() }).is_err());
        let mut bad = lb.clone();
        bad.targets = vec!["S/\u{1b}".into()];
        assert!(service_spec(&ServiceSpec { lb: Some(bad), ..balancer.clone() }).is_err());
        let mut bad = lb;
        bad.ports[0].listen = 0;
        assert!(service_spec(&ServiceSpec { lb: Some(bad), ..balancer }).is_err());
    }
}

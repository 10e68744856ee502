//! Checks on what users send, each failing with a message that says what was wrong and what to do.
//! What agents send is checked by the same rules, in [`agent`].

pub mod agent;

use crate::error::ApiError;
use corral_proto::network::NetworkMode;
use corral_proto::PortSpec;
use corral_store::users::MIN_PASSWORD_LEN;
use corral_store::{LbSpec, ServiceKind, ServiceSpec};
use std::collections::BTreeMap;

/// Largest scale one service may ask for.
pub const MAX_SCALE: i64 = 1000;

// Caps on what one request may carry (docs/api.md lists them). A service's spec is stored, sent
// to every host that runs it in each desired set, and shown in lists, so each list and string
// has a bound that real use stays far below.
/// Names of stacks, services, environments, users, groups and API keys.
pub const MAX_NAME_LEN: usize = 63;
pub const MAX_IMAGE_LEN: usize = 255;
pub const MAX_COMMAND_ARGS: usize = 256;
/// All of a command's arguments together.
pub const MAX_COMMAND_BYTES: usize = 32 * 1024;
pub const MAX_ENV_ENTRIES: usize = 256;
/// All of a service's `KEY=VALUE` entries together.
pub const MAX_ENV_BYTES: usize = 64 * 1024;
pub const MAX_LABELS: usize = 64;
pub const MAX_LABEL_KEY_BYTES: usize = 255;
pub const MAX_LABEL_VALUE_BYTES: usize = 4096;
/// Ports of a service, and listeners of a load balancer.
pub const MAX_PORTS: usize = 64;
/// One port as text, e.g. `8080:80/tcp`.
pub const MAX_PORT_BYTES: usize = 32;
pub const MAX_CONSTRAINTS: usize = 32;
pub const MAX_CONSTRAINT_BYTES: usize = 255;
pub const MAX_LB_TARGETS: usize = 32;
pub const MAX_LB_RULES: usize = 64;
pub const MAX_LB_RULE_BYTES: usize = 512;
/// Hashing is meant to be slow; it should not also be long.
pub const MAX_PASSWORD_BYTES: usize = 1024;
/// One request's body (restores stream theirs to disk and have their own limit).
pub const MAX_BODY_BYTES: usize = 1 << 20;
/// Times users give, in Unix seconds: 1970-01-01T00:00:00Z to 9999-12-31T23:59:59Z, the range
/// RFC 3339 can write. Within it, differences and sums of two times never overflow.
pub const MIN_TIME: i64 = 0;
pub const MAX_TIME: i64 = 253_402_300_799;

/// The start of a long value, for messages that should say which value without repeating it all.
fn preview(value: &str) -> String {
    match value.char_indices().nth(40) {
        Some((end, _)) => format!("{:?}…", &value[..end]),
        None => format!("{value:?}"),
    }
}

/// At most `max` items in a list.
fn count<T>(field: &'static str, what: &str, values: &[T], max: usize) -> Result<(), ApiError> {
    if values.len() > max {
        return Err(ApiError::invalid(field, format!("{} {what} given; at most {max} are allowed", values.len())));
    }
    Ok(())
}

/// At most `max` bytes in all of `values` together.
fn total_bytes(field: &'static str, what: &str, values: &[String], max: usize) -> Result<(), ApiError> {
    let bytes: usize = values.iter().map(String::len).sum();
    if bytes > max {
        return Err(ApiError::invalid(field, format!("the {what} hold {bytes} bytes together; at most {} KiB ({max} bytes) are allowed", max / 1024)));
    }
    Ok(())
}

/// At most `max` bytes in each of `values`.
fn each_len<'a>(field: &'static str, what: &str, values: impl IntoIterator<Item = &'a String>, max: usize) -> Result<(), ApiError> {
    match values.into_iter().find(|v| v.len() > max) {
        Some(v) => Err(ApiError::invalid(field, format!("{what} {} is {} bytes long; at most {max} are allowed", preview(v), v.len()))),
        None => Ok(()),
    }
}

/// Names of stacks, services, environments, users, groups and API keys: they become part of
/// Docker container names and of URLs.
pub fn name(field: &'static str, what: &str, value: &str) -> Result<(), ApiError> {
    let ok = !value.is_empty()
        && value.len() <= MAX_NAME_LEN
        && value.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && value.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(ApiError::invalid(
            field,
            format!("invalid {what} name {}: use 1-{MAX_NAME_LEN} letters, digits, '-', '_' or '.', starting with a letter or digit", preview(value)),
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

/// A pull policy: `missing` (the default), `always` or `never`.
pub fn pull_policy(value: Option<&str>) -> Result<corral_proto::PullPolicy, ApiError> {
    match value {
        None => Ok(Default::default()),
        Some(v) => {
            v.parse().map_err(|why: String| ApiError::invalid("pull_policy", format!("{why}; e.g. --pull never for images loaded on the hosts by hand")))
        }
    }
}

/// A service's network: `managed` (the default), `bridge`, `host` or `none`.
pub fn network_mode(value: Option<&str>) -> Result<NetworkMode, ApiError> {
    match value {
        None => Ok(Default::default()),
        Some(v) => NetworkMode::parse(v).ok_or_else(|| {
            ApiError::invalid(
                "network",
                format!(
                    "unknown network {}: use managed (the environment's network across its hosts, the default), bridge (the engine's default bridge \
                     on its host), host (the host's own network) or none (no network)",
                    preview(v)
                ),
            )
        }),
    }
}

/// What a network mode cannot go with, and what to do instead. `managed` goes with anything.
fn network_combination(spec: &ServiceSpec) -> Result<(), ApiError> {
    let refuse = |why: &str| Err(ApiError::invalid("network", why.to_string()));
    match spec.network {
        NetworkMode::Managed => Ok(()),
        _ if spec.kind == ServiceKind::LoadBalancer => {
            refuse("a load balancer runs inside the agents and listens on its hosts' own ports: leave its network out (managed)")
        }
        NetworkMode::Host if !spec.ports.is_empty() => refuse(
            "with network host the container listens on the host's own ports (its port 80 is the host's port 80) and publishes none: \
             remove the ports, or use network managed or bridge to publish them",
        ),
        NetworkMode::None if !spec.ports.is_empty() => {
            refuse("with network none the container has no network, so nothing can reach its ports: remove the ports, or use network managed or bridge")
        }
        NetworkMode::Host if spec.hot_spare => {
            refuse("with network host a hot spare would share the host's ports with the instance beside it: leave out the hot spare, or use network managed")
        }
        _ => Ok(()),
    }
}

/// A Docker image reference: `[HOST[:PORT]/]PATH[:TAG][@DIGEST]`, as the engine's grammar has it.
pub fn image(value: &str) -> Result<(), ApiError> {
    let bad = |why: &str| {
        Err(ApiError::invalid(
            "image",
            format!("invalid image reference {}: {why}; use e.g. nginx, nginx:1.25, registry.local:5000/team/app:v2", preview(value)),
        ))
    };
    if value.is_empty() {
        return bad("it is empty");
    }
    if value.len() > MAX_IMAGE_LEN {
        return bad(&format!("it is longer than {MAX_IMAGE_LEN} characters"));
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
    count("ports", "ports", values, MAX_PORTS)?;
    each_len("ports", "port", values, MAX_PORT_BYTES)?;
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
    count("env", "environment variables", values, MAX_ENV_ENTRIES)?;
    total_bytes("env", "environment variables", values, MAX_ENV_BYTES)?;
    for v in values {
        match v.split_once('=') {
            Some((k, _)) if !k.is_empty() && !k.contains(char::is_whitespace) && !v.contains('\0') => {}
            _ => return Err(ApiError::invalid("env", format!("invalid environment variable {}: use KEY=VALUE", preview(v)))),
        }
    }
    Ok(())
}

pub fn command(values: &[String]) -> Result<(), ApiError> {
    count("command", "command arguments", values, MAX_COMMAND_ARGS)?;
    total_bytes("command", "command arguments", values, MAX_COMMAND_BYTES)?;
    if values.iter().any(|a| a.contains('\0')) {
        return Err(ApiError::invalid("command", "the command may not contain NUL characters"));
    }
    Ok(())
}

/// Service labels: anything but Corral's own `io.corral.*`, which the control plane sets, and
/// control characters, which would reach terminals and logs as they are.
pub fn labels(labels: &BTreeMap<String, String>) -> Result<(), ApiError> {
    if labels.len() > MAX_LABELS {
        return Err(ApiError::invalid("labels", format!("{} labels given; at most {MAX_LABELS} are allowed", labels.len())));
    }
    each_len("labels", "label key", labels.keys(), MAX_LABEL_KEY_BYTES)?;
    each_len("labels", "label value", labels.values(), MAX_LABEL_VALUE_BYTES)?;
    for (key, value) in labels {
        if key.is_empty() || key.starts_with("io.corral.") {
            return Err(ApiError::invalid("labels", format!("invalid label {key:?}: label keys may not be empty or start with io.corral.")));
        }
        if key.chars().chain(value.chars()).any(char::is_control) {
            return Err(ApiError::invalid(
                "labels",
                format!("invalid label {key:?}: label keys and values may not hold control characters (new lines, tabs, escape codes)"),
            ));
        }
    }
    Ok(())
}

/// Scheduling constraints, returned in their canonical text form.
pub fn constraints(values: &[String]) -> Result<Vec<String>, ApiError> {
    count("constraints", "constraints", values, MAX_CONSTRAINTS)?;
    each_len("constraints", "constraint", values, MAX_CONSTRAINT_BYTES)?;
    values
        .iter()
        .map(|v| v.parse::<corral_scheduler::Constraint>().map(|c| c.to_string()).map_err(|e| ApiError::invalid("constraints", e.to_string())))
        .collect()
}

/// The sizes of a load balancer's lists, before their entries are parsed.
pub fn balancer(ports: &[String], targets: &[String], rules: &[String]) -> Result<(), ApiError> {
    count("ports", "balancer ports", ports, MAX_PORTS)?;
    count("targets", "balancer targets", targets, MAX_LB_TARGETS)?;
    count("rules", "balancer rules", rules, MAX_LB_RULES)?;
    each_len("ports", "balancer port", ports, MAX_PORT_BYTES)?;
    each_len("targets", "balancer target", targets, 2 * MAX_NAME_LEN + 1)?;
    each_len("rules", "balancer rule", rules, MAX_LB_RULE_BYTES)
}

/// Passwords: at least [`MIN_PASSWORD_LEN`] characters, not all of them whitespace (a password of
/// spaces is easy to guess and easy to set by mistake), and not so long that hashing it is work.
pub fn password(value: &str) -> Result<(), ApiError> {
    let chars = value.chars().count();
    let problem = if value.len() > MAX_PASSWORD_BYTES {
        return Err(ApiError::invalid("password", format!("the password is {} bytes long; at most {MAX_PASSWORD_BYTES} are allowed", value.len())));
    } else if chars < MIN_PASSWORD_LEN {
        format!("too short ({chars} characters)")
    } else if value.chars().all(char::is_whitespace) {
        "all whitespace (spaces, tabs, line breaks)".to_string()
    } else {
        return Ok(());
    };
    Err(ApiError::invalid("password", format!("the password is {problem}: a password needs at least {MIN_PASSWORD_LEN} characters, not all whitespace")))
}

/// The most bytes of a registry's CA file: a bundle of a few certificates fits easily.
pub const MAX_CA_PEM_BYTES: usize = 64 * 1024;
/// Registry user names, as registries and Docker's own login take them.
pub const MAX_REGISTRY_USER_BYTES: usize = 255;

/// A registry host as Docker names it in image references: `HOST[:PORT]`, where HOST is a DNS
/// name, an IPv4 address or `localhost`. Returns it normalized (lowercase, Docker Hub as
/// `docker.io`), the form image references are matched against.
pub fn registry_host(value: &str) -> Result<String, ApiError> {
    let bad = |why: &str| {
        Err(ApiError::invalid(
            "host",
            format!(
                "invalid registry host {}: {why}; give HOST or HOST:PORT, e.g. registry.example.com or 10.0.0.5:5000 (docker.io for Docker Hub)",
                preview(value)
            ),
        ))
    };
    let (host, port) = match value.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (value, None),
    };
    if host.is_empty() || host.len() > 253 {
        return bad("the host name must be 1 to 253 characters");
    }
    let label_ok =
        |l: &str| !l.is_empty() && l.len() <= 63 && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') && !l.starts_with('-') && !l.ends_with('-');
    if !host.split('.').all(label_ok) {
        return bad("a host name is letters, digits and '-' in dot-separated parts (no scheme, path or spaces)");
    }
    if port.is_some_and(|p| !matches!(p.parse::<u16>(), Ok(1..))) {
        return bad("the port must be a number from 1 to 65535");
    }
    Ok(corral_proto::registry::normalize_host(value))
}

/// A registry user name: printable, no ':' (the basic-auth separator).
pub fn registry_user(value: &str) -> Result<(), ApiError> {
    if value.is_empty() || value.len() > MAX_REGISTRY_USER_BYTES || value.chars().any(|c| c.is_control() || c == ':') {
        return Err(ApiError::invalid(
            "username",
            format!("invalid registry user name {}: use 1-{MAX_REGISTRY_USER_BYTES} printable characters without ':'", preview(value)),
        ));
    }
    Ok(())
}

/// A registry password: any text a registry accepts, but not empty and not huge.
pub fn registry_password(value: &str) -> Result<(), ApiError> {
    if value.is_empty() || value.len() > MAX_PASSWORD_BYTES || value.contains(['\n', '\r', '\0']) {
        return Err(ApiError::invalid(
            "password",
            format!("the registry password must be 1 to {MAX_PASSWORD_BYTES} bytes on one line (it is {} bytes long)", value.len()),
        ));
    }
    Ok(())
}

/// A registry's private CA: PEM with one or more certificates, each one a trust anchor can be
/// made of, and nothing else (no private key by mistake).
pub fn ca_pem(value: &str) -> Result<(), ApiError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    let bad =
        |why: String| Err(ApiError::invalid("ca_pem", format!("the CA file {why}; give the registry's CA certificate in PEM (-----BEGIN CERTIFICATE-----)")));
    if value.len() > MAX_CA_PEM_BYTES {
        return bad(format!("is {} bytes long; at most {} KiB are allowed", value.len(), MAX_CA_PEM_BYTES / 1024));
    }
    if value.contains("PRIVATE KEY") {
        return bad("holds a private key, which must never leave the registry".into());
    }
    let mut roots = rustls::RootCertStore::empty();
    for (n, cert) in CertificateDer::pem_slice_iter(value.as_bytes()).enumerate() {
        let cert = match cert {
            Ok(cert) => cert,
            Err(e) => return bad(format!("is not PEM ({e:?})")),
        };
        if let Err(e) = roots.add(cert) {
            return bad(format!("has a certificate (number {}) that cannot be read: {e}", n + 1));
        }
    }
    if roots.is_empty() {
        return bad("holds no certificate".into());
    }
    Ok(())
}

/// A time a user gave (`field`), in Unix seconds, within [`MIN_TIME`]..=[`MAX_TIME`].
pub fn unix_time(field: &'static str, value: i64) -> Result<i64, ApiError> {
    if (MIN_TIME..=MAX_TIME).contains(&value) {
        Ok(value)
    } else {
        Err(ApiError::invalid(
            field,
            format!("{field} must be between 1970-01-01T00:00:00Z ({MIN_TIME}) and 9999-12-31T23:59:59Z ({MAX_TIME}); it was {value}"),
        ))
    }
}

/// A step or other duration a user gave (`field`), in seconds: at least one, at most [`MAX_TIME`].
pub fn duration_seconds(field: &'static str, value: i64) -> Result<i64, ApiError> {
    if (1..=MAX_TIME).contains(&value) {
        Ok(value)
    } else {
        Err(ApiError::invalid(field, format!("{field} must be a duration between 1s and {MAX_TIME}s (about 10,000 years); it was {value}s")))
    }
}

/// Longest URL hosts may be told to join at.
pub const MAX_URL_BYTES: usize = 2048;

/// An environment's managed network: a private IPv4 range in CIDR form, from a /8 to a /23 (it
/// holds one /24 per host, at least two), written as its network address.
pub fn managed_subnet(value: &str) -> Result<ipnet::Ipv4Net, ApiError> {
    const FIELD: &str = "subnet";
    let bad = |why: String| ApiError::invalid(FIELD, format!("invalid subnet {}: {why}; give a private IPv4 range such as 10.42.0.0/16", preview(value)));
    let net: ipnet::Ipv4Net = value.trim().parse().map_err(|_| bad("it is not an IPv4 network in CIDR form (ADDRESS/PREFIX)".into()))?;
    if !(8..=23).contains(&net.prefix_len()) {
        return Err(bad(format!(
            "a /{} is {}: the prefix must be from /8 to /23 (each host takes a /24)",
            net.prefix_len(),
            if net.prefix_len() > 23 { "too small for two hosts" } else { "wider than any private range" }
        )));
    }
    if net.addr() != net.network() {
        return Err(bad(format!("it is not the start of its range; did you mean {}?", net.trunc())));
    }
    let private: [ipnet::Ipv4Net; 4] = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10"].map(|p| p.parse().expect("a CIDR"));
    if !private.iter().any(|p| p.contains(&net)) {
        return Err(bad("it is not a private range (10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16 or 100.64.0.0/10)".into()));
    }
    Ok(net)
}

/// The URL hosts reach the control plane at, as join commands name it: `http` or `https`, a
/// host, an optional port, nothing else (agents add `/v1/agent` themselves). Returned in its
/// normal form, without a trailing `/`.
pub fn advertise_url(value: &str) -> Result<String, ApiError> {
    const FIELD: &str = "advertise_url";
    let example = "e.g. https://192.168.1.20:7070 or https://corral.example.lan:7070";
    if value.len() > MAX_URL_BYTES {
        return Err(ApiError::invalid(FIELD, format!("the URL is {} bytes long; at most {MAX_URL_BYTES} are allowed", value.len())));
    }
    let bad = |why: String| {
        ApiError::invalid(FIELD, format!("invalid URL {}: {why}; give the scheme, host and port hosts reach this control plane at ({example})", preview(value)))
    };
    let url = url::Url::parse(value.trim()).map_err(|e| bad(e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(bad(format!("the scheme must be http or https, not {:?}", url.scheme())));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(bad("it names no host".into()));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad("it may not carry a user name or password".into()));
    }
    if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
        return Err(bad("it may have no path, query or fragment (agents add /v1/agent themselves)".into()));
    }
    Ok(url.as_str().trim_end_matches('/').to_string())
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
    network_combination(spec)
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
    fn managed_subnets() {
        assert_eq!(managed_subnet("10.42.0.0/16").unwrap().to_string(), "10.42.0.0/16");
        assert_eq!(managed_subnet("192.168.0.0/23").unwrap().to_string(), "192.168.0.0/23");
        for (bad, says) in [
            ("", "CIDR"),
            ("10.42.0.0", "CIDR"),
            ("10.42.0.0/24", "too small"),
            ("10.0.0.0/7", "wider"),
            ("10.42.1.0/16", "did you mean 10.42.0.0/16"),
            ("8.8.0.0/16", "not a private range"),
            ("fd00::/64", "CIDR"),
        ] {
            let e = managed_subnet(bad).unwrap_err().to_string();
            assert!(e.contains(says) && e.contains("invalid subnet"), "{bad}: {e}");
        }
    }

    #[test]
    fn advertised_urls() {
        assert_eq!(advertise_url("https://CP.lan:7070/").unwrap(), "https://cp.lan:7070");
        assert_eq!(advertise_url("http://192.168.1.20:7070").unwrap(), "http://192.168.1.20:7070");
        assert_eq!(advertise_url("https://[2001:db8::1]:7070").unwrap(), "https://[2001:db8::1]:7070");
        assert_eq!(advertise_url("https://cp.lan:443").unwrap(), "https://cp.lan", "the default port is implied");
        for bad in [
            "",
            "cp.lan:7070",
            "ftp://cp.lan",
            "https://",
            "https://ann:pw@cp.lan",
            "https://cp.lan/corral",
            "https://cp.lan?x=1",
            "http://cp lan",
            "javascript:alert(1)",
        ] {
            let e = advertise_url(bad).unwrap_err();
            assert!(matches!(e, ApiError::Invalid { field: "advertise_url", .. }) && e.to_string().contains("e.g. https://"), "{bad}: {e}");
        }
        assert!(advertise_url(&format!("https://{}.lan", "a".repeat(3000))).unwrap_err().to_string().contains("at most"));
    }

    #[test]
    fn registry_hosts_and_logins() {
        for (given, normalized) in [
            ("registry.example.com", "registry.example.com"),
            ("Registry.Example:5000", "registry.example:5000"),
            ("10.213.0.1:5443", "10.213.0.1:5443"),
            ("localhost:5000", "localhost:5000"),
            ("index.docker.io", "docker.io"),
        ] {
            assert_eq!(registry_host(given).unwrap(), normalized, "{given}");
        }
        for bad in ["", "https://r.example", "r.example/path", "r.example:0", "r.example:99999", "r example", "-r.example", "r..example", ":5000"] {
            let err = registry_host(bad).unwrap_err().to_string();
            assert!(err.contains("invalid registry host"), "{bad}: {err}");
        }
        assert!(registry_user("ci-bot").is_ok());
        assert!(registry_user("a:b").is_err() && registry_user("").is_err() && registry_user("a\nb").is_err());
        assert!(registry_password("x").is_ok());
        assert!(registry_password("").is_err() && registry_password("a\nb").is_err());
        let err = ca_pem("-----BEGIN PRIVATE KEY-----\nMC4=\n-----END PRIVATE KEY-----\n").unwrap_err().to_string();
        assert!(err.contains("private key"), "{err}");
        assert!(ca_pem("not pem").unwrap_err().to_string().contains("holds no certificate"));
        let ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap().self_signed(&rcgen::KeyPair::generate().unwrap()).unwrap();
        assert!(ca_pem(&ca.pem()).is_ok());
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
            pull: Default::default(),
            network: Default::default(),
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
        let balancer = ServiceSpec {
            kind: ServiceKind::LoadBalancer,
            image: String::new(),
            command: Vec::new(),
            ports: Vec::new(),
            lb: Some(lb.clone()),
            ..container_spec()
        };
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

    #[test]
    fn network_modes_refuse_what_cannot_work() {
        assert_eq!(network_mode(None).unwrap(), NetworkMode::Managed);
        for mode in ["managed", "bridge", "host", "none"] {
            assert_eq!(network_mode(Some(mode)).unwrap().as_str(), mode);
        }
        let (field, why) = message(network_mode(Some("overlay")));
        assert_eq!(field, "network");
        assert!(["\"overlay\"", "managed", "bridge", "host", "none"].iter().all(|w| why.contains(w)), "{why}");

        let with = |network: NetworkMode, change: fn(&mut ServiceSpec)| {
            let mut spec = ServiceSpec { network, ports: Vec::new(), ..container_spec() };
            change(&mut spec);
            service_spec(&spec)
        };
        for mode in [NetworkMode::Managed, NetworkMode::Bridge, NetworkMode::Host, NetworkMode::None] {
            assert!(with(mode, |_| {}).is_ok(), "{mode} alone");
        }
        assert!(with(NetworkMode::Bridge, |s| s.ports = vec!["8080:80".parse().unwrap()]).is_ok());
        let (field, why) = message(with(NetworkMode::Host, |s| s.ports = vec!["8080:80".parse().unwrap()]));
        assert_eq!(field, "network");
        assert!(why.contains("host's own ports") && why.contains("remove the ports"), "{why}");
        assert!(message(with(NetworkMode::Host, |s| s.ports = vec!["80".parse().unwrap()])).1.contains("host's own ports"), "unpublished ports too");
        assert!(message(with(NetworkMode::None, |s| s.ports = vec!["80".parse().unwrap()])).1.contains("nothing can reach"));
        assert!(message(with(NetworkMode::Host, |s| s.hot_spare = true)).1.contains("hot spare"));
        assert!(with(NetworkMode::None, |s| s.hot_spare = true).is_ok(), "a spare without a network shares nothing");
        let balancer = |network| ServiceSpec {
            kind: ServiceKind::LoadBalancer,
            image: String::new(),
            command: Vec::new(),
            ports: Vec::new(),
            lb: Some(LbSpec { ports: vec![crate::lb::parse_port("8080:80").unwrap()], targets: vec!["S/web".into()], rules: Vec::new(), global: false }),
            network,
            ..container_spec()
        };
        assert!(service_spec(&balancer(NetworkMode::Managed)).is_ok());
        for mode in [NetworkMode::Bridge, NetworkMode::Host, NetworkMode::None] {
            assert!(message(service_spec(&balancer(mode))).1.contains("load balancer"), "{mode}");
        }
    }

    fn message(result: Result<impl std::fmt::Debug, ApiError>) -> (&'static str, String) {
        match result {
            Err(ApiError::Invalid { field, message }) => (field, message),
            other => panic!("expected an invalid field, got {other:?}"),
        }
    }

    #[test]
    fn lists_and_strings_have_caps_and_say_them() {
        let strings = |n: usize, each: &str| vec![each.to_string(); n];
        assert!(command(&strings(MAX_COMMAND_ARGS, "a")).is_ok());
        assert_eq!(message(command(&strings(MAX_COMMAND_ARGS + 1, "a"))), ("command", "257 command arguments given; at most 256 are allowed".into()));
        let (field, text) = message(command(&["x".repeat(MAX_COMMAND_BYTES + 1)]));
        assert!(field == "command" && text.contains("at most 32 KiB"), "{text}");
        assert!(env(&strings(MAX_ENV_ENTRIES, "A=1")).is_ok());
        assert_eq!(message(env(&strings(MAX_ENV_ENTRIES + 1, "A=1"))).0, "env");
        assert!(message(env(&[format!("A={}", "v".repeat(MAX_ENV_BYTES))])).1.contains("64 KiB"));
        let many: BTreeMap<String, String> = (0..=MAX_LABELS).map(|i| (format!("k{i}"), String::new())).collect();
        assert!(message(labels(&many)).1.contains("at most 64"));
        let (_, text) = message(labels(&[("k".repeat(300), String::new())].into()));
        assert!(text.contains("300 bytes") && text.len() < 200, "a long value is not repeated whole: {text}");
        assert!(message(labels(&[("k".into(), "v".repeat(MAX_LABEL_VALUE_BYTES + 1))].into())).1.contains("4096"));
        assert!(message(ports(&(1..=65).map(|p| p.to_string()).collect::<Vec<_>>())).1.contains("at most 64"));
        assert!(message(constraints(&strings(MAX_CONSTRAINTS + 1, "host.a=b"))).1.contains("at most 32"));
        assert_eq!(message(balancer(&[], &[], &strings(MAX_LB_RULES + 1, "x"))).0, "rules");
        assert_eq!(message(balancer(&[], &strings(MAX_LB_TARGETS + 1, "S/s"), &[])).0, "targets");
        assert!(balancer(&strings(2, "80:80"), &strings(2, "S/s"), &strings(2, "path=/ -> S/s:80")).is_ok());
        let (_, text) = message(name("name", "stack", &"n".repeat(10_000)));
        assert!(text.contains("1-63") && text.len() < 200, "{text}");
    }

    #[test]
    fn passwords_need_eight_characters_not_all_whitespace() {
        assert!(password("correct horse").is_ok());
        assert!(password("  a      ").is_ok(), "spaces count when there is something else");
        assert!(password(&"p".repeat(MAX_PASSWORD_BYTES)).is_ok());
        for (bad, words) in [
            ("short", "the password is too short (5 characters)"),
            ("        ", "the password is all whitespace"),
            ("\t\n\r \u{3000}\u{a0}  ", "the password is all whitespace"),
            ("ééé", "too short (3 characters)"),
        ] {
            let (field, text) = message(password(bad));
            assert!(field == "password" && text.contains("at least 8 characters") && text.contains(words), "{bad:?}: {text}");
        }
        assert!(message(password(&"p".repeat(MAX_PASSWORD_BYTES + 1))).1.contains("at most 1024"));
    }

    #[test]
    fn times_stay_where_arithmetic_on_them_cannot_overflow() {
        assert_eq!(unix_time("from", 0).unwrap(), 0);
        assert_eq!(unix_time("to", MAX_TIME).unwrap(), MAX_TIME);
        for bad in [-1, MAX_TIME + 1, i64::MIN, i64::MAX] {
            let (field, text) = message(unix_time("from", bad));
            assert!(field == "from" && text.contains("between 1970-01-01T00:00:00Z (0) and 9999-12-31T23:59:59Z"), "{text}");
        }
        assert!(duration_seconds("step", 1).is_ok() && duration_seconds("step", MAX_TIME).is_ok());
        for bad in [0, -5, MAX_TIME + 1, i64::MAX] {
            assert!(message(duration_seconds("step", bad)).1.contains("between 1s and"));
        }
        // The widest range and step the checks allow still compute.
        assert!(MAX_TIME.checked_sub(MIN_TIME).and_then(|span| span.checked_add(MAX_TIME)).is_some());
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
            pull: corral_proto::PullPolicy::Never,
            network: NetworkMode::Bridge,
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
            s.lb = Some(LbSpec {
                ports: vec![corral_store::LbPort { listen: 0, target: 80, mode: corral_proto::lb::LbMode::Http }],
                targets: vec!["A/b".into()],
                rules: vec![],
                global: false,
            });
        })
        .contains("between 1 and 65535"));
    }
}

//! Checks on what agents send. An agent is trusted with its own host only, and a join token is
//! all it takes to be one: what it says about itself and its containers is checked before the
//! control plane stores, shows or logs it. No string it sends may hold control characters (they
//! move a terminal's cursor, clear its screen, or start a forged line in the log), and each has a
//! length cap; the [`Hello`] is refused as a whole, an observed set loses what fails, with why.

use crate::error::ApiError;
use corral_proto::lb::LbListenerStatus;
use corral_proto::{ContainerIssue, Hello, HostFacts, ImageReport, ImageState, IssueKind, ObservedContainer, ObservedSet, MAX_OBSERVED_CONTAINERS};
use std::borrow::Cow;
use std::collections::{BTreeMap, HashSet};

/// Longest host name, as in DNS.
pub const MAX_HOST_NAME: usize = 253;
/// Longest host id (agents make UUIDs).
pub const MAX_HOST_ID: usize = 128;
/// Longest Docker version, OS, kernel or agent version in a hello.
pub const MAX_FACT: usize = 256;
/// Most labels a host may have.
pub const MAX_HOST_LABELS: usize = 64;
/// Longest host label key; values get [`MAX_FACT`].
pub const MAX_HOST_LABEL_KEY: usize = 128;
/// Most labels one observed container may carry.
pub const MAX_CONTAINER_LABELS: usize = 256;
/// Longest label value on a container (`io.corral.service-spec` holds a whole spec as JSON).
pub const MAX_LABEL_VALUE: usize = 64 << 10;
/// Most ports one observed container may publish.
pub const MAX_PORTS: usize = 1024;
/// Most balancer listeners one host may report, and backends one listener may report.
pub const MAX_LISTENERS: usize = 1024;
pub const MAX_BACKENDS: usize = 10_000;
/// Longest explanation an agent may give for a container or an image.
pub const MAX_ISSUE_MESSAGE: usize = 1024;
/// Most log lines an issue may quote, and the longest line.
pub const MAX_ISSUE_LOG_LINES: usize = 20;
pub const MAX_ISSUE_LOG_LINE: usize = 512;
/// Longest image reference an agent may name (the API takes no longer one).
pub const MAX_IMAGE: usize = 512;
/// Longest join token or credential worth comparing.
const MAX_SECRET: usize = 256;

/// `value` as messages and logs show it: escaped, and cut to 40 characters.
pub fn preview(value: &str) -> String {
    let mut shown: String = value.chars().take(40).collect();
    if shown.len() < value.len() {
        shown.push('…');
    }
    format!("{shown:?}")
}

/// `text` with every control character escaped, so it cannot act on a terminal or the log.
pub fn printable(text: &str) -> Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return Cow::Borrowed(text);
    }
    Cow::Owned(text.chars().map(|c| if c.is_control() { c.escape_default().to_string() } else { c.to_string() }).collect())
}

/// Why `value` is not acceptable free text of at most `max` bytes, if it is not.
fn text_problem(value: &str, max: usize) -> Option<String> {
    if value.len() > max {
        Some(format!("it is {} bytes long, more than {max}", value.len()))
    } else if value.chars().any(char::is_control) {
        Some("it holds control characters (new lines, tabs, escape codes)".into())
    } else {
        None
    }
}

fn hello_field(field: &'static str, value: &str, max: usize) -> Result<(), ApiError> {
    match text_problem(value, max) {
        None => Ok(()),
        Some(why) => Err(ApiError::invalid(field, format!("the hello's {field} {} is refused: {why}", preview(value)))),
    }
}

/// A name made of ASCII letters, digits, '-', '_' and '.', starting with a letter or digit: it
/// prints as it is, and names the thing on a command line and in a URL path.
fn plain_name(value: &str, max: usize) -> bool {
    !value.is_empty()
        && value.len() <= max
        && value.starts_with(|c: char| c.is_ascii_alphanumeric())
        && value.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// A host's name: what `corral host ls` shows and `corral host rm NAME` takes.
pub fn host_name(value: &str) -> Result<(), ApiError> {
    if plain_name(value, MAX_HOST_NAME) {
        return Ok(());
    }
    Err(ApiError::invalid(
        "name",
        format!(
            "the host name {} is refused: use 1-{MAX_HOST_NAME} letters, digits, '-', '_' or '.', starting with a letter or digit; start the agent with --name NAME",
            preview(value)
        ),
    ))
}

/// The address other hosts' balancers reach the host at: an IP address or a DNS name; empty
/// lets the control plane use the address the agent connected from.
pub fn address(value: &str) -> Result<(), ApiError> {
    if value.is_empty() || value.parse::<std::net::IpAddr>().is_ok() || (plain_name(value, MAX_HOST_NAME) && !value.contains('_')) {
        return Ok(());
    }
    Err(ApiError::invalid(
        "address",
        format!("the host address {} is refused: give an IP address or a DNS name; start the agent with --address ADDRESS", preview(value)),
    ))
}

/// Everything a hello says before the control plane looks the host up.
pub fn hello(hello: &Hello) -> Result<(), ApiError> {
    host_id(&hello.host_id)?;
    if hello.token.len() > MAX_SECRET || hello.credential.as_ref().is_some_and(|c| c.len() > MAX_SECRET) {
        return Err(ApiError::invalid(
            "token",
            format!("the hello's token or credential is longer than {MAX_SECRET} bytes: it is none of this control plane's"),
        ));
    }
    facts(&hello.facts)
}

/// The id an agent chose for its host, kept in its state dir.
pub fn host_id(value: &str) -> Result<(), ApiError> {
    if !plain_name(value, MAX_HOST_ID) {
        return Err(ApiError::invalid(
            "host_id",
            format!(
                "the host id {} is refused: use 1-{MAX_HOST_ID} letters, digits, '-', '_' or '.'; delete host-id in the agent's state dir to make a new one",
                preview(value)
            ),
        ));
    }
    Ok(())
}

/// A host's facts, as its hello gives them and as the database (or a backup of it) keeps them.
pub fn facts(facts: &HostFacts) -> Result<(), ApiError> {
    host_name(&facts.name)?;
    address(&facts.address)?;
    hello_field("docker_version", &facts.docker_version, MAX_FACT)?;
    hello_field("os", &facts.os, MAX_FACT)?;
    hello_field("kernel", &facts.kernel, MAX_FACT)?;
    hello_field("agent_version", &facts.agent_version, MAX_FACT)?;
    host_labels(&facts.labels)?;
    network_facts(&facts.network)
}

/// The most interface networks a hello may list.
const MAX_HOST_NETWORKS: usize = 64;

/// What an agent says of its side of the managed network: CIDRs, a WireGuard public key (32 bytes
/// in base64), a port.
fn network_facts(n: &corral_proto::network::NetworkFacts) -> Result<(), ApiError> {
    let bad = |why: String| Err(ApiError::invalid("network", format!("the hello's network facts are refused: {why}")));
    let is_cidr = |s: &str| s.len() <= 18 && crate::network::cidr(s).is_some();
    if let Some(subnet) = n.subnet.as_deref().filter(|s| !is_cidr(s)) {
        return bad(format!("subnet {} is no IPv4 network", preview(subnet)));
    }
    if let Some(key) = &n.public_key {
        use base64::Engine as _;
        let decoded = base64::engine::general_purpose::STANDARD.decode(key).ok().filter(|_| key.len() == 44);
        if decoded.is_none_or(|k| k.len() != 32) {
            return bad(format!("public key {} is not 32 bytes in base64", preview(key)));
        }
    }
    if n.tunnel_port == Some(0) {
        return bad("tunnel port 0".into());
    }
    if n.host_networks.len() > MAX_HOST_NETWORKS {
        return bad(format!("{} host networks, more than {MAX_HOST_NETWORKS}", n.host_networks.len()));
    }
    if let Some(net) = n.host_networks.iter().find(|s| !is_cidr(s)) {
        return bad(format!("host network {} is no IPv4 network", preview(net)));
    }
    Ok(())
}

/// Host labels are what constraints (`host.LABEL=VALUE`) match: a key that syntax cannot name
/// is refused with the rest.
fn host_labels(labels: &BTreeMap<String, String>) -> Result<(), ApiError> {
    let bad = |why: String| Err(ApiError::invalid("labels", format!("the hello's labels are refused: {why}; start the agent with --label KEY=VALUE")));
    if labels.len() > MAX_HOST_LABELS {
        return bad(format!("there are {}, more than {MAX_HOST_LABELS}", labels.len()));
    }
    for (key, value) in labels {
        let key_ok = !key.is_empty() && key.len() <= MAX_HOST_LABEL_KEY && !key.chars().any(|c| c.is_control() || c.is_whitespace() || c == '=' || c == '!');
        if !key_ok {
            return bad(format!("key {} must be 1-{MAX_HOST_LABEL_KEY} characters without spaces, control characters, '=' or '!'", preview(key)));
        }
        if let Some(why) = text_problem(value, MAX_FACT) {
            return bad(format!("the value of {}: {why}", preview(key)));
        }
    }
    Ok(())
}

/// An observed set, less what could not be kept.
#[derive(Debug, Default, PartialEq)]
pub struct Checked {
    pub observed: ObservedSet,
    /// Why each container or listener left out was left out, printable.
    pub refused: Vec<String>,
}

/// Checks an agent's report. A report of more containers than a host may run is refused as a
/// whole (`Err`, saying why): keeping part of it would make the control plane believe the host
/// runs less than it does. Otherwise each container or listener that fails is left out.
pub fn observed(mut observed: ObservedSet) -> Result<Checked, String> {
    if observed.containers.len() > MAX_OBSERVED_CONTAINERS {
        return Err(format!(
            "report not kept: the agent listed {} containers, more than the {MAX_OBSERVED_CONTAINERS} a host may report",
            observed.containers.len()
        ));
    }
    if observed.load_balancer.len() > MAX_LISTENERS {
        return Err(format!(
            "report not kept: the agent listed {} load-balancer listeners, more than the {MAX_LISTENERS} a host may report",
            observed.load_balancer.len()
        ));
    }
    let mut refused = Vec::new();
    let mut names = HashSet::new();
    observed.containers.retain(|c| match container(c).and_then(|()| if names.insert(c.name.clone()) { Ok(()) } else { Err("it is listed twice".into()) }) {
        Ok(()) => true,
        Err(why) => {
            refused.push(format!("container {} not kept from the report: {why}", preview(&c.name)));
            false
        }
    });
    observed.load_balancer.retain(|l| match listener(l) {
        Ok(()) => true,
        Err(why) => {
            refused.push(format!("load-balancer listener :{} not kept from the report: {why}", l.port));
            false
        }
    });
    if observed.issues.len() > MAX_OBSERVED_CONTAINERS || observed.images.len() > MAX_LISTENERS {
        refused.push(format!(
            "{} container issues and {} image reports not kept: more than the {MAX_OBSERVED_CONTAINERS} and {MAX_LISTENERS} a host may report",
            observed.issues.len(),
            observed.images.len()
        ));
        observed.issues.clear();
        observed.images.clear();
    }
    let mut issue_names = HashSet::new();
    observed.issues.retain(|i| match issue(i).and_then(|()| if issue_names.insert(i.name.clone()) { Ok(()) } else { Err("it is listed twice".into()) }) {
        Ok(()) => true,
        Err(why) => {
            refused.push(format!("issue of container {} not kept from the report: {why}", preview(&i.name)));
            false
        }
    });
    observed.images.retain(|r| match image_report(r) {
        Ok(()) => true,
        Err(why) => {
            refused.push(format!("report on image {} not kept: {why}", preview(&r.image)));
            false
        }
    });
    Ok(Checked { observed, refused })
}

fn container(c: &ObservedContainer) -> Result<(), String> {
    if !plain_name(&c.name, 255) {
        return Err("a container name is 1-255 letters, digits, '-', '_' or '.'".into());
    }
    if c.docker_id.is_empty() || c.docker_id.len() > 64 || !c.docker_id.chars().all(|ch| ch.is_ascii_hexdigit()) {
        return Err(format!("its id {} is not an engine's container id", preview(&c.docker_id)));
    }
    for (what, value, max) in [("image", &c.image, 512), ("status", &c.status, 256)] {
        if let Some(why) = text_problem(value, max) {
            return Err(format!("its {what} {} is refused: {why}", preview(value)));
        }
    }
    if let Some(ip) = c.ip.as_deref().filter(|ip| ip.parse::<std::net::IpAddr>().is_err()) {
        return Err(format!("its IP {} is not an IP address", preview(ip)));
    }
    if c.ports.len() > MAX_PORTS {
        return Err(format!("it publishes {} ports, more than {MAX_PORTS}", c.ports.len()));
    }
    container_labels(&c.labels)
}

/// The address an agent reports for a container, when it is one the container may have on the
/// managed network: an IPv4 address of the host's own `lease`, neither the lease's network nor
/// broadcast address nor its gateway (the host's own). An agent is trusted with its lease only,
/// so no name it reports can point into another host's containers. `None` for anything else,
/// which is also what a container not yet on the managed network reports (an address on the
/// engine's default bridge): such a container has no name yet, and nothing is refused.
pub fn managed_address(ip: Option<&str>, lease: &ipnet::Ipv4Net) -> Option<std::net::Ipv4Addr> {
    let ip: std::net::Ipv4Addr = ip?.parse().ok()?;
    let gateway = lease.hosts().next()?;
    (lease.contains(&ip) && ip != lease.network() && ip != lease.broadcast() && ip != gateway).then_some(ip)
}

/// Why a container is not running, as an agent says it: a name it may run, printable words of
/// bounded length, a percent that is one.
fn issue(i: &ContainerIssue) -> Result<(), String> {
    if !plain_name(&i.name, 255) {
        return Err("a container name is 1-255 letters, digits, '-', '_' or '.'".into());
    }
    if let Some(why) = text_problem(&i.message, MAX_ISSUE_MESSAGE) {
        return Err(format!("its message is refused: {why}"));
    }
    let (image, log) = match &i.kind {
        IssueKind::Pulling { image, percent } if *percent > 100 => return Err(format!("pulling {}: {percent} % is not a percent", preview(image))),
        IssueKind::Pulling { image, .. } | IssueKind::PullFailed { image, .. } | IssueKind::ImageMissing { image } => (Some(image), &[][..]),
        IssueKind::Exited { log, .. } | IssueKind::CrashLooping { log, .. } => (None, log.as_slice()),
        IssueKind::PortTaken { .. } | IssueKind::EngineError | IssueKind::Unknown => (None, &[][..]),
    };
    if let Some(why) = image.and_then(|image| text_problem(image, MAX_IMAGE)) {
        return Err(format!("its image is refused: {why}"));
    }
    if log.len() > MAX_ISSUE_LOG_LINES {
        return Err(format!("it quotes {} log lines, more than {MAX_ISSUE_LOG_LINES}", log.len()));
    }
    if let Some(why) = log.iter().find_map(|line| text_problem(line, MAX_ISSUE_LOG_LINE)) {
        return Err(format!("a log line it quotes is refused: {why}"));
    }
    Ok(())
}

fn image_report(r: &ImageReport) -> Result<(), String> {
    if let Some(why) = text_problem(&r.image, MAX_IMAGE) {
        return Err(format!("its image is refused: {why}"));
    }
    match &r.state {
        ImageState::Pulling { percent } if *percent > 100 => Err(format!("{percent} % is not a percent")),
        ImageState::Failed { message, .. } => text_problem(message, MAX_ISSUE_MESSAGE).map_or(Ok(()), |why| Err(format!("its message is refused: {why}"))),
        _ => Ok(()),
    }
}

fn container_labels(labels: &BTreeMap<String, String>) -> Result<(), String> {
    if labels.len() > MAX_CONTAINER_LABELS {
        return Err(format!("it carries {} labels, more than {MAX_CONTAINER_LABELS}", labels.len()));
    }
    for (key, value) in labels {
        if key.is_empty() {
            return Err("it carries a label with an empty key".into());
        }
        if let Some(why) = text_problem(key, 256).or_else(|| text_problem(value, MAX_LABEL_VALUE)) {
            return Err(format!("its label {} is refused: {why}", preview(key)));
        }
    }
    Ok(())
}

fn listener(l: &LbListenerStatus) -> Result<(), String> {
    if let Some(why) = l.error.as_deref().and_then(|e| text_problem(e, 1024)) {
        return Err(format!("its error is refused: {why}"));
    }
    if l.backends.len() > MAX_BACKENDS {
        return Err(format!("it lists {} backends, more than {MAX_BACKENDS}", l.backends.len()));
    }
    if let Some(b) = l.backends.iter().find(|b| text_problem(&b.address, 256).is_some()) {
        return Err(format!("its backend {} is not an address", preview(&b.address)));
    }
    container_labels(&l.labels)
}

/// The problem a host shows for what was refused from its agent: the first reasons, each cut
/// short, and how many more the log has.
pub fn problem(refused: &[String]) -> Option<String> {
    const SHOWN: usize = 20;
    const LONGEST: usize = 300;
    if refused.is_empty() {
        return None;
    }
    let shown: Vec<String> = refused
        .iter()
        .take(SHOWN)
        .map(|r| {
            let r = printable(r);
            match r.char_indices().nth(LONGEST) {
                Some((cut, _)) => format!("{}…", &r[..cut]),
                None => r.into_owned(),
            }
        })
        .collect();
    let mut text = shown.join("; ");
    if refused.len() > SHOWN {
        text.push_str(&format!("; and {} more (see the control plane's log)", refused.len() - SHOWN));
    }
    Some(text)
}

/// A host's tunnel report, kept only as far as it is believable: peers its plan names (each
/// once, with the plan's name and subnet for it, not the agent's), endpoints that are socket
/// addresses, and an error that is plain text of at most [`MAX_ISSUE_MESSAGE`] bytes (else it
/// says only that one was refused). Without a plan the host has no peers to speak of.
pub fn tunnel(
    report: corral_proto::network::TunnelReport,
    plan: Option<&corral_proto::network::NetworkPlan>,
    received: std::time::Instant,
) -> crate::tunnels::TunnelState {
    let error = report.error.map(|e| match text_problem(&e, MAX_ISSUE_MESSAGE) {
        None => e,
        Some(why) => format!("the agent's explanation was refused: {why}"),
    });
    let mut seen = HashSet::new();
    let peers = report
        .peers
        .into_iter()
        .take(corral_proto::network::MAX_REPORTED_PEERS)
        .filter_map(|p| {
            let planned = plan?.peers.iter().find(|q| q.host_id == p.host_id)?;
            let endpoint: std::net::SocketAddr = p.endpoint.parse().ok()?;
            seen.insert(p.host_id.clone()).then(|| crate::tunnels::PeerState {
                host_id: planned.host_id.clone(),
                host: planned.name.clone(),
                subnet: planned.subnet.clone(),
                endpoint: endpoint.to_string(),
                last_handshake_secs: p.last_handshake_secs,
                listed_secs: p.listed_secs,
                rx_bytes: p.rx_bytes,
                tx_bytes: p.tx_bytes,
            })
        })
        .collect();
    crate::tunnels::TunnelState { running: report.running, error, port: report.port, peers, received }
}

#[cfg(test)]
mod tests {
    use super::*;
    use corral_proto::{ContainerState, PROTOCOL_VERSION};

    fn hello_with(change: impl FnOnce(&mut Hello)) -> Result<(), ApiError> {
        let mut h = Hello {
            protocol_version: PROTOCOL_VERSION,
            token: "t".into(),
            credential: None,
            host_id: "0b3c2f1e-7a7d-4c55-9d1e-4a1b2c3d4e5f".into(),
            facts: HostFacts {
                name: "h1.example.com".into(),
                address: "10.0.0.7".into(),
                docker_version: "27.0.3".into(),
                os: "Debian GNU/Linux 12 (bookworm)".into(),
                kernel: "6.1.0-18-amd64".into(),
                agent_version: "0.1.0".into(),
                labels: [("zone".to_string(), "eu west".to_string())].into(),
                ..Default::default()
            },
        };
        change(&mut h);
        hello(&h)
    }

    fn field(result: Result<(), ApiError>) -> &'static str {
        match result {
            Err(ApiError::Invalid { field, .. }) => field,
            other => panic!("not refused: {other:?}"),
        }
    }

    #[test]
    fn hellos_are_checked_field_by_field() {
        assert!(hello_with(|_| {}).is_ok());
        assert!(hello_with(|h| h.facts.address.clear()).is_ok(), "an empty address is filled in by the control plane");
        assert!(hello_with(|h| h.facts.address = "docker-1.lan".into()).is_ok());
        assert_eq!(field(hello_with(|h| h.host_id = "a\nb".into())), "host_id");
        for name in ["", "..", "-rf", "a/b", "a b", "h\u{1b}[2J", &"h".repeat(254)] {
            assert_eq!(field(hello_with(|h| h.facts.name = name.into())), "name", "{name:?}");
        }
        assert_eq!(field(hello_with(|h| h.facts.address = "1.2.3.4; ls".into())), "address");
        assert_eq!(field(hello_with(|h| h.facts.os = "Linux\n2030 ERROR forged".into())), "os");
        assert_eq!(field(hello_with(|h| h.facts.kernel = "k".repeat(MAX_FACT + 1))), "kernel");
        assert_eq!(field(hello_with(|h| h.facts.docker_version = "\u{9b}2J".into())), "docker_version", "C1 controls too");
        assert_eq!(field(hello_with(|h| h.facts.labels = [("a=b".to_string(), "c".to_string())].into())), "labels");
        assert_eq!(field(hello_with(|h| h.facts.labels = [("zone".to_string(), "a\tb".to_string())].into())), "labels");
        assert_eq!(field(hello_with(|h| h.token = "t".repeat(10_000))), "token");
        let message = hello_with(|h| h.facts.name = "x".repeat(100_000)).unwrap_err().to_string();
        assert!(message.len() < 400, "a refusal quotes a preview, not the value: {message}");
    }

    fn running(name: &str) -> ObservedContainer {
        ObservedContainer {
            name: name.into(),
            docker_id: "0123456789abcdef".into(),
            image: "busybox:latest".into(),
            state: ContainerState::Running,
            status: "Up 3 seconds (healthy)".into(),
            ip: Some("172.17.0.2".into()),
            ports: Vec::new(),
            labels: [("io.corral.managed".to_string(), "true".to_string())].into(),
        }
    }

    #[test]
    fn reports_lose_what_fails_and_say_why() {
        let mut bad_status = running("S-b-1");
        bad_status.status = "Up\u{1b}[2J".into();
        let mut bad_ip = running("S-c-1");
        bad_ip.ip = Some("here".into());
        let mut bad_label = running("S-d-1");
        bad_label.labels.insert("team".into(), "a\nb".into());
        let report =
            ObservedSet { containers: vec![running("S-a-1"), bad_status, bad_ip, bad_label, running("S-a-1"), running("\u{1b}x")], ..Default::default() };
        let checked = observed(report).unwrap();
        assert_eq!(checked.observed.containers.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(), ["S-a-1"]);
        assert_eq!(checked.refused.len(), 5, "{:?}", checked.refused);
        assert!(checked.refused.iter().all(|r| !r.chars().any(char::is_control)), "{:?}", checked.refused);
        assert!(checked.refused.iter().any(|r| r.contains("listed twice")));

        let many = ObservedSet { containers: (0..=MAX_OBSERVED_CONTAINERS).map(|i| running(&format!("c-{i}"))).collect(), ..Default::default() };
        assert!(observed(many).unwrap_err().contains(&format!("{} containers", MAX_OBSERVED_CONTAINERS + 1)));
    }

    #[test]
    fn issues_and_image_reports_are_checked_like_the_rest() {
        let issue = |name: &str, kind: IssueKind, message: &str| ContainerIssue { name: name.into(), kind, message: message.into() };
        let report = ObservedSet {
            issues: vec![
                issue("S-a-1", IssueKind::Pulling { image: "r:5000/a:1".into(), percent: 63 }, "pulling r:5000/a:1: 63 %"),
                issue("S-a-2", IssueKind::Pulling { image: "r:5000/a:1".into(), percent: 163 }, "pulling"),
                issue("S-a-3", IssueKind::EngineError, "engine error\n2030 ERROR forged"),
                issue("S-a-4", IssueKind::Exited { code: 3, log: vec!["ok".into(), "\u{1b}[2J".into()] }, "exited with code 3"),
                issue("S-a-5", IssueKind::CrashLooping { restarts: 4, code: Some(1), log: vec!["l".into(); 21] }, "crash-looping"),
                issue("S-a-6", IssueKind::EngineError, &"x".repeat(MAX_ISSUE_MESSAGE + 1)),
                issue("a b", IssueKind::EngineError, "m"),
                issue("S-a-1", IssueKind::EngineError, "again"),
            ],
            images: vec![
                ImageReport { image: "r:5000/a:2".into(), state: ImageState::Present },
                ImageReport { image: "r:5000/a:3".into(), state: ImageState::Pulling { percent: 101 } },
                ImageReport { image: "r\n".into(), state: ImageState::Present },
            ],
            ..Default::default()
        };
        let checked = observed(report).unwrap();
        assert_eq!(checked.observed.issues.iter().map(|i| i.name.as_str()).collect::<Vec<_>>(), ["S-a-1"]);
        assert_eq!(checked.observed.images.len(), 1);
        assert_eq!(checked.refused.len(), 9, "{:#?}", checked.refused);
        assert!(checked.refused.iter().all(|r| !r.chars().any(char::is_control)), "{:?}", checked.refused);
    }

    #[test]
    fn problems_are_short_and_printable() {
        assert_eq!(problem(&[]), None);
        let many: Vec<String> = (0..25).map(|i| format!("reason {i}\n{}", "x".repeat(1000))).collect();
        let text = problem(&many).unwrap();
        assert!(text.contains("reason 0\\n") && text.contains("and 5 more"), "{text}");
        assert!(text.len() < 20 * 310 + 100, "{}", text.len());
    }

    #[test]
    fn a_managed_address_is_a_containers_address_in_the_hosts_own_lease() {
        let lease: ipnet::Ipv4Net = "10.42.3.0/24".parse().unwrap();
        assert_eq!(managed_address(Some("10.42.3.7"), &lease), Some([10, 42, 3, 7].into()));
        assert_eq!(managed_address(Some("10.42.3.254"), &lease), Some([10, 42, 3, 254].into()));
        for refused in ["10.42.4.7", "172.17.0.2", "10.42.3.0", "10.42.3.1", "10.42.3.255", "::1", "10.42.3.7/24", " 10.42.3.7", "here", ""] {
            assert_eq!(managed_address(Some(refused), &lease), None, "{refused:?}");
        }
        assert_eq!(managed_address(None, &lease), None);
    }

    #[test]
    fn tunnel_reports_keep_only_the_plans_peers() {
        use corral_proto::network::{NetworkPlan, Peer, PeerReport, TunnelReport};
        let plan = NetworkPlan {
            network: "10.42.0.0/16".into(),
            subnet: "10.42.1.0/24".into(),
            peers: vec![Peer { host_id: "b".into(), name: "hb".into(), subnet: "10.42.2.0/24".into(), public_key: None, endpoint: None }],
            ..Default::default()
        };
        let peer = |host: &str, endpoint: &str| PeerReport { host_id: host.into(), endpoint: endpoint.into(), rx_bytes: 5, ..Default::default() };
        let report = TunnelReport {
            running: true,
            port: 51820,
            error: Some("bad\x1b[2Jthing".into()),
            peers: vec![peer("b", "10.0.0.2:51820"), peer("b", "10.0.0.3:51820"), peer("z", "10.0.0.9:51820"), peer("b", "nonsense")],
        };
        let now = std::time::Instant::now();
        let t = tunnel(report.clone(), Some(&plan), now);
        assert_eq!(t.peers.len(), 1, "{t:?}");
        assert_eq!((t.peers[0].host.as_str(), t.peers[0].subnet.as_str(), t.peers[0].endpoint.as_str()), ("hb", "10.42.2.0/24", "10.0.0.2:51820"));
        assert!(t.error.as_deref().unwrap().contains("refused") && !t.error.as_deref().unwrap().contains('\x1b'), "{t:?}");
        assert!(tunnel(report, None, now).peers.is_empty(), "no plan, no peers");
    }
}

//! The container spec: what the control plane asks an agent to run.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fmt;

/// One container as the control plane wants it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ContainerSpec {
    /// Docker container name, `STACK-SERVICE-N`.
    pub name: String,
    pub image: String,
    /// Arguments after the image; empty means the image's default command.
    #[serde(default)]
    pub command: Vec<String>,
    /// `KEY=VALUE` pairs.
    #[serde(default)]
    pub env: Vec<String>,
    #[serde(default)]
    pub ports: Vec<PortSpec>,
    /// The `io.corral.*` labels (see [`crate::labels`]) plus the service's own.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// The service is stopped: the container is kept but not running. Not part of the spec
    /// hash, so stopping and starting never recreates a container.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stopped: bool,
    /// When the agent pulls the image. Not part of the spec hash: how an image is obtained
    /// does not change the container made from it.
    #[serde(default, skip_serializing_if = "crate::PullPolicy::is_default")]
    pub pull: crate::PullPolicy,
    /// Which network the container joins. Part of the spec hash (a container moves network by
    /// being made anew), but left out when it is the default, so specs from before it hash alike.
    #[serde(default, skip_serializing_if = "crate::network::NetworkMode::is_default")]
    pub network: crate::network::NetworkMode,
    /// Changes each time a restart of this container is asked for: the agent restarts a running
    /// container when this differs from the generation it last applied. Not part of the spec
    /// hash either (and left out when 0), so a restart never recreates a container.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub restart_generation: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl ContainerSpec {
    /// A stable hash of everything that defines the container, so the agent can tell whether
    /// an existing container still matches. Field order is fixed by the struct and maps are
    /// ordered, so the same spec always hashes the same.
    pub fn spec_hash(&self) -> String {
        let mut hashed = self.clone();
        hashed.labels.remove(crate::labels::SPEC_HASH);
        hashed.stopped = false;
        hashed.pull = Default::default();
        hashed.restart_generation = 0;
        let bytes = serde_json::to_vec(&hashed).expect("a spec always serializes");
        hex::encode(&Sha256::digest(&bytes)[..8])
    }
}

impl ContainerSpec {
    /// A hash of what every instance of the service shares: the spec without its name and the
    /// labels that say which instance (or spare) it is. A spare renamed into an instance's
    /// place carries the instance's template hash, so the agent keeps it instead of recreating.
    pub fn template_hash(&self) -> String {
        let mut hashed = self.clone();
        hashed.name.clear();
        hashed.stopped = false;
        hashed.pull = Default::default();
        hashed.restart_generation = 0;
        for key in [crate::labels::SPEC_HASH, crate::labels::INSTANCE, crate::labels::SPARE, crate::labels::TEMPLATE_HASH, crate::labels::INCARNATION] {
            hashed.labels.remove(key);
        }
        let bytes = serde_json::to_vec(&hashed).expect("a spec always serializes");
        hex::encode(&Sha256::digest(&bytes)[..8])
    }

    pub fn is_spare(&self) -> bool {
        self.labels.get(crate::labels::SPARE).is_some_and(|v| v == "true")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
}

/// A container port, optionally published on the host: `80`, `8080:80`, `53/udp`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PortSpec {
    /// Published host port; `None` keeps the port reachable on the container's IP only.
    pub host_port: Option<u16>,
    pub container_port: u16,
    pub protocol: Protocol,
}

impl fmt::Display for PortSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(h) = self.host_port {
            write!(f, "{h}:")?;
        }
        write!(f, "{}", self.container_port)?;
        if self.protocol == Protocol::Udp {
            f.write_str("/udp")?;
        }
        Ok(())
    }
}

/// Why a port mapping could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortParseError(pub String);

impl fmt::Display for PortParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for PortParseError {}

impl std::str::FromStr for PortSpec {
    type Err = PortParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |why: &str| {
            PortParseError(format!(
                "invalid port {s:?}: {why}; use CONTAINER_PORT, HOST_PORT:CONTAINER_PORT, optionally with /tcp or /udp (e.g. 80, 8080:80, 53/udp)"
            ))
        };
        let (ports, protocol) = match s.rsplit_once('/') {
            Some((p, "tcp")) => (p, Protocol::Tcp),
            Some((p, "udp")) => (p, Protocol::Udp),
            Some((_, other)) => return Err(bad(&format!("unknown protocol {other:?}"))),
            None => (s, Protocol::Tcp),
        };
        let number = |n: &str| -> Result<u16, PortParseError> {
            match n.parse::<u16>() {
                Ok(0) | Err(_) => Err(bad(&format!("{n:?} is not a port number between 1 and 65535"))),
                Ok(p) => Ok(p),
            }
        };
        let (host_port, container_port) = match ports.split_once(':') {
            Some((h, c)) => (Some(number(h)?), number(c)?),
            None => (None, number(ports)?),
        };
        Ok(PortSpec { host_port, container_port, protocol })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_parse_and_print() {
        for (text, host, container, proto) in [
            ("80", None, 80, Protocol::Tcp),
            ("8080:80", Some(8080), 80, Protocol::Tcp),
            ("53/udp", None, 53, Protocol::Udp),
            ("5353:53/udp", Some(5353), 53, Protocol::Udp),
        ] {
            let p: PortSpec = text.parse().unwrap();
            assert_eq!(p, PortSpec { host_port: host, container_port: container, protocol: proto });
            assert_eq!(p.to_string(), text);
        }
        assert_eq!("80/tcp".parse::<PortSpec>().unwrap().to_string(), "80");
    }

    #[test]
    fn bad_ports_say_what_is_wrong() {
        for bad in ["", "http", "0", "70000", "-1", "80:", ":80", "80/sctp", "1:2:3"] {
            let err = bad.parse::<PortSpec>().unwrap_err().to_string();
            assert!(err.contains("invalid port"), "{bad}: {err}");
        }
    }

    #[test]
    fn spec_hash_is_stable_and_sensitive() {
        let a = ContainerSpec { name: "s-web-1".into(), image: "busybox".into(), ..Default::default() };
        assert_eq!(a.spec_hash(), a.clone().spec_hash());
        let mut b = a.clone();
        b.command = vec!["httpd".into()];
        assert_ne!(a.spec_hash(), b.spec_hash());
        let mut c = a.clone();
        c.labels.insert(crate::labels::SPEC_HASH.into(), "whatever".into());
        assert_eq!(a.spec_hash(), c.spec_hash(), "the hash label itself does not change the hash");
        let mut d = a.clone();
        d.pull = crate::PullPolicy::Always;
        assert_eq!(a.spec_hash(), d.spec_hash(), "the pull policy does not change the container");
        let restarted = ContainerSpec { stopped: true, restart_generation: 7, ..a.clone() };
        assert_eq!((a.spec_hash(), a.template_hash()), (restarted.spec_hash(), restarted.template_hash()), "stop and restart recreate nothing");
        // Specs that never asked for a restart hash as they did before the field existed.
        assert!(!serde_json::to_string(&a).unwrap().contains("restart_generation"));
    }

    #[test]
    fn template_hash_ignores_which_instance_or_spare() {
        use crate::labels;
        let mut one = ContainerSpec { name: "s-web-1".into(), image: "busybox".into(), ..Default::default() };
        one.labels.insert(labels::INSTANCE.into(), "1".into());
        let mut spare = one.clone();
        spare.name = "s-web-spare".into();
        spare.labels.remove(labels::INSTANCE);
        spare.labels.insert(labels::SPARE.into(), "true".into());
        assert_eq!(one.template_hash(), spare.template_hash());
        assert_ne!(one.spec_hash(), spare.spec_hash());
        spare.env.push("A=1".into());
        assert_ne!(one.template_hash(), spare.template_hash(), "a different spec is a different template");
    }
}

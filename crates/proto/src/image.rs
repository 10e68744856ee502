//! Images and what keeps a desired container from running: pull policies, pulls asked ahead of
//! an upgrade, and the per-container issues an agent reports.
//!
//! A container the agent could not create does not exist on the engine, so why it is missing
//! cannot ride on an [`crate::ObservedContainer`]: the agent reports it as a [`ContainerIssue`]
//! named after the desired container instead.

use serde::{Deserialize, Serialize};
use std::fmt;

/// When an agent pulls a service's image.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PullPolicy {
    /// Pull when the host does not have the image (Docker's default).
    #[default]
    Missing,
    /// Pull before every container is created, even when the host has the image.
    Always,
    /// Never pull: the image must already be on the host.
    Never,
}

impl PullPolicy {
    pub fn is_default(&self) -> bool {
        *self == PullPolicy::Missing
    }

    pub fn as_str(self) -> &'static str {
        match self {
            PullPolicy::Missing => "missing",
            PullPolicy::Always => "always",
            PullPolicy::Never => "never",
        }
    }
}

impl fmt::Display for PullPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for PullPolicy {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "missing" => Ok(PullPolicy::Missing),
            "always" => Ok(PullPolicy::Always),
            "never" => Ok(PullPolicy::Never),
            other => Err(format!("unknown pull policy {other:?}: use missing (the default), always or never")),
        }
    }
}

/// An image the control plane wants on the host before it changes anything that needs it (an
/// upgrade pulls on every host involved before the first old container is stopped).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ImagePull {
    pub image: String,
    #[serde(default, skip_serializing_if = "PullPolicy::is_default")]
    pub policy: PullPolicy,
}

/// Where an image of [`crate::DesiredSet::pull`] stands on the host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageReport {
    pub image: String,
    #[serde(flatten)]
    pub state: ImageState,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum ImageState {
    Present,
    Pulling {
        percent: u8,
    },
    /// The pull failed; `message` says why (the engine's words, printable).
    Failed {
        failure: PullFailure,
        message: String,
    },
    /// Not on the host, and the pull policy is `never`.
    Missing,
    /// A state a newer agent knows and this build does not.
    #[serde(other)]
    Unknown,
}

/// Why a pull failed, as far as the engine's answer tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PullFailure {
    /// No such repository, tag or digest in the registry.
    NotFound,
    /// The registry refused the credentials (or asked for some).
    Unauthorized,
    /// The registry could not be reached: refused, timed out, unknown host.
    Unreachable,
    /// The registry's TLS certificate is signed by a CA the engine does not trust.
    UntrustedCertificate,
    /// The host ran out of disk space while pulling.
    DiskFull,
    /// Anything else; the message has the engine's words.
    #[serde(other)]
    Other,
}

impl PullFailure {
    /// Words for a person: `image not found`, `registry unreachable`, …
    pub fn describe(self) -> &'static str {
        match self {
            PullFailure::NotFound => "image not found in the registry",
            PullFailure::Unauthorized => {
                "unauthorized: the registry refused access (see its login with `corral registry ls`, set it with `corral registry add HOST --user U --password-stdin`)"
            }
            PullFailure::Unreachable => "registry unreachable",
            PullFailure::UntrustedCertificate => "the registry's TLS certificate is not trusted (give its CA with `corral registry add HOST --ca-file FILE`)",
            PullFailure::DiskFull => "disk full on the host",
            PullFailure::Other => "pull failed",
        }
    }
}

/// One desired container that is not running as it should, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerIssue {
    /// The desired container's name (`STACK-SERVICE-N`).
    pub name: String,
    #[serde(flatten)]
    pub kind: IssueKind,
    /// The whole explanation in words, printable, e.g. `port 8080 is already taken on this host: …`.
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum IssueKind {
    /// Waiting for its image, which the host is pulling.
    Pulling { image: String, percent: u8 },
    /// Its image could not be pulled.
    PullFailed { image: String, failure: PullFailure },
    /// Its image is not on the host and the pull policy is `never`.
    ImageMissing { image: String },
    /// A host port it publishes is taken by something else on the host.
    PortTaken {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        port: Option<u16>,
    },
    /// The engine refused to create or start it; the message has the engine's words.
    EngineError,
    /// It exited with `code`; `log` holds the last lines it printed.
    Exited {
        code: i64,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        log: Vec<String>,
    },
    /// It keeps dying: `restarts` in the last minute, the last exit code and log lines.
    CrashLooping {
        restarts: u32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        code: Option<i64>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        log: Vec<String>,
    },
    /// A kind a newer agent knows and this build does not; the message still says it.
    #[serde(other)]
    Unknown,
}

impl IssueKind {
    /// Waiting on something that is under way rather than failed.
    pub fn is_progress(&self) -> bool {
        matches!(self, IssueKind::Pulling { .. })
    }
}

/// Docker's reference split the way its pull API wants it: `(name, tag or digest)`. A reference
/// without either means `latest`; without this, the engine would pull every tag of the name.
pub fn pull_reference(image: &str) -> (&str, &str) {
    if let Some((name, digest)) = image.split_once('@') {
        return (name, digest);
    }
    let last_slash = image.rfind('/').map_or(0, |i| i + 1);
    match image[last_slash..].rfind(':') {
        Some(colon) => (&image[..last_slash + colon], &image[last_slash + colon + 1..]),
        None => (image, "latest"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_split_as_the_pull_api_wants() {
        assert_eq!(pull_reference("nginx"), ("nginx", "latest"));
        assert_eq!(pull_reference("nginx:1.27"), ("nginx", "1.27"));
        assert_eq!(pull_reference("registry.example:5000/team/app"), ("registry.example:5000/team/app", "latest"));
        assert_eq!(pull_reference("registry.example:5000/team/app:2"), ("registry.example:5000/team/app", "2"));
        let digest = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        assert_eq!(pull_reference(&format!("registry.example:5000/app@{digest}")), ("registry.example:5000/app", digest));
    }

    #[test]
    fn issues_are_tagged_and_unknown_kinds_still_parse() {
        let issue = ContainerIssue {
            name: "S-web-1".into(),
            kind: IssueKind::Pulling { image: "nginx:1.27".into(), percent: 63 },
            message: "pulling nginx:1.27: 63 %".into(),
        };
        let json = serde_json::to_value(&issue).unwrap();
        assert_eq!(json["kind"], "pulling");
        assert_eq!(json["percent"], 63);
        assert_eq!(serde_json::from_value::<ContainerIssue>(json).unwrap(), issue);
        let newer: ContainerIssue = serde_json::from_str(r#"{"name":"S-web-1","kind":"gpu_missing","message":"no GPU"}"#).unwrap();
        assert_eq!(newer.kind, IssueKind::Unknown);
        let report: ImageReport = serde_json::from_str(r#"{"image":"a","state":"failed","failure":"teapot","message":"m"}"#).unwrap();
        assert_eq!(report.state, ImageState::Failed { failure: PullFailure::Other, message: "m".into() });
    }

    #[test]
    fn policies_parse_and_print() {
        for p in [PullPolicy::Missing, PullPolicy::Always, PullPolicy::Never] {
            assert_eq!(p.to_string().parse::<PullPolicy>().unwrap(), p);
        }
        assert!("sometimes".parse::<PullPolicy>().unwrap_err().contains("missing"));
    }
}

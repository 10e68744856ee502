//! Image registries as the desired set carries them, and which registry an image comes from.
//!
//! Every registry of a host's environment reaches the host with its CA (public, needed before
//! any pull so the engine trusts the registry), but its credentials only when an image in that
//! host's own desired set comes from it: a host is told no password it does not need.

use serde::{Deserialize, Serialize};

/// Where an image without a registry host in its name comes from, as Docker names it.
pub const DOCKER_HUB: &str = "docker.io";

/// The names Docker accepts for Docker Hub; they all mean [`DOCKER_HUB`].
const DOCKER_HUB_ALIASES: [&str; 3] = ["docker.io", "index.docker.io", "registry-1.docker.io"];

/// A registry host the way entries and image references are compared: lowercase, and Docker
/// Hub under one name.
pub fn normalize_host(host: &str) -> String {
    let host = host.to_ascii_lowercase();
    if DOCKER_HUB_ALIASES.contains(&host.as_str()) {
        DOCKER_HUB.to_string()
    } else {
        host
    }
}

/// The registry host an image reference is pulled from, by Docker's rules: the first path
/// component when there is more than one and it holds a `.` or a `:` or is `localhost`; Docker
/// Hub otherwise (`nginx`, `library/nginx:1.27`, `team/app`).
pub fn registry_of(image: &str) -> String {
    let name = image.split('@').next().unwrap_or(image);
    match name.split_once('/') {
        Some((first, _)) if first.contains('.') || first.contains(':') || first == "localhost" => normalize_host(first),
        _ => DOCKER_HUB.to_string(),
    }
}

/// One registry of the host's environment.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistryEntry {
    /// `HOST[:PORT]`, normalized ([`normalize_host`]).
    pub host: String,
    /// A private CA, PEM: the agent installs it where its engine looks for it
    /// (`/etc/docker/certs.d/HOST[:PORT]/ca.crt`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_pem: Option<String>,
    /// Present only when an image in this host's desired set comes from this registry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<RegistryAuth>,
}

/// Credentials for one registry. Its `Debug` hides the password, so no log line can hold it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistryAuth {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for RegistryAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryAuth").field("username", &self.username).field("password", &"<hidden>").finish()
    }
}

/// What one host is told about its environment's `registries`: every one with its CA, and a
/// login only for those that the host's own `images` come from.
pub fn for_host<'a>(registries: &[RegistryEntry], images: impl IntoIterator<Item = &'a str>) -> Vec<RegistryEntry> {
    let needed: std::collections::BTreeSet<String> = images.into_iter().filter(|i| !i.is_empty()).map(registry_of).collect();
    registries.iter().map(|r| RegistryEntry { auth: r.auth.clone().filter(|_| needed.contains(&r.host)), ..r.clone() }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_host_gets_only_the_logins_its_own_images_need() {
        let auth = |u: &str| Some(RegistryAuth { username: u.into(), password: format!("{u}-pw") });
        let all = vec![
            RegistryEntry { host: "a.example".into(), ca_pem: Some("CA-A".into()), auth: auth("a") },
            RegistryEntry { host: "b.example:5000".into(), ca_pem: None, auth: auth("b") },
            RegistryEntry { host: "docker.io".into(), ca_pem: None, auth: auth("hub") },
        ];
        let got = for_host(&all, ["b.example:5000/team/app:1", "corral-test/busybox"]);
        let logins: Vec<(&str, Option<&str>)> = got.iter().map(|r| (r.host.as_str(), r.auth.as_ref().map(|a| a.username.as_str()))).collect();
        assert_eq!(logins, [("a.example", None), ("b.example:5000", Some("b")), ("docker.io", Some("hub"))]);
        assert_eq!(got[0].ca_pem.as_deref(), Some("CA-A"), "every CA goes to every host");
        assert!(for_host(&all, [""]).iter().all(|r| r.auth.is_none()), "a balancer's empty image needs no login");
    }

    #[test]
    fn images_name_their_registry_the_way_docker_does() {
        for (image, registry) in [
            ("nginx", "docker.io"),
            ("nginx:1.27", "docker.io"),
            ("library/nginx:1.27", "docker.io"),
            ("team/app", "docker.io"),
            ("docker.io/library/nginx", "docker.io"),
            ("index.docker.io/team/app:v1", "docker.io"),
            ("localhost/app", "localhost"),
            ("localhost:5000/app", "localhost:5000"),
            ("registry.example:5000/team/app@sha256:0123456789abcdef0123456789abcdef", "registry.example:5000"),
            ("Registry.Example/app", "registry.example"),
            ("10.213.0.1:5443/corral-test/busybox:latest", "10.213.0.1:5443"),
        ] {
            assert_eq!(registry_of(image), registry, "{image}");
        }
    }

    #[test]
    fn passwords_stay_out_of_debug_output() {
        let entry = RegistryEntry { host: "r.example".into(), ca_pem: None, auth: Some(RegistryAuth { username: "ci".into(), password: "s3cret-pw".into() }) };
        let printed = format!("{entry:?} {:#?}", Some(&entry));
        assert!(!printed.contains("s3cret-pw") && printed.contains("ci"), "{printed}");
    }
}

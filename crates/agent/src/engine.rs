//! The Docker engine as the agent sees it: a thin bollard wrapper that speaks in proto types and
//! only ever touches containers labelled `io.corral.managed=true`.

use std::collections::HashMap;
use std::time::Duration;

use bollard::auth::DockerCredentials;
use bollard::errors::Error as DockerError;
use bollard::models::{
    ContainerCreateBody, ContainerSummary, EventMessage, HostConfig, PortBinding, PortSummaryTypeEnum, RestartPolicy, RestartPolicyNameEnum,
};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, CreateImageOptionsBuilder, EventsOptionsBuilder, ListContainersOptionsBuilder, LogsOptionsBuilder,
    RemoveContainerOptionsBuilder,
};
use bollard::Docker;
use corral_proto::network::NetworkMode;
use corral_proto::{labels, ContainerSpec, ContainerState, ObservedContainer, PortSpec, Protocol, PullFailure};
use futures_util::{Stream, StreamExt};

use crate::error::{describe, AgentError};
use crate::pull::PullError;

const DEFAULT_ENDPOINT: &str = "unix:///var/run/docker.sock";
/// A blackholed `tcp://` engine would otherwise hang startup for bollard's 2-minute default.
const PING_TIMEOUT: Duration = Duration::from_secs(10);

/// One container event, reduced to what the reconciler reacts to.
#[derive(Debug, Clone, PartialEq)]
pub struct EngineEvent {
    /// `start`, `die`, `destroy`, … (health and exec events carry a suffix, e.g. `exec_start: sh`).
    pub action: String,
    pub container_id: String,
    pub container_name: String,
    /// The exit code a `die` event carries.
    pub exit_code: Option<i64>,
}

impl EngineEvent {
    /// Events after which a managed container may be missing or stopped, so converge at once.
    pub fn needs_converge(&self) -> bool {
        matches!(self.action.as_str(), "destroy" | "die" | "stop" | "kill" | "oom")
    }
}

#[derive(Clone)]
pub struct Engine {
    docker: Docker,
    endpoint: String,
    /// Extra `KEY=VALUE` label the containers must carry to be seen at all (see [`Engine::scoped`]).
    scope: Option<String>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").field("endpoint", &self.endpoint).field("scope", &self.scope).finish()
    }
}

impl Engine {
    /// Connects to `docker_host` (`unix:///path`, a bare socket path, or `tcp://host:port`), else
    /// `DOCKER_HOST`, else the default socket, and pings it so a wrong endpoint fails here with
    /// [`AgentError::DockerUnreachable`] instead of on the first converge.
    pub async fn connect(docker_host: Option<&str>) -> Result<Engine, AgentError> {
        let from_env = std::env::var("DOCKER_HOST").ok().filter(|h| !h.is_empty());
        let endpoint = match docker_host.map(str::to_string).or(from_env) {
            Some(h) if h.starts_with('/') => format!("unix://{h}"),
            Some(h) => h,
            None => DEFAULT_ENDPOINT.to_string(),
        };
        let unreachable = |reason: String| AgentError::DockerUnreachable { socket: endpoint.clone(), reason };

        let docker =
            if endpoint == DEFAULT_ENDPOINT && docker_host.is_none() { Docker::connect_with_local_defaults() } else { Docker::connect_with_host(&endpoint) }
                .map_err(|e| unreachable(connect_reason(&e)))?;

        match tokio::time::timeout(PING_TIMEOUT, docker.ping()).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(unreachable(connect_reason(&e))),
            Err(_) => return Err(unreachable(format!("no answer to a ping within {PING_TIMEOUT:?}"))),
        }
        Ok(Engine { docker, endpoint, scope: None })
    }

    /// Narrows this handle to managed containers that also carry the label `key=value`: listing,
    /// events and therefore converge (which removes every visible container it does not want)
    /// ignore all others. The agent itself never scopes; this is for tests and tools that share
    /// an engine with a real agent or with each other.
    pub fn scoped(mut self, key: &str, value: &str) -> Self {
        self.scope = Some(format!("{key}={value}"));
        self
    }

    fn managed_filter(&self) -> HashMap<String, Vec<String>> {
        let mut label = vec![format!("{}=true", labels::MANAGED)];
        label.extend(self.scope.clone());
        HashMap::from([("label".to_string(), label)])
    }

    /// The endpoint in the form the operator would pass it, for logs and errors.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The raw bollard client, for callers (and tests) that need more than the agent does.
    pub fn docker(&self) -> &Docker {
        &self.docker
    }

    pub async fn version(&self) -> Result<String, AgentError> {
        let v = self.docker.version().await.map_err(|e| AgentError::engine("report its version", &e))?;
        Ok(v.version.unwrap_or_default())
    }

    /// Every managed container, running or not.
    pub async fn list_managed(&self) -> Result<Vec<ObservedContainer>, AgentError> {
        let opts = ListContainersOptionsBuilder::default().all(true).filters(&self.managed_filter()).build();
        let list = self.docker.list_containers(Some(opts)).await.map_err(|e| AgentError::engine("list containers", &e))?;
        Ok(list.into_iter().map(observe).collect())
    }

    /// Whether the engine has `image` (a name, `name:tag` or `name@digest`, as Docker reads it).
    pub async fn has_image(&self, image: &str) -> Result<bool, AgentError> {
        match self.docker.inspect_image(image).await {
            Ok(_) => Ok(true),
            Err(DockerError::DockerResponseServerError { status_code: 404, .. }) => Ok(false),
            Err(e) => Err(AgentError::engine(format!("look up image {image}"), &e)),
        }
    }

    /// Pulls `image` from its registry, with `auth` when the registry wants credentials, calling
    /// `progress` with the percent done as it grows. The one place the agent pulls.
    pub async fn pull(&self, image: &str, auth: Option<DockerCredentials>, progress: impl Fn(u8)) -> Result<(), PullError> {
        let (name, tag) = corral_proto::image::pull_reference(image);
        let options = CreateImageOptionsBuilder::default().from_image(name).tag(tag).build();
        let mut stream = std::pin::pin!(self.docker.create_image(Some(options), None, auth));
        let mut folded = crate::pull::Progress::default();
        while let Some(item) = stream.next().await {
            match item {
                Ok(info) => {
                    if let Some(percent) = folded.update(&info) {
                        progress(percent);
                    }
                }
                Err(e) => {
                    let status = match &e {
                        DockerError::DockerResponseServerError { status_code, .. } => Some(*status_code),
                        _ => None,
                    };
                    let message = match &e {
                        DockerError::DockerResponseServerError { message, .. } => message.clone(),
                        DockerError::DockerStreamError { error } => error.clone(),
                        other => describe(other),
                    };
                    return Err(PullError { failure: crate::pull::classify(status, &message), message });
                }
            }
        }
        // The stream can end without an error while the image is still not there (an engine
        // that dropped the connection); only the engine's own word counts.
        match self.has_image(image).await {
            Ok(true) => {
                progress(100);
                Ok(())
            }
            Ok(false) => Err(PullError { failure: PullFailure::Other, message: "the engine ended the pull without the image".into() }),
            Err(e) => Err(PullError { failure: PullFailure::Other, message: e.to_string() }),
        }
    }

    /// Makes the engine's managed network (a bridge named by [`corral_proto::network::DOCKER_NETWORK`])
    /// hold `subnet`, the host's lease, with its first address as the gateway. One made for another
    /// subnet is replaced when no container uses it; otherwise that is an error the caller reports.
    pub async fn ensure_managed_network(&self, subnet: &ipnet::Ipv4Net) -> Result<(), AgentError> {
        let name = corral_proto::network::DOCKER_NETWORK;
        let failed = |action: &str, e: &DockerError| AgentError::engine(format!("{action} the managed network {name}"), e);
        match self.docker.inspect_network(name, None).await {
            Ok(existing) => {
                let has =
                    existing.ipam.as_ref().and_then(|i| i.config.as_ref()).is_some_and(|c| c.iter().any(|c| c.subnet.as_deref() == Some(&subnet.to_string())));
                if has {
                    return Ok(());
                }
                if existing.containers.as_ref().is_some_and(|c| !c.is_empty()) {
                    return Err(AgentError::Engine {
                        action: format!("move the managed network {name} to {subnet}"),
                        reason: "containers still use it on its old subnet; they move when they are made anew (a service upgrade)".into(),
                    });
                }
                tracing::info!(network = name, %subnet, "replacing the managed network made for another subnet");
                self.docker.remove_network(name).await.map_err(|e| failed("remove", &e))?;
            }
            Err(DockerError::DockerResponseServerError { status_code: 404, .. }) => {}
            Err(e) => return Err(failed("inspect", &e)),
        }
        let gateway = crate::dns::gateway(subnet).map(|g| g.to_string());
        let request = bollard::models::NetworkCreateRequest {
            name: name.to_string(),
            driver: Some("bridge".into()),
            ipam: Some(bollard::models::Ipam {
                config: Some(vec![bollard::models::IpamConfig { subnet: Some(subnet.to_string()), gateway, ..Default::default() }]),
                ..Default::default()
            }),
            options: Some(HashMap::from([("com.docker.network.bridge.name".to_string(), crate::network::BRIDGE.to_string())])),
            labels: Some(HashMap::from([(labels::MANAGED.to_string(), "true".to_string())])),
            ..Default::default()
        };
        self.docker.create_network(request).await.map_err(|e| failed("create", &e))?;
        tracing::info!(network = name, %subnet, "made the managed network");
        Ok(())
    }

    /// The last `lines` lines a container printed (stdout and stderr), oldest first.
    pub async fn log_tail(&self, id: &str, lines: usize) -> Result<Vec<String>, AgentError> {
        let options = LogsOptionsBuilder::new().stdout(true).stderr(true).tail(&lines.to_string()).build();
        let mut out = Vec::new();
        let mut logs = std::pin::pin!(self.docker.logs(id, Some(options)));
        while let Some(chunk) = logs.next().await {
            let chunk = chunk.map_err(|e| AgentError::engine(format!("read the log of {id}"), &e))?;
            crate::logs::push_lines(&mut out, chunk);
        }
        let skip = out.len().saturating_sub(lines);
        Ok(out.into_iter().skip(skip).map(|l| l.line).collect())
    }

    /// Creates the container for `spec` and starts it unless its service is stopped; returns
    /// its id. The image must be on the host: pulls are the reconciler's, before it gets here.
    /// `network` is the engine's network it joins ([`network_mode`]), with its resolver.
    pub async fn create_and_start(&self, spec: &ContainerSpec, network: impl Into<Attachment>) -> Result<String, AgentError> {
        let opts = CreateContainerOptionsBuilder::default().name(&spec.name).build();
        let created = self.docker.create_container(Some(opts), create_body(spec, network)).await.map_err(|e| match &e {
            DockerError::DockerResponseServerError { status_code: 404, .. } => {
                AgentError::ImageNotFound { image: spec.image.clone(), container: spec.name.clone() }
            }
            DockerError::DockerResponseServerError { status_code: 409, message } => AgentError::Engine {
                action: format!("create container {}", spec.name),
                reason: format!(
                    "{message} (a container with that name exists; if it is not labelled \
                         {}=true, Corral will not touch it: rename or remove it by hand)",
                    labels::MANAGED
                ),
            },
            _ => AgentError::engine(format!("create container {}", spec.name), &e),
        })?;
        for warning in &created.warnings {
            tracing::warn!(container = %spec.name, %warning, "engine warning on create");
        }
        if spec.stopped {
            return Ok(created.id);
        }
        self.start(&created.id).await.map_err(|e| match e {
            AgentError::Engine { reason, .. } => AgentError::Engine { action: format!("start new container {}", spec.name), reason },
            other => other,
        })?;
        Ok(created.id)
    }

    /// Starting a running container is not an error (the engine answers 304).
    pub async fn start(&self, id: &str) -> Result<(), AgentError> {
        self.docker.start_container(id, None).await.map_err(|e| AgentError::engine(format!("start container {id}"), &e))
    }

    /// Gives a container a new name; a hot spare takes a lost instance's place this way.
    pub async fn rename(&self, id: &str, name: &str) -> Result<(), AgentError> {
        let opts = bollard::query_parameters::RenameContainerOptionsBuilder::default().name(name).build();
        self.docker.rename_container(id, opts).await.map_err(|e| AgentError::engine(format!("rename container {id} to {name}"), &e))
    }

    /// Stops a container (SIGTERM, then SIGKILL after 10 s); stopping a stopped one is fine.
    pub async fn stop(&self, id: &str) -> Result<(), AgentError> {
        match self.docker.stop_container(id, None).await {
            Ok(()) | Err(DockerError::DockerResponseServerError { status_code: 304, .. }) => Ok(()),
            Err(e) => Err(AgentError::engine(format!("stop container {id}"), &e)),
        }
    }

    /// Restarts a container (stopped as [`Engine::stop`] does, then started again).
    pub async fn restart(&self, id: &str) -> Result<(), AgentError> {
        self.docker.restart_container(id, None).await.map_err(|e| AgentError::engine(format!("restart container {id}"), &e))
    }

    /// Force-removes (kills first if running); a container that is already gone is fine.
    pub async fn remove(&self, id: &str) -> Result<(), AgentError> {
        let opts = RemoveContainerOptionsBuilder::default().force(true).build();
        match self.docker.remove_container(id, Some(opts)).await {
            Ok(()) | Err(DockerError::DockerResponseServerError { status_code: 404, .. }) => Ok(()),
            // 409 "removal already in progress": someone else is doing our job.
            Err(DockerError::DockerResponseServerError { status_code: 409, message }) if message.contains("already in progress") => Ok(()),
            Err(e) => Err(AgentError::engine(format!("remove container {id}"), &e)),
        }
    }

    /// Container events for managed containers, live from now on. The stream ends or errors when
    /// the engine connection drops; the caller re-subscribes.
    pub fn events(&self) -> impl Stream<Item = Result<EngineEvent, AgentError>> + Send + 'static {
        let mut filters = self.managed_filter();
        filters.insert("type".into(), vec!["container".into()]);
        let opts = EventsOptionsBuilder::default().filters(&filters).build();
        self.docker.events(Some(opts)).filter_map(|item| async move {
            match item {
                Ok(msg) => to_event(msg).map(Ok),
                Err(e) => Some(Err(AgentError::engine("stream events", &e))),
            }
        })
    }
}

fn connect_reason(e: &DockerError) -> String {
    match e {
        DockerError::SocketNotFoundError(path) => {
            format!("No such file or directory (no socket at {path})")
        }
        other => describe(other),
    }
}

fn to_event(msg: EventMessage) -> Option<EngineEvent> {
    let action = msg.action?;
    let actor = msg.actor?;
    let container_id = actor.id.unwrap_or_default();
    let mut attributes = actor.attributes.unwrap_or_default();
    let container_name = attributes.remove("name").unwrap_or_default();
    let exit_code = attributes.get("exitCode").and_then(|c| c.parse().ok());
    Some(EngineEvent { action, container_id, container_name, exit_code })
}

/// The labels the container is created with: the spec's own plus the two the agent relies on.
pub fn container_labels(spec: &ContainerSpec) -> HashMap<String, String> {
    let mut labels: HashMap<String, String> = spec.labels.clone().into_iter().collect();
    labels.insert(labels::MANAGED.to_string(), "true".to_string());
    labels.insert(labels::SPEC_HASH.to_string(), spec.spec_hash());
    labels.insert(labels::TEMPLATE_HASH.to_string(), spec.template_hash());
    labels
}

fn port_key(p: &PortSpec) -> String {
    let proto = match p.protocol {
        Protocol::Tcp => "tcp",
        Protocol::Udp => "udp",
    };
    format!("{}/{proto}", p.container_port)
}

/// The engine's network a container of `mode` joins: the managed one once this host has it
/// (`managed_ready`), the default bridge until then.
pub fn network_mode(mode: NetworkMode, managed_ready: bool) -> &'static str {
    match mode {
        NetworkMode::Managed if managed_ready => corral_proto::network::DOCKER_NETWORK,
        NetworkMode::Managed | NetworkMode::Bridge => "bridge",
        NetworkMode::Host => "host",
        NetworkMode::None => "none",
    }
}

/// The engine's network a container joins, and the DNS server it asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attachment {
    pub network: &'static str,
    /// Set only on the managed network: the host's DNS server on its gateway (see
    /// [`crate::dns`]), which the engine's own resolver inside the container passes names on to.
    /// Not part of the spec hash, so a running container is never made anew for it: one made
    /// while the server did not listen keeps the engine's default resolvers until it is
    /// recreated for another reason.
    pub resolver: Option<std::net::Ipv4Addr>,
}

impl Attachment {
    pub fn new(network: &'static str, resolver: Option<std::net::Ipv4Addr>) -> Self {
        let managed = network == corral_proto::network::DOCKER_NETWORK;
        Attachment { network, resolver: resolver.filter(|_| managed) }
    }
}

impl From<&'static str> for Attachment {
    fn from(network: &'static str) -> Self {
        Attachment { network, resolver: None }
    }
}

pub fn create_body(spec: &ContainerSpec, network: impl Into<Attachment>) -> ContainerCreateBody {
    let Attachment { network, resolver } = network.into();
    let exposed: Vec<String> = {
        let mut keys: Vec<String> = spec.ports.iter().map(port_key).collect();
        keys.sort();
        keys.dedup();
        keys
    };
    let mut bindings: HashMap<String, Option<Vec<PortBinding>>> = HashMap::new();
    // A port without a host port is still published, on one the engine picks, so load
    // balancers on other hosts can reach the container at HOST_ADDRESS:PORT without an overlay.
    for p in &spec.ports {
        bindings
            .entry(port_key(p))
            .or_insert_with(|| Some(Vec::new()))
            .get_or_insert_with(Vec::new)
            .push(PortBinding { host_ip: Some("0.0.0.0".into()), host_port: Some(p.host_port.map(|h| h.to_string()).unwrap_or_default()) });
    }
    ContainerCreateBody {
        // Like Rancher: a container knows itself by its Corral name.
        hostname: (spec.name.len() <= 63).then(|| spec.name.clone()),
        image: Some(spec.image.clone()),
        cmd: (!spec.command.is_empty()).then(|| spec.command.clone()),
        env: (!spec.env.is_empty()).then(|| spec.env.clone()),
        labels: Some(container_labels(spec)),
        exposed_ports: (!exposed.is_empty()).then_some(exposed),
        host_config: Some(HostConfig {
            port_bindings: (!bindings.is_empty()).then_some(bindings),
            restart_policy: Some(RestartPolicy { name: Some(RestartPolicyNameEnum::UNLESS_STOPPED), maximum_retry_count: None }),
            network_mode: Some(network.to_string()),
            dns: resolver.map(|r| vec![r.to_string()]),
            dns_search: resolver.map(|_| vec![crate::dns::SEARCH_DOMAIN.to_string()]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Converts the engine's list entry into the wire form.
pub fn observe(c: ContainerSummary) -> ObservedContainer {
    let name = c.names.as_ref().and_then(|n| n.first()).map(|n| n.trim_start_matches('/').to_string()).unwrap_or_default();
    let state = c.state.map_or(ContainerState::Unknown, |s| ContainerState::from_engine(s.as_ref()));
    // Network maps are unordered; pick the lexically first network so the choice is stable.
    let ip = c.network_settings.and_then(|ns| ns.networks).and_then(|nets| {
        let mut nets: Vec<_> = nets.into_iter().collect();
        nets.sort_by(|a, b| a.0.cmp(&b.0));
        nets.into_iter().filter_map(|(_, ep)| ep.ip_address).find(|ip| !ip.is_empty())
    });
    let mut ports: Vec<PortSpec> = c
        .ports
        .unwrap_or_default()
        .into_iter()
        .filter_map(|p| {
            let protocol = match p.typ {
                Some(PortSummaryTypeEnum::UDP) => Protocol::Udp,
                Some(PortSummaryTypeEnum::TCP) | Some(PortSummaryTypeEnum::EMPTY) | None => Protocol::Tcp,
                Some(PortSummaryTypeEnum::SCTP) => return None,
            };
            Some(PortSpec { host_port: p.public_port, container_port: p.private_port, protocol })
        })
        .collect();
    // The engine lists a published port once per address family (0.0.0.0 and ::).
    ports.sort();
    ports.dedup();
    ObservedContainer {
        name,
        docker_id: c.id.unwrap_or_default(),
        image: c.image.unwrap_or_default(),
        state,
        status: c.status.unwrap_or_default(),
        ip,
        ports,
        labels: c.labels.unwrap_or_default().into_iter().collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard::models::{ContainerSummaryNetworkSettings, ContainerSummaryStateEnum, EndpointSettings, PortSummary};

    #[test]
    fn create_body_carries_the_spec() {
        let spec = ContainerSpec {
            name: "s-web-1".into(),
            image: "img:1".into(),
            command: vec!["httpd".into(), "-f".into()],
            env: vec!["A=1".into()],
            ports: vec!["8080:80".parse().unwrap(), "53/udp".parse().unwrap()],
            labels: [(labels::STACK.to_string(), "s".to_string())].into(),
            ..Default::default()
        };
        let body = create_body(&spec, "bridge");
        assert_eq!(body.image.as_deref(), Some("img:1"));
        assert_eq!(body.cmd, Some(vec!["httpd".to_string(), "-f".to_string()]));
        assert_eq!(body.env, Some(vec!["A=1".to_string()]));
        assert_eq!(body.exposed_ports, Some(vec!["53/udp".to_string(), "80/tcp".to_string()]));
        let labels = body.labels.unwrap();
        assert_eq!(labels[labels::MANAGED], "true");
        assert_eq!(labels[labels::SPEC_HASH], spec.spec_hash());
        assert_eq!(labels[labels::STACK], "s");
        let hc = body.host_config.unwrap();
        let bindings = hc.port_bindings.unwrap();
        assert_eq!(bindings.len(), 2, "every port is published");
        let b = bindings["80/tcp"].as_ref().unwrap();
        assert_eq!(b[0].host_ip.as_deref(), Some("0.0.0.0"));
        assert_eq!(b[0].host_port.as_deref(), Some("8080"));
        let ephemeral = bindings["53/udp"].as_ref().unwrap();
        assert_eq!(ephemeral[0].host_port.as_deref(), Some(""), "the engine picks the host port");
        assert_eq!(body.hostname.as_deref(), Some(spec.name.as_str()), "the container knows its name");
        assert_eq!(hc.restart_policy.unwrap().name, Some(RestartPolicyNameEnum::UNLESS_STOPPED));
    }

    #[test]
    fn managed_containers_ask_the_hosts_dns_server_and_others_the_engines_default() {
        let spec = ContainerSpec { name: "s-web-1".into(), image: "i".into(), ..Default::default() };
        let gateway = std::net::Ipv4Addr::new(10, 42, 3, 1);
        let hc = create_body(&spec, Attachment::new(corral_proto::network::DOCKER_NETWORK, Some(gateway))).host_config.unwrap();
        assert_eq!(hc.network_mode.as_deref(), Some(corral_proto::network::DOCKER_NETWORK));
        assert_eq!(hc.dns, Some(vec!["10.42.3.1".to_string()]));
        assert_eq!(hc.dns_search, Some(vec!["corral.internal".to_string()]));
        for other in ["bridge", "host", "none"] {
            let hc = create_body(&spec, Attachment::new(other, Some(gateway))).host_config.unwrap();
            assert_eq!((hc.dns, hc.dns_search), (None, None), "{other}");
        }
        let hc = create_body(&spec, Attachment::new(corral_proto::network::DOCKER_NETWORK, None)).host_config.unwrap();
        assert_eq!(hc.dns, None, "no server listening: the engine's default");
        let labels = create_body(&spec, Attachment::new(corral_proto::network::DOCKER_NETWORK, Some(gateway))).labels.unwrap();
        assert_eq!(labels[labels::SPEC_HASH], spec.spec_hash(), "the resolver does not change the spec hash");
    }

    #[test]
    fn empty_command_keeps_the_image_default() {
        let body = create_body(&ContainerSpec { name: "a".into(), image: "i".into(), ..Default::default() }, "bridge");
        assert_eq!(body.cmd, None);
        assert_eq!(body.exposed_ports, None);
    }

    #[test]
    fn summaries_become_observed_containers() {
        let port =
            |ip: &str, public: Option<u16>, private: u16, typ| PortSummary { ip: Some(ip.into()), private_port: private, public_port: public, typ: Some(typ) };
        let summary = ContainerSummary {
            id: Some("abc".into()),
            names: Some(vec!["/s-web-1".into()]),
            image: Some("img:1".into()),
            state: Some(ContainerSummaryStateEnum::RUNNING),
            status: Some("Up 3 seconds".into()),
            ports: Some(vec![
                port("0.0.0.0", Some(8080), 80, PortSummaryTypeEnum::TCP),
                port("::", Some(8080), 80, PortSummaryTypeEnum::TCP),
                port("", None, 53, PortSummaryTypeEnum::UDP),
            ]),
            labels: Some(HashMap::from([(labels::MANAGED.to_string(), "true".to_string())])),
            network_settings: Some(ContainerSummaryNetworkSettings {
                networks: Some(HashMap::from([("bridge".to_string(), EndpointSettings { ip_address: Some("172.17.0.2".into()), ..Default::default() })])),
            }),
            ..Default::default()
        };
        let o = observe(summary);
        assert_eq!(o.name, "s-web-1");
        assert_eq!(o.docker_id, "abc");
        assert_eq!(o.state, ContainerState::Running);
        assert_eq!(o.status, "Up 3 seconds");
        assert_eq!(o.ip.as_deref(), Some("172.17.0.2"));
        assert_eq!(
            o.ports,
            vec![
                PortSpec { host_port: None, container_port: 53, protocol: Protocol::Udp },
                PortSpec { host_port: Some(8080), container_port: 80, protocol: Protocol::Tcp },
            ]
        );
        assert_eq!(o.labels[labels::MANAGED], "true");
    }

    #[test]
    fn empty_ip_is_no_ip() {
        let summary = ContainerSummary {
            state: Some(ContainerSummaryStateEnum::EXITED),
            network_settings: Some(ContainerSummaryNetworkSettings {
                networks: Some(HashMap::from([("bridge".to_string(), EndpointSettings { ip_address: Some(String::new()), ..Default::default() })])),
            }),
            ..Default::default()
        };
        let o = observe(summary);
        assert_eq!(o.ip, None);
        assert_eq!(o.state, ContainerState::Exited);
    }

    #[test]
    fn only_disruptive_events_trigger_a_converge() {
        let ev = |a: &str| EngineEvent { action: a.into(), container_id: "x".into(), container_name: "n".into(), exit_code: None };
        for a in ["destroy", "die", "stop", "kill", "oom"] {
            assert!(ev(a).needs_converge(), "{a}");
        }
        for a in ["start", "create", "exec_start: sh", "health_status: healthy"] {
            assert!(!ev(a).needs_converge(), "{a}");
        }
    }
}

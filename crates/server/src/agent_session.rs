//! One agent's WebSocket session: hello, then heartbeats, desired sets down, observed sets up.

use crate::events::Resource;
use crate::hub::Attachment;
use crate::state::AppState;
use crate::validate::agent::printable;
use axum::extract::ws::{Message, WebSocket};
use corral_proto::{AgentMessage, Hello, RejectCode, Rejected, ServerMessage, Welcome, PROTOCOL_VERSION};
use corral_store::hosts::Joining;
use corral_store::{Environment, HostState, StoreError};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::sync::broadcast;
use tokio::time::Instant;

/// How long a new connection may take to say hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

pub async fn serve(mut socket: WebSocket, remote: SocketAddr, state: AppState, shutdown: broadcast::Receiver<()>) {
    let hello = match tokio::time::timeout(HELLO_TIMEOUT, next_message(&mut socket)).await {
        Ok(Some(Ok(AgentMessage::Hello(hello)))) => hello,
        Ok(Some(Ok(_))) => return reject(socket, RejectCode::BadHello, "the first message must be a hello".into()).await,
        Ok(Some(Err(e))) => return reject(socket, RejectCode::BadHello, format!("unreadable hello: {}", printable(&e))).await,
        Ok(None) => return,
        Err(_) => return reject(socket, RejectCode::BadHello, "no hello within 10 s".into()).await,
    };
    match admit(&state, &hello, remote).await {
        Ok(Admitted { attachment, welcome, environment, new_host, network_problem }) => {
            let host_id = hello.host_id.clone();
            tracing::info!(host = %welcome.host_name, %remote, new_host, "agent connected");
            let env_id = environment.id;
            state.environment_names.set(env_id, &environment.name);
            let fallback = environment.name.clone();
            state.events.publish(&environment.name, &[Resource::Hosts]);
            let adopt_into = new_host.then_some(environment);
            let session = attachment.session;
            let result = run(&mut socket, &state, (&host_id, env_id), attachment, welcome, (adopt_into, network_problem), shutdown).await;
            state.hub.detach(&host_id, session);
            state.metrics.forget_host(&host_id);
            if let Err(e) = state.store.set_host_state(&host_id, HostState::Disconnected).await {
                tracing::error!(error = %e, "could not record host as disconnected");
            }
            state.events.publish(&state.environment_names.get_or(env_id, &fallback), &[Resource::Hosts]);
            state.reconcile.trigger();
            let reason = result.err().unwrap_or_else(|| "closed".into());
            tracing::info!(host_id = %host_id, reason = %printable(&reason), "agent disconnected");
        }
        Err((code, message)) => {
            tracing::warn!(%remote, ?code, message = %printable(&message), "agent refused");
            reject(socket, code, message).await
        }
    }
}

struct Admitted {
    attachment: Attachment,
    welcome: Welcome,
    environment: Environment,
    /// The host is new to this database: what it already runs is adopted, not removed.
    new_host: bool,
    /// Why the host has no place on the managed network, when it has none.
    network_problem: Option<String>,
}

/// Checks the hello and registers the host; on success the session owns the host.
async fn admit(state: &AppState, hello: &Hello, remote: SocketAddr) -> Result<Admitted, (RejectCode, String)> {
    if hello.protocol_version != PROTOCOL_VERSION {
        return Err((
            RejectCode::ProtocolMismatch,
            format!(
                "agent speaks protocol {} but this control plane speaks {PROTOCOL_VERSION}; download the agent again from /v1/agent/binary",
                hello.protocol_version
            ),
        ));
    }
    let internal = |e: StoreError| (RejectCode::BadHello, format!("control plane error: {e}"));
    // Before anything is looked up, stored or logged under what the hello says.
    crate::validate::agent::hello(hello).map_err(|e| (RejectCode::BadHello, e.to_string()))?;
    let (env, issue_credential) = authenticate(state, hello).await?;
    let attachment = state.hub.attach(&hello.host_id).map_err(|_| already_connected(hello))?;
    let mut facts = hello.facts.clone();
    if facts.address.is_empty() {
        facts.address = remote.ip().to_string();
    }
    let registered = async {
        let token_hash = corral_store::tokens::hash_secret(&hello.token);
        let joining = issue_credential.then(|| Joining { token_hash: &token_hash, max_hosts: state.config.max_hosts_per_join_token });
        let (host, new_host) = state.store.register_host_joining(env.id, &hello.host_id, &facts, joining).await?;
        let network_problem = crate::network::lease_host(&state.store, &host.id, &env, facts.network.subnet.as_deref()).await?;
        let credential = if issue_credential {
            // The secret leaves only in the welcome; the database keeps its hash.
            let secret = format!("corral_host_{}", corral_store::environments::random_secret(24));
            state.store.set_host_credential(&host.id, &corral_store::tokens::hash_secret(&secret)).await?;
            // A removed host that joins again is a host like any other.
            state.store.forget_removed_host(&host.id).await?;
            Some(secret)
        } else {
            None
        };
        Ok::<_, StoreError>((host, new_host, credential, network_problem))
    }
    .await;
    match registered {
        Ok((host, new_host, credential, network_problem)) => Ok(Admitted {
            attachment,
            welcome: Welcome {
                host_id: host.id,
                host_name: host.name,
                environment: env.name.clone(),
                heartbeat_interval_ms: state.config.heartbeat_interval.as_millis() as u64,
                credential,
            },
            environment: env,
            new_host,
            network_problem,
        }),
        Err(e) => {
            state.hub.detach(&hello.host_id, attachment.session);
            Err(match e {
                StoreError::Conflict(m) => (RejectCode::BadHello, m),
                other => internal(other),
            })
        }
    }
}

/// Which environment the hello gets into, and whether the host gets a new credential.
///
/// A host the control plane knows with a credential must say hello with it; the join token
/// only lets in hosts without one: new hosts, hosts whose credential was revoked and has
/// since been forgotten by their agent, and every host after a lost database.
async fn authenticate(state: &AppState, hello: &Hello) -> Result<(Environment, bool), (RejectCode, String)> {
    let internal = |e: StoreError| (RejectCode::BadHello, format!("control plane error: {e}"));
    let known = state.store.host_credential(&hello.host_id).await.map_err(internal)?;
    if let (Some(secret), Some(known)) = (&hello.credential, &known) {
        if let Some(hash) = &known.hash {
            if *hash != corral_store::tokens::hash_secret(secret) {
                return Err((
                    RejectCode::BadCredential,
                    format!(
                        "host {:?} (id {}) said hello with a credential that is not its own; revoke the host (`corral host revoke NAME`) and run the join command again",
                        hello.facts.name, hello.host_id
                    ),
                ));
            }
            if known.revoked {
                return Err((
                    RejectCode::CredentialRevoked,
                    format!("the credential of host {:?} was revoked; to join again, run the join command (with the join token) on it", hello.facts.name),
                ));
            }
            let env = state.store.environment_by_id(known.environment_id).await.map_err(internal)?;
            return Ok((env, false));
        }
    }
    if known.is_none() {
        if let (Some(secret), Some(Some(hash))) = (&hello.credential, state.store.removed_host(&hello.host_id).await.map_err(internal)?) {
            if hash == corral_store::tokens::hash_secret(secret) {
                // Revoked, not unknown: the agent forgets the credential and stops rather than
                // slipping back in with the join token it still has.
                return Err((
                    RejectCode::CredentialRevoked,
                    format!(
                        "host {:?} was removed from the control plane; to add it again, run the join command (with the join token) on it",
                        hello.facts.name
                    ),
                ));
            }
        }
    }
    let env = state
        .store
        .environment_by_join_token(&hello.token)
        .await
        .map_err(internal)?
        .ok_or((RejectCode::BadToken, "unknown join token; copy the join command again from `corral host join-command` or Add Host".to_string()))?;
    // A host in another environment is refused by its registration, with its own message.
    if known.is_some_and(|k| k.environment_id == env.id && k.hash.is_some() && !k.revoked) {
        // A copy of a live host's state dir (a cloned VM) learns what it is: a twin.
        if state.hub.is_connected(&hello.host_id) {
            return Err(already_connected(hello));
        }
        return Err((
            RejectCode::BadCredential,
            format!(
                "host {:?} (id {}) has already joined and has its own credential, kept in the agent's state dir; start the agent with that state dir, or revoke the host (`corral host revoke NAME`) to join it again with the join token",
                hello.facts.name, hello.host_id
            ),
        ));
    }
    Ok((env, true))
}

fn already_connected(hello: &Hello) -> (RejectCode, String) {
    (
        RejectCode::AlreadyConnected,
        format!(
            "host {:?} (id {}) is already connected; another agent is running with the same state dir, stop it or give this one its own --state-dir",
            hello.facts.name, hello.host_id
        ),
    )
}

async fn run(
    socket: &mut WebSocket,
    state: &AppState,
    (host_id, env_id): (&str, i64),
    attachment: Attachment,
    welcome: Welcome,
    (adopt_into, network_problem): (Option<Environment>, Option<String>),
    mut shutdown: broadcast::Receiver<()>,
) -> Result<(), String> {
    let Attachment { mut desired, mut outbox, .. } = attachment;
    let mut session = Session {
        state,
        host_id,
        env_id,
        started_as: welcome.environment.clone(),
        host_name: welcome.host_name.clone(),
        adopt_into,
        reported: false,
        last_fingerprint: None,
        last_containers: None,
        running: HashMap::new(),
        refused_at_adoption: Vec::new(),
        refused_in_report: Vec::new(),
        network_problem,
        tunnel_problems: Vec::new(),
        problem: None,
    };
    send(socket, &ServerMessage::Welcome(welcome)).await?;
    if state.metrics.interval_ms() != corral_proto::stats::DEFAULT_STATS_INTERVAL_MS {
        send(socket, &ServerMessage::StatsInterval { ms: state.metrics.interval_ms() }).await?;
    }
    state.reconcile.trigger();
    let interval = state.config.heartbeat_interval;
    let mut heartbeat = tokio::time::interval(interval);
    let mut last_heard = Instant::now();
    let mut responding = true;
    loop {
        tokio::select! {
            msg = next_message(socket) => {
                last_heard = Instant::now();
                if !responding {
                    responding = true;
                    session.responding(true);
                }
                match msg {
                    None => return Err("connection closed".into()),
                    Some(Err(e)) => return Err(format!("bad message: {e}")),
                    Some(Ok(AgentMessage::Heartbeat)) => {}
                    Some(Ok(AgentMessage::Hello(_))) => return Err("second hello".into()),
                    Some(Ok(AgentMessage::Logs(chunk))) => state.hub.deliver_logs(host_id, chunk),
                    Some(Ok(AgentMessage::Stats(mut report))) => {
                        if let Some(tunnel) = report.tunnel.take() {
                            session.tunnel_problems = crate::tunnels::take_report(state, host_id, tunnel);
                            session.record_problem().await?;
                        }
                        let report = crate::metrics::limit_report(report, &session.running);
                        // Monitoring must never cost a host its session: a failed write is logged only.
                        if let Err(e) = state.metrics.ingest(&state.store, host_id, (env_id, &session.environment()), &session.host_name, report).await {
                            tracing::warn!(host_id, error = %e, "could not store stats");
                        }
                    }
                    Some(Ok(AgentMessage::Observed(observed))) => {
                        let first = !session.reported;
                        session.observed(observed).await?;
                        if first && session.reported {
                            desired.mark_changed();
                        }
                    }
                }
            }
            Some(message) = outbox.recv() => send(socket, &message).await?,
            changed = desired.changed(), if session.reported => {
                if changed.is_err() {
                    return Err("hub closed".into());
                }
                let set = desired.borrow_and_update().clone();
                if let Some(set) = set {
                    send(socket, &ServerMessage::Desired((*set).clone())).await?;
                }
            }
            // The session ends after three silent intervals; what users see follows sooner.
            _ = tokio::time::sleep_until(last_heard + silent_after(interval)), if responding => {
                responding = false;
                session.responding(false);
            }
            _ = heartbeat.tick() => {
                if last_heard.elapsed() > interval * 3 {
                    return Err(format!("no heartbeat for {:?}", last_heard.elapsed()));
                }
                send(socket, &ServerMessage::Heartbeat).await?;
            }
            _ = shutdown.recv() => {
                let _ = socket.send(Message::Close(None)).await;
                return Ok(());
            }
        }
    }
}

/// What one session knows of its host between messages.
struct Session<'a> {
    state: &'a AppState,
    host_id: &'a str,
    env_id: i64,
    /// The environment's name when the session began; it may be renamed while the session lasts.
    started_as: String,
    host_name: String,
    /// Set for a host new to this database until its first report is adopted.
    adopt_into: Option<Environment>,
    /// Desired sets wait for the host's first report that was kept, so the control plane knows
    /// what the host already runs before it tells the agent what to keep.
    reported: bool,
    last_fingerprint: Option<String>,
    /// The containers of the last report written to the database.
    last_containers: Option<Vec<corral_proto::ObservedContainer>>,
    /// The containers of the last report kept, by name, with the stack and service their labels
    /// name: the only ones the host's stats may speak of.
    running: HashMap<String, (String, String)>,
    /// What adoption refused; stays for the session (the agent then removes those containers).
    refused_at_adoption: Vec<String>,
    /// What the latest report lost; replaced by each report.
    refused_in_report: Vec<String>,
    /// Why the host has no place on the managed network; stays for the session.
    network_problem: Option<String>,
    /// What its last tunnel report shows to be wrong; replaced by each report.
    tunnel_problems: Vec<String>,
    /// The problem last recorded on the host.
    problem: Option<String>,
}

impl Session<'_> {
    /// The environment's current name.
    fn environment(&self) -> std::sync::Arc<str> {
        self.state.environment_names.get_or(self.env_id, &self.started_as)
    }

    /// Says that the host's agent went silent, or was heard again: its containers' states
    /// shown in lists follow at once, though nothing is moved before the grace period.
    fn responding(&self, responding: bool) {
        if !self.state.hub.set_responding(self.host_id, responding) {
            return;
        }
        if responding {
            tracing::info!(host_id = self.host_id, "agent heard again");
        } else {
            tracing::warn!(
                host_id = self.host_id,
                silent_ms = silent_after(self.state.config.heartbeat_interval).as_millis() as u64,
                "agent silent; its host shows as not responding"
            );
        }
        self.state.events.publish(&self.environment(), &[Resource::Hosts, Resource::Services, Resource::Containers]);
    }

    /// Takes a report: checks it, keeps what passes, adopts what a new host brings, and records
    /// on the host what was refused.
    async fn observed(&mut self, observed: corral_proto::ObservedSet) -> Result<(), String> {
        let (state, host_id) = (self.state, self.host_id);
        let observed = match crate::validate::agent::observed(observed) {
            Ok(checked) => {
                self.refused_in_report = checked.refused;
                checked.observed
            }
            Err(why) => {
                self.refused_in_report = vec![why];
                return self.record_problem().await;
            }
        };
        // Pull progress comes several times a second: the database is written only when the
        // containers themselves changed.
        if self.last_containers.as_ref() != Some(&observed.containers) {
            state.store.replace_observed(host_id, &observed.containers).await.map_err(|e| e.to_string())?;
            self.last_containers = Some(observed.containers.clone());
        }
        let (issues_changed, readiness_changed) = state.hub.record_issues(host_id, observed.issues.clone(), observed.images.clone());
        if issues_changed {
            state.events.publish(&self.environment(), &[Resource::Containers, Resource::Services]);
        }
        if readiness_changed {
            state.reconcile.trigger();
        }
        self.running = observed
            .containers
            .iter()
            .map(|c| {
                let label = |key: &str| c.labels.get(key).cloned().unwrap_or_default();
                (c.name.clone(), (label(corral_proto::labels::STACK), label(corral_proto::labels::SERVICE)))
            })
            .collect();
        let was_in_sync = state.hub.in_sync(host_id);
        state.hub.record_applied(host_id, observed.applied_revision, observed.load_balancer.clone());
        if state.hub.in_sync(host_id) != was_in_sync {
            state.events.publish(&self.environment(), &[Resource::Hosts]);
        }
        // What runs where decides load balancers' backends and the names every host's DNS
        // answers: a container that starts, stops or changes address anywhere must reach them
        // within the second.
        let running: Vec<(&str, corral_proto::ContainerState, &[corral_proto::PortSpec], Option<&str>)> =
            observed.containers.iter().map(|c| (c.name.as_str(), c.state, c.ports.as_slice(), c.ip.as_deref())).collect();
        let fingerprint = format!("{running:?}");
        if self.last_fingerprint.as_deref() != Some(fingerprint.as_str()) {
            self.last_fingerprint = Some(fingerprint);
            state.events.publish(&self.environment(), &[Resource::Containers, Resource::Services]);
            state.reconcile.trigger();
        }
        if let Some(env) = self.adopt_into.take() {
            let adoption = crate::adopt::adopt(state, &env, host_id, &observed).await.map_err(|e| e.to_string())?;
            self.refused_at_adoption = adoption.refused;
            if adoption.adopted > 0 {
                tracing::info!(host_id, adopted = adoption.adopted, "adopted containers from their labels");
                state.events.publish(&self.environment(), &Resource::IN_ENVIRONMENT);
                // The host's desired set must include what was adopted before it is sent.
                state.reconcile.run_now().await;
            }
        }
        self.reported = true;
        self.record_problem().await
    }

    /// Writes the host's problem when it changed, and logs it then (not on every report).
    async fn record_problem(&mut self) -> Result<(), String> {
        let refused: Vec<String> =
            self.network_problem.iter().chain(&self.tunnel_problems).chain(&self.refused_at_adoption).chain(&self.refused_in_report).cloned().collect();
        let problem = crate::validate::agent::problem(&refused);
        if problem == self.problem {
            return Ok(());
        }
        if let Some(text) = &problem {
            tracing::warn!(host_id = self.host_id, problem = %text, "host problem");
        }
        self.state.store.set_host_problem(self.host_id, problem.as_deref()).await.map_err(|e| e.to_string())?;
        self.problem = problem;
        self.state.events.publish(&self.environment(), &[Resource::Hosts]);
        Ok(())
    }
}

/// How long an agent may be silent before its host shows as not responding: one heartbeat
/// missed, and half an interval's leeway for a busy machine.
pub fn silent_after(heartbeat: Duration) -> Duration {
    heartbeat * 3 / 2
}

/// The next protocol message; `None` when the peer has gone.
async fn next_message(socket: &mut WebSocket) -> Option<Result<AgentMessage, String>> {
    loop {
        match socket.recv().await? {
            Ok(Message::Text(text)) => return Some(serde_json::from_str(&text).map_err(|e| e.to_string())),
            Ok(Message::Close(_)) => return None,
            // A frame over the size limit, or a broken one: the session ends, saying why.
            Err(e) => return Some(Err(e.to_string())),
            Ok(_) => continue,
        }
    }
}

async fn send(socket: &mut WebSocket, msg: &ServerMessage) -> Result<(), String> {
    let text = serde_json::to_string(msg).expect("server messages always serialize");
    socket.send(Message::Text(text.into())).await.map_err(|e| format!("send failed: {e}"))
}

async fn reject(mut socket: WebSocket, code: RejectCode, message: String) {
    let _ = send(&mut socket, &ServerMessage::Rejected(Rejected { code, message })).await;
    let _ = socket.send(Message::Close(None)).await;
}

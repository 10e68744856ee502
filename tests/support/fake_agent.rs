//! A peer that speaks the agent protocol (`corral_proto` over a WebSocket to `/v1/agent`) with no
//! Docker engine behind it: for tests of what the control plane does with what agents send
//! (hostile reports, malformed hellos) and for filling a control plane with hosts whose reports
//! the test chooses. It is never a stand-in for a real agent in a test about containers: those
//! run `corral agent` on real engines.

use crate::ControlPlane;
use corral_proto::{AgentMessage, ContainerState, Hello, HostFacts, ObservedContainer, ObservedSet, ServerMessage, PROTOCOL_VERSION};
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

/// A hostile peer that says hello like an agent, then heartbeats on its own (so the control plane
/// keeps the session) while the test sends what it likes and reads what it is told.
pub struct FakeAgent {
    out: mpsc::UnboundedSender<Message>,
    pub inbox: mpsc::UnboundedReceiver<ServerMessage>,
    /// The welcome, as JSON.
    pub welcome: Value,
}

/// Facts a well-behaved agent would send for host `name`.
pub fn facts(name: &str) -> HostFacts {
    HostFacts {
        name: name.into(),
        address: "127.0.0.1".into(),
        docker_version: "27.0.0".into(),
        cpus: 2,
        memory_bytes: 1 << 30,
        os: "Debian GNU/Linux 12 (bookworm)".into(),
        kernel: "6.1.0".into(),
        agent_version: "0.1.0".into(),
        labels: BTreeMap::new(),
        network: Default::default(),
    }
}

/// A running container named `name` as an engine reports it (an id of 64 hex digits), without
/// labels or ports: what a well-behaved agent's report holds for a container it did not create.
pub fn running(name: &str) -> ObservedContainer {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    name.hash(&mut hasher);
    ObservedContainer {
        name: name.into(),
        docker_id: format!("{:016x}", hasher.finish()).repeat(4),
        image: "busybox".into(),
        state: ContainerState::Running,
        status: "Up 2 minutes".into(),
        ip: None,
        ports: Vec::new(),
        labels: BTreeMap::new(),
    }
}

pub fn agent_url(cp: &ControlPlane) -> String {
    format!("{}/v1/agent", cp.url.replacen("http://", "ws://", 1))
}

impl FakeAgent {
    /// Says hello; `Err` carries the control plane's refusal as JSON.
    pub async fn join(cp: &ControlPlane, token: &str, credential: Option<&str>, host_id: &str, facts: HostFacts) -> Result<FakeAgent, Value> {
        let (mut socket, _) = tokio_tungstenite::connect_async(agent_url(cp)).await.expect("connect to /v1/agent");
        let hello = AgentMessage::Hello(Hello {
            protocol_version: PROTOCOL_VERSION,
            token: token.into(),
            credential: credential.map(str::to_string),
            host_id: host_id.into(),
            facts,
        });
        socket.send(Message::Text(serde_json::to_string(&hello).unwrap().into())).await.unwrap();
        let answer: Value = loop {
            match tokio::time::timeout(Duration::from_secs(5), socket.next()).await.expect("an answer to the hello") {
                Some(Ok(Message::Text(t))) => break serde_json::from_str(&t).unwrap(),
                Some(Ok(_)) => continue,
                other => panic!("no answer to the hello: {other:?}"),
            }
        };
        if answer["type"] != "welcome" {
            return Err(answer);
        }
        let (mut sink, mut stream) = socket.split();
        let (out, mut outgoing) = mpsc::unbounded_channel::<Message>();
        let (to_inbox, inbox) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut beat = tokio::time::interval(Duration::from_millis(300));
            let heartbeat = serde_json::to_string(&AgentMessage::Heartbeat).unwrap();
            loop {
                let msg = tokio::select! {
                    msg = outgoing.recv() => match msg {
                        Some(m) => m,
                        // The test dropped the agent: say goodbye, as a stopping agent does.
                        None => {
                            let _ = sink.send(Message::Close(None)).await;
                            return;
                        }
                    },
                    _ = beat.tick() => Message::Text(heartbeat.clone().into()),
                };
                if sink.send(msg).await.is_err() {
                    return;
                }
            }
        });
        tokio::spawn(async move {
            while let Some(Ok(frame)) = stream.next().await {
                if let Message::Text(t) = frame {
                    match serde_json::from_str::<ServerMessage>(&t) {
                        Ok(ServerMessage::Heartbeat) => {}
                        Ok(msg) => {
                            if to_inbox.send(msg).is_err() {
                                return;
                            }
                        }
                        Err(e) => panic!("the control plane sent a frame the protocol does not know: {e}: {t}"),
                    }
                }
            }
            // Dropping `to_inbox` tells the test the control plane closed the session.
        });
        Ok(FakeAgent { out, inbox, welcome: answer })
    }

    pub fn send(&self, msg: &AgentMessage) {
        self.send_text(serde_json::to_string(msg).unwrap());
    }

    pub fn send_text(&self, text: String) {
        let _ = self.out.send(Message::Text(text.into()));
    }

    pub fn report(&self, containers: Vec<ObservedContainer>) {
        self.send(&AgentMessage::Observed(ObservedSet { applied_revision: 0, containers, ..Default::default() }));
    }

    /// Every message received within `window`; `None` once the control plane closed the session.
    pub async fn collect(&mut self, window: Duration) -> Option<Vec<ServerMessage>> {
        let until = tokio::time::Instant::now() + window;
        let mut got = Vec::new();
        loop {
            match tokio::time::timeout_at(until, self.inbox.recv()).await {
                Ok(Some(msg)) => got.push(msg),
                Ok(None) => return None,
                Err(_) => return Some(got),
            }
        }
    }

    /// Names of the containers in every desired set received within `window`.
    pub async fn desired_names(&mut self, window: Duration) -> Vec<String> {
        let got = self.collect(window).await.expect("the session stays open");
        got.into_iter()
            .filter_map(|m| match m {
                ServerMessage::Desired(set) => Some(set.containers.into_iter().map(|c| c.name)),
                _ => None,
            })
            .flatten()
            .collect()
    }
}

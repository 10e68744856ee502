//! The agent hub: which hosts have a live agent session, and the desired set each should run.
//!
//! The reconciler publishes a host's full desired set here; the host's session task watches it
//! and sends every new revision down the WebSocket. A set is published only when it changes,
//! so reconciling often costs the agents nothing.

use corral_proto::lb::LbListenerStatus;
use corral_proto::{ContainerIssue, DesiredSet, ImageReport, ImageState, LogChunk, LogsRequest, ServerMessage};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, watch};

/// Log chunks buffered for one reader before further chunks are dropped (with a warning).
const LOG_BUFFER: usize = 256;

/// `None` until the reconciler has computed the host's set: an agent must never be told
/// "run nothing" just because the control plane has not looked yet.
pub type DesiredWatch = watch::Receiver<Option<Arc<DesiredSet>>>;

#[derive(Debug)]
struct Slot {
    desired: watch::Sender<Option<Arc<DesiredSet>>>,
    /// The live session, if any.
    session: Option<u64>,
    /// One-off messages for the live session (log requests).
    outbox: Option<mpsc::UnboundedSender<ServerMessage>>,
    /// Revision the agent last said it applied.
    applied_revision: u64,
    /// The agent's last report on its load-balancer listeners.
    load_balancer: Vec<LbListenerStatus>,
    /// Why desired containers are not running, by container name, as the agent last said.
    issues: HashMap<String, ContainerIssue>,
    /// How the images of the desired set's pull list stand, by image.
    images: HashMap<String, ImageState>,
    /// Cleared when the live session has not heard from its agent for a while: the host may be
    /// gone, well before the session gives up on it.
    responding: bool,
    /// The agent's last tunnel report.
    tunnel: Option<crate::tunnels::TunnelState>,
}

impl Slot {
    fn new() -> Self {
        Slot {
            desired: watch::channel(None).0,
            session: None,
            outbox: None,
            applied_revision: 0,
            load_balancer: Vec::new(),
            issues: HashMap::new(),
            images: HashMap::new(),
            responding: true,
            tunnel: None,
        }
    }
}

#[derive(Debug)]
pub struct Hub {
    slots: Mutex<HashMap<String, Slot>>,
    next_session: AtomicU64,
    /// Revisions only grow, across hosts and restarts (seeded from the clock).
    next_revision: AtomicU64,
    /// Open log readers by request id, with the host whose agent feeds each.
    log_readers: Mutex<HashMap<u64, (String, mpsc::Sender<LogChunk>)>>,
    next_log: AtomicU64,
}

/// A session's claim on a host; released with [`Hub::detach`].
#[derive(Debug)]
pub struct Attachment {
    pub session: u64,
    pub desired: DesiredWatch,
    /// One-off messages the session must forward to its agent.
    pub outbox: mpsc::UnboundedReceiver<ServerMessage>,
}

/// The host has no live agent session.
#[derive(Debug, thiserror::Error)]
#[error("the host's agent is not connected")]
pub struct NotConnected;

/// An open log stream; dropping it tells the agent to stop.
pub struct LogReader {
    pub chunks: mpsc::Receiver<LogChunk>,
    id: u64,
    host_id: String,
    hub: Arc<Hub>,
}

impl Drop for LogReader {
    fn drop(&mut self) {
        self.hub.log_readers.lock().expect("hub lock").remove(&self.id);
        self.hub.send_to(&self.host_id, ServerMessage::LogsCancel { id: self.id });
    }
}

#[derive(Debug, thiserror::Error)]
#[error("another agent with this host identity is connected right now")]
pub struct AlreadyConnected;

impl Default for Hub {
    fn default() -> Self {
        let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(1);
        Hub {
            slots: Mutex::new(HashMap::new()),
            next_session: AtomicU64::new(1),
            next_revision: AtomicU64::new(seed),
            log_readers: Mutex::new(HashMap::new()),
            next_log: AtomicU64::new(1),
        }
    }
}

impl Hub {
    /// Claims the host for a new session, refusing if another session holds it.
    pub fn attach(&self, host_id: &str) -> Result<Attachment, AlreadyConnected> {
        let mut slots = self.slots.lock().expect("hub lock");
        let slot = slots.entry(host_id.to_string()).or_insert_with(Slot::new);
        if slot.session.is_some() {
            return Err(AlreadyConnected);
        }
        let session = self.next_session.fetch_add(1, Ordering::Relaxed);
        slot.session = Some(session);
        slot.responding = true;
        let (outbox, outbox_rx) = mpsc::unbounded_channel();
        slot.outbox = Some(outbox);
        Ok(Attachment { session, desired: slot.desired.subscribe(), outbox: outbox_rx })
    }

    /// Releases the host if `session` still holds it.
    pub fn detach(&self, host_id: &str, session: u64) {
        let mut slots = self.slots.lock().expect("hub lock");
        if let Some(slot) = slots.get_mut(host_id) {
            if slot.session == Some(session) {
                slot.session = None;
                slot.outbox = None;
                // What a gone agent said about its containers no longer holds.
                slot.issues.clear();
                slot.images.clear();
                slot.tunnel = None;
                slot.responding = true;
            }
        }
    }

    /// Keeps the host's last tunnel report (until its session ends).
    pub fn record_tunnel(&self, host_id: &str, tunnel: Option<crate::tunnels::TunnelState>) {
        if let Some(slot) = self.slots.lock().expect("hub lock").get_mut(host_id) {
            slot.tunnel = tunnel;
        }
    }

    /// The host's tunnel as its connected agent last reported it.
    pub fn tunnel(&self, host_id: &str) -> Option<crate::tunnels::TunnelState> {
        self.slots.lock().expect("hub lock").get(host_id).and_then(|s| s.tunnel.clone())
    }

    /// The managed-network plan of the host's current desired set, less its names: a tunnel
    /// report, every few seconds from every host, is checked against the peers only, and the
    /// names can be an environment's every container.
    pub fn network_plan(&self, host_id: &str) -> Option<corral_proto::network::NetworkPlan> {
        let slots = self.slots.lock().expect("hub lock");
        let desired = slots.get(host_id)?.desired.borrow();
        desired.as_ref()?.network.as_ref().map(corral_proto::network::NetworkPlan::without_names)
    }

    pub fn is_connected(&self, host_id: &str) -> bool {
        self.slots.lock().expect("hub lock").get(host_id).is_some_and(|s| s.session.is_some())
    }

    /// Ends the host's session, if any (its desired set goes away, so the session closes); the
    /// agent reconnects by itself and says hello again.
    pub fn disconnect(&self, host_id: &str) {
        self.slots.lock().expect("hub lock").remove(host_id);
    }

    /// The hosts with a live agent session.
    pub fn connected_hosts(&self) -> Vec<String> {
        self.slots.lock().expect("hub lock").iter().filter(|(_, s)| s.session.is_some()).map(|(id, _)| id.clone()).collect()
    }

    /// How many hosts have a live agent session.
    pub fn connected_count(&self) -> usize {
        self.slots.lock().expect("hub lock").values().filter(|s| s.session.is_some()).count()
    }

    /// Queues a one-off message for every live session (e.g. a new stats interval).
    pub fn send_to_all(&self, message: ServerMessage) {
        for outbox in self.slots.lock().expect("hub lock").values().filter_map(|s| s.outbox.as_ref()) {
            let _ = outbox.send(message.clone());
        }
    }

    /// Queues a one-off message for the host's live session; `false` if there is none.
    fn send_to(&self, host_id: &str, message: ServerMessage) -> bool {
        let slots = self.slots.lock().expect("hub lock");
        slots.get(host_id).and_then(|s| s.outbox.as_ref()).is_some_and(|outbox| outbox.send(message).is_ok())
    }

    /// Asks the host's agent to stream a container's log; chunks arrive on the reader.
    pub fn open_logs(self: &Arc<Self>, host_id: &str, container: &str, tail: u32, follow: bool) -> Result<LogReader, NotConnected> {
        let id = self.next_log.fetch_add(1, Ordering::Relaxed);
        let (tx, chunks) = mpsc::channel(LOG_BUFFER);
        self.log_readers.lock().expect("hub lock").insert(id, (host_id.to_string(), tx));
        let reader = LogReader { chunks, id, host_id: host_id.to_string(), hub: Arc::clone(self) };
        let request = LogsRequest { id, container: container.to_string(), tail, follow };
        if !self.send_to(host_id, ServerMessage::Logs(request)) {
            return Err(NotConnected);
        }
        Ok(reader)
    }

    /// Hands a log chunk from `from_host`'s agent to its reader, if it is still reading. Request
    /// ids are easy to guess: a chunk for a reader of another host's container is dropped.
    pub fn deliver_logs(&self, from_host: &str, chunk: LogChunk) {
        let readers = self.log_readers.lock().expect("hub lock");
        if let Some((_, reader)) = readers.get(&chunk.id).filter(|(host, _)| host == from_host) {
            if let Err(mpsc::error::TrySendError::Full(_)) = reader.try_send(chunk) {
                // A reader this far behind (a stalled browser tab) loses lines rather than
                // stalling the agent's session, which also carries its desired sets.
                tracing::warn!("a log reader is too slow; dropping log lines");
            }
        }
    }

    /// Publishes the host's full desired set (its `revision` is set here); a new revision only
    /// if it changed.
    pub fn publish(&self, host_id: &str, mut set: DesiredSet) {
        set.containers.sort_by(|a, b| a.name.cmp(&b.name));
        set.pull.sort_by(|a, b| a.image.cmp(&b.image));
        set.pull.dedup();
        let mut slots = self.slots.lock().expect("hub lock");
        let slot = slots.entry(host_id.to_string()).or_insert_with(Slot::new);
        slot.desired.send_if_modified(|current| {
            // Compared as if it had the current revision: only a real change makes a new one.
            if let Some(old) = current.as_ref() {
                set.revision = old.revision;
                if set == **old {
                    return false;
                }
            }
            set.revision = self.next_revision.fetch_add(1, Ordering::Relaxed);
            *current = Some(Arc::new(set));
            true
        });
    }

    /// Keeps what the host's agent says about its containers' issues and asked images; returns
    /// `(anything changed, an image's readiness changed)`: the first is news for the lists, the
    /// second for the control loop (an upgrade may go on, or must stop).
    pub fn record_issues(&self, host_id: &str, issues: Vec<ContainerIssue>, images: Vec<ImageReport>) -> (bool, bool) {
        let mut slots = self.slots.lock().expect("hub lock");
        let Some(slot) = slots.get_mut(host_id) else { return (false, false) };
        let issues: HashMap<String, ContainerIssue> = issues.into_iter().map(|i| (i.name.clone(), i)).collect();
        let images: HashMap<String, ImageState> = images.into_iter().map(|r| (r.image, r.state)).collect();
        // The control loop cares whether each image is there, coming, or not coming; not by how much.
        let readiness = |m: &HashMap<String, ImageState>| -> std::collections::BTreeMap<String, u8> {
            m.iter()
                .map(|(image, s)| {
                    (
                        image.clone(),
                        match s {
                            ImageState::Present => 0,
                            ImageState::Pulling { .. } => 1,
                            _ => 2,
                        },
                    )
                })
                .collect()
        };
        let readiness_changed = readiness(&slot.images) != readiness(&images);
        let changed = slot.issues != issues || slot.images != images;
        slot.issues = issues;
        slot.images = images;
        (changed, readiness_changed)
    }

    /// Why the host's desired containers are not running, by name, as its agent last said.
    pub fn issues(&self, host_id: &str) -> HashMap<String, ContainerIssue> {
        self.slots.lock().expect("hub lock").get(host_id).map(|s| s.issues.clone()).unwrap_or_default()
    }

    /// How an image the control plane asked the host for stands (`None`: no word yet).
    pub fn image_state(&self, host_id: &str, image: &str) -> Option<ImageState> {
        self.slots.lock().expect("hub lock").get(host_id).and_then(|s| s.images.get(image).cloned())
    }

    /// Marks whether the host's agent is heard from; returns whether that changed.
    pub fn set_responding(&self, host_id: &str, responding: bool) -> bool {
        let mut slots = self.slots.lock().expect("hub lock");
        match slots.get_mut(host_id) {
            Some(slot) if slot.session.is_some() && slot.responding != responding => {
                slot.responding = responding;
                true
            }
            _ => false,
        }
    }

    /// Connected and heard from lately.
    pub fn is_responding(&self, host_id: &str) -> bool {
        self.slots.lock().expect("hub lock").get(host_id).is_some_and(|s| s.session.is_some() && s.responding)
    }

    pub fn record_applied(&self, host_id: &str, revision: u64, load_balancer: Vec<LbListenerStatus>) {
        if let Some(slot) = self.slots.lock().expect("hub lock").get_mut(host_id) {
            slot.applied_revision = revision;
            slot.load_balancer = load_balancer;
        }
    }

    /// The host's load-balancer listeners as its agent last reported them.
    pub fn load_balancer(&self, host_id: &str) -> Vec<LbListenerStatus> {
        self.slots.lock().expect("hub lock").get(host_id).map(|s| s.load_balancer.clone()).unwrap_or_default()
    }

    /// Whether the agent has applied the latest desired set (`None`: nothing published yet).
    pub fn in_sync(&self, host_id: &str) -> Option<bool> {
        let slots = self.slots.lock().expect("hub lock");
        let slot = slots.get(host_id)?;
        let desired = slot.desired.borrow();
        desired.as_ref().map(|set| set.revision == slot.applied_revision)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str) -> corral_proto::ContainerSpec {
        corral_proto::ContainerSpec { name: name.into(), image: "busybox".into(), ..Default::default() }
    }

    #[test]
    fn one_session_per_host() {
        let hub = Hub::default();
        let a = hub.attach("h").unwrap();
        assert!(hub.attach("h").is_err());
        assert!(hub.is_connected("h"));
        hub.detach("h", a.session + 100); // a stale session cannot release a newer one
        assert!(hub.is_connected("h"));
        hub.detach("h", a.session);
        assert!(!hub.is_connected("h"));
        assert!(hub.attach("h").is_ok());
    }

    #[test]
    fn revisions_change_only_with_content() {
        let hub = Hub::default();
        let mut rx = hub.attach("h").unwrap().desired;
        assert!(rx.borrow().is_none(), "nothing is sent before the first reconcile");
        hub.publish("h", DesiredSet { containers: vec![spec("b"), spec("a")], ..Default::default() });
        assert!(rx.has_changed().unwrap());
        let first = rx.borrow_and_update().clone().unwrap();
        assert_eq!(first.containers.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(), ["a", "b"]);
        hub.publish("h", DesiredSet { containers: vec![spec("a"), spec("b")], ..Default::default() });
        assert!(!rx.has_changed().unwrap(), "same set in another order is no change");
        hub.publish("h", DesiredSet { containers: vec![spec("a")], ..Default::default() });
        let second = rx.borrow_and_update().clone().unwrap();
        assert!(second.revision > first.revision);
        assert_eq!(hub.in_sync("h"), Some(false));
        hub.record_applied("h", second.revision, Vec::new());
        assert_eq!(hub.in_sync("h"), Some(true));
    }

    #[tokio::test]
    async fn log_chunks_reach_only_readers_of_their_own_host() {
        let hub = Arc::new(Hub::default());
        let session = hub.attach("h").unwrap();
        let mut reader = hub.open_logs("h", "S-web-1", 10, true).unwrap();
        let mut outbox = session.outbox;
        let Some(ServerMessage::Logs(request)) = outbox.recv().await else { panic!("the agent is asked for the log") };
        let chunk = |text: &str| LogChunk { id: request.id, lines: vec![corral_proto::LogLine { stream: "stdout".into(), line: text.into() }], end: None };
        hub.deliver_logs("other", chunk("forged"));
        hub.deliver_logs("h", chunk("real"));
        assert_eq!(reader.chunks.recv().await.unwrap().lines[0].line, "real");
        assert!(reader.chunks.try_recv().is_err(), "nothing else arrived");
    }
}

//! The agent hub: which hosts have a live agent session, and the desired set each should run.
//!
//! The reconciler publishes a host's full desired set here; the host's session task watches it
//! and sends every new revision down the WebSocket. A set is published only when it changes,
//! so reconciling often costs the agents nothing.

use corral_proto::lb::{LbListenerStatus, LbSet};
use corral_proto::{ContainerSpec, DesiredSet};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

/// `None` until the reconciler has computed the host's set: an agent must never be told
/// "run nothing" just because the control plane has not looked yet.
pub type DesiredWatch = watch::Receiver<Option<Arc<DesiredSet>>>;

#[derive(Debug)]
struct Slot {
    desired: watch::Sender<Option<Arc<DesiredSet>>>,
    /// The live session, if any.
    session: Option<u64>,
    /// Revision the agent last said it applied.
    applied_revision: u64,
    /// The agent's last report on its load-balancer listeners.
    load_balancer: Vec<LbListenerStatus>,
}

impl Slot {
    fn new() -> Self {
        Slot { desired: watch::channel(None).0, session: None, applied_revision: 0, load_balancer: Vec::new() }
    }
}

#[derive(Debug)]
pub struct Hub {
    slots: Mutex<HashMap<String, Slot>>,
    next_session: AtomicU64,
    /// Revisions only grow, across hosts and restarts (seeded from the clock).
    next_revision: AtomicU64,
}

/// A session's claim on a host; released with [`Hub::detach`].
#[derive(Debug)]
pub struct Attachment {
    pub session: u64,
    pub desired: DesiredWatch,
}

#[derive(Debug, thiserror::Error)]
#[error("another agent with this host identity is connected right now")]
pub struct AlreadyConnected;

impl Default for Hub {
    fn default() -> Self {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(1);
        Hub { slots: Mutex::new(HashMap::new()), next_session: AtomicU64::new(1), next_revision: AtomicU64::new(seed) }
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
        Ok(Attachment { session, desired: slot.desired.subscribe() })
    }

    /// Releases the host if `session` still holds it.
    pub fn detach(&self, host_id: &str, session: u64) {
        let mut slots = self.slots.lock().expect("hub lock");
        if let Some(slot) = slots.get_mut(host_id) {
            if slot.session == Some(session) {
                slot.session = None;
            }
        }
    }

    pub fn is_connected(&self, host_id: &str) -> bool {
        self.slots.lock().expect("hub lock").get(host_id).is_some_and(|s| s.session.is_some())
    }

    /// Ends the host's session, if any (its desired set goes away, so the session closes); the
    /// agent reconnects by itself and says hello again.
    pub fn disconnect(&self, host_id: &str) {
        self.slots.lock().expect("hub lock").remove(host_id);
    }

    /// Publishes the host's full desired set; a new revision only if it changed.
    pub fn publish(&self, host_id: &str, mut containers: Vec<ContainerSpec>, load_balancer: LbSet) {
        containers.sort_by(|a, b| a.name.cmp(&b.name));
        let mut slots = self.slots.lock().expect("hub lock");
        let slot = slots.entry(host_id.to_string()).or_insert_with(Slot::new);
        slot.desired.send_if_modified(|current| {
            if current.as_ref().is_some_and(|set| set.containers == containers && set.load_balancer == load_balancer) {
                return false;
            }
            let revision = self.next_revision.fetch_add(1, Ordering::Relaxed);
            *current = Some(Arc::new(DesiredSet { revision, containers, load_balancer }));
            true
        });
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

    fn spec(name: &str) -> ContainerSpec {
        ContainerSpec { name: name.into(), image: "busybox".into(), ..Default::default() }
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
        hub.publish("h", vec![spec("b"), spec("a")], LbSet::default());
        assert!(rx.has_changed().unwrap());
        let first = rx.borrow_and_update().clone().unwrap();
        assert_eq!(first.containers.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(), ["a", "b"]);
        hub.publish("h", vec![spec("a"), spec("b")], LbSet::default());
        assert!(!rx.has_changed().unwrap(), "same set in another order is no change");
        hub.publish("h", vec![spec("a")], LbSet::default());
        let second = rx.borrow_and_update().clone().unwrap();
        assert!(second.revision > first.revision);
        assert_eq!(hub.in_sync("h"), Some(false));
        hub.record_applied("h", second.revision, Vec::new());
        assert_eq!(hub.in_sync("h"), Some(true));
    }
}

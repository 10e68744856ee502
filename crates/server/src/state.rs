//! What every request handler and background task shares.

use crate::hub::Hub;
use crate::reconcile::ReconcileTrigger;
use crate::Config;
use corral_scheduler::Unplaced;
use corral_store::Store;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::broadcast;

#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub hub: Arc<Hub>,
    pub reconcile: ReconcileTrigger,
    pub config: Arc<Config>,
    /// Instances the scheduler could not place, by service id, with the reason.
    pub unplaced: Arc<Mutex<HashMap<i64, Vec<Unplaced>>>>,
    pub avoid: crate::reconcile::AvoidHints,
    /// Which resource lists changed, for the event stream.
    pub events: crate::events::Events,
    /// Says that credentials or roles may have changed; open WebSockets check theirs again.
    pub access: Arc<crate::access::AccessChanges>,
    /// Single-use tickets browsers open WebSockets with instead of a token in the URL.
    pub tickets: Arc<crate::access::Tickets>,
    /// Current names of environments for connections that outlive a rename.
    pub environment_names: Arc<EnvironmentNames>,
    /// Fires once when the control plane stops; sessions and loops listen to it.
    pub shutdown: broadcast::Sender<()>,
    /// Latest resource usage, live viewers, and the history's ingest.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// The CA agents and the CLI pin, when the main listener speaks TLS.
    pub ca: Option<Arc<crate::tls::CaInfo>>,
    /// The LAN listener's server certificate, when it speaks TLS: it can name more hosts.
    pub tls: Option<Arc<crate::tls::ServerCerts>>,
}

/// The current name of each environment by id, for long-lived connections (agent sessions,
/// event streams) that began under a name an admin may since have changed. Filled as they
/// start and on every rename; a connection falls back to the name it started with.
#[derive(Debug, Default)]
pub struct EnvironmentNames(std::sync::RwLock<HashMap<i64, Arc<str>>>);

impl EnvironmentNames {
    pub fn set(&self, id: i64, name: &str) {
        self.0.write().expect("environment names lock").insert(id, Arc::from(name));
    }

    /// The environment's current name, or `fallback` when it is not known here.
    pub fn get_or(&self, id: i64, fallback: &str) -> Arc<str> {
        self.get(id).unwrap_or_else(|| Arc::from(fallback))
    }

    /// The environment's current name; `None` once it was removed.
    pub fn get(&self, id: i64) -> Option<Arc<str>> {
        self.0.read().expect("environment names lock").get(&id).cloned()
    }

    /// The environment was removed: connections that follow it end, rather than follow a new
    /// environment that may be given the same id.
    pub fn remove(&self, id: i64) {
        self.0.write().expect("environment names lock").remove(&id);
    }

    /// After a restore: ids may stand for other environments now.
    pub fn clear(&self) {
        self.0.write().expect("environment names lock").clear();
    }
}

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
    /// Failed logins per user and address.
    pub logins: Arc<crate::access::LoginLimiter>,
    /// Fires once when the control plane stops; sessions and loops listen to it.
    pub shutdown: broadcast::Sender<()>,
    /// Latest resource usage, live viewers, and the history's ingest.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// The CA agents and the CLI pin, when the main listener speaks TLS.
    pub ca: Option<Arc<crate::tls::CaInfo>>,
}

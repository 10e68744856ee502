//! The local control loop: one task converges the engine to the desired set whenever something
//! changes (a new set, an engine event, a crash-loop hold-off expiring, or the 30 s safety net),
//! and publishes what it observes. It needs no control plane, which is what keeps a host's
//! containers up while the control plane is unreachable.

use std::sync::Arc;
use std::time::{Duration, Instant};

use corral_proto::{DesiredSet, ObservedContainer, ObservedSet};
use futures_util::StreamExt;
use tokio::sync::{broadcast, watch, Notify};
use tokio::task::JoinHandle;

use crate::backoff::Backoff;
use crate::converge::{plan, Action, RestartBackoff};
use crate::engine::Engine;
use crate::error::AgentError;

/// Catches anything the event stream missed (e.g. while it was re-subscribing).
pub const SAFETY_NET: Duration = Duration::from_secs(30);

/// One container that could not be brought to its desired state in a pass.
#[derive(Debug)]
pub struct ConvergeFailure {
    pub container: String,
    pub error: AgentError,
}

/// What one converge pass did.
#[derive(Debug, Default)]
pub struct ConvergeReport {
    /// The actions attempted, in order (including failed ones).
    pub actions: Vec<Action>,
    /// Per-container failures; the pass carried on with the other containers.
    pub failures: Vec<ConvergeFailure>,
    /// Converge again after this long: some restarts were held back by the crash-loop backoff.
    pub retry_in: Option<Duration>,
    /// The managed containers as the engine reported them after the pass.
    pub observed: Vec<ObservedContainer>,
}

/// Carries out converge plans against an engine. Holds the per-container restart backoff, so
/// keep one per engine.
#[derive(Debug)]
pub struct Reconciler {
    engine: Engine,
    restarts: RestartBackoff,
}

impl Reconciler {
    pub fn new(engine: Engine) -> Self {
        Reconciler { engine, restarts: RestartBackoff::default() }
    }

    /// One level-triggered pass. Fails only if the engine cannot even list containers; a
    /// container that cannot be created (say, its image is missing) is reported in
    /// [`ConvergeReport::failures`] and the others are still converged.
    pub async fn converge_once(&mut self, desired: &DesiredSet) -> Result<ConvergeReport, AgentError> {
        let observed = self.engine.list_managed().await?;
        self.restarts.observe(&observed, Instant::now());
        let plan = plan(&desired.containers, &observed, &self.restarts, Instant::now());
        let mut report = ConvergeReport { retry_in: plan.retry_in, ..Default::default() };

        let now = Instant::now();
        for action in &plan.actions {
            self.restarts.account(action, now);
        }
        // Engine calls for different containers are independent; running a few at once lets a
        // deploy go as fast as the engine itself (it creates in parallel, the CLI's floor).
        let engine = &self.engine;
        let results: Vec<(Action, Result<(), AgentError>)> = futures_util::stream::iter(plan.actions)
            .map(|action| async move {
                let result = execute(engine, &action, &desired.registries).await;
                (action, result)
            })
            .buffer_unordered(PARALLEL_ACTIONS)
            .collect()
            .await;
        for (action, result) in results {
            let name = action.name().to_string();
            match &result {
                Ok(()) => {
                    tracing::info!(container = %name, action = ?ActionKind::from(&action), "converged")
                }
                Err(e) => {
                    tracing::warn!(container = %name, action = ?ActionKind::from(&action), error = %e, "converge step failed")
                }
            }
            if let Err(error) = result {
                report.failures.push(ConvergeFailure { container: name, error });
            }
            report.actions.push(action);
        }

        report.observed = if report.actions.is_empty() { observed } else { self.engine.list_managed().await? };
        self.restarts.observe(&report.observed, Instant::now());
        Ok(report)
    }

    /// Lists what the engine has, without changing anything.
    pub async fn observe(&mut self) -> Result<Vec<ObservedContainer>, AgentError> {
        let observed = self.engine.list_managed().await?;
        self.restarts.observe(&observed, Instant::now());
        Ok(observed)
    }
}

/// How many engine calls one converge pass makes at once.
const PARALLEL_ACTIONS: usize = 4;

/// Carries out one action on the engine.
async fn execute(engine: &Engine, action: &Action, registries: &[corral_proto::registry::RegistryEntry]) -> Result<(), AgentError> {
    match action {
        Action::Create { spec } => {
            crate::registries::ensure_image(engine, &spec.image, registries).await?;
            engine.create_and_start(spec).await.map(drop)
        }
        Action::Recreate { id, spec } => {
            // The image first: a failed pull leaves the old container in place.
            crate::registries::ensure_image(engine, &spec.image, registries).await?;
            engine.remove(id).await?;
            engine.create_and_start(spec).await.map(drop)
        }
        Action::Start { id, .. } => engine.start(id).await,
        Action::Stop { id, .. } => engine.stop(id).await,
        Action::Promote { id, spec, refill } => {
            engine.rename(id, &spec.name).await?;
            crate::registries::ensure_image(engine, &refill.image, registries).await?;
            engine.create_and_start(refill).await.map(drop)
        }
        Action::Remove { id, .. } => engine.remove(id).await,
    }
}

/// For logs: the action without its (long) spec.
#[derive(Debug)]
enum ActionKind {
    Create,
    Recreate,
    Start,
    Stop,
    Promote,
    Remove,
}

impl From<&Action> for ActionKind {
    fn from(a: &Action) -> Self {
        match a {
            Action::Create { .. } => ActionKind::Create,
            Action::Recreate { .. } => ActionKind::Recreate,
            Action::Start { .. } => ActionKind::Start,
            Action::Stop { .. } => ActionKind::Stop,
            Action::Promote { .. } => ActionKind::Promote,
            Action::Remove { .. } => ActionKind::Remove,
        }
    }
}

/// The running control loop. Dropping the handle does not stop it; call [`ReconcilerHandle::stop`]
/// or fire the shutdown broadcast it was spawned with.
#[derive(Debug)]
pub struct ReconcilerHandle {
    desired: watch::Sender<Option<Arc<DesiredSet>>>,
    observed: watch::Receiver<Option<ObservedSet>>,
    passes: watch::Receiver<u64>,
    converge: Arc<Notify>,
    tasks: Vec<JoinHandle<()>>,
}

impl ReconcilerHandle {
    /// Starts the converge loop and the engine event watcher. `initial` is the last desired set
    /// (from `desired.json`); `None` means none was ever received, and then the loop only
    /// observes: an unknown desired set must not be read as "remove everything".
    pub fn spawn(engine: Engine, initial: Option<DesiredSet>, shutdown: &broadcast::Receiver<()>) -> Self {
        Self::spawn_with(engine, initial, shutdown, None)
    }

    /// [`ReconcilerHandle::spawn`], installing the registries' CAs the desired set carries
    /// (before each converge pass, so a pull finds its registry trusted).
    pub fn spawn_with(engine: Engine, initial: Option<DesiredSet>, shutdown: &broadcast::Receiver<()>, cas: Option<crate::registries::CaFiles>) -> Self {
        let (desired_tx, desired_rx) = watch::channel(initial.map(Arc::new));
        let (observed_tx, observed_rx) = watch::channel(None);
        let (passes_tx, passes_rx) = watch::channel(0u64);
        let converge = Arc::new(Notify::new());
        let observe = Arc::new(Notify::new());

        let looped = ConvergeLoop {
            reconciler: Reconciler::new(engine.clone()),
            balancer: Default::default(),
            cas,
            desired: desired_rx,
            observed: observed_tx,
            passes: passes_tx,
            converge: converge.clone(),
            observe: observe.clone(),
        };
        let tasks =
            vec![tokio::spawn(looped.run(shutdown.resubscribe())), tokio::spawn(watch_events(engine, converge.clone(), observe, shutdown.resubscribe()))];
        // Converge (or observe) at once, without waiting for the control plane.
        converge.notify_one();
        ReconcilerHandle { desired: desired_tx, observed: observed_rx, passes: passes_rx, converge, tasks }
    }

    /// Replaces the desired set and converges to it.
    pub fn set_desired(&self, desired: DesiredSet) {
        self.desired.send_replace(Some(Arc::new(desired)));
        self.converge.notify_one();
    }

    /// Asks for a converge pass; bursts of requests coalesce into one pass.
    pub fn trigger(&self) {
        self.converge.notify_one();
    }

    /// The latest observed set (`None` until the first successful pass).
    pub fn observed(&self) -> watch::Receiver<Option<ObservedSet>> {
        self.observed.clone()
    }

    /// Waits until at least `n` passes (successful or not) have finished since spawn.
    pub async fn wait_for_passes(&self, n: u64) {
        let mut passes = self.passes.clone();
        let _ = passes.wait_for(|p| *p >= n).await;
    }

    /// Stops the loop and the event watcher, waiting for them to finish. Aborting mid-pass is
    /// safe: every engine step is idempotent and the next start converges again.
    pub async fn stop(self) {
        for t in &self.tasks {
            t.abort();
        }
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

struct ConvergeLoop {
    reconciler: Reconciler,
    balancer: crate::balancer::Balancer,
    cas: Option<crate::registries::CaFiles>,
    desired: watch::Receiver<Option<Arc<DesiredSet>>>,
    observed: watch::Sender<Option<ObservedSet>>,
    passes: watch::Sender<u64>,
    converge: Arc<Notify>,
    observe: Arc<Notify>,
}

#[derive(Debug, Clone, Copy)]
enum Work {
    Converge,
    Observe,
}

impl ConvergeLoop {
    async fn run(mut self, mut shutdown: broadcast::Receiver<()>) {
        let mut next_converge = tokio::time::Instant::now() + SAFETY_NET;
        loop {
            let work = tokio::select! {
                _ = shutdown.recv() => break,
                _ = self.converge.notified() => Work::Converge,
                _ = self.observe.notified() => Work::Observe,
                _ = tokio::time::sleep_until(next_converge) => Work::Converge,
            };
            let retry_in = tokio::select! {
                _ = shutdown.recv() => break,
                r = self.pass(work) => r,
            };
            if matches!(work, Work::Converge) {
                let wait = retry_in.map_or(SAFETY_NET, |r| r.min(SAFETY_NET));
                next_converge = tokio::time::Instant::now() + wait;
            }
            self.passes.send_modify(|p| *p += 1);
        }
        self.balancer.shutdown().await;
        tracing::debug!("converge loop stopped");
    }

    /// Returns when to come back early for held-back restarts.
    async fn pass(&mut self, work: Work) -> Option<Duration> {
        let desired = self.desired.borrow().clone();
        let (revision, result) = match (&desired, work) {
            (Some(d), Work::Converge) => {
                // Balancers first: a container about to go is already out of their rotation.
                self.balancer.apply(&d.load_balancer).await;
                if let Some(cas) = &self.cas {
                    cas.apply(&d.registries);
                }
                let started = Instant::now();
                let result = self.reconciler.converge_once(d).await;
                if let Ok(r) = &result {
                    tracing::debug!(
                        revision = d.revision,
                        actions = r.actions.len(),
                        failures = r.failures.len(),
                        elapsed_ms = started.elapsed().as_millis() as u64,
                        "converge pass done"
                    );
                    for f in &r.failures {
                        tracing::error!(container = %f.container, error = %f.error, "container not converged");
                    }
                }
                (d.revision, result.map(|r| (r.observed, r.retry_in)))
            }
            (d, _) => (d.as_ref().map_or(0, |d| d.revision), self.reconciler.observe().await.map(|o| (o, None))),
        };
        match result {
            Ok((containers, retry_in)) => {
                self.observed.send_replace(Some(ObservedSet { applied_revision: revision, containers, load_balancer: self.balancer.status() }));
                retry_in
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot read the engine's containers; will retry");
                // The engine may be restarting; come back sooner than the safety net.
                Some(Duration::from_secs(2))
            }
        }
    }
}

/// How long after an event the engine's container list is trusted to show its outcome.
const SETTLE: Duration = Duration::from_millis(300);

/// Follows the engine's container events: disruptive ones trigger a converge at once (that is
/// how a container removed by hand comes back within a second), all of them a fresh report.
async fn watch_events(engine: Engine, converge: Arc<Notify>, observe: Arc<Notify>, mut shutdown: broadcast::Receiver<()>) {
    let mut backoff = Backoff::for_reconnect();
    loop {
        let mut events = Box::pin(engine.events());
        let mut first = true;
        let ended = loop {
            tokio::select! {
                _ = shutdown.recv() => return,
                item = events.next() => match item {
                    Some(Ok(ev)) => {
                        if first {
                            first = false;
                            backoff.reset();
                        }
                        tracing::debug!(action = %ev.action, container = %ev.container_name, "engine event");
                        if ev.needs_converge() {
                            converge.notify_one();
                        } else {
                            observe.notify_one();
                        }
                        // The engine updates a container's state a moment after the event (a
                        // container that just died still lists as running), so look again once
                        // it has settled, or the report would stay stale until the next event.
                        let observe = observe.clone();
                        tokio::spawn(async move {
                            tokio::time::sleep(SETTLE).await;
                            observe.notify_one();
                        });
                    }
                    Some(Err(e)) => break e.to_string(),
                    None => break "the engine closed the event stream".to_string(),
                }
            }
        };
        // Whatever happened while we were not listening is caught by converging on re-subscribe.
        converge.notify_one();
        let delay = backoff.next_delay();
        tracing::warn!(
            endpoint = %engine.endpoint(),
            reason = %ended,
            retry_in_ms = delay.as_millis() as u64,
            attempt = backoff.attempt(),
            "engine event stream lost; re-subscribing"
        );
        tokio::select! {
            _ = shutdown.recv() => return,
            _ = tokio::time::sleep(delay) => {}
        }
    }
}

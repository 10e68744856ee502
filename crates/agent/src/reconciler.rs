//! The local control loop: one task converges the engine to the desired set whenever something
//! changes (a new set, an engine event, a crash-loop hold-off expiring, or the 30 s safety net),
//! and publishes what it observes. It needs no control plane, which is what keeps a host's
//! containers up while the control plane is unreachable.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use corral_proto::{ContainerIssue, DesiredSet, ImagePull, ObservedContainer, ObservedSet};
use futures_util::StreamExt;
use tokio::sync::{broadcast, watch, Notify};
use tokio::task::JoinHandle;

use crate::backoff::Backoff;
use crate::converge::{image_gate, plan, Action, ImageGate, RestartBackoff};
use crate::engine::Engine;
use crate::error::AgentError;
use crate::issues::{Crashes, Waiting};
use crate::pull::Pulls;
use crate::restarts::AppliedRestarts;
use corral_proto::network::NetworkPlan;
use corral_proto::registry::RegistryEntry;

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
    /// Converge again after this long: some restarts were held back by the crash-loop backoff,
    /// or a failed pull may be tried again.
    pub retry_in: Option<Duration>,
    /// The managed containers as the engine reported them after the pass.
    pub observed: Vec<ObservedContainer>,
    /// Desired containers held back until their image is on the host, by name.
    pub waiting: BTreeMap<String, Waiting>,
    /// The desired set's pull list, each with whether its image is ready.
    pub asked: Vec<(ImagePull, bool)>,
}

/// Carries out converge plans against an engine. Holds the per-container restart backoff and
/// the host's pulls, so keep one per engine.
#[derive(Debug)]
pub struct Reconciler {
    engine: Engine,
    restarts: RestartBackoff,
    pulls: Pulls,
    crashes: Crashes,
    /// When each waiting container (or asked image, under its [`asked_key`]) first waited.
    wanted_since: HashMap<String, Instant>,
    /// Restart generations applied, so each restart asked for happens once.
    applied: AppliedRestarts,
    /// The registries (logins, CAs) of the last pass: a change retries failed pulls at once.
    registries: Vec<RegistryEntry>,
    /// The subnet the engine's managed network was made for, once it is.
    managed: Option<ipnet::Ipv4Net>,
    /// The host's DNS server, when this reconciler gives managed containers a resolver.
    dns: Option<Arc<crate::dns::ServiceDns>>,
    /// The resolver new managed containers get (the DNS server on the gateway), when it listens.
    resolver: Option<std::net::Ipv4Addr>,
}

impl Reconciler {
    /// A reconciler whose pulls notify nobody: for one-off passes (tests, tools).
    pub fn new(engine: Engine) -> Self {
        Self::with(engine, Pulls::new(Arc::default(), Arc::default()), Crashes::default())
    }

    pub fn with(engine: Engine, pulls: Pulls, crashes: Crashes) -> Self {
        Reconciler {
            engine,
            restarts: RestartBackoff::default(),
            pulls,
            crashes,
            wanted_since: HashMap::new(),
            applied: AppliedRestarts::default(),
            registries: Vec::new(),
            managed: None,
            dns: None,
            resolver: None,
        }
    }

    /// The same, keeping the restart generations it applied in `state_dir`.
    pub fn in_state_dir(engine: Engine, state_dir: &std::path::Path) -> Self {
        Reconciler { applied: AppliedRestarts::load(state_dir), ..Self::new(engine) }
    }

    /// The same, giving managed containers `dns` as their resolver while it listens on the
    /// managed network's gateway.
    pub fn with_dns(self, dns: Arc<crate::dns::ServiceDns>) -> Self {
        Reconciler { dns: Some(dns), ..self }
    }

    /// One level-triggered pass. Fails only if the engine cannot even list containers; a
    /// container that cannot be created (say, its port is taken) is reported in
    /// [`ConvergeReport::failures`] and the others are still converged. A container whose image
    /// is not on the host waits for it in [`ConvergeReport::waiting`] while the image is pulled
    /// beside the loop; an old container it replaces keeps running meanwhile.
    pub async fn converge_once(&mut self, desired: &DesiredSet) -> Result<ConvergeReport, AgentError> {
        let observed = self.engine.list_managed().await?;
        self.ensure_network(desired.network.as_ref()).await;
        if let Some(dns) = &self.dns {
            self.resolver = dns.serve(self.managed).await;
        }
        if self.registries != desired.registries {
            // A login or CA set right after a pull failed should not wait out the backoff.
            self.pulls.forget_failures();
            self.registries = desired.registries.clone();
        }
        let now = Instant::now();
        self.restarts.observe(&observed, now);
        let mut plan = plan(&desired.containers, &observed, &self.restarts, now);
        let restarts = self.applied.due(&desired.containers, &observed, &plan.actions);
        plan.actions.extend(restarts);
        let mut report = ConvergeReport { retry_in: plan.retry_in, ..Default::default() };

        let images = plan.actions.iter().filter_map(Action::needs_image).map(|s| s.image.as_str()).chain(desired.pull.iter().map(|p| p.image.as_str()));
        let present = self.images_present(images).await;
        let mut retry_at: Option<Instant> = None;
        let mut wanted = HashMap::new();
        let mut actions = Vec::new();
        for action in plan.actions {
            let Some(spec) = action.needs_image() else {
                actions.push(action);
                continue;
            };
            let waiting = Waiting { image: spec.image.clone(), policy: spec.pull };
            match self.gate(&spec.name, &waiting, &desired.registries, &present, now, &mut wanted) {
                ImageGate::Go => actions.push(action),
                gate => {
                    if let ImageGate::Wait { retry_at: Some(at) } = gate {
                        retry_at = Some(retry_at.map_or(at, |r| r.min(at)));
                    }
                    report.waiting.insert(spec.name.clone(), waiting);
                }
            }
        }
        for p in &desired.pull {
            let waiting = Waiting { image: p.image.clone(), policy: p.policy };
            let key = asked_key(&p.image);
            let gate = self.gate(&key, &waiting, &desired.registries, &present, now, &mut wanted);
            // Under `always`, the pull an asked image got stays its pull while it is asked.
            let since = *self.wanted_since.get(&key).unwrap_or(&now);
            wanted.entry(key).or_insert(since);
            if let ImageGate::Wait { retry_at: Some(at) } = gate {
                retry_at = Some(retry_at.map_or(at, |r| r.min(at)));
            }
            report.asked.push((p.clone(), gate == ImageGate::Go));
        }
        self.wanted_since = wanted;
        if let Some(at) = retry_at {
            let wait = at.saturating_duration_since(now);
            report.retry_in = Some(report.retry_in.map_or(wait, |r| r.min(wait)));
        }
        self.pulls.retain(|image| desired.containers.iter().any(|c| c.image == image) || desired.pull.iter().any(|p| p.image == image));

        for action in &actions {
            self.restarts.account(action, now);
        }
        // Engine calls for different containers are independent; running a few at once lets a
        // deploy go as fast as the engine itself (it creates in parallel, the CLI's floor).
        let (engine, managed_ready, resolver) = (&self.engine, self.managed.is_some(), self.resolver);
        let results: Vec<(Action, Result<(), AgentError>)> = futures_util::stream::iter(actions)
            .map(|action| async move {
                let result = execute(engine, &action, managed_ready, resolver).await;
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

        let failed_restarts = report.failures.iter().map(|f| f.container.as_str()).collect();
        if let Err(e) = self.applied.record(&desired.containers, &failed_restarts) {
            tracing::warn!(error = %e, "cannot keep the applied restart generations; a restart may be repeated after the agent restarts");
        }
        report.observed = if report.actions.is_empty() { observed } else { self.engine.list_managed().await? };
        self.restarts.observe(&report.observed, Instant::now());
        self.read_exit_logs(&desired.containers, &report.observed).await;
        Ok(report)
    }

    /// Makes the engine's managed network hold this host's lease when the plan names a new one.
    /// Until it does, managed containers join the default bridge (and say nothing worse).
    async fn ensure_network(&mut self, plan: Option<&NetworkPlan>) {
        // The control plane checked the lease; a /24 is all this agent will act on regardless.
        let wanted = plan.and_then(|p| p.subnet.parse::<ipnet::Ipv4Net>().ok()).filter(|n| n.prefix_len() == 24 && n.network() == n.addr());
        let Some(subnet) = wanted else {
            self.managed = None;
            return;
        };
        if self.managed == Some(subnet) {
            return;
        }
        match self.engine.ensure_managed_network(&subnet).await {
            Ok(()) => self.managed = Some(subnet),
            Err(e) => tracing::warn!(error = %e, %subnet, "cannot make the managed network; managed containers join the default bridge meanwhile"),
        }
    }

    /// Decides about one container's (or asked image's) image, starting a pull when one is due.
    fn gate(
        &self,
        key: &str,
        waiting: &Waiting,
        registries: &[RegistryEntry],
        present: &HashMap<String, bool>,
        now: Instant,
        wanted: &mut HashMap<String, Instant>,
    ) -> ImageGate {
        let since = *self.wanted_since.get(key).unwrap_or(&now);
        let has = present.get(&waiting.image).copied().unwrap_or(false);
        let gate = image_gate(waiting.policy, has, self.pulls.status(&waiting.image).as_ref(), since, now);
        match gate {
            ImageGate::Go => {}
            ImageGate::Pull => {
                self.pulls.start(&self.engine, &waiting.image, crate::registries::credentials_for(&waiting.image, registries));
                wanted.insert(key.to_string(), since);
            }
            ImageGate::Wait { .. } | ImageGate::Missing => {
                wanted.insert(key.to_string(), since);
            }
        }
        gate
    }

    /// Whether the engine has each image. An engine that cannot say counts as having it: the
    /// create that follows then fails with the engine's own words.
    async fn images_present<'a>(&self, images: impl Iterator<Item = &'a str>) -> HashMap<String, bool> {
        let mut present = HashMap::new();
        for image in images {
            if present.contains_key(image) {
                continue;
            }
            let has = match self.engine.has_image(image).await {
                Ok(has) => has,
                Err(e) => {
                    tracing::warn!(%image, error = %e, "cannot tell whether the engine has the image");
                    true
                }
            };
            present.insert(image.to_string(), has);
        }
        present
    }

    /// Reads the last log lines of containers that stopped when they should run, once per death.
    async fn read_exit_logs(&self, desired: &[corral_proto::ContainerSpec], observed: &[ObservedContainer]) {
        self.crashes.retain(observed);
        let stopped = crate::issues::stopped_unexpectedly(desired, observed);
        for id in self.crashes.need_log(&stopped) {
            match self.engine.log_tail(&id, crate::issues::LOG_LINES).await {
                Ok(lines) => self.crashes.set_log(&id, lines.iter().map(|l| crate::issues::log_line(l)).collect()),
                Err(e) => tracing::debug!(container = %id, error = %e, "cannot read the log of a stopped container"),
            }
        }
    }

    /// Lists what the engine has, without changing anything.
    pub async fn observe(&mut self) -> Result<Vec<ObservedContainer>, AgentError> {
        let observed = self.engine.list_managed().await?;
        self.restarts.observe(&observed, Instant::now());
        Ok(observed)
    }
}

/// The key under which an image the control plane asked for waits, apart from containers.
fn asked_key(image: &str) -> String {
    format!("image:{image}")
}

/// How many engine calls one converge pass makes at once.
const PARALLEL_ACTIONS: usize = 4;

/// Carries out one action on the engine.
/// `resolver` is the DNS server containers on the managed network get, when it listens.
async fn execute(engine: &Engine, action: &Action, managed_ready: bool, resolver: Option<std::net::Ipv4Addr>) -> Result<(), AgentError> {
    let network = |spec: &corral_proto::ContainerSpec| crate::engine::Attachment::new(crate::engine::network_mode(spec.network, managed_ready), resolver);
    match action {
        Action::Create { spec } => engine.create_and_start(spec, network(spec)).await.map(drop),
        Action::Recreate { id, spec } => {
            engine.remove(id).await?;
            engine.create_and_start(spec, network(spec)).await.map(drop)
        }
        Action::Start { id, .. } => engine.start(id).await,
        Action::Stop { id, .. } => engine.stop(id).await,
        Action::Promote { id, spec, refill } => {
            engine.rename(id, &spec.name).await?;
            engine.create_and_start(refill, network(refill)).await.map(drop)
        }
        Action::Remove { id, .. } => engine.remove(id).await,
        Action::Restart { id, .. } => engine.restart(id).await,
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
    Restart,
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
            Action::Restart { .. } => ActionKind::Restart,
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
    /// The desired set as it changes (the saved one first).
    pub fn watch_desired(&self) -> watch::Receiver<Option<Arc<DesiredSet>>> {
        self.desired.subscribe()
    }

    /// The managed network's subnet this host was last given (kept in `desired.json` across
    /// restarts), to ask for it again.
    pub fn lease(&self) -> Option<String> {
        self.desired.borrow().as_ref()?.network.as_ref().map(|n| n.subnet.clone())
    }

    /// Starts the converge loop and the engine event watcher. `initial` is the last desired set
    /// (from `desired.json`); `None` means none was ever received, and then the loop only
    /// observes: an unknown desired set must not be read as "remove everything".
    pub fn spawn(engine: Engine, initial: Option<DesiredSet>, shutdown: &broadcast::Receiver<()>) -> Self {
        Self::spawn_with(Reconciler::new(engine), initial, shutdown, None)
    }

    /// [`ReconcilerHandle::spawn`] with a reconciler made by the caller (one that keeps its
    /// restart generations in the state dir), installing the registries' CAs the desired set
    /// carries (before each converge pass, so a pull finds its registry trusted).
    pub fn spawn_with(
        reconciler: Reconciler,
        initial: Option<DesiredSet>,
        shutdown: &broadcast::Receiver<()>,
        cas: Option<crate::registries::CaFiles>,
    ) -> Self {
        let engine = reconciler.engine.clone();
        let (desired_tx, desired_rx) = watch::channel(initial.map(Arc::new));
        let (observed_tx, observed_rx) = watch::channel(None);
        let (passes_tx, passes_rx) = watch::channel(0u64);
        let converge = Arc::new(Notify::new());
        let observe = Arc::new(Notify::new());
        let progress = Arc::new(Notify::new());
        let crashes = Crashes::default();
        let pulls = Pulls::new(progress.clone(), converge.clone());

        let looped = ConvergeLoop {
            // The loop's pulls and crash records are shared with its reports and event watcher.
            reconciler: Reconciler { pulls: pulls.clone(), crashes: crashes.clone(), ..reconciler },
            balancer: Default::default(),
            cas,
            desired: desired_rx,
            observed: observed_tx,
            passes: passes_tx,
            converge: converge.clone(),
            observe: observe.clone(),
            progress,
            pulls,
            crashes: crashes.clone(),
            last: LastPass::default(),
        };
        let watcher = watch_events(engine, Wake { converge: converge.clone(), observe }, crashes, shutdown.resubscribe());
        let tasks = vec![tokio::spawn(looped.run(shutdown.resubscribe())), tokio::spawn(watcher)];
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
    /// A pull made progress: report it, without asking the engine anything.
    progress: Arc<Notify>,
    pulls: Pulls,
    crashes: Crashes,
    last: LastPass,
}

/// What the latest passes found, kept so a report can be rebuilt when only a pull moved.
#[derive(Default)]
struct LastPass {
    revision: u64,
    desired: Vec<corral_proto::ContainerSpec>,
    containers: Vec<ObservedContainer>,
    waiting: BTreeMap<String, Waiting>,
    asked: Vec<(ImagePull, bool)>,
    /// The latest create or start failure of each container, until it runs or is tried anew.
    failures: BTreeMap<String, ContainerIssue>,
}

#[derive(Debug, Clone, Copy)]
enum Work {
    Converge,
    Observe,
    Progress,
}

impl ConvergeLoop {
    async fn run(mut self, mut shutdown: broadcast::Receiver<()>) {
        let mut next_converge = tokio::time::Instant::now() + SAFETY_NET;
        loop {
            let work = tokio::select! {
                _ = shutdown.recv() => break,
                _ = self.converge.notified() => Work::Converge,
                _ = self.observe.notified() => Work::Observe,
                _ = self.progress.notified() => Work::Progress,
                _ = tokio::time::sleep_until(next_converge) => Work::Converge,
            };
            if matches!(work, Work::Progress) {
                self.publish();
                continue;
            }
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

    /// Returns when to come back early for held-back restarts or pulls to try again.
    async fn pass(&mut self, work: Work) -> Option<Duration> {
        let desired = self.desired.borrow().clone();
        match (&desired, work) {
            (Some(d), Work::Converge) => {
                // Balancers first: a container about to go is already out of their rotation.
                self.balancer.apply(&d.load_balancer).await;
                if let Some(cas) = &self.cas {
                    cas.apply(&d.registries);
                }
                let started = Instant::now();
                match self.reconciler.converge_once(d).await {
                    Ok(r) => {
                        tracing::debug!(
                            revision = d.revision,
                            actions = r.actions.len(),
                            failures = r.failures.len(),
                            waiting = r.waiting.len(),
                            elapsed_ms = started.elapsed().as_millis() as u64,
                            "converge pass done"
                        );
                        for f in &r.failures {
                            tracing::error!(container = %f.container, error = %f.error, "container not converged");
                        }
                        self.remember(d, r.actions, r.failures, r.observed, r.waiting, r.asked);
                        self.publish();
                        r.retry_in
                    }
                    Err(e) => Self::unreadable(e),
                }
            }
            (d, _) => match self.reconciler.observe().await {
                Ok(containers) => {
                    self.last.revision = d.as_ref().map_or(0, |d| d.revision);
                    self.last.containers = containers;
                    self.publish();
                    None
                }
                Err(e) => Self::unreadable(e),
            },
        }
    }

    fn unreadable(e: AgentError) -> Option<Duration> {
        tracing::error!(error = %e, "cannot read the engine's containers; will retry");
        // The engine may be restarting; come back sooner than the safety net.
        Some(Duration::from_secs(2))
    }

    /// Keeps what a converge pass found. A failure stays until its container is tried again
    /// (and then is replaced by the new outcome) or leaves the desired set.
    fn remember(
        &mut self,
        desired: &DesiredSet,
        actions: Vec<Action>,
        failures: Vec<crate::ConvergeFailure>,
        containers: Vec<ObservedContainer>,
        waiting: BTreeMap<String, Waiting>,
        asked: Vec<(ImagePull, bool)>,
    ) {
        let kept = &mut self.last.failures;
        kept.retain(|name, _| desired.containers.iter().any(|c| &c.name == name) && !actions.iter().any(|a| a.name() == name));
        for f in failures {
            if let Some(spec) = desired.containers.iter().find(|c| c.name == f.container) {
                kept.insert(f.container, crate::issues::failure_issue(spec, &f.error));
            }
        }
        self.last.revision = desired.revision;
        self.last.desired = desired.containers.clone();
        self.last.containers = containers;
        self.last.waiting = waiting;
        self.last.asked = asked;
    }

    /// Reports what the latest passes found, with the pulls as they stand right now.
    fn publish(&mut self) {
        let pulls = self.pulls.snapshot();
        let crashes = self.crashes.snapshot();
        let last = &self.last;
        let issues = crate::issues::container_issues(&crate::issues::Facts {
            desired: &last.desired,
            observed: &last.containers,
            waiting: &last.waiting,
            failures: &last.failures,
            crashes: &crashes,
            pulls: &pulls,
            now: Instant::now(),
        });
        self.observed.send_replace(Some(ObservedSet {
            applied_revision: last.revision,
            containers: last.containers.clone(),
            load_balancer: self.balancer.status(),
            issues,
            images: crate::issues::image_reports(&last.asked, &pulls),
        }));
    }
}

/// How long after an event the engine's container list is trusted to show its outcome.
const SETTLE: Duration = Duration::from_millis(300);

/// Follows the engine's container events: disruptive ones trigger a converge at once (that is
/// how a container removed by hand comes back within a second), all of them a fresh report.
/// Who the event watcher wakes.
struct Wake {
    converge: Arc<Notify>,
    observe: Arc<Notify>,
}

async fn watch_events(engine: Engine, wake: Wake, crashes: Crashes, mut shutdown: broadcast::Receiver<()>) {
    let Wake { converge, observe } = wake;
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
                        if ev.action == "die" {
                            crashes.died(&ev.container_id, ev.exit_code, Instant::now());
                        }
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

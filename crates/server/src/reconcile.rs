//! The control loop: desired state in the store -> placements -> each host's desired set.
//!
//! Level-triggered and idempotent: every pass reads the whole desired state and compares it
//! with the placements, so a missed trigger or a crash mid-way is repaired by the next pass.
//! Passes run on every trigger (API writes, agents coming and going) and every few seconds.

use crate::hub::Hub;
use crate::lb::Backends;
use corral_proto::lb::LbSet;
use corral_proto::ContainerState;
use corral_proto::DesiredSet;
use corral_proto::{labels, ContainerSpec, PortSpec};
use corral_scheduler::{Constraint, HostView, Protocol, ServiceRequest, Unplaced};
use corral_store::containers::Placement;
use corral_store::{ContainerRecord, Host, HostState, ObservedRecord, Service, Store, StoreError};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{broadcast, watch, Notify};

/// Asks for a reconcile pass soon; many requests before the pass starts make one pass.
#[derive(Clone, Debug)]
pub struct ReconcileTrigger {
    notify: Arc<Notify>,
    /// Number of passes started so far.
    started: Arc<AtomicU64>,
    /// Number of the last pass finished.
    finished: watch::Sender<u64>,
}

impl Default for ReconcileTrigger {
    fn default() -> Self {
        ReconcileTrigger { notify: Arc::default(), started: Arc::default(), finished: watch::channel(0).0 }
    }
}

impl ReconcileTrigger {
    pub fn trigger(&self) {
        self.notify.notify_one();
    }

    /// Triggers a pass and waits until one that started after this call has finished, so
    /// everything written before the call is reflected in the hosts' desired sets.
    pub async fn run_now(&self) {
        let target = self.started.load(Ordering::SeqCst) + 1;
        let mut finished = self.finished.subscribe();
        self.trigger();
        let wait = finished.wait_for(|n| *n >= target);
        if tokio::time::timeout(Duration::from_secs(10), wait).await.is_err() {
            tracing::warn!("reconcile pass did not finish within 10 s");
        }
    }
}

/// How often a pass runs with no trigger, to notice grace periods running out.
const IDLE_PASS: Duration = Duration::from_secs(2);

pub struct Reconciler {
    pub store: Store,
    pub hub: Arc<Hub>,
    pub trigger: ReconcileTrigger,
    pub unplaced: Arc<Mutex<HashMap<i64, Vec<Unplaced>>>>,
    pub avoid: AvoidHints,
    pub events: crate::events::Events,
}

/// Hosts that replacements of particular instances should avoid: `(service id, instance) -> host id`.
/// Set when a container is deleted through the control plane, consumed by the next placement.
/// A hint lives until its instance is placed, or [`AVOID_HINT_TTL`] at most.
pub type AvoidHints = Arc<Mutex<HashMap<(i64, u32), (String, std::time::Instant)>>>;

const AVOID_HINT_TTL: Duration = Duration::from_secs(10);

impl Reconciler {
    pub async fn run(self, mut shutdown: broadcast::Receiver<()>) {
        loop {
            let number = self.trigger.started.fetch_add(1, Ordering::SeqCst) + 1;
            let started = std::time::Instant::now();
            let result = self.pass().await;
            crate::metrics::RECONCILE_LATENCY.observe(started.elapsed());
            if let Err(e) = result {
                tracing::warn!(error = %e, "reconcile pass failed; retrying");
            }
            self.trigger.finished.send_replace(number);
            tokio::select! {
                _ = self.trigger.notify.notified() => {}
                _ = tokio::time::sleep(IDLE_PASS) => {}
                _ = shutdown.recv() => return,
            }
        }
    }

    /// One full pass. Public so tests and start-up can run it synchronously.
    pub async fn pass(&self) -> Result<(), StoreError> {
        let all_environments = self.store.environments().await?;
        let environments: HashMap<i64, String> = all_environments.iter().map(|e| (e.id, e.name.clone())).collect();
        let networks: HashMap<i64, String> = all_environments.iter().filter_map(|e| Some((e.id, e.subnet.clone()?))).collect();
        // What containers are labelled with: stable across renames, so a rename recreates nothing.
        let env_labels: HashMap<i64, String> = all_environments.into_iter().map(|e| (e.id, e.label)).collect();
        let hosts = self.store.hosts(None).await?;
        let services = self.store.services(None, None).await?;
        let mut records = self.store.container_records(None).await?;
        let observed = self.store.observed(None).await?;
        let lb_targets = lb_targets(&services);
        let now = time::OffsetDateTime::now_utc();
        let disconnected_for: HashMap<&str, Duration> = hosts
            .iter()
            .filter(|h| h.state == HostState::Disconnected)
            .map(|h| {
                let since = corral_store::parse_time(&h.state_since).map_or(Duration::ZERO, |t| (now - t).try_into().unwrap_or_default());
                (h.id.as_str(), since)
            })
            .collect();
        self.avoid.lock().expect("avoid lock").retain(|_, (_, at)| at.elapsed() < AVOID_HINT_TTL);
        let by_id: HashMap<i64, &Service> = services.iter().map(|s| (s.id, s)).collect();
        let mut unplaced = HashMap::new();
        // Images each host must have before an upgrade goes on, by host id.
        let mut pull_lists: HashMap<String, Vec<corral_proto::ImagePull>> = HashMap::new();
        // Environments whose container records this pass changed, for the event stream.
        let mut touched = std::collections::BTreeSet::new();

        for service in &services {
            if service.adopting_until.as_deref().and_then(corral_store::parse_time).is_some_and(|until| now < until) {
                // Rebuilt from labels moments ago: other hosts may still bring instances back.
                continue;
            }
            let grace = Duration::from_secs(service.spec.reschedule_after_secs.into());
            let in_grace = |host: &str| disconnected_for.get(host).is_some_and(|d| *d < grace);
            let view = host_views(&hosts, service, &records, &by_id);
            let constraints: Vec<Constraint> = service.spec.constraints.iter().filter_map(|c| c.parse::<Constraint>().ok()).collect();
            let current: BTreeMap<u32, String> = records.iter().filter(|r| r.service_id == service.id).map(|r| (r.instance, r.host_id.clone())).collect();
            let scale = match &service.spec.lb {
                // Global: one instance on every host that may take one; a deactivated host keeps the one it has.
                Some(lb) if lb.global => view
                    .iter()
                    .filter(|h| h.schedulable && (!h.ineligible || current.values().any(|id| *id == h.id)))
                    .filter(|h| constraints.iter().all(|c| c.matches(&h.labels)))
                    .count() as u32,
                // A database written by hand or by an older version may hold any number: no pass
                // plans more than the API allows.
                _ => service.scale.min(crate::validate::MAX_SCALE as u32),
            };
            let request = ServiceRequest {
                scale,
                constraints,
                host_ports: host_ports(service),
                one_per_host: service.spec.network == corral_proto::network::NetworkMode::Host,
                instances: current.iter().map(|(i, h)| (*i, Some(h.clone()))).collect(),
                avoid: {
                    let hints = self.avoid.lock().expect("avoid lock");
                    hints.iter().filter(|((s, _), _)| *s == service.id).map(|((_, i), (h, _))| (*i, h.clone())).collect()
                },
            };
            let plan = corral_scheduler::plan(&view, &request);
            // Containers a load balancer sends traffic to leave the balancers first and the
            // engines only once no new request can reach them: no request fails on scale-down.
            let (remove, drain, undrain) = if lb_targets.contains(&(service.environment_id, service.path())) {
                drain_split(&plan.remove, &records, service, scale, now)
            } else {
                (plan.remove.clone(), Vec::new(), Vec::new())
            };
            // A host that has just dropped off keeps its containers until its grace period ends:
            // moving them at once would run two copies when it comes back a second later.
            let place: Vec<Placement> = plan
                .place
                .into_iter()
                .filter(|(i, _)| !current.get(i).is_some_and(|h| in_grace(h)))
                .map(|(i, host)| (i, host, service.container_name(i)))
                .collect();
            // Instances removed on request are made anew, wherever they land (see `labels::INCARNATION`).
            let renewed: Vec<u32> = {
                let mut hints = self.avoid.lock().expect("avoid lock");
                place.iter().filter_map(|(i, _, _)| hints.remove(&(service.id, *i)).map(|_| *i)).collect()
            };
            if !drain.is_empty() || !undrain.is_empty() {
                touched.insert(service.environment_id);
                self.store.set_draining(service.id, &drain, true).await?;
                self.store.set_draining(service.id, &undrain, false).await?;
                let since = corral_store::now();
                for r in records.iter_mut().filter(|r| r.service_id == service.id) {
                    if drain.contains(&r.instance) {
                        r.draining_since = Some(since.clone());
                    } else if undrain.contains(&r.instance) {
                        r.draining_since = None;
                    }
                }
            }
            if !place.is_empty() || !remove.is_empty() {
                tracing::info!(service = %service.path(), placed = place.len(), removed = remove.len(), "placement changed");
                touched.insert(service.environment_id);
                self.store.apply_placement(service.id, &place, &remove).await?;
                // A moved instance keeps what was asked of it alone (stopped, restarts), as its row does.
                let kept: HashMap<u32, (bool, u64, u64)> =
                    records.iter().filter(|r| r.service_id == service.id).map(|r| (r.instance, (r.stopped, r.restart_generation, r.incarnation))).collect();
                let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_millis() as u64);
                for i in &renewed {
                    self.store.set_incarnation(service.id, *i, now_ms).await?;
                }
                records.retain(|r| !(r.service_id == service.id && (remove.contains(&r.instance) || place.iter().any(|p| p.0 == r.instance))));
                records.extend(place.into_iter().map(|(instance, host_id, name)| {
                    let (stopped, restart_generation, incarnation) = kept.get(&instance).copied().unwrap_or_default();
                    let incarnation = if renewed.contains(&instance) { now_ms } else { incarnation };
                    ContainerRecord {
                        id: 0,
                        service_id: service.id,
                        instance,
                        host_id,
                        name,
                        created_at: String::new(),
                        draining_since: None,
                        revision: service.revision,
                        stopped,
                        restart_generation,
                        incarnation,
                    }
                }));
            }
            if !plan.unplaced.is_empty() {
                unplaced.insert(service.id, plan.unplaced);
            }
            let lb_target = lb_targets.contains(&(service.environment_id, service.path()));
            let pulls = upgrade_pulls(service, &records);
            let pulled = pulls.iter().all(|(host, p)| self.hub.image_state(host, &p.image) == Some(corral_proto::ImageState::Present));
            for (host, p) in pulls {
                pull_lists.entry(host).or_default().push(p);
            }
            let step = if pulled { upgrade_step(service, &records, &observed, lb_target, now) } else { None };
            if step.is_some() {
                touched.insert(service.environment_id);
            }
            match step {
                Some(UpgradeStep::Drain(i)) => {
                    self.store.set_draining(service.id, &[i], true).await?;
                    let since = corral_store::now();
                    records.iter_mut().filter(|r| r.service_id == service.id && r.instance == i).for_each(|r| r.draining_since = Some(since.clone()));
                }
                Some(UpgradeStep::Upgrade(i)) => {
                    tracing::info!(service = %service.path(), instance = i, revision = service.revision, "upgrading instance");
                    self.store.set_revision(service.id, i, service.revision).await?;
                    records.iter_mut().filter(|r| r.service_id == service.id && r.instance == i).for_each(|r| {
                        r.revision = service.revision;
                        r.draining_since = None;
                    });
                }
                None => {}
            }
        }
        *self.unplaced.lock().expect("unplaced lock") = unplaced;
        for env in touched.iter().filter_map(|id| environments.get(id)) {
            self.events.publish(env, &[crate::events::Resource::Containers, crate::events::Resource::Services]);
        }

        let backends = Backends::new(&hosts, &services, &records, &observed);
        let mut registries: HashMap<i64, Vec<corral_proto::registry::RegistryEntry>> = HashMap::new();
        for (env, entry) in self.store.registry_entries().await? {
            registries.entry(env).or_default().push(entry);
        }
        let leases = self.store.leases(None).await?;
        let names = crate::names::environment_names(&by_id, &records, &observed, &leases);
        for host in &hosts {
            let env = env_labels.get(&host.environment_id).map(String::as_str).unwrap_or_default();
            let mut specs = Vec::new();
            let mut lb = LbSet::default();
            for r in records.iter().filter(|r| r.host_id == host.id) {
                let Some(service) = by_id.get(&r.service_id) else { continue };
                match &service.spec.lb {
                    None => specs.push(container_spec(env, service, r)),
                    Some(spec) => {
                        lb.listeners.extend(crate::lb::listeners(service, spec, &backends, &instance_labels(env, service, Some(r.instance), r.revision).1))
                    }
                }
            }
            // A spare on every host the service may run on: wherever a lost instance is placed
            // (its own host, or another after a delete), a spare is there to take its place.
            // A deactivated host gets no new containers: it keeps a spare only for the instances it still runs.
            let spares = services.iter().filter(|s| {
                s.environment_id == host.environment_id
                    && wants_spare_on(s, host)
                    && (!host.deactivated || records.iter().any(|r| r.host_id == host.id && r.service_id == s.id))
            });
            specs.extend(spares.map(|s| spare_spec(env, s)));
            lb.listeners.sort_by_key(|l| l.port);
            let pull = pull_lists.remove(&host.id).unwrap_or_default();
            // Logins go with the images the host runs and the ones it is asked to pull first.
            let images = specs.iter().map(|s| s.image.as_str()).chain(pull.iter().map(|p| p.image.as_str()));
            let registries = corral_proto::registry::for_host(registries.get(&host.environment_id).map_or(&[][..], Vec::as_slice), images);
            let network = networks.get(&host.environment_id).and_then(|net| crate::network::plan_for(&host.id, net, &leases)).map(|plan| {
                let names = names.get(&host.environment_id).cloned().unwrap_or_default();
                corral_proto::network::NetworkPlan { environment: env.to_string(), names, ..plan }
            });
            self.hub.publish(&host.id, DesiredSet { revision: 0, containers: specs, load_balancer: lb, pull, registries, network });
        }
        Ok(())
    }
}

/// How long a container leaving a load balancer's targets keeps running after the balancers
/// were told; they apply a new set within milliseconds, so this is a wide margin.
const DRAIN: Duration = Duration::from_secs(2);

/// `(environment, STACK/SERVICE)` of every service some load balancer sends traffic to.
fn lb_targets(services: &[Service]) -> std::collections::HashSet<(i64, String)> {
    services
        .iter()
        .filter_map(|s| s.spec.lb.as_ref().map(|lb| (s.environment_id, lb)))
        .flat_map(|(env, lb)| lb.targets.iter().cloned().chain(lb.rules.iter().map(|r| r.service.clone())).map(move |t| (env, t)))
        .collect()
}

/// Splits a plan's removals for a load-balancer target: `(remove now, start draining, stop draining)`.
/// Instances drained long enough are removed; new surplus starts draining; a draining instance
/// the scale wants again (scaled back up) stops draining.
fn drain_split(remove: &[u32], records: &[ContainerRecord], service: &Service, scale: u32, now: time::OffsetDateTime) -> (Vec<u32>, Vec<u32>, Vec<u32>) {
    let mine = || records.iter().filter(|r| r.service_id == service.id);
    let mut out = (Vec::new(), Vec::new(), Vec::new());
    for &i in remove {
        match mine().find(|r| r.instance == i).and_then(|r| r.draining_since.as_deref()) {
            Some(since) if corral_store::parse_time(since).is_none_or(|t| now - t >= DRAIN) => out.0.push(i),
            Some(_) => {}
            None => out.1.push(i),
        }
    }
    // An instance draining for an upgrade is on an old revision; only a current one is wanted back.
    out.2 = mine().filter(|r| r.instance <= scale && r.draining_since.is_some() && r.revision == service.revision).map(|r| r.instance).collect();
    out
}

/// Host ports a service's instances need: published container ports, or a balancer's listeners.
fn host_ports(service: &Service) -> Vec<(u16, Protocol)> {
    match &service.spec.lb {
        Some(lb) => lb.ports.iter().map(|p| (p.listen, Protocol::Tcp)).collect(),
        None => published(&service.spec.ports),
    }
}

fn published(ports: &[PortSpec]) -> Vec<(u16, Protocol)> {
    ports
        .iter()
        .filter_map(|p| {
            p.host_port.map(|h| {
                let proto = match p.protocol {
                    corral_proto::Protocol::Tcp => Protocol::Tcp,
                    corral_proto::Protocol::Udp => Protocol::Udp,
                };
                (h, proto)
            })
        })
        .collect()
}

/// The scheduler's narrow view of the service's environment.
fn host_views(hosts: &[Host], service: &Service, records: &[ContainerRecord], services: &HashMap<i64, &Service>) -> Vec<HostView> {
    hosts
        .iter()
        .filter(|h| h.environment_id == service.environment_id)
        .map(|h| {
            let on_host: Vec<&ContainerRecord> = records.iter().filter(|r| r.host_id == h.id).collect();
            let used_host_ports =
                on_host.iter().filter(|r| r.service_id != service.id).filter_map(|r| services.get(&r.service_id)).flat_map(|s| host_ports(s)).collect();
            HostView {
                id: h.id.clone(),
                name: h.name.clone(),
                labels: h.labels.clone(),
                schedulable: h.state == HostState::Active,
                ineligible: h.deactivated,
                containers: on_host.len(),
                used_host_ports,
            }
        })
        .collect()
}

/// The container an instance of `service` is, at the revision it runs, with the labels that let
/// it be traced back. An instance not yet upgraded keeps the previous spec.
pub fn container_spec(environment: &str, service: &Service, record: &ContainerRecord) -> ContainerSpec {
    let (spec, mut all_labels) = instance_labels(environment, service, Some(record.instance), record.revision);
    if record.incarnation != 0 {
        all_labels.insert(labels::INCARNATION.to_string(), record.incarnation.to_string());
    }
    ContainerSpec {
        name: service.container_name(record.instance),
        image: spec.image.clone(),
        command: spec.command.clone(),
        env: spec.env.clone(),
        ports: spec.ports.clone(),
        labels: all_labels,
        stopped: service.is_stopped() || record.stopped,
        pull: spec.pull,
        network: spec.network,
        restart_generation: record.restart_generation,
    }
}

/// Whether `service` keeps a hot spare on `host`: asked for, running (not stopped or scaled to
/// nothing), and the host is one the service may be placed on.
fn wants_spare_on(service: &Service, host: &Host) -> bool {
    service.spec.hot_spare
        && service.spec.lb.is_none()
        && !service.is_stopped()
        && service.scale > 0
        && service.spec.constraints.iter().filter_map(|c| c.parse::<Constraint>().ok()).all(|c| c.matches(&host.labels))
}

/// The service's hot spare on a host: a copy of an instance at the current revision, under the
/// spare's name, labelled as a spare rather than an instance.
pub fn spare_spec(environment: &str, service: &Service) -> ContainerSpec {
    let (spec, all_labels) = instance_labels(environment, service, None, service.revision);
    ContainerSpec {
        name: service.spare_name(),
        image: spec.image.clone(),
        command: spec.command.clone(),
        env: spec.env.clone(),
        ports: spec.ports.clone(),
        labels: all_labels,
        stopped: false,
        pull: spec.pull,
        network: spec.network,
        restart_generation: 0,
    }
}

/// The spec an instance runs (an instance not yet upgraded keeps the previous one) and the
/// labels that let it be traced back to its service, for containers and balancers alike.
/// `instance: None` is the service's hot spare.
pub fn instance_labels<'s>(
    environment: &str,
    service: &'s Service,
    instance: Option<u32>,
    record_revision: u32,
) -> (&'s corral_store::ServiceSpec, std::collections::BTreeMap<String, String>) {
    let (spec, revision) = match &service.previous_spec {
        Some(previous) if record_revision + 1 == service.revision => (previous, record_revision),
        _ => (&service.spec, service.revision),
    };
    let mut all_labels = spec.labels.clone();
    all_labels.extend([
        (labels::MANAGED.to_string(), "true".to_string()),
        (labels::ENVIRONMENT.to_string(), environment.to_string()),
        (labels::STACK.to_string(), service.stack.clone()),
        (labels::SERVICE.to_string(), service.name.clone()),
        match instance {
            Some(n) => (labels::INSTANCE.to_string(), n.to_string()),
            None => (labels::SPARE.to_string(), "true".to_string()),
        },
        (labels::REVISION.to_string(), revision.to_string()),
        (labels::SERVICE_SPEC.to_string(), serde_json::to_string(spec).expect("specs serialize")),
    ]);
    (spec, all_labels)
}

/// The pulls an upgrade waits for: its new image on every host that runs an instance still on
/// an older revision, so that no old container is stopped before its replacement's image is
/// there, and a pull that fails stops the upgrade with every old container running. Nothing
/// when the upgrade keeps the image.
pub fn upgrade_pulls(service: &Service, records: &[ContainerRecord]) -> Vec<(String, corral_proto::ImagePull)> {
    let Some(previous) = &service.previous_spec else { return Vec::new() };
    if previous.image == service.spec.image || service.spec.lb.is_some() {
        return Vec::new();
    }
    let mut hosts: Vec<&str> = records.iter().filter(|r| r.service_id == service.id && r.revision < service.revision).map(|r| r.host_id.as_str()).collect();
    hosts.sort();
    hosts.dedup();
    let pull = corral_proto::ImagePull { image: service.spec.image.clone(), policy: service.spec.pull };
    hosts.into_iter().map(|h| (h.to_string(), pull.clone())).collect()
}

/// The next move of a rolling upgrade, one instance at a time.
#[derive(Debug, PartialEq, Eq)]
enum UpgradeStep {
    /// Take the instance out of load balancers first.
    Drain(u32),
    /// Recreate the instance from the new spec.
    Upgrade(u32),
}

/// Decides the upgrade's next move: nothing while an upgraded instance is not running yet (a bad
/// image stops the roll after one instance), else the lowest instance still on an old revision.
fn upgrade_step(
    service: &Service,
    records: &[ContainerRecord],
    observed: &[ObservedRecord],
    lb_target: bool,
    now: time::OffsetDateTime,
) -> Option<UpgradeStep> {
    let mine: Vec<&ContainerRecord> = records.iter().filter(|r| r.service_id == service.id).collect();
    let next = mine.iter().filter(|r| r.revision < service.revision).min_by_key(|r| (r.draining_since.is_none(), r.instance))?;
    let current = service.revision.to_string();
    // A container stopped on its own is not waited for: it will not run until started again.
    let settling = mine.iter().filter(|r| r.revision == service.revision && !r.stopped).any(|r| {
        !observed
            .iter()
            .any(|o| o.host_id == r.host_id && o.name == r.name && o.state == ContainerState::Running && o.labels.get(labels::REVISION) == Some(&current))
    });
    if settling {
        return None;
    }
    match (&next.draining_since, lb_target) {
        (_, false) => Some(UpgradeStep::Upgrade(next.instance)),
        (None, true) => Some(UpgradeStep::Drain(next.instance)),
        (Some(since), true) => corral_store::parse_time(since).is_none_or(|t| now - t >= DRAIN).then_some(UpgradeStep::Upgrade(next.instance)),
    }
}

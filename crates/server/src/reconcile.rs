//! The control loop: desired state in the store -> placements -> each host's desired set.
//!
//! Level-triggered and idempotent: every pass reads the whole desired state and compares it
//! with the placements, so a missed trigger or a crash mid-way is repaired by the next pass.
//! Passes run on every trigger (API writes, agents coming and going) and every few seconds.

use crate::hub::Hub;
use corral_proto::{labels, ContainerSpec, PortSpec};
use corral_scheduler::{Constraint, HostView, Protocol, ServiceRequest, Unplaced};
use corral_store::containers::Placement;
use corral_store::{ContainerRecord, Host, HostState, Service, Store, StoreError};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{broadcast, Notify};

/// Asks for a reconcile pass soon; many requests before the pass starts make one pass.
#[derive(Clone, Debug, Default)]
pub struct ReconcileTrigger(Arc<Notify>);

impl ReconcileTrigger {
    pub fn trigger(&self) {
        self.0.notify_one();
    }
}

/// How often a pass runs with no trigger, to notice grace periods running out.
const IDLE_PASS: Duration = Duration::from_secs(2);

pub struct Reconciler {
    pub store: Store,
    pub hub: Arc<Hub>,
    pub trigger: ReconcileTrigger,
    /// How long a disconnected host keeps its containers before they are placed elsewhere.
    pub reschedule_after: Duration,
    pub unplaced: Arc<Mutex<HashMap<i64, Vec<Unplaced>>>>,
}

impl Reconciler {
    pub async fn run(self, mut shutdown: broadcast::Receiver<()>) {
        loop {
            if let Err(e) = self.pass().await {
                tracing::warn!(error = %e, "reconcile pass failed; retrying");
            }
            tokio::select! {
                _ = self.trigger.0.notified() => {}
                _ = tokio::time::sleep(IDLE_PASS) => {}
                _ = shutdown.recv() => return,
            }
        }
    }

    /// One full pass. Public so tests and start-up can run it synchronously.
    pub async fn pass(&self) -> Result<(), StoreError> {
        let environments: HashMap<i64, String> =
            self.store.environments().await?.into_iter().map(|e| (e.id, e.name)).collect();
        let hosts = self.store.hosts(None).await?;
        let services = self.store.services(None, None).await?;
        let mut records = self.store.container_records(None).await?;
        let now = time::OffsetDateTime::now_utc();
        let in_grace: BTreeSet<&str> = hosts
            .iter()
            .filter(|h| {
                h.state == HostState::Disconnected
                    && corral_store::parse_time(&h.state_since).is_none_or(|since| now - since < self.reschedule_after)
            })
            .map(|h| h.id.as_str())
            .collect();
        let by_id: HashMap<i64, &Service> = services.iter().map(|s| (s.id, s)).collect();
        let mut unplaced = HashMap::new();

        for service in &services {
            let view = host_views(&hosts, service, &records, &by_id);
            let current: BTreeMap<u32, String> = records
                .iter()
                .filter(|r| r.service_id == service.id)
                .map(|r| (r.instance, r.host_id.clone()))
                .collect();
            let request = ServiceRequest {
                scale: service.scale,
                constraints: service.spec.constraints.iter().filter_map(|c| c.parse::<Constraint>().ok()).collect(),
                host_ports: published(&service.spec.ports),
                instances: current.iter().map(|(i, h)| (*i, Some(h.clone()))).collect(),
            };
            let plan = corral_scheduler::plan(&view, &request);
            // A host that has just dropped off keeps its containers until its grace period ends:
            // moving them at once would run two copies when it comes back a second later.
            let place: Vec<Placement> = plan
                .place
                .into_iter()
                .filter(|(i, _)| !current.get(i).is_some_and(|h| in_grace.contains(h.as_str())))
                .map(|(i, host)| (i, host, service.container_name(i)))
                .collect();
            if !place.is_empty() || !plan.remove.is_empty() {
                tracing::info!(service = %format!("{}/{}", service.stack, service.name), placed = place.len(), removed = plan.remove.len(), "placement changed");
                self.store.apply_placement(service.id, &place, &plan.remove).await?;
                records.retain(|r| !(r.service_id == service.id && (plan.remove.contains(&r.instance) || place.iter().any(|p| p.0 == r.instance))));
                records.extend(place.into_iter().map(|(instance, host_id, name)| ContainerRecord {
                    id: 0,
                    service_id: service.id,
                    instance,
                    host_id,
                    name,
                    created_at: String::new(),
                }));
            }
            if !plan.unplaced.is_empty() {
                unplaced.insert(service.id, plan.unplaced);
            }
        }
        *self.unplaced.lock().expect("unplaced lock") = unplaced;

        for host in &hosts {
            let env = environments.get(&host.environment_id).map(String::as_str).unwrap_or_default();
            let specs = records
                .iter()
                .filter(|r| r.host_id == host.id)
                .filter_map(|r| by_id.get(&r.service_id).map(|s| container_spec(env, s, r.instance)))
                .collect();
            self.hub.publish(&host.id, specs);
        }
        Ok(())
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
            let used_host_ports = on_host
                .iter()
                .filter(|r| r.service_id != service.id)
                .filter_map(|r| services.get(&r.service_id))
                .flat_map(|s| published(&s.spec.ports))
                .collect();
            HostView {
                id: h.id.clone(),
                name: h.name.clone(),
                labels: h.labels.clone(),
                schedulable: h.state == HostState::Active,
                containers: on_host.len(),
                used_host_ports,
            }
        })
        .collect()
}

/// The container an instance of `service` is, with the labels that let it be traced back.
pub fn container_spec(environment: &str, service: &Service, instance: u32) -> ContainerSpec {
    let mut all_labels = service.spec.labels.clone();
    all_labels.extend([
        (labels::MANAGED.to_string(), "true".to_string()),
        (labels::ENVIRONMENT.to_string(), environment.to_string()),
        (labels::STACK.to_string(), service.stack.clone()),
        (labels::SERVICE.to_string(), service.name.clone()),
        (labels::INSTANCE.to_string(), instance.to_string()),
        (labels::REVISION.to_string(), service.revision.to_string()),
    ]);
    ContainerSpec {
        name: service.container_name(instance),
        image: service.spec.image.clone(),
        command: service.spec.command.clone(),
        env: service.spec.env.clone(),
        ports: service.spec.ports.clone(),
        labels: all_labels,
    }
}

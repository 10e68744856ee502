//! Rebuilding stacks and services from container labels, for a control plane whose database
//! was lost (Rancher lost names and relations in that case; Corral's engines remember them).
//!
//! When a host that this database has never seen reports managed containers, each container's
//! `io.corral.*` labels name its stack, service, instance and revision, and carry the service's
//! spec. Unknown stacks and services are recreated from them, at the same revision, so the
//! desired spec hashes equal the running containers' and nothing is restarted. For a window
//! after that (`--adoption-window`) the service only collects instances from hosts that re-join;
//! then scale is the highest instance number seen and normal reconciling resumes.

use crate::state::AppState;
use corral_proto::{labels, ObservedSet};
use std::collections::BTreeMap;
use corral_store::containers::Placement;
use corral_store::{container_name, Environment, ServiceSpec, Stack, StoreError};

/// Adopts what `host_id` runs into `env`, containers and balancer instances alike; returns how
/// many instances were adopted.
pub async fn adopt(state: &AppState, env: &Environment, host_id: &str, observed: &ObservedSet) -> Result<usize, StoreError> {
    take_over_label(state, env, observed).await?;
    let until = time::OffsetDateTime::now_utc() + state.config.adoption_window;
    let until = until.format(&time::format_description::well_known::Rfc3339).expect("UTC time formats");
    let mut adopted = 0;
    for (name, found) in instances(observed) {
        let stack = ensure_stack(state, env, &found.stack).await?;
        let service = match state.store.service(&stack, &found.service).await {
            Ok(s) if s.adopting_until.is_some() => s,
            // A service this database already knew is reconciled as usual, not rebuilt.
            Ok(_) => continue,
            Err(StoreError::NotFound(_)) => {
                tracing::info!(stack = %found.stack, service = %found.service, "rebuilding service from container labels");
                match state.store.adopt_service(&stack, &found.service, &found.spec, found.instance, found.revision, &until).await {
                    Ok(s) => s,
                    // Hosts re-join together: another host's session may have just rebuilt it.
                    Err(StoreError::Conflict(m)) => match state.store.service(&stack, &found.service).await {
                        Ok(s) if s.adopting_until.is_some() => s,
                        _ => {
                            tracing::warn!(container = %name, reason = %m, "cannot adopt container");
                            continue;
                        }
                    },
                    Err(e) => return Err(e),
                }
            }
            Err(e) => return Err(e),
        };
        let taken = state.store.container_records(Some(env.id)).await?.into_iter().any(|r| r.service_id == service.id && r.instance == found.instance);
        if taken {
            continue; // another host brought this instance back first; the copy here is surplus
        }
        let place: Placement = (found.instance, host_id.to_string(), name.clone());
        state.store.apply_placement(service.id, &[place], &[]).await?;
        state.store.raise_scale(service.id, found.instance).await?;
        adopted += 1;
    }
    Ok(adopted)
}

/// The `io.corral.environment` label is part of every container's spec hash, and keeps the name
/// an environment was created with (renames leave it alone). A rebuilt database knows the
/// environment under its new name, or under any name the operator chose: while the environment
/// has no services yet, it takes over the label its adopted containers carry, so their specs
/// hash the same and nothing is recreated.
async fn take_over_label(state: &AppState, env: &Environment, observed: &ObservedSet) -> Result<(), StoreError> {
    let Some(label) = instances(observed).into_iter().find_map(|(_, found)| found.environment) else { return Ok(()) };
    let current = state.store.environment_by_id(env.id).await?;
    if label == current.label || !state.store.services(Some(env.id), None).await?.is_empty() {
        return Ok(());
    }
    tracing::info!(environment = %env.name, %label, "environment takes over the label of the containers it adopts");
    state.store.set_environment_label(env.id, &label).await
}

async fn ensure_stack(state: &AppState, env: &Environment, name: &str) -> Result<Stack, StoreError> {
    match state.store.stack(env.id, name).await {
        Err(StoreError::NotFound(_)) => match state.store.create_stack(env.id, name).await {
            Err(StoreError::Conflict(_)) => state.store.stack(env.id, name).await,
            other => other,
        },
        other => other,
    }
}

/// Every labelled instance the host runs, by name: its containers, then the balancer instances
/// its agent still serves (their listeners carry the same labels; one instance may have several).
fn instances(observed: &ObservedSet) -> Vec<(String, Labelled)> {
    let containers = observed.containers.iter().filter_map(|c| Some((c.name.clone(), Labelled::read(&c.name, &c.labels)?)));
    let mut balancers: BTreeMap<String, Labelled> = BTreeMap::new();
    for listener in &observed.load_balancer {
        let Some(found) = Labelled::from_labels(&listener.labels) else { continue };
        balancers.entry(container_name(&found.stack, &found.service, found.instance)).or_insert(found);
    }
    containers.chain(balancers).collect()
}

/// What a container's labels say about where it belongs.
struct Labelled {
    /// The `io.corral.environment` label, when present.
    environment: Option<String>,
    stack: String,
    service: String,
    instance: u32,
    revision: u32,
    spec: ServiceSpec,
}

impl Labelled {
    /// Labels that do not add up to the container's own name are not trusted. A hot spare
    /// renamed into an instance's place says which instance only by its name; a spare still
    /// waiting is no instance at all.
    fn read(name: &str, labels: &BTreeMap<String, String>) -> Option<Labelled> {
        let promoted = labels.get(labels::SPARE).is_some_and(|v| v == "true") && !labels.contains_key(labels::INSTANCE);
        let instance = |stack: &str, service: &str| -> Option<u32> {
            name.strip_prefix(&format!("{stack}-{service}-"))?.parse().ok().filter(|n| *n > 0)
        };
        let found = Self::parse(labels, promoted.then_some(&instance))?;
        (name == container_name(&found.stack, &found.service, found.instance)).then_some(found)
    }

    fn from_labels(labels: &BTreeMap<String, String>) -> Option<Labelled> {
        Self::parse(labels, None)
    }

    /// `instance_from_name` stands in for the instance label when given.
    fn parse(labels: &BTreeMap<String, String>, instance_from_name: Option<&dyn Fn(&str, &str) -> Option<u32>>) -> Option<Labelled> {
        let get = |k: &str| labels.get(k);
        let (stack, service) = (get(labels::STACK)?, get(labels::SERVICE)?);
        let instance = match instance_from_name {
            Some(from_name) => from_name(stack, service)?,
            None => get(labels::INSTANCE)?.parse().ok().filter(|n| *n > 0)?,
        };
        let found = Labelled {
            environment: get(labels::ENVIRONMENT).cloned(),
            stack: stack.clone(),
            service: service.clone(),
            instance,
            revision: get(labels::REVISION)?.parse().ok()?,
            spec: serde_json::from_str(get(labels::SERVICE_SPEC)?).ok()?,
        };
        Some(found)
    }
}

//! Rebuilding stacks and services from container labels, for a control plane whose database
//! was lost (Rancher lost names and relations in that case; Corral's engines remember them).
//!
//! When a host that this database has never seen reports managed containers, each container's
//! `io.corral.*` labels name its stack, service, instance and revision, and carry the service's
//! spec. Unknown stacks and services are recreated from them, at the same revision, so the
//! desired spec hashes equal the running containers' and nothing is restarted. For a window
//! after that (`--adoption-window`) the service only collects instances from hosts that re-join;
//! then scale is the highest instance number seen and normal reconciling resumes.
//!
//! Labels are whatever the host's agent says they are, and a join token is all an agent needs:
//! everything rebuilt from them is checked by the API's own rules first ([`decide`]): names,
//! the spec (`validate::service_spec`), the instance number within the largest scale, and the
//! container name equal to `STACK-SERVICE-N`. A container that fails is not adopted, so it is
//! in no host's desired set, and the agent removes it as it removes any managed container the
//! control plane does not want; the host's problem and the log say what was refused and why.

use crate::state::AppState;
use crate::validate;
use crate::validate::agent::preview;
use corral_proto::{labels, ObservedSet};
use corral_store::containers::Placement;
use corral_store::{container_name, Environment, ServiceSpec, Stack, StoreError};
use std::collections::BTreeMap;

/// Highest spec revision adoption takes; real ones count upgrades, and the loop adds to them.
const MAX_REVISION: u32 = i32::MAX as u32;

/// What became of a host's labelled containers.
#[derive(Debug, Default)]
pub struct Adoption {
    /// Instances adopted.
    pub adopted: usize,
    /// Why each refused container (or balancer instance) was refused, printable.
    pub refused: Vec<String>,
}

/// Adopts what `host_id` runs into `env`, containers and balancer instances alike.
pub async fn adopt(state: &AppState, env: &Environment, host_id: &str, observed: &ObservedSet) -> Result<Adoption, StoreError> {
    let Decision { adopt, mut refused } = decide(observed);
    for reason in &refused {
        tracing::warn!(host_id, %reason, "container not adopted");
    }
    take_over_label(state, env, &adopt).await?;
    let until = time::OffsetDateTime::now_utc() + state.config.adoption_window;
    let until = until.format(&time::format_description::well_known::Rfc3339).expect("UTC time formats");
    let mut adopted = 0;
    for (name, found) in adopt {
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
                            let reason = format!("container {} not adopted: {m}", preview(&name));
                            tracing::warn!(host_id, %reason, "container not adopted");
                            refused.push(reason);
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
        if found.incarnation != 0 {
            // The container's spec hash counts it: without it, the container would be recreated.
            state.store.set_incarnation(service.id, found.instance, found.incarnation).await?;
        }
        state.store.raise_scale(service.id, found.instance).await?;
        adopted += 1;
    }
    Ok(Adoption { adopted, refused })
}

/// The `io.corral.environment` label is part of every container's spec hash, and keeps the name
/// an environment was created with (renames leave it alone). A rebuilt database knows the
/// environment under its new name, or under any name the operator chose: while the environment
/// has no services yet, it takes over the label its adopted containers carry, so their specs
/// hash the same and nothing is recreated.
async fn take_over_label(state: &AppState, env: &Environment, adopt: &[(String, Labelled)]) -> Result<(), StoreError> {
    let Some(label) = adopt.iter().find_map(|(_, found)| found.environment.clone()) else { return Ok(()) };
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

/// What to adopt, by container name, and what to refuse, with why.
#[derive(Default)]
pub struct Decision {
    adopt: Vec<(String, Labelled)>,
    pub refused: Vec<String>,
}

/// Decides, without touching anything, which labelled instances of the host may be adopted:
/// its containers, then the balancer instances its agent still serves (their listeners carry
/// the same labels; one instance may have several).
pub fn decide(observed: &ObservedSet) -> Decision {
    let mut decision = Decision::default();
    let mut judge = |name: String, found: Result<Option<Labelled>, String>| match found.and_then(|f| f.map(|f| f.check().map(|()| f)).transpose()) {
        Ok(Some(found)) => decision.adopt.push((name, found)),
        Ok(None) => {}
        Err(why) => decision.refused.push(format!("container {} not adopted: {why}", preview(&name))),
    };
    for c in &observed.containers {
        judge(c.name.clone(), Labelled::read(&c.name, &c.labels));
    }
    let mut balancers: BTreeMap<String, Result<Option<Labelled>, String>> = BTreeMap::new();
    for listener in observed.load_balancer.iter().filter(|l| !l.labels.is_empty()) {
        let found = Labelled::from_labels(&listener.labels);
        let name = match &found {
            Ok(Some(f)) => container_name(&f.stack, &f.service, f.instance),
            _ => format!("load-balancer listener :{}", listener.port),
        };
        balancers.entry(name).or_insert(found);
    }
    for (name, found) in balancers {
        judge(name, found);
    }
    decision
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
    /// `io.corral.incarnation`: 0 when absent.
    incarnation: u64,
}

impl Labelled {
    /// Labels that do not add up to the container's own name are not trusted. A hot spare
    /// renamed into an instance's place says which instance only by its name; a spare still
    /// waiting is no instance at all (`Ok(None)`).
    fn read(name: &str, labels: &BTreeMap<String, String>) -> Result<Option<Labelled>, String> {
        let spare = labels.get(labels::SPARE).is_some_and(|v| v == "true");
        if spare && !labels.contains_key(labels::INSTANCE) {
            let (Some(stack), Some(service)) = (labels.get(labels::STACK), labels.get(labels::SERVICE)) else {
                return Err("a spare without its stack and service labels".into());
            };
            let Some(number) = name.strip_prefix(&format!("{stack}-{service}-")) else {
                return Err(format!("its name is not {}-N", preview(&format!("{stack}-{service}"))));
            };
            if number == labels::SPARE_SUFFIX {
                return Ok(None);
            }
            return Self::parse(labels, Some(number)).map(Some);
        }
        let found = Self::parse(labels, None)?;
        let expected = container_name(&found.stack, &found.service, found.instance);
        if name != expected {
            return Err(format!("its labels say it is {}", preview(&expected)));
        }
        Ok(Some(found))
    }

    fn from_labels(labels: &BTreeMap<String, String>) -> Result<Option<Labelled>, String> {
        Self::parse(labels, None).map(Some)
    }

    /// `instance_from_name` stands in for the instance label when given.
    fn parse(labels: &BTreeMap<String, String>, instance_from_name: Option<&str>) -> Result<Labelled, String> {
        let get = |k: &str| labels.get(k).ok_or_else(|| format!("it has no {k} label"));
        let number = |what: &str, text: &str| text.parse::<u32>().map_err(|_| format!("its {what} {} is not a number from 0 to {}", preview(text), u32::MAX));
        let instance = number("instance", instance_from_name.map_or_else(|| get(labels::INSTANCE).map(String::as_str), Ok)?)?;
        let spec = serde_json::from_str(get(labels::SERVICE_SPEC)?).map_err(|e| format!("its {} label is not a service spec: {e}", labels::SERVICE_SPEC))?;
        Ok(Labelled {
            environment: labels.get(labels::ENVIRONMENT).cloned(),
            stack: get(labels::STACK)?.clone(),
            service: get(labels::SERVICE)?.clone(),
            instance,
            revision: number("revision", get(labels::REVISION)?)?,
            incarnation: match labels.get(labels::INCARNATION) {
                Some(text) => text.parse().map_err(|_| format!("its incarnation {} is not a whole number", preview(text)))?,
                None => 0,
            },
            spec,
        })
    }

    /// The API's rules, on everything adoption would create.
    fn check(&self) -> Result<(), String> {
        let max_scale = validate::MAX_SCALE as u32;
        if !(1..=max_scale).contains(&self.instance) {
            return Err(format!("instance {} is outside 1-{max_scale}, the instance numbers of a service at the largest scale, {max_scale}", self.instance));
        }
        if !(1..=MAX_REVISION).contains(&self.revision) {
            return Err(format!("revision {} is outside 1-{MAX_REVISION}", self.revision));
        }
        let api = |e: crate::error::ApiError| e.to_string();
        validate::name("stack", "stack", &self.stack).map_err(api)?;
        validate::name("service", "service", &self.service).map_err(api)?;
        if let Some(env) = &self.environment {
            validate::name("environment", "environment", env).map_err(api)?;
        }
        validate::service_spec(&self.spec).map_err(api)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use corral_proto::{ContainerState, ObservedContainer};

    fn spec() -> serde_json::Value {
        serde_json::json!({"kind": "container", "image": "busybox", "command": [], "env": [], "ports": [], "labels": {}, "constraints": [], "reschedule_after_secs": 60})
    }

    fn container(name: &str, stack: &str, instance: &str, spec: serde_json::Value) -> ObservedContainer {
        let labels: BTreeMap<String, String> = [
            (labels::MANAGED, "true".to_string()),
            (labels::ENVIRONMENT, "Default".to_string()),
            (labels::STACK, stack.to_string()),
            (labels::SERVICE, "web".to_string()),
            (labels::INSTANCE, instance.to_string()),
            (labels::REVISION, "3".to_string()),
            (labels::SERVICE_SPEC, spec.to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        ObservedContainer {
            name: name.into(),
            docker_id: "ab".into(),
            image: "busybox".into(),
            state: ContainerState::Running,
            status: "Up".into(),
            ip: None,
            ports: Vec::new(),
            labels,
        }
    }

    #[test]
    fn only_what_the_api_would_accept_is_adopted() {
        let mut bad_image = spec();
        bad_image["image"] = "Not An Image".into();
        let mut spare = container("S-web-spare", "S", "1", spec());
        spare.labels.remove(labels::INSTANCE);
        spare.labels.insert(labels::SPARE.into(), "true".into());
        let mut promoted = spare.clone();
        promoted.name = "S-web-7".into();
        let observed = ObservedSet {
            containers: vec![
                container("S-web-1", "S", "1", spec()),
                spare,
                promoted,
                container("S-web-4294967295", "S", "4294967295", spec()),
                container("S-web-4294967296", "S", "4294967296", spec()),
                container("S-web-1001", "S", "1001", spec()),
                container("T-web-1", "T", "1", bad_image),
                container("U-web-1", "Other", "1", spec()),
                container("\u{1b}[2J-web-1", "\u{1b}[2J", "1", spec()),
            ],
            ..Default::default()
        };
        let decision = decide(&observed);
        let adopted: Vec<(&str, u32, u32)> = decision.adopt.iter().map(|(n, f)| (n.as_str(), f.instance, f.revision)).collect();
        assert_eq!(adopted, [("S-web-1", 1, 3), ("S-web-7", 7, 3)], "a waiting spare is no instance; a promoted one is");
        assert_eq!(decision.refused.len(), 6, "{:#?}", decision.refused);
        assert!(decision.refused[0].contains("S-web-4294967295") && decision.refused[0].contains("1-1000"), "{}", decision.refused[0]);
        assert!(decision.refused.iter().any(|r| r.contains("T-web-1") && r.contains("image")));
        assert!(decision.refused.iter().any(|r| r.contains("U-web-1") && r.contains("Other-web-1")));
        assert!(decision.refused.iter().all(|r| !r.chars().any(char::is_control)), "{:?}", decision.refused);
    }

    #[test]
    fn a_container_made_anew_keeps_its_incarnation() {
        let mut renewed = container("S-web-2", "S", "2", spec());
        renewed.labels.insert(labels::INCARNATION.into(), "1733220000000".into());
        let mut garbled = container("S-web-3", "S", "3", spec());
        garbled.labels.insert(labels::INCARNATION.into(), "soon".into());
        let observed = ObservedSet { containers: vec![container("S-web-1", "S", "1", spec()), renewed, garbled], ..Default::default() };
        let decision = decide(&observed);
        let adopted: Vec<(&str, u64)> = decision.adopt.iter().map(|(n, f)| (n.as_str(), f.incarnation)).collect();
        assert_eq!(adopted, [("S-web-1", 0), ("S-web-2", 1_733_220_000_000)]);
        assert!(decision.refused.len() == 1 && decision.refused[0].contains("incarnation"), "{:?}", decision.refused);
    }

    #[test]
    fn a_container_keeps_its_network_and_a_bad_one_is_refused() {
        let mut host = spec();
        host["network"] = "host".into();
        let mut ported = host.clone();
        ported["ports"] = serde_json::json!([{"host_port": 8080, "container_port": 80, "protocol": "tcp"}]);
        let mut unknown = spec();
        unknown["network"] = "overlay".into();
        let named = |service: &str, spec| {
            let mut c = container(&format!("S-{service}-1"), "S", "1", spec);
            c.labels.insert(labels::SERVICE.into(), service.into());
            c
        };
        let observed =
            ObservedSet { containers: vec![named("web", host), named("db", spec()), named("bad", ported), named("odd", unknown)], ..Default::default() };
        let decision = decide(&observed);
        let adopted: Vec<(&str, &str)> = decision.adopt.iter().map(|(n, f)| (n.as_str(), f.spec.network.as_str())).collect();
        assert_eq!(adopted, [("S-web-1", "host"), ("S-db-1", "managed")], "labels made before network modes mean managed");
        assert_eq!(decision.refused.len(), 2, "{:?}", decision.refused);
        assert!(decision.refused.iter().any(|r| r.contains("S-bad-1") && r.contains("host's own ports")), "{:?}", decision.refused);
        assert!(decision.refused.iter().any(|r| r.contains("S-odd-1") && r.contains("overlay")), "{:?}", decision.refused);
    }
}

//! Restarts asked for through the control plane (`corral container restart`). The desired set
//! carries a restart generation per container; the agent restarts a running container once
//! when it differs from the generation it last applied, and keeps what it applied in
//! `state_dir/restarts.json`, so a restart happens once: not again after a reconnect, a resent
//! set or the agent's own restart, and not lost when the agent was down when it was asked for.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use corral_proto::{ContainerSpec, ContainerState, ObservedContainer};

use crate::converge::Action;
use crate::error::AgentError;
use crate::state::write_atomically;

const FILE: &str = "restarts.json";

/// The restart generation applied to each desired container, by name.
#[derive(Debug, Default)]
pub struct AppliedRestarts {
    /// Where they are kept; `None` keeps them in memory only (tests).
    path: Option<PathBuf>,
    applied: BTreeMap<String, u64>,
}

impl AppliedRestarts {
    /// Loads what was applied before from `state_dir`; a missing or unreadable file starts
    /// afresh (a container first seen is recorded, not restarted).
    pub fn load(state_dir: &Path) -> AppliedRestarts {
        let path = state_dir.join(FILE);
        let applied = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                tracing::warn!(path = %path.display(), error = %e, "ignoring unreadable restart generations");
                BTreeMap::new()
            }),
            Err(_) => BTreeMap::new(),
        };
        AppliedRestarts { path: Some(path), applied }
    }

    /// The restarts the desired set asks for now, given the actions already planned.
    pub fn due(&self, desired: &[ContainerSpec], observed: &[ObservedContainer], planned: &[Action]) -> Vec<Action> {
        due(desired, observed, &self.applied, planned)
    }

    /// Records the pass: every desired container's generation counts as applied, except those
    /// whose restart failed (tried again next pass). Kept on disk when it changed.
    pub fn record(&mut self, desired: &[ContainerSpec], failed: &HashSet<&str>) -> Result<(), AgentError> {
        let next: BTreeMap<String, u64> = desired
            .iter()
            .filter_map(|spec| match failed.contains(spec.name.as_str()) {
                true => self.applied.get(&spec.name).map(|g| (spec.name.clone(), *g)),
                false => Some((spec.name.clone(), spec.restart_generation)),
            })
            .collect();
        if next == self.applied {
            return Ok(());
        }
        self.applied = next;
        let Some(path) = &self.path else { return Ok(()) };
        let dir = path.parent().unwrap_or(Path::new("."));
        let bytes = serde_json::to_vec(&self.applied).expect("generations always serialize");
        write_atomically(path, &bytes).map_err(|e| AgentError::state_dir(dir, &e))
    }
}

/// Restarts due: a desired, running container whose generation differs from the one applied,
/// that the plan does not already create, recreate, start or stop. A container never seen
/// before (no generation applied) is recorded, not restarted: it was just made, or the agent
/// kept no record of it.
pub fn due(desired: &[ContainerSpec], observed: &[ObservedContainer], applied: &BTreeMap<String, u64>, planned: &[Action]) -> Vec<Action> {
    let busy: HashSet<&str> = planned.iter().map(Action::name).collect();
    desired
        .iter()
        .filter(|spec| !spec.stopped && !busy.contains(spec.name.as_str()))
        .filter(|spec| applied.get(&spec.name).is_some_and(|g| *g != spec.restart_generation))
        .filter_map(|spec| {
            let c = observed.iter().find(|c| c.name == spec.name && c.state == ContainerState::Running)?;
            Some(Action::Restart { id: c.docker_id.clone(), name: spec.name.clone() })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str, generation: u64) -> ContainerSpec {
        ContainerSpec { name: name.into(), image: "busybox".into(), restart_generation: generation, ..Default::default() }
    }

    fn seen(name: &str, state: ContainerState) -> ObservedContainer {
        ObservedContainer {
            name: name.into(),
            docker_id: format!("id-{name}"),
            image: "busybox".into(),
            state,
            status: String::new(),
            ip: None,
            ports: vec![],
            labels: Default::default(),
        }
    }

    #[test]
    fn a_new_generation_restarts_a_running_container_once() {
        let mut applied = AppliedRestarts::default();
        let observed = [seen("a", ContainerState::Running), seen("b", ContainerState::Running)];
        // First seen: recorded, not restarted.
        let desired = [spec("a", 5), spec("b", 0)];
        assert_eq!(applied.due(&desired, &observed, &[]), vec![]);
        applied.record(&desired, &HashSet::new()).unwrap();
        // A restart of b is asked for.
        let desired = [spec("a", 5), spec("b", 9)];
        assert_eq!(applied.due(&desired, &observed, &[]), vec![Action::Restart { id: "id-b".into(), name: "b".into() }]);
        applied.record(&desired, &HashSet::new()).unwrap();
        assert_eq!(applied.due(&desired, &observed, &[]), vec![], "the same set again restarts nothing");
    }

    #[test]
    fn a_failed_restart_is_tried_again() {
        let mut applied = AppliedRestarts::default();
        let observed = [seen("a", ContainerState::Running)];
        applied.record(&[spec("a", 1)], &HashSet::new()).unwrap();
        let desired = [spec("a", 2)];
        assert_eq!(applied.due(&desired, &observed, &[]).len(), 1);
        applied.record(&desired, &HashSet::from(["a"])).unwrap();
        assert_eq!(applied.due(&desired, &observed, &[]).len(), 1, "still due after a failure");
    }

    #[test]
    fn stopped_busy_or_not_running_containers_are_not_restarted() {
        let applied = BTreeMap::from([("a".to_string(), 1), ("b".to_string(), 1), ("c".to_string(), 1)]);
        let stopped = ContainerSpec { stopped: true, ..spec("a", 2) };
        let desired = [stopped, spec("b", 2), spec("c", 2)];
        let observed = [seen("a", ContainerState::Running), seen("b", ContainerState::Running), seen("c", ContainerState::Exited)];
        let planned = [Action::Recreate { id: "id-b".into(), spec: spec("b", 2) }];
        assert_eq!(due(&desired, &observed, &applied, &planned), vec![]);
    }

    #[test]
    fn generations_are_kept_in_the_state_dir() {
        let dir = tempfile::tempdir().unwrap();
        let mut applied = AppliedRestarts::load(dir.path());
        applied.record(&[spec("a", 3)], &HashSet::new()).unwrap();
        let again = AppliedRestarts::load(dir.path());
        assert_eq!(again.due(&[spec("a", 4)], &[seen("a", ContainerState::Running)], &[]).len(), 1, "a restart asked while the agent was down");
        assert_eq!(again.due(&[spec("a", 3)], &[seen("a", ContainerState::Running)], &[]), vec![], "an agent restart restarts nothing");
    }
}

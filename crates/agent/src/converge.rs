//! The pure half of convergence: given the desired specs and what the engine reports, decide what
//! to do. No I/O here, so every case is unit-tested without Docker; `reconciler` carries it out.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use corral_proto::{labels, ContainerSpec, ContainerState, ObservedContainer, PullPolicy};

use crate::pull::{PullState, PullStatus};

/// One step towards the desired set.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// No container has this name: create and start it.
    Create { spec: ContainerSpec },
    /// A container has the name but was made from another spec (or is dead): replace it.
    Recreate { id: String, spec: ContainerSpec },
    /// The container matches but is stopped.
    Start { id: String, name: String },
    /// The container matches but its service is stopped.
    Stop { id: String, name: String },
    /// No container has this name, but a running hot spare of the same service does: rename
    /// it into place (milliseconds, where create and start take the engine hundreds), then
    /// create a new spare under the spare's name.
    Promote { id: String, spec: ContainerSpec, refill: ContainerSpec },
    /// A managed container that is not in the desired set.
    Remove { id: String, name: String },
    /// A restart was asked for through the control plane (see [`crate::restarts`]).
    Restart { id: String, name: String },
}

impl Action {
    /// The spec whose image must be on the host before this action can run. A promotion
    /// needs none: its spare runs the image, and its refill is that spare's twin.
    pub fn needs_image(&self) -> Option<&ContainerSpec> {
        match self {
            Action::Create { spec } | Action::Recreate { spec, .. } => Some(spec),
            _ => None,
        }
    }

    pub fn name(&self) -> &str {
        match self {
            Action::Create { spec } | Action::Recreate { spec, .. } | Action::Promote { spec, .. } => &spec.name,
            Action::Start { name, .. } | Action::Stop { name, .. } | Action::Remove { name, .. } | Action::Restart { name, .. } => name,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    /// Removals first, so names and host ports are free before anything is created.
    pub actions: Vec<Action>,
    /// Some starts were held back by the crash-loop backoff; converge again after this long.
    pub retry_in: Option<Duration>,
}

/// The hash a container was created from, as recorded in its labels.
pub fn observed_hash(c: &ObservedContainer) -> Option<&str> {
    c.labels.get(labels::SPEC_HASH).map(String::as_str)
}

/// Computes the actions that bring `observed` to `desired`. Only managed containers may be
/// passed in `observed`: anything listed here that is not desired gets removed.
pub fn plan(desired: &[ContainerSpec], observed: &[ObservedContainer], restarts: &RestartBackoff, now: Instant) -> Plan {
    let mut wanted: BTreeMap<&str, &ContainerSpec> = BTreeMap::new();
    for spec in desired {
        // A duplicate name cannot exist twice on one engine; the first spec wins.
        wanted.entry(spec.name.as_str()).or_insert(spec);
    }

    let mut removes = Vec::new();
    let mut recreates = Vec::new();
    let mut starts = Vec::new();
    let mut stops = Vec::new();
    let mut retry_in: Option<Duration> = None;
    let mut seen = HashSet::new();

    for c in observed {
        // The engine is already deleting it; its `destroy` event will trigger the next pass.
        if c.state == ContainerState::Removing {
            seen.insert(c.name.as_str());
            continue;
        }
        let Some(spec) = wanted.get(c.name.as_str()) else {
            removes.push(Action::Remove { id: c.docker_id.clone(), name: c.name.clone() });
            continue;
        };
        seen.insert(c.name.as_str());
        let hash = spec.spec_hash();
        let matches = observed_hash(c) == Some(hash.as_str()) || is_promoted_spare_of(c, spec);
        if !matches || c.state == ContainerState::Dead {
            recreates.push(Action::Recreate { id: c.docker_id.clone(), spec: (*spec).clone() });
            continue;
        }
        if spec.stopped {
            if matches!(c.state, ContainerState::Running | ContainerState::Restarting) {
                stops.push(Action::Stop { id: c.docker_id.clone(), name: c.name.clone() });
            }
            continue;
        }
        match c.state {
            ContainerState::Created | ContainerState::Exited => match restarts.wait_before_start(&c.name, now) {
                None => starts.push(Action::Start { id: c.docker_id.clone(), name: c.name.clone() }),
                Some(wait) => retry_in = Some(retry_in.map_or(wait, |r| r.min(wait))),
            },
            // Paused is an operator's deliberate act (and the engine refuses to start a paused
            // container); Unknown covers transient states such as `stopping`, which the next
            // event settles.
            _ => {}
        }
    }

    // Running spares, by template, that can stand in for a missing instance right away.
    let mut spares: Vec<(&ObservedContainer, &ContainerSpec)> = observed
        .iter()
        .filter(|c| c.state == ContainerState::Running)
        .filter_map(|c| wanted.get(c.name.as_str()).filter(|spec| spec.is_spare()).map(|spec| (c, *spec)))
        .filter(|(c, spec)| observed_hash(c) == Some(spec.spec_hash().as_str()))
        .collect();
    let mut promotes = Vec::new();
    let mut creates = Vec::new();
    for (_, spec) in wanted.iter().filter(|(name, _)| !seen.contains(*name)) {
        let template = spec.template_hash();
        let spare = (!spec.is_spare()).then(|| spares.iter().position(|(c, _)| c.labels.get(labels::TEMPLATE_HASH) == Some(&template))).flatten();
        match spare {
            Some(i) => {
                let (c, spare_spec) = spares.swap_remove(i);
                promotes.push(Action::Promote { id: c.docker_id.clone(), spec: (*spec).clone(), refill: spare_spec.clone() });
            }
            None => creates.push(Action::Create { spec: (*spec).clone() }),
        }
    }

    let mut actions = removes;
    actions.extend(promotes);
    actions.extend(recreates);
    actions.extend(creates);
    actions.extend(starts);
    actions.extend(stops);
    Plan { actions, retry_in }
}

/// What to do about an action that needs an image, by the service's pull policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageGate {
    /// The image is there: go ahead.
    Go,
    /// Start a pull, and wait for it.
    Pull,
    /// Wait: a pull runs, or failed and may be tried again at `retry_at`.
    Wait { retry_at: Option<Instant> },
    /// The image is not on the host and the policy is `never`.
    Missing,
}

/// Decides whether a container can be created from its image now. `present`: the engine has
/// the image; `pull`: where the image's last pull stands; `wanted_since`: when the container
/// first waited for its image (under `always`, only a pull started since then counts, so
/// containers created together share one pull and a later one pulls again).
pub fn image_gate(policy: PullPolicy, present: bool, pull: Option<&PullStatus>, wanted_since: Instant, now: Instant) -> ImageGate {
    let pull_unless_failed_recently = |pull: Option<&PullStatus>| match pull {
        Some(PullStatus { state: PullState::Running { .. }, .. }) => ImageGate::Wait { retry_at: None },
        Some(s @ PullStatus { state: PullState::Failed { .. }, .. }) => match s.retry_at() {
            Some(at) if at > now => ImageGate::Wait { retry_at: Some(at) },
            _ => ImageGate::Pull,
        },
        _ => ImageGate::Pull,
    };
    match policy {
        PullPolicy::Never if present => ImageGate::Go,
        PullPolicy::Never => ImageGate::Missing,
        PullPolicy::Missing if present => ImageGate::Go,
        PullPolicy::Missing => pull_unless_failed_recently(pull),
        PullPolicy::Always => match pull {
            Some(s) if s.started >= wanted_since && s.state == PullState::Done && present => ImageGate::Go,
            Some(s) if s.started >= wanted_since => pull_unless_failed_recently(Some(s)),
            // An older pull still running: let it end, then pull again.
            Some(PullStatus { state: PullState::Running { .. }, .. }) => ImageGate::Wait { retry_at: None },
            _ => ImageGate::Pull,
        },
    }
}

/// A spare renamed into an instance's place: it was made from the same template.
fn is_promoted_spare_of(c: &ObservedContainer, spec: &ContainerSpec) -> bool {
    !spec.is_spare() && c.labels.get(labels::SPARE).is_some_and(|v| v == "true") && c.labels.get(labels::TEMPLATE_HASH) == Some(&spec.template_hash())
}

/// Per-container restart backoff, so a container that keeps dying is not restarted in a hot loop:
/// after each start the next one is held back 1 s, 2 s, 4 s, … up to 30 s. A container seen
/// running for [`RestartBackoff::STABLE`] after its last start is forgiven.
#[derive(Debug, Default)]
pub struct RestartBackoff {
    entries: HashMap<String, Entry>,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    starts: u32,
    last_start: Instant,
}

impl RestartBackoff {
    pub const FIRST: Duration = Duration::from_secs(1);
    pub const CAP: Duration = Duration::from_secs(30);
    pub const STABLE: Duration = Duration::from_secs(10);

    /// `None` if `name` may be started now, else how long to wait.
    pub fn wait_before_start(&self, name: &str, now: Instant) -> Option<Duration> {
        let e = self.entries.get(name)?;
        let allowed_at = e.last_start + Self::delay_after(e.starts);
        (allowed_at > now).then(|| allowed_at - now)
    }

    /// The hold-off after the `starts`-th start: 1 s after the first, doubling, capped.
    pub fn delay_after(starts: u32) -> Duration {
        if starts == 0 {
            return Duration::ZERO;
        }
        let factor = 1u32.checked_shl(starts - 1).unwrap_or(u32::MAX);
        Self::FIRST.saturating_mul(factor).min(Self::CAP)
    }

    /// Books an action about to be carried out: a (re)created container starts its restart
    /// history afresh, a started one counts a start, a removed one is forgotten.
    pub fn account(&mut self, action: &Action, now: Instant) {
        match action {
            Action::Create { spec } | Action::Recreate { spec, .. } => {
                self.forget(&spec.name);
                self.record_start(&spec.name, now);
            }
            Action::Promote { spec, refill, .. } => {
                for name in [&spec.name, &refill.name] {
                    self.forget(name);
                    self.record_start(name, now);
                }
            }
            Action::Start { name, .. } => self.record_start(name, now),
            // Asked for by a person: a fresh start, not a crash to hold back.
            Action::Restart { name, .. } => {
                self.forget(name);
                self.record_start(name, now);
            }
            Action::Stop { name, .. } | Action::Remove { name, .. } => self.forget(name),
        }
    }

    pub fn record_start(&mut self, name: &str, now: Instant) {
        let e = self.entries.entry(name.to_string()).or_insert(Entry { starts: 0, last_start: now });
        e.starts = e.starts.saturating_add(1);
        e.last_start = now;
    }

    /// A fresh container (new spec, or gone from the desired set) starts with a clean record.
    pub fn forget(&mut self, name: &str) {
        self.entries.remove(name);
    }

    /// Feeds what the engine reports: containers that stayed up are forgiven, and records of
    /// containers that no longer exist are dropped.
    pub fn observe(&mut self, observed: &[ObservedContainer], now: Instant) {
        let present: HashMap<&str, ContainerState> = observed.iter().map(|c| (c.name.as_str(), c.state)).collect();
        self.entries.retain(|name, e| match present.get(name.as_str()) {
            None => false,
            Some(ContainerState::Running) => now.duration_since(e.last_start) < Self::STABLE,
            Some(_) => true,
        });
    }

    pub fn starts(&self, name: &str) -> u32 {
        self.entries.get(name).map_or(0, |e| e.starts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str) -> ContainerSpec {
        ContainerSpec { name: name.into(), image: "corral-test/busybox:latest".into(), command: vec!["sleep".into(), "3600".into()], ..Default::default() }
    }

    fn running(spec: &ContainerSpec, id: &str) -> ObservedContainer {
        in_state(spec, id, ContainerState::Running)
    }

    fn in_state(spec: &ContainerSpec, id: &str, state: ContainerState) -> ObservedContainer {
        let mut labels = spec.labels.clone();
        labels.insert(labels::MANAGED.into(), "true".into());
        labels.insert(labels::SPEC_HASH.into(), spec.spec_hash());
        ObservedContainer {
            name: spec.name.clone(),
            docker_id: id.into(),
            image: spec.image.clone(),
            state,
            status: String::new(),
            ip: None,
            ports: vec![],
            labels,
        }
    }

    fn plan_now(desired: &[ContainerSpec], observed: &[ObservedContainer]) -> Plan {
        plan(desired, observed, &RestartBackoff::default(), Instant::now())
    }

    #[test]
    fn nothing_observed_creates_everything() {
        let desired = [spec("a"), spec("b")];
        let p = plan_now(&desired, &[]);
        assert_eq!(p.actions, vec![Action::Create { spec: spec("a") }, Action::Create { spec: spec("b") }]);
        assert_eq!(p.retry_in, None);
    }

    #[test]
    fn matching_running_containers_are_kept() {
        let desired = [spec("a"), spec("b")];
        let observed = [running(&desired[0], "1"), running(&desired[1], "2")];
        assert_eq!(plan_now(&desired, &observed), Plan::default());
    }

    #[test]
    fn restarting_and_paused_containers_are_left_alone() {
        let desired = [spec("a"), spec("b")];
        let observed = [in_state(&desired[0], "1", ContainerState::Restarting), in_state(&desired[1], "2", ContainerState::Paused)];
        assert_eq!(plan_now(&desired, &observed).actions, vec![]);
    }

    #[test]
    fn stopped_service_stops_running_containers_and_never_recreates_them() {
        let running_spec = spec("a");
        let mut stopped = running_spec.clone();
        stopped.stopped = true;
        let exited_spec = {
            let mut b = spec("b");
            b.stopped = true;
            b
        };
        let observed = [running(&running_spec, "1"), in_state(&exited_spec, "2", ContainerState::Exited)];
        let p = plan_now(&[stopped.clone(), exited_spec.clone()], &observed);
        assert_eq!(p.actions, vec![Action::Stop { id: "1".into(), name: "a".into() }]);
        // Starting again is a plain start, not a recreate: the hash ignores `stopped`.
        let p = plan_now(&[spec("b")], &[in_state(&exited_spec, "2", ContainerState::Exited)]);
        assert_eq!(p.actions, vec![Action::Start { id: "2".into(), name: "b".into() }]);
    }

    fn spare_of(instance: &ContainerSpec) -> ContainerSpec {
        let mut spare = instance.clone();
        spare.name = "web-spare".into();
        spare.labels.remove(labels::INSTANCE);
        spare.labels.insert(labels::SPARE.into(), "true".into());
        spare
    }

    /// What the engine reports for a container created from `spec` (labels as the agent sets them).
    fn created(spec: &ContainerSpec, id: &str, state: ContainerState) -> ObservedContainer {
        let mut c = in_state(spec, id, state);
        c.labels.insert(labels::TEMPLATE_HASH.into(), spec.template_hash());
        c
    }

    #[test]
    fn a_missing_instance_is_replaced_by_renaming_a_running_spare() {
        let one = spec("web-1");
        let spare = spare_of(&one);
        let p = plan_now(&[one.clone(), spare.clone()], &[created(&spare, "s", ContainerState::Running)]);
        assert_eq!(p.actions, vec![Action::Promote { id: "s".into(), spec: one.clone(), refill: spare.clone() }]);

        // Once renamed, the spare is that instance: kept, not recreated.
        let mut promoted = created(&spare, "s", ContainerState::Running);
        promoted.name = "web-1".into();
        let p = plan_now(&[one.clone(), spare.clone()], &[promoted, created(&spare, "s2", ContainerState::Running)]);
        assert_eq!(p.actions, vec![]);

        // A spare that is not running, or made from another spec, is no stand-in.
        let p = plan_now(&[one.clone(), spare.clone()], &[created(&spare, "s", ContainerState::Exited)]);
        assert!(matches!(p.actions[0], Action::Create { ref spec } if spec.name == "web-1"), "{:?}", p.actions);
        let mut other = spare.clone();
        other.env.push("V=2".into());
        let p = plan_now(&[one.clone(), spare.clone()], &[created(&other, "s", ContainerState::Running)]);
        assert!(p.actions.iter().any(|a| matches!(a, Action::Create { spec } if spec.name == "web-1")), "{:?}", p.actions);
    }

    #[test]
    fn changed_spec_is_recreated() {
        let old = spec("a");
        let mut new = old.clone();
        new.env = vec!["X=1".into()];
        let p = plan_now(std::slice::from_ref(&new), &[running(&old, "1")]);
        assert_eq!(p.actions, vec![Action::Recreate { id: "1".into(), spec: new }]);
    }

    #[test]
    fn container_without_hash_label_is_recreated() {
        let s = spec("a");
        let mut c = running(&s, "1");
        c.labels.remove(labels::SPEC_HASH);
        assert_eq!(plan_now(std::slice::from_ref(&s), &[c]).actions, vec![Action::Recreate { id: "1".into(), spec: s }]);
    }

    #[test]
    fn dead_container_is_recreated() {
        let s = spec("a");
        let c = in_state(&s, "1", ContainerState::Dead);
        assert_eq!(plan_now(std::slice::from_ref(&s), &[c]).actions, vec![Action::Recreate { id: "1".into(), spec: s }]);
    }

    #[test]
    fn stopped_containers_are_started() {
        let desired = [spec("a"), spec("b")];
        let observed = [in_state(&desired[0], "1", ContainerState::Exited), in_state(&desired[1], "2", ContainerState::Created)];
        assert_eq!(
            plan_now(&desired, &observed).actions,
            vec![Action::Start { id: "1".into(), name: "a".into() }, Action::Start { id: "2".into(), name: "b".into() }]
        );
    }

    #[test]
    fn undesired_containers_are_removed_first() {
        let desired = [spec("new")];
        let observed = [running(&spec("old"), "9")];
        assert_eq!(plan_now(&desired, &observed).actions, vec![Action::Remove { id: "9".into(), name: "old".into() }, Action::Create { spec: spec("new") }]);
    }

    #[test]
    fn empty_desired_set_removes_every_managed_container() {
        let observed = [running(&spec("a"), "1"), in_state(&spec("b"), "2", ContainerState::Exited)];
        assert_eq!(
            plan_now(&[], &observed).actions,
            vec![Action::Remove { id: "1".into(), name: "a".into() }, Action::Remove { id: "2".into(), name: "b".into() }]
        );
    }

    #[test]
    fn containers_being_removed_are_waited_for() {
        let s = spec("a");
        let observed = [in_state(&s, "1", ContainerState::Removing), in_state(&spec("z"), "2", ContainerState::Removing)];
        assert_eq!(plan_now(&[s], &observed).actions, vec![]);
    }

    #[test]
    fn duplicate_desired_names_create_one_container() {
        let mut second = spec("a");
        second.image = "other".into();
        let p = plan_now(&[spec("a"), second], &[]);
        assert_eq!(p.actions, vec![Action::Create { spec: spec("a") }]);
    }

    #[test]
    fn mixed_case_orders_remove_recreate_create_start() {
        let keep = spec("keep");
        let stopped = spec("stopped");
        let old_changed = spec("changed");
        let mut changed = old_changed.clone();
        changed.command = vec!["sleep".into(), "1".into()];
        let missing = spec("missing");
        let desired = [keep.clone(), stopped.clone(), changed.clone(), missing.clone()];
        let observed = [running(&keep, "k"), in_state(&stopped, "s", ContainerState::Exited), running(&old_changed, "c"), running(&spec("stray"), "x")];
        let p = plan_now(&desired, &observed);
        assert_eq!(
            p.actions,
            vec![
                Action::Remove { id: "x".into(), name: "stray".into() },
                Action::Recreate { id: "c".into(), spec: changed },
                Action::Create { spec: missing },
                Action::Start { id: "s".into(), name: "stopped".into() },
            ]
        );
        let replanned = plan_now(&desired, &[running(&keep, "k"), running(&stopped, "s"), running(&desired[2], "c2"), running(&desired[3], "m")]);
        assert_eq!(replanned, Plan::default(), "a converged host plans nothing");
    }

    #[test]
    fn images_are_pulled_by_policy() {
        use ImageGate::*;
        let t0 = Instant::now();
        let later = t0 + Duration::from_secs(1);
        let status = |started: Instant, state: PullState| PullStatus { started, state };
        let running = status(t0, PullState::Running { percent: 40 });
        let done = status(t0, PullState::Done);
        let failed = status(t0, PullState::Failed { failure: corral_proto::PullFailure::NotFound, message: "m".into(), at: t0, failures: 1 });

        assert_eq!(image_gate(PullPolicy::Never, true, None, t0, t0), Go);
        assert_eq!(image_gate(PullPolicy::Never, false, Some(&done), t0, t0), Missing, "never means never pulled");

        assert_eq!(image_gate(PullPolicy::Missing, true, None, t0, t0), Go);
        assert_eq!(image_gate(PullPolicy::Missing, false, None, t0, t0), Pull);
        assert_eq!(image_gate(PullPolicy::Missing, false, Some(&running), t0, t0), Wait { retry_at: None }, "one pull per image");
        let retry_at = t0 + crate::pull::RETRY_FIRST;
        assert_eq!(image_gate(PullPolicy::Missing, false, Some(&failed), t0, later), Wait { retry_at: Some(retry_at) });
        assert_eq!(image_gate(PullPolicy::Missing, false, Some(&failed), t0, retry_at), Pull, "tried again after the back-off");

        // Always: a pull started before the container was wanted does not count.
        assert_eq!(image_gate(PullPolicy::Always, true, Some(&done), later, later), Pull);
        assert_eq!(image_gate(PullPolicy::Always, true, Some(&running), later, later), Wait { retry_at: None });
        assert_eq!(image_gate(PullPolicy::Always, true, Some(&done), t0, later), Go, "containers wanted together share the pull");
        assert_eq!(image_gate(PullPolicy::Always, true, Some(&failed), t0, later), Wait { retry_at: Some(retry_at) }, "a failed pull is not bypassed");
    }

    #[test]
    fn restart_backoff_doubles_and_caps() {
        let delays: Vec<u64> = (0..8).map(|n| RestartBackoff::delay_after(n).as_secs()).collect();
        assert_eq!(delays, vec![0, 1, 2, 4, 8, 16, 30, 30]);
        assert_eq!(RestartBackoff::delay_after(u32::MAX), RestartBackoff::CAP);
    }

    #[test]
    fn crash_looping_container_is_not_restarted_in_a_hot_loop() {
        let s = spec("a");
        let exited = [in_state(&s, "1", ContainerState::Exited)];
        let mut backoff = RestartBackoff::default();
        let t0 = Instant::now();

        // First restart is immediate.
        let p = plan(std::slice::from_ref(&s), &exited, &backoff, t0);
        assert_eq!(p.actions, vec![Action::Start { id: "1".into(), name: "a".into() }]);
        backoff.record_start("a", t0);

        // It died again at once: held back for 1 s, and the plan says when to come back.
        let t = t0 + Duration::from_millis(100);
        let p = plan(std::slice::from_ref(&s), &exited, &backoff, t);
        assert_eq!(p.actions, vec![]);
        assert_eq!(p.retry_in, Some(Duration::from_millis(900)));

        let t1 = t0 + Duration::from_secs(1);
        let p = plan(std::slice::from_ref(&s), &exited, &backoff, t1);
        assert_eq!(p.actions.len(), 1);
        backoff.record_start("a", t1);

        // Second failure: 2 s.
        let p = plan(std::slice::from_ref(&s), &exited, &backoff, t1 + Duration::from_millis(1500));
        assert_eq!(p.actions, vec![]);
        assert_eq!(p.retry_in, Some(Duration::from_millis(500)));

        // Many failures later the hold-off is capped at 30 s.
        for _ in 0..20 {
            backoff.record_start("a", t1);
        }
        assert_eq!(backoff.wait_before_start("a", t1), Some(RestartBackoff::CAP));
    }

    #[test]
    fn backoff_of_one_container_does_not_hold_back_others() {
        let (a, b) = (spec("a"), spec("b"));
        let observed = [in_state(&a, "1", ContainerState::Exited), in_state(&b, "2", ContainerState::Exited)];
        let mut backoff = RestartBackoff::default();
        let now = Instant::now();
        backoff.record_start("a", now);
        let p = plan(&[a, b], &observed, &backoff, now);
        assert_eq!(p.actions, vec![Action::Start { id: "2".into(), name: "b".into() }]);
        assert_eq!(p.retry_in, Some(Duration::from_secs(1)));
    }

    #[test]
    fn stable_containers_are_forgiven_and_vanished_ones_forgotten() {
        let (a, b, c) = (spec("a"), spec("b"), spec("c"));
        let mut backoff = RestartBackoff::default();
        let t0 = Instant::now();
        for name in ["a", "b", "c"] {
            backoff.record_start(name, t0);
            backoff.record_start(name, t0);
        }
        // Shortly after the start nobody is forgiven yet.
        backoff.observe(&[running(&a, "1"), running(&b, "2")], t0 + Duration::from_secs(1));
        assert_eq!(backoff.starts("a"), 2);
        assert_eq!(backoff.starts("c"), 0, "c is gone from the engine");

        let later = t0 + RestartBackoff::STABLE;
        backoff.observe(&[running(&a, "1"), in_state(&b, "2", ContainerState::Exited), in_state(&c, "3", ContainerState::Exited)], later);
        assert_eq!(backoff.starts("a"), 0, "a stayed up: forgiven");
        assert_eq!(backoff.starts("b"), 2, "b is down: still backing off");

        backoff.forget("b");
        assert_eq!(backoff.wait_before_start("b", later), None);
    }
}

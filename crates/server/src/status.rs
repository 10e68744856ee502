//! What users see of containers and services: one state word each, with the reason that matters
//! most, from where instances are placed, what the engines report, what agents say about the
//! containers they could not run, and whether each host is heard from. Pure: the API handlers
//! gather the facts and call these.

use corral_proto::{ContainerIssue, ContainerState, ImageState, IssueKind};
use corral_store::{HostState, ObservedRecord};
use serde::Serialize;

/// How a container's host stands, as the control plane knows it right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostLink {
    /// Connected and heard from lately.
    Up,
    /// Connected, but its agent has been silent for longer than a heartbeat and a half: the host
    /// may be gone. Nothing is moved for this, it is only shown.
    Silent,
    Disconnected,
}

impl HostLink {
    pub fn of(state: HostState, responding: bool) -> HostLink {
        match (state, responding) {
            (HostState::Disconnected, _) => HostLink::Disconnected,
            (HostState::Active, true) => HostLink::Up,
            (HostState::Active, false) => HostLink::Silent,
        }
    }
}

/// One container as lists show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ContainerView {
    /// The engine's state word; `pending` before the host has reported the container,
    /// `pulling` while its image is on its way, `failed` when it could not be created.
    pub state: String,
    /// Why it is not simply running, in words a user can act on.
    pub reason: Option<String>,
    /// Percent of its image pulled, while it waits for it.
    pub progress: Option<u8>,
    /// The reason is a failure (shown red), not something under way.
    pub failing: bool,
    /// The last lines it printed before it exited, when that is the reason.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub log: Vec<String>,
    /// The image it waits for, while it is pulled.
    #[serde(skip)]
    pub pulling: Option<String>,
}

/// The state of one placed container.
pub fn container_view(host: HostLink, seen: Option<&ObservedRecord>, issue: Option<&ContainerIssue>) -> ContainerView {
    let engine_state = seen.map(|o| o.state.to_string());
    let mut view = ContainerView {
        state: engine_state.clone().unwrap_or_else(|| "pending".into()),
        reason: None,
        progress: None,
        failing: false,
        log: Vec::new(),
        pulling: None,
    };
    match host {
        HostLink::Disconnected => {
            view.reason = Some("host disconnected; last reported state shown".into());
            view.failing = true;
            return view;
        }
        HostLink::Silent => {
            view.reason = Some("host not responding (its agent has been silent for over a heartbeat); last reported state shown".into());
            view.failing = true;
            return view;
        }
        HostLink::Up => {}
    }
    if let Some(issue) = issue {
        view.reason = Some(issue.message.clone());
        match &issue.kind {
            IssueKind::Pulling { percent, image } => {
                view.progress = Some(*percent);
                view.pulling = Some(image.clone());
                view.state = engine_state.unwrap_or_else(|| "pulling".into());
            }
            IssueKind::Exited { log, .. } | IssueKind::CrashLooping { log, .. } => {
                view.failing = true;
                view.log = log.clone();
            }
            _ => {
                view.failing = true;
                view.state = engine_state.unwrap_or_else(|| "failed".into());
            }
        }
        return view;
    }
    // An agent that says nothing of a stopped container (an older one): the engine's words.
    if let Some(o) = seen.filter(|o| matches!(o.state, ContainerState::Exited | ContainerState::Restarting | ContainerState::Dead)) {
        view.reason = exit_reason(&o.status);
        view.failing = view.reason.is_some();
    }
    view
}

/// `exited 137` from the engine's words: `Exited (137) 2 seconds ago`, `Restarting (1) …`.
fn exit_reason(status: &str) -> Option<String> {
    let code = status.split_once('(')?.1.split_once(')')?.0;
    code.parse::<i32>().ok().map(|code| format!("exited with code {code}"))
}

/// A host pulling a service's image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PullView {
    pub host: String,
    pub image: String,
    pub percent: u8,
}

/// A service as lists show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServiceView {
    /// `active` (every instance runs), `starting`, `pulling`, `degraded` (some run, some fail or
    /// cannot be placed, or an upgrade is stopped), `failing` (none runs, and why is known), or
    /// `stopped` (stopped, or scaled to 0).
    pub status: &'static str,
    /// The reason that matters most, e.g. `h1: cannot pull app:2: image not found (…)`.
    pub reason: Option<String>,
    /// Instances running on hosts that are heard from, and not failing.
    pub running: usize,
    /// Instances with a failure reason.
    pub failing: usize,
    /// Hosts pulling the service's image, with how far each is.
    pub pulls: Vec<PullView>,
}

/// An upgrade under way: the revision rolled out and, per host (by name), how its new image
/// stands there: `(host, image, state)`.
pub type UpgradePulls<'a> = (u32, Vec<(&'a str, &'a str, ImageState)>);

/// Everything a service's state is made from.
pub struct ServiceFacts<'a> {
    pub stopped: bool,
    pub scale: usize,
    /// Each placed instance: its host's name and its view.
    pub containers: &'a [(&'a str, ContainerView)],
    /// Why instances could not be placed.
    pub unplaced: &'a [String],
    pub upgrade: Option<UpgradePulls<'a>>,
}

/// One state per service, with counts and the top reason.
pub fn service_view(f: &ServiceFacts<'_>) -> ServiceView {
    let running = f.containers.iter().filter(|(_, c)| c.state == "running" && !c.failing).count();
    let failing: Vec<&(&str, ContainerView)> = f.containers.iter().filter(|(_, c)| c.failing).collect();
    let mut pulls: Vec<PullView> = Vec::new();
    let mut add_pull = |host: &str, image: &str, percent: u8| {
        if !pulls.iter().any(|p| p.host == host && p.image == image) {
            pulls.push(PullView { host: host.to_string(), image: image.to_string(), percent });
        }
    };
    for (host, c) in f.containers {
        if let (Some(percent), Some(image)) = (c.progress, &c.pulling) {
            add_pull(host, image, percent);
        }
    }
    let mut blocked = None;
    if let Some((revision, hosts)) = &f.upgrade {
        for (host, image, state) in hosts {
            match state {
                ImageState::Pulling { percent } => add_pull(host, image, *percent),
                ImageState::Failed { failure, message } => {
                    blocked.get_or_insert_with(|| {
                        format!("upgrade to revision {revision} stopped, old containers kept: {host}: cannot pull {image}: {} ({message})", failure.describe())
                    });
                }
                ImageState::Missing => {
                    blocked.get_or_insert_with(|| format!("upgrade to revision {revision} stopped, old containers kept: {host}: image {image} is not on the host and the pull policy is never"));
                }
                ImageState::Present | ImageState::Unknown => {}
            }
        }
    }
    let top_failure = failing.first().map(|(host, c)| {
        let more = if failing.len() > 1 { format!(" (and {} more failing)", failing.len() - 1) } else { String::new() };
        format!("{host}: {}{more}", c.reason.as_deref().unwrap_or("failing"))
    });
    let pulling = (!pulls.is_empty()).then(|| {
        let image = &pulls[0].image;
        let hosts: Vec<String> = pulls.iter().map(|p| format!("{} {} %", p.host, p.percent)).collect();
        format!("pulling {image}: {}", hosts.join(", "))
    });
    let unplaced = f.unplaced.first().cloned();
    let (status, reason) = if f.stopped || f.scale == 0 {
        ("stopped", None)
    } else if running == 0 && (top_failure.is_some() || (unplaced.is_some() && pulling.is_none())) {
        ("failing", top_failure.or(unplaced))
    } else if top_failure.is_some() || unplaced.is_some() || blocked.is_some() {
        ("degraded", blocked.or(top_failure).or(unplaced))
    } else if pulling.is_some() {
        ("pulling", pulling)
    } else if running < f.scale {
        ("starting", None)
    } else {
        ("active", None)
    };
    ServiceView { status, reason, running, failing: failing.len(), pulls }
}

#[cfg(test)]
mod tests {
    use super::*;
    use corral_proto::PullFailure;

    fn seen(state: ContainerState, status: &str) -> ObservedRecord {
        ObservedRecord {
            host_id: "h".into(),
            name: "S-web-1".into(),
            docker_id: "abc".into(),
            image: "app:1".into(),
            state,
            status: status.into(),
            ip: None,
            ports: vec![],
            labels: Default::default(),
            updated_at: String::new(),
        }
    }

    fn issue(kind: IssueKind, message: &str) -> ContainerIssue {
        ContainerIssue { name: "S-web-1".into(), kind, message: message.into() }
    }

    #[test]
    fn containers_say_why_they_do_not_run() {
        let up = HostLink::Up;
        let running = seen(ContainerState::Running, "Up 3 minutes");
        assert_eq!(container_view(up, Some(&running), None).reason, None);
        assert_eq!(container_view(up, None, None).state, "pending");

        let pulling = issue(IssueKind::Pulling { image: "app:2".into(), percent: 63 }, "pulling app:2: 63 %");
        let v = container_view(up, None, Some(&pulling));
        assert_eq!((v.state.as_str(), v.progress, v.failing), ("pulling", Some(63), false));

        let failed =
            issue(IssueKind::PullFailed { image: "app:2".into(), failure: PullFailure::NotFound }, "cannot pull app:2: image not found in the registry");
        let v = container_view(up, None, Some(&failed));
        assert_eq!((v.state.as_str(), v.failing), ("failed", true));
        assert!(v.reason.unwrap().contains("image not found"));

        let exited = issue(IssueKind::Exited { code: 3, log: vec!["boom".into()] }, "exited with code 3: boom");
        let v = container_view(up, Some(&seen(ContainerState::Restarting, "Restarting (3) 1 second ago")), Some(&exited));
        assert_eq!((v.state.as_str(), v.failing, v.log.as_slice()), ("restarting", true, &["boom".to_string()][..]));

        // The host outranks what its agent last said.
        let v = container_view(HostLink::Silent, Some(&running), Some(&pulling));
        assert!(v.failing && v.reason.unwrap().contains("not responding"));
        assert!(container_view(HostLink::Disconnected, Some(&running), None).reason.unwrap().contains("host disconnected"));
        // An older agent's exit: the engine's words.
        assert_eq!(container_view(up, Some(&seen(ContainerState::Exited, "Exited (137) 2 seconds ago")), None).reason.as_deref(), Some("exited with code 137"));
    }

    fn view(state: &str, reason: Option<&str>, progress: Option<u8>, failing: bool) -> ContainerView {
        let pulling = progress.map(|_| "app:2".to_string());
        ContainerView { state: state.into(), reason: reason.map(str::to_string), progress, failing, log: vec![], pulling }
    }

    #[test]
    fn services_take_the_state_of_their_instances() {
        let facts = |containers: &[(&str, ContainerView)], unplaced: &[String]| {
            service_view(&ServiceFacts { stopped: false, scale: containers.len().max(1), containers, unplaced, upgrade: None })
        };
        let ok = view("running", None, None, false);
        let pulling = |p| view("pulling", Some("pulling app:2: 40 %"), Some(p), false);
        let bad = view("failed", Some("cannot pull app:2: image not found in the registry"), None, true);
        let lost = view("running", Some("host not responding"), None, true);

        assert_eq!(facts(&[("h1", ok.clone()), ("h2", ok.clone())], &[]).status, "active");
        let v = facts(&[("h1", pulling(63)), ("h1", pulling(63)), ("h2", pulling(40))], &[]);
        assert_eq!((v.status, v.reason.as_deref()), ("pulling", Some("pulling app:2: h1 63 %, h2 40 %")));
        assert_eq!(v.pulls.len(), 2, "one pull per host");

        let v = facts(&[("h1", bad.clone()), ("h2", bad.clone())], &[]);
        assert_eq!((v.status, v.failing, v.running), ("failing", 2, 0));
        assert_eq!(v.reason.as_deref(), Some("h1: cannot pull app:2: image not found in the registry (and 1 more failing)"));

        // Six of ten on a host gone silent: not "10/10".
        let mut ten: Vec<(&str, ContainerView)> = (0..4).map(|_| ("h1", ok.clone())).collect();
        ten.extend((0..6).map(|_| ("h2", lost.clone())));
        let v = facts(&ten, &[]);
        assert_eq!((v.status, v.running, v.failing), ("degraded", 4, 6));

        let v = facts(&[("h1", view("pending", None, None, false))], &[]);
        assert_eq!(v.status, "starting");
        let v = facts(&[], &["instance 1: no host matches the constraints".to_string()]);
        assert_eq!((v.status, v.reason.as_deref()), ("failing", Some("instance 1: no host matches the constraints")));
        let stopped = service_view(&ServiceFacts { stopped: true, scale: 2, containers: &[("h1", bad)], unplaced: &[], upgrade: None });
        assert_eq!(stopped.status, "stopped");
    }

    #[test]
    fn a_failed_pull_stops_an_upgrade_and_says_so() {
        let ok = view("running", None, None, false);
        let containers = [("h1", ok.clone()), ("h2", ok)];
        let upgrade = |h2: ImageState| Some((2, vec![("h1", "app:2", ImageState::Present), ("h2", "app:2", h2)]));
        let v = service_view(&ServiceFacts {
            stopped: false,
            scale: 2,
            containers: &containers,
            unplaced: &[],
            upgrade: upgrade(ImageState::Pulling { percent: 12 }),
        });
        assert_eq!((v.status, v.reason.as_deref()), ("pulling", Some("pulling app:2: h2 12 %")));
        let failed = ImageState::Failed { failure: PullFailure::Unreachable, message: "connection refused".into() };
        let v = service_view(&ServiceFacts { stopped: false, scale: 2, containers: &containers, unplaced: &[], upgrade: upgrade(failed) });
        assert_eq!(v.status, "degraded");
        assert_eq!(
            v.reason.as_deref(),
            Some("upgrade to revision 2 stopped, old containers kept: h2: cannot pull app:2: registry unreachable (connection refused)")
        );
    }
}

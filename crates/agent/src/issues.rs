//! Why a desired container is not running as it should, in words a user can act on: waiting for
//! its image, a failed pull, a port taken on the host, the engine's refusal, an exit code with
//! the last lines of the log, a crash loop. Pure: the reconciler gathers the facts, this module
//! turns them into the [`ContainerIssue`]s of a report.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use corral_proto::{ContainerIssue, ContainerSpec, ContainerState, ImagePull, ImageReport, ImageState, IssueKind, ObservedContainer, PullPolicy};

use crate::error::AgentError;
use crate::pull::{PullState, PullStatus};

/// Restarts are counted over this window for the report ("N restarts in the last minute").
pub const RESTART_WINDOW: Duration = Duration::from_secs(60);
/// A container that died this many times within [`LOOP_WINDOW`] is crash-looping. The window is
/// longer than a minute because the engine waits up to a minute between restarts of a container
/// that keeps dying: counted over one minute, a loop would look healed between two tries.
pub const LOOP_AFTER: usize = 3;
pub const LOOP_WINDOW: Duration = Duration::from_secs(600);
/// Log lines kept with an exit, and the longest line kept.
pub const LOG_LINES: usize = 5;
const LINE_CHARS: usize = 200;

/// A desired container held back until its image is on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Waiting {
    pub image: String,
    pub policy: PullPolicy,
}

/// How one container (by engine id) has been dying, from the engine's `die` events.
#[derive(Debug, Clone, Default)]
pub struct Crash {
    pub dies: VecDeque<Instant>,
    pub code: Option<i64>,
    /// The last lines of its log, as last read (`None`: never read).
    pub log: Option<Vec<String>>,
    /// It died again since the log was read.
    pub log_stale: bool,
}

/// Deaths per container id, fed by the event watcher, read by the reconciler.
#[derive(Debug, Clone, Default)]
pub struct Crashes(Arc<Mutex<HashMap<String, Crash>>>);

impl Crashes {
    pub fn died(&self, id: &str, code: Option<i64>, now: Instant) {
        let mut all = self.0.lock().expect("crashes lock");
        let crash = all.entry(id.to_string()).or_default();
        crash.dies.push_back(now);
        while crash.dies.front().is_some_and(|t| now.duration_since(*t) > LOOP_WINDOW) {
            crash.dies.pop_front();
        }
        crash.code = code.or(crash.code);
        crash.log_stale = true;
    }

    /// Ids of stopped containers whose log has not been read since they last died (or at all).
    pub fn need_log(&self, stopped: &[&ObservedContainer]) -> Vec<String> {
        let all = self.0.lock().expect("crashes lock");
        stopped.iter().filter(|c| all.get(&c.docker_id).is_none_or(|crash| crash.log.is_none() || crash.log_stale)).map(|c| c.docker_id.clone()).collect()
    }

    pub fn set_log(&self, id: &str, log: Vec<String>) {
        let mut all = self.0.lock().expect("crashes lock");
        let crash = all.entry(id.to_string()).or_default();
        crash.log = Some(log);
        crash.log_stale = false;
    }

    /// Forgets containers the engine no longer has.
    pub fn retain(&self, observed: &[ObservedContainer]) {
        self.0.lock().expect("crashes lock").retain(|id, _| observed.iter().any(|c| &c.docker_id == id));
    }

    pub fn snapshot(&self) -> HashMap<String, Crash> {
        self.0.lock().expect("crashes lock").clone()
    }
}

/// Containers that count as stopped when they should run: their log tells why.
pub fn stopped_unexpectedly<'a>(desired: &[ContainerSpec], observed: &'a [ObservedContainer]) -> Vec<&'a ObservedContainer> {
    observed
        .iter()
        .filter(|c| matches!(c.state, ContainerState::Exited | ContainerState::Restarting | ContainerState::Dead))
        .filter(|c| desired.iter().any(|d| d.name == c.name && !d.stopped))
        .collect()
}

/// Everything a report's issues are made from.
pub struct Facts<'a> {
    pub desired: &'a [ContainerSpec],
    pub observed: &'a [ObservedContainer],
    pub waiting: &'a BTreeMap<String, Waiting>,
    /// Create or start failures of the latest attempt, by container name.
    pub failures: &'a BTreeMap<String, ContainerIssue>,
    pub crashes: &'a HashMap<String, Crash>,
    pub pulls: &'a HashMap<String, PullStatus>,
    pub now: Instant,
}

/// One issue per desired container that is not running as it should, by name.
pub fn container_issues(f: &Facts<'_>) -> Vec<ContainerIssue> {
    let mut issues = Vec::new();
    for spec in f.desired {
        let seen = f.observed.iter().find(|c| c.name == spec.name);
        let running = seen.is_some_and(|c| c.state == ContainerState::Running);
        let issue = if let Some(w) = f.waiting.get(&spec.name) {
            Some(waiting_issue(&spec.name, w, f.pulls.get(&w.image)))
        } else if let Some(failure) = f.failures.get(&spec.name).filter(|_| !running) {
            Some(failure.clone())
        } else {
            seen.filter(|_| !spec.stopped).and_then(|c| crash_issue(c, f.crashes.get(&c.docker_id), f.now))
        };
        issues.extend(issue);
    }
    issues
}

fn waiting_issue(name: &str, w: &Waiting, pull: Option<&PullStatus>) -> ContainerIssue {
    let image = w.image.clone();
    let (kind, message) = match (w.policy, pull.map(|p| &p.state)) {
        (PullPolicy::Never, _) => (
            IssueKind::ImageMissing { image: image.clone() },
            format!("image {image} is not on this host and the pull policy is never: load it on the host (docker load) or let Corral pull it (--pull missing)"),
        ),
        (_, Some(PullState::Failed { failure, message, .. })) => (
            IssueKind::PullFailed { image: image.clone(), failure: *failure },
            format!("cannot pull {image}: {} ({})", failure.describe(), printable(message, 300)),
        ),
        (_, Some(PullState::Running { percent })) => (IssueKind::Pulling { image: image.clone(), percent: *percent }, format!("pulling {image}: {percent} %")),
        // About to pull, or pulled a moment ago and about to be created.
        _ => (IssueKind::Pulling { image: image.clone(), percent: 0 }, format!("pulling {image}: 0 %")),
    };
    ContainerIssue { name: name.to_string(), kind, message }
}

fn crash_issue(c: &ObservedContainer, crash: Option<&Crash>, now: Instant) -> Option<ContainerIssue> {
    let in_window = |w: Duration| crash.map_or(0, |k| k.dies.iter().filter(|t| now.duration_since(**t) <= w).count());
    let stopped = matches!(c.state, ContainerState::Exited | ContainerState::Restarting | ContainerState::Dead);
    let code = crash.and_then(|k| k.code).or_else(|| exit_code(&c.status));
    let log = crash.and_then(|k| k.log.clone()).unwrap_or_default();
    let last_line = log.last().map(|l| format!(": {l}")).unwrap_or_default();
    let (kind, message) = if in_window(LOOP_WINDOW) >= LOOP_AFTER {
        let restarts = in_window(RESTART_WINDOW) as u32;
        let code_text = code.map(|c| format!(", last exit code {c}")).unwrap_or_default();
        (IssueKind::CrashLooping { restarts, code, log }, format!("crash-looping: {restarts} restarts in the last minute{code_text}{last_line}"))
    } else if stopped {
        let code = code?;
        (IssueKind::Exited { code, log }, format!("exited with code {code}{last_line}"))
    } else {
        return None;
    };
    Some(ContainerIssue { name: c.name.clone(), kind, message })
}

/// The exit code in the engine's status words: `Exited (3) 2 seconds ago`, `Restarting (1) …`.
pub fn exit_code(status: &str) -> Option<i64> {
    status.split_once('(')?.1.split_once(')')?.0.parse().ok()
}

/// How each image the control plane asked for stands: `ready` says the gate let it through.
pub fn image_reports(asked: &[(ImagePull, bool)], pulls: &HashMap<String, PullStatus>) -> Vec<ImageReport> {
    asked
        .iter()
        .map(|(p, ready)| {
            let state = match (ready, p.policy, pulls.get(&p.image).map(|s| &s.state)) {
                (true, _, _) => ImageState::Present,
                (false, PullPolicy::Never, _) => ImageState::Missing,
                (false, _, Some(PullState::Failed { failure, message, .. })) => ImageState::Failed { failure: *failure, message: printable(message, 300) },
                (false, _, Some(PullState::Running { percent })) => ImageState::Pulling { percent: *percent },
                (false, _, _) => ImageState::Pulling { percent: 0 },
            };
            ImageReport { image: p.image.clone(), state }
        })
        .collect()
}

/// The issue for a container the engine refused to create or start.
pub fn failure_issue(spec: &ContainerSpec, error: &AgentError) -> ContainerIssue {
    let name = spec.name.clone();
    let (kind, message) = match error {
        AgentError::ImageNotFound { image, .. } => {
            (IssueKind::ImageMissing { image: image.clone() }, format!("image {image} is not on this host (it was removed before the container was made)"))
        }
        AgentError::Engine { reason, .. } if port_taken(reason) => {
            let port = spec.ports.iter().filter_map(|p| p.host_port).find(|p| reason.contains(&format!(":{p}")));
            let which = port.map_or_else(|| "a host port it publishes".to_string(), |p| format!("host port {p}"));
            (IssueKind::PortTaken { port }, format!("{which} is already taken on this host ({}); free it or publish another port", printable(reason, 300)))
        }
        other => (IssueKind::EngineError, format!("engine error: {}", printable(&engine_words(&other.to_string()), 400))),
    };
    ContainerIssue { name, kind, message }
}

/// The engine's message without the client library's preamble (`Docker responded with status
/// code 400: `), which says nothing a user can act on.
fn engine_words(text: &str) -> String {
    let mut out = text.to_string();
    while let Some(start) = out.find("Docker responded with status code ") {
        let rest = &out[start..];
        match rest.find(": ") {
            Some(end) => out.replace_range(start..start + end + 2, ""),
            None => break,
        }
    }
    out
}

fn port_taken(reason: &str) -> bool {
    let r = reason.to_ascii_lowercase();
    r.contains("port is already allocated") || r.contains("address already in use")
}

/// `text` on one printable line of at most `max` characters: control characters escaped.
pub fn printable(text: &str, max: usize) -> String {
    let mut out = String::new();
    for (n, c) in text.trim_end().chars().enumerate() {
        if n >= max {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// A log line as a report carries it.
pub fn log_line(line: &str) -> String {
    printable(line, LINE_CHARS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use corral_proto::PullFailure;

    fn spec(name: &str) -> ContainerSpec {
        ContainerSpec { name: name.into(), image: "reg:5000/app:1".into(), ports: vec!["18080:80".parse().unwrap()], ..Default::default() }
    }

    fn seen(name: &str, id: &str, state: ContainerState, status: &str) -> ObservedContainer {
        ObservedContainer {
            name: name.into(),
            docker_id: id.into(),
            image: "reg:5000/app:1".into(),
            state,
            status: status.into(),
            ip: None,
            ports: vec![],
            labels: Default::default(),
        }
    }

    fn issues(
        desired: &[ContainerSpec],
        observed: &[ObservedContainer],
        waiting: &BTreeMap<String, Waiting>,
        crashes: &Crashes,
        pulls: &HashMap<String, PullStatus>,
    ) -> Vec<ContainerIssue> {
        container_issues(&Facts { desired, observed, waiting, failures: &BTreeMap::new(), crashes: &crashes.snapshot(), pulls, now: Instant::now() })
    }

    #[test]
    fn waiting_containers_say_how_their_image_stands() {
        let desired = [spec("S-a-1"), spec("S-a-2"), spec("S-b-1")];
        let waiting: BTreeMap<String, Waiting> = [
            ("S-a-1".to_string(), Waiting { image: "reg:5000/app:1".into(), policy: PullPolicy::Missing }),
            ("S-a-2".to_string(), Waiting { image: "reg:5000/app:1".into(), policy: PullPolicy::Missing }),
            ("S-b-1".to_string(), Waiting { image: "local:1".into(), policy: PullPolicy::Never }),
        ]
        .into();
        let now = Instant::now();
        let mut pulls = HashMap::from([("reg:5000/app:1".to_string(), PullStatus { started: now, state: PullState::Running { percent: 63 } })]);
        let got = issues(&desired, &[], &waiting, &Crashes::default(), &pulls);
        assert_eq!(got[0].message, "pulling reg:5000/app:1: 63 %");
        assert_eq!(got[1].kind, IssueKind::Pulling { image: "reg:5000/app:1".into(), percent: 63 }, "one pull, both containers");
        assert!(got[2].message.contains("pull policy is never"), "{}", got[2].message);

        pulls.insert(
            "reg:5000/app:1".into(),
            PullStatus {
                started: now,
                state: PullState::Failed { failure: PullFailure::NotFound, message: "manifest unknown\n".into(), at: now, failures: 1 },
            },
        );
        let got = issues(&desired, &[], &waiting, &Crashes::default(), &pulls);
        assert_eq!(got[0].message, "cannot pull reg:5000/app:1: image not found in the registry (manifest unknown)");
    }

    #[test]
    fn exits_and_crash_loops_carry_code_and_log() {
        let desired = [spec("S-a-1")];
        let crashes = Crashes::default();
        let exited = [seen("S-a-1", "c1", ContainerState::Exited, "Exited (3) 1 second ago")];
        let none = BTreeMap::new();
        let pulls = HashMap::new();
        // Exited before the agent watched: the code comes from the engine's status words.
        assert_eq!(issues(&desired, &exited, &none, &crashes, &pulls)[0].message, "exited with code 3");
        assert_eq!(crashes.need_log(&exited.iter().collect::<Vec<_>>()), ["c1"]);
        crashes.set_log("c1", vec!["starting".into(), "config missing".into()]);
        assert_eq!(
            issues(&desired, &exited, &none, &crashes, &pulls)[0].kind,
            IssueKind::Exited { code: 3, log: vec!["starting".into(), "config missing".into()] }
        );
        assert_eq!(issues(&desired, &exited, &none, &crashes, &pulls)[0].message, "exited with code 3: config missing");

        let now = Instant::now();
        for _ in 0..LOOP_AFTER {
            crashes.died("c1", Some(3), now);
        }
        crashes.set_log("c1", vec![log_line("config missing\u{1b}[31m")]);
        let running_again = [seen("S-a-1", "c1", ContainerState::Running, "Up Less than a second")];
        let got = issues(&desired, &running_again, &none, &crashes, &pulls);
        assert_eq!(got[0].kind, IssueKind::CrashLooping { restarts: 3, code: Some(3), log: vec!["config missing\\u{1b}[31m".into()] });
        assert!(got[0].message.starts_with("crash-looping: 3 restarts in the last minute, last exit code 3: config missing"), "{}", got[0].message);

        let healthy = [seen("S-a-1", "c2", ContainerState::Running, "Up 5 minutes")];
        assert!(issues(&desired, &healthy, &none, &crashes, &pulls).is_empty(), "another container, no past");
    }

    #[test]
    fn refusals_are_named() {
        let s = spec("S-a-1");
        let taken = AgentError::Engine {
            action: "start new container S-a-1".into(),
            reason: "driver failed programming external connectivity on endpoint S-a-1: Bind for 0.0.0.0:18080 failed: port is already allocated".into(),
        };
        let issue = failure_issue(&s, &taken);
        assert_eq!(issue.kind, IssueKind::PortTaken { port: Some(18080) });
        assert!(issue.message.starts_with("host port 18080 is already taken on this host"), "{}", issue.message);
        let other = AgentError::Engine {
            action: "create container S-a-1".into(),
            reason: "Docker responded with status code 400: invalid mount config\nfor type bind".into(),
        };
        let issue = failure_issue(&s, &other);
        assert_eq!(issue.kind, IssueKind::EngineError);
        assert_eq!(issue.message, "engine error: Docker engine failed to create container S-a-1: invalid mount config\\nfor type bind");
    }

    #[test]
    fn asked_images_report_where_they_stand() {
        let now = Instant::now();
        let asked = [
            (ImagePull { image: "a:1".into(), policy: PullPolicy::Missing }, true),
            (ImagePull { image: "b:1".into(), policy: PullPolicy::Missing }, false),
            (ImagePull { image: "c:1".into(), policy: PullPolicy::Never }, false),
        ];
        let pulls = HashMap::from([("b:1".to_string(), PullStatus { started: now, state: PullState::Running { percent: 12 } })]);
        let states: Vec<ImageState> = image_reports(&asked, &pulls).into_iter().map(|r| r.state).collect();
        assert_eq!(states, [ImageState::Present, ImageState::Pulling { percent: 12 }, ImageState::Missing]);
    }
}

//! Image pulls: one at a time per image on this host, shared by every container that needs it,
//! running beside the converge loop so a slow pull never holds up healing other containers.
//!
//! [`Pulls`] keeps where each image's last pull stands; the reconciler asks it whether a
//! container may be created yet ([`crate::converge::image_gate`]) and starts pulls. Progress
//! (per layer, from the engine's stream) is folded into one percent per image by [`Progress`].
//! What went wrong is read from the engine's answer by [`classify`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bollard::auth::DockerCredentials;
use bollard::models::CreateImageInfo;
use corral_proto::PullFailure;
use tokio::sync::Notify;

use crate::engine::Engine;

/// Progress is reported at most this often per image (a pull's stream says far more).
pub const PROGRESS_EVERY: Duration = Duration::from_millis(250);
/// A failed pull is tried again after this long, doubling per failure up to [`RETRY_CAP`].
pub const RETRY_FIRST: Duration = Duration::from_secs(10);
pub const RETRY_CAP: Duration = Duration::from_secs(300);

/// Where the last pull of one image stands.
#[derive(Debug, Clone, PartialEq)]
pub struct PullStatus {
    pub started: Instant,
    pub state: PullState,
}

#[derive(Debug, Clone, PartialEq)]
pub enum PullState {
    Running {
        percent: u8,
    },
    Done,
    /// `failures` counts the failed pulls in a row, for the retry delay.
    Failed {
        failure: PullFailure,
        message: String,
        at: Instant,
        failures: u32,
    },
}

impl PullStatus {
    /// When a failed pull may be tried again.
    pub fn retry_at(&self) -> Option<Instant> {
        match &self.state {
            PullState::Failed { at, failures, .. } => Some(*at + retry_delay(*failures)),
            _ => None,
        }
    }
}

/// The wait before the next try after `failures` failed pulls in a row.
pub fn retry_delay(failures: u32) -> Duration {
    let factor = 1u32.checked_shl(failures.saturating_sub(1)).unwrap_or(u32::MAX);
    RETRY_FIRST.saturating_mul(factor).min(RETRY_CAP)
}

/// The host's pulls, shared by the converge loop and the pull tasks.
#[derive(Debug, Clone)]
pub struct Pulls {
    entries: Arc<Mutex<HashMap<String, PullStatus>>>,
    /// Fired (at most every [`PROGRESS_EVERY`]) while a pull makes progress: report it.
    progress: Arc<Notify>,
    /// Fired when a pull ends: converge, the containers waiting for it may go ahead.
    finished: Arc<Notify>,
}

impl Pulls {
    pub fn new(progress: Arc<Notify>, finished: Arc<Notify>) -> Self {
        Pulls { entries: Arc::default(), progress, finished }
    }

    pub fn status(&self, image: &str) -> Option<PullStatus> {
        self.entries.lock().expect("pulls lock").get(image).cloned()
    }

    /// Every image's status, for one report.
    pub fn snapshot(&self) -> HashMap<String, PullStatus> {
        self.entries.lock().expect("pulls lock").clone()
    }

    /// Starts pulling `image` unless a pull of it runs already. `auth` is for registries that
    /// want credentials.
    pub fn start(&self, engine: &Engine, image: &str, auth: Option<DockerCredentials>) {
        let failures = {
            let mut entries = self.entries.lock().expect("pulls lock");
            let failures = match entries.get(image).map(|s| &s.state) {
                Some(PullState::Running { .. }) => return,
                Some(PullState::Failed { failures, .. }) => *failures,
                _ => 0,
            };
            entries.insert(image.to_string(), PullStatus { started: Instant::now(), state: PullState::Running { percent: 0 } });
            failures
        };
        // Whether a login goes with the pull, in words, never which one.
        match &auth {
            Some(_) => tracing::info!(%image, "pulling image with its registry's login"),
            None => tracing::info!(%image, "pulling image without a login"),
        }
        let (engine, image, pulls) = (engine.clone(), image.to_string(), self.clone());
        tokio::spawn(async move {
            let last_report = Mutex::new(Instant::now());
            let result = engine
                .pull(&image, auth, |percent| {
                    pulls.set_percent(&image, percent);
                    let mut last = last_report.lock().expect("progress lock");
                    if last.elapsed() >= PROGRESS_EVERY {
                        *last = Instant::now();
                        pulls.progress.notify_one();
                    }
                })
                .await;
            let state = match result {
                Ok(()) => {
                    tracing::info!(%image, "pulled image");
                    PullState::Done
                }
                Err(e) => {
                    tracing::warn!(%image, failure = ?e.failure, error = %e.message, "pull failed");
                    PullState::Failed { failure: e.failure, message: e.message, at: Instant::now(), failures: failures + 1 }
                }
            };
            if let Some(entry) = pulls.entries.lock().expect("pulls lock").get_mut(&image) {
                entry.state = state;
            }
            pulls.finished.notify_one();
        });
    }

    fn set_percent(&self, image: &str, percent: u8) {
        if let Some(PullStatus { state: PullState::Running { percent: p }, .. }) = self.entries.lock().expect("pulls lock").get_mut(image) {
            *p = percent;
        }
    }

    /// Forgets every failed pull, so each is tried again at once instead of after its backoff:
    /// for when what made them fail may have changed (a registry's login or CA).
    pub fn forget_failures(&self) {
        self.entries.lock().expect("pulls lock").retain(|_, s| !matches!(s.state, PullState::Failed { .. }));
    }

    /// Forgets images no desired container or pull asks for any more, once their pull ended.
    pub fn retain(&self, wanted: impl Fn(&str) -> bool) {
        self.entries.lock().expect("pulls lock").retain(|image, s| wanted(image) || matches!(s.state, PullState::Running { .. }));
    }
}

/// Why a pull failed, with the engine's words.
#[derive(Debug, Clone, PartialEq)]
pub struct PullError {
    pub failure: PullFailure,
    pub message: String,
}

/// Reads the kind of failure from the engine's answer: its HTTP status, if the request itself
/// was refused, and its message.
pub fn classify(status: Option<u16>, message: &str) -> PullFailure {
    let m = message.to_ascii_lowercase();
    let any = |words: &[&str]| words.iter().any(|w| m.contains(w));
    if any(&["no space left on device", "disk quota exceeded"]) {
        PullFailure::DiskFull
    } else if any(&["x509:", "certificate signed by unknown authority", "certificate is not valid", "tls: failed to verify"]) {
        PullFailure::UntrustedCertificate
    } else if status == Some(404) || any(&["manifest unknown", "not found", "name unknown", "does not exist"]) && !m.contains("pull access denied") {
        PullFailure::NotFound
    } else if matches!(status, Some(401 | 403)) || any(&["unauthorized", "authentication required", "denied", "forbidden", "no basic auth credentials"]) {
        PullFailure::Unauthorized
    } else if any(&[
        "connection refused",
        "no such host",
        "timeout",
        "timed out",
        "network is unreachable",
        "no route to host",
        "connection reset",
        "server misbehaving",
        "http response to https client",
        "dial tcp",
    ]) {
        PullFailure::Unreachable
    } else {
        PullFailure::Other
    }
}

/// Folds the engine's per-layer pull messages into one percent for the image: bytes downloaded
/// and extracted over twice the bytes of the layers to fetch. Layers the host already has do
/// not count. Never goes back, and stays below 100 until the pull has ended.
#[derive(Debug, Default)]
pub struct Progress {
    layers: HashMap<String, Layer>,
    shown: u8,
}

#[derive(Debug, Default, Clone, Copy)]
struct Layer {
    total: u64,
    downloaded: u64,
    extracted: u64,
    /// Already on the host: nothing to fetch.
    present: bool,
}

impl Progress {
    /// Takes one message of the stream; returns the new percent when it changed.
    pub fn update(&mut self, info: &CreateImageInfo) -> Option<u8> {
        let (Some(id), Some(status)) = (info.id.as_deref(), info.status.as_deref()) else { return None };
        let detail = info.progress_detail.as_ref();
        let current = detail.and_then(|d| d.current).map_or(0, |c| c.max(0) as u64);
        let total = detail.and_then(|d| d.total).map_or(0, |t| t.max(0) as u64);
        let layer = self.layers.entry(id.to_string()).or_default();
        match status {
            "Already exists" => layer.present = true,
            "Downloading" => {
                layer.total = layer.total.max(total);
                layer.downloaded = current.min(layer.total);
            }
            "Verifying Checksum" | "Download complete" => layer.downloaded = layer.total,
            "Extracting" => {
                layer.total = layer.total.max(total);
                layer.downloaded = layer.total;
                layer.extracted = current.min(layer.total);
            }
            "Pull complete" => {
                layer.downloaded = layer.total;
                layer.extracted = layer.total;
            }
            // "Pulling fs layer", "Waiting", "Pulling from …", digests: nothing measured yet.
            _ => return None,
        }
        let fetched: Vec<&Layer> = self.layers.values().filter(|l| !l.present && l.total > 0).collect();
        let total: u64 = fetched.iter().map(|l| 2 * l.total).sum();
        if total == 0 {
            return None;
        }
        let done: u64 = fetched.iter().map(|l| l.downloaded + l.extracted).sum();
        let percent = ((done.saturating_mul(100)) / total).min(99) as u8;
        if percent > self.shown {
            self.shown = percent;
            return Some(percent);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard::models::ProgressDetail;

    fn info(id: &str, status: &str, current: i64, total: i64) -> CreateImageInfo {
        CreateImageInfo {
            id: Some(id.into()),
            status: Some(status.into()),
            progress_detail: Some(ProgressDetail { current: Some(current), total: Some(total) }),
            ..Default::default()
        }
    }

    #[test]
    fn layers_fold_into_one_percent_that_never_goes_back() {
        let mut p = Progress::default();
        assert_eq!(p.update(&info("a", "Pulling fs layer", 0, 0)), None);
        assert_eq!(p.update(&info("b", "Already exists", 0, 0)), None, "a layer the host has counts for nothing");
        // Half of a's download: a quarter of the work (download and extraction count alike).
        assert_eq!(p.update(&info("a", "Downloading", 500, 1000)), Some(25));
        assert_eq!(p.update(&info("a", "Download complete", 0, 0)), Some(50));
        // A second layer's size becomes known: the share done drops, the percent shown does not.
        assert_eq!(p.update(&info("c", "Downloading", 0, 3000)), None);
        assert_eq!(p.update(&info("a", "Extracting", 1000, 1000)), None);
        assert_eq!(p.update(&info("c", "Downloading", 3000, 3000)), Some(62));
        assert_eq!(p.update(&info("a", "Pull complete", 0, 0)), None);
        assert_eq!(p.update(&info("c", "Pull complete", 0, 0)), Some(99), "100 only once the pull has ended");
    }

    #[test]
    fn failures_are_read_from_the_engine_answer() {
        let cases = [
            (Some(404), "pull access denied for nope, repository does not exist or may require 'docker login'", PullFailure::NotFound),
            (None, "manifest for 10.213.0.1:5000/corral/busybox:nope not found: manifest unknown: manifest unknown", PullFailure::NotFound),
            (Some(500), "Head \"https://r.example/v2/app/manifests/1\": unauthorized: authentication required", PullFailure::Unauthorized),
            (
                Some(500),
                "pull access denied for app, repository does not exist or may require 'docker login': denied: requested access to the resource is denied",
                PullFailure::Unauthorized,
            ),
            (Some(500), "Get \"https://10.213.0.1:5009/v2/\": dial tcp 10.213.0.1:5009: connect: connection refused", PullFailure::Unreachable),
            (Some(500), "Get \"https://nowhere.invalid/v2/\": dial tcp: lookup nowhere.invalid: no such host", PullFailure::Unreachable),
            (Some(500), "Get \"https://r.example/v2/\": net/http: request canceled (Client.Timeout exceeded)", PullFailure::Unreachable),
            (None, "failed to register layer: write /usr/lib/x: no space left on device", PullFailure::DiskFull),
            (Some(500), "something odd", PullFailure::Other),
        ];
        for (status, message, want) in cases {
            assert_eq!(classify(status, message), want, "{message}");
        }
    }

    #[test]
    fn retries_back_off_and_cap() {
        let delays: Vec<u64> = (1..=7).map(|n| retry_delay(n).as_secs()).collect();
        assert_eq!(delays, [10, 20, 40, 80, 160, 300, 300]);
        assert_eq!(retry_delay(u32::MAX), RETRY_CAP);
    }
}

//! Change notifications for clients (`GET /v1/events`): which resource lists changed, by
//! environment, so the UI refetches them instead of polling.
//!
//! Publishers (API writes, agent sessions, the reconciler, restore) send a [`Change`] on one
//! broadcast channel; each event-stream connection filters, coalesces and de-duplicates them.
//! Notifications carry no data: a lost one is repaired by a full refetch, never by an error.

use serde::Serialize;
use tokio::sync::broadcast;

/// A resource list a client can fetch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Resource {
    Hosts,
    Stacks,
    Services,
    Containers,
    /// The set of environments itself (not bound to one environment).
    Environments,
}

impl Resource {
    /// Every list inside an environment.
    pub const IN_ENVIRONMENT: [Resource; 4] = [Resource::Hosts, Resource::Stacks, Resource::Services, Resource::Containers];
}

/// One resource list that changed; `environment` is `None` only for [`Resource::Environments`]
/// or when every environment is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub environment: Option<String>,
    pub resource: Resource,
}

/// Capacity of the broadcast; a connection that falls further behind gets a full refresh.
const CAPACITY: usize = 1024;

/// The publishing side, shared through `AppState`; cheap to clone.
#[derive(Clone, Debug)]
pub struct Events {
    tx: broadcast::Sender<Change>,
}

impl Default for Events {
    fn default() -> Self {
        Events { tx: broadcast::channel(CAPACITY).0 }
    }
}

impl Events {
    /// Says that `resources` of environment `environment` changed.
    pub fn publish(&self, environment: &str, resources: &[Resource]) {
        for &resource in resources {
            let environment = (resource != Resource::Environments).then(|| environment.to_string());
            // No subscriber is not an error: nobody is watching.
            let _ = self.tx.send(Change { environment, resource });
        }
    }

    /// Says that the set of environments changed.
    pub fn environments_changed(&self) {
        let _ = self.tx.send(Change { environment: None, resource: Resource::Environments });
    }

    /// Says that everything changed, in every environment (e.g. after a restore).
    pub fn everything_changed(&self) {
        for resource in Resource::IN_ENVIRONMENT {
            let _ = self.tx.send(Change { environment: None, resource });
        }
        self.environments_changed();
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Change> {
        self.tx.subscribe()
    }
}

/// What one connection has yet to tell its client.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Pending {
    resources: std::collections::BTreeSet<Resource>,
    environments: bool,
}

impl Pending {
    /// Takes `change` if it concerns `environment` (names compare case-insensitively, as the
    /// store does); returns whether anything was added.
    pub fn add(&mut self, environment: &str, change: &Change) -> bool {
        if change.resource == Resource::Environments {
            self.environments = true;
            return true;
        }
        match &change.environment {
            Some(env) if !env.eq_ignore_ascii_case(environment) => false,
            _ => {
                self.resources.insert(change.resource);
                true
            }
        }
    }

    /// A client that missed notifications must refetch everything.
    pub fn everything(&mut self) {
        self.resources.extend(Resource::IN_ENVIRONMENT);
        self.environments = true;
    }

    pub fn is_empty(&self) -> bool {
        self.resources.is_empty() && !self.environments
    }

    /// The frames to send for what is pending, emptying it.
    pub fn take_frames(&mut self, environment: &str) -> Vec<Frame> {
        let mut frames = Vec::new();
        if !self.resources.is_empty() {
            let resources = std::mem::take(&mut self.resources).into_iter().collect();
            frames.push(Frame::Changed { environment: Some(environment.to_string()), resources });
        }
        if std::mem::take(&mut self.environments) {
            frames.push(Frame::Changed { environment: None, resources: vec![Resource::Environments] });
        }
        frames
    }
}

/// A server -> client frame of the event stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Frame {
    Hello { environment: String },
    Changed { environment: Option<String>, resources: Vec<Resource> },
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(env: Option<&str>, resource: Resource) -> Change {
        Change { environment: env.map(str::to_string), resource }
    }

    #[test]
    fn pending_filters_by_environment_and_deduplicates() {
        let mut p = Pending::default();
        assert!(!p.add("OPS", &change(Some("DEV"), Resource::Stacks)));
        assert!(p.is_empty());
        assert!(p.add("OPS", &change(Some("ops"), Resource::Stacks)));
        assert!(p.add("OPS", &change(Some("OPS"), Resource::Stacks)));
        assert!(p.add("OPS", &change(None, Resource::Hosts)));
        let frames = p.take_frames("OPS");
        assert_eq!(frames, vec![Frame::Changed { environment: Some("OPS".into()), resources: vec![Resource::Hosts, Resource::Stacks] }]);
        assert!(p.is_empty());
        p.add("OPS", &change(None, Resource::Environments));
        assert_eq!(p.take_frames("OPS"), vec![Frame::Changed { environment: None, resources: vec![Resource::Environments] }]);
    }

    #[test]
    fn frames_match_the_contract() {
        let hello = serde_json::to_value(Frame::Hello { environment: "OPS".into() }).unwrap();
        assert_eq!(hello, serde_json::json!({"type": "hello", "environment": "OPS"}));
        let changed = serde_json::to_value(Frame::Changed { environment: None, resources: vec![Resource::Environments] }).unwrap();
        assert_eq!(changed, serde_json::json!({"type": "changed", "environment": null, "resources": ["environments"]}));
    }
}

//! Shared by the integration tests: a real engine at `CORRAL_TEST_DOCKER_HOST` (default
//! `unix:///var/run/docker.sock`), the locally imported `corral-test/busybox:latest` (never
//! pulled), and a per-test scope so tests can run in parallel on one engine and cannot touch
//! containers that are not their own.
#![allow(dead_code)]

use std::collections::HashMap;

use bollard::models::ContainerSummary;
use bollard::query_parameters::{ListContainersOptionsBuilder, RemoveContainerOptionsBuilder};
use corral_agent::Engine;
use corral_proto::{labels, ContainerSpec};

pub const IMAGE: &str = "corral-test/busybox:latest";
pub const SCOPE: &str = "io.corral.test-scope";

pub fn docker_host() -> String {
    std::env::var("CORRAL_TEST_DOCKER_HOST").unwrap_or_else(|_| "unix:///var/run/docker.sock".into())
}

/// A test's own corner of the engine: a unique name prefix that is also the value of the scope
/// label. Its containers are force-removed when it is dropped, even if the test panicked.
pub struct Scope {
    pub prefix: String,
    pub engine: Engine,
}

impl Scope {
    pub async fn new(test: &str) -> Scope {
        let prefix = format!("agt-{test}-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
        let engine = Engine::connect(Some(&docker_host())).await.expect("these tests need a Docker engine at CORRAL_TEST_DOCKER_HOST").scoped(SCOPE, &prefix);
        Scope { prefix, engine }
    }

    /// `sleep 3600` named `PREFIX-n`, labelled like the control plane would.
    pub fn spec(&self, n: u32) -> ContainerSpec {
        ContainerSpec {
            name: format!("{}-{n}", self.prefix),
            image: IMAGE.into(),
            command: vec!["sleep".into(), "3600".into()],
            env: vec![format!("N={n}")],
            ports: vec![],
            labels: [
                (labels::STACK.to_string(), self.prefix.clone()),
                (labels::SERVICE.to_string(), "sleeper".to_string()),
                (labels::INSTANCE.to_string(), n.to_string()),
                (SCOPE.to_string(), self.prefix.clone()),
            ]
            .into(),
            stopped: false,
            pull: Default::default(),
            restart_generation: 0,
            network: Default::default(),
        }
    }

    /// What the engine itself reports for this test's containers, by name.
    pub async fn engine_view(&self) -> HashMap<String, ContainerSummary> {
        view(self.engine.docker(), &self.prefix).await
    }
}

pub fn is_running(c: &ContainerSummary) -> bool {
    c.state.map(|s| s.to_string()).as_deref() == Some("running")
}

async fn view(docker: &bollard::Docker, prefix: &str) -> HashMap<String, ContainerSummary> {
    let filters = HashMap::from([("label".to_string(), vec![format!("{SCOPE}={prefix}")])]);
    let opts = ListContainersOptionsBuilder::default().all(true).filters(&filters).build();
    docker
        .list_containers(Some(opts))
        .await
        .unwrap_or_default()
        .into_iter()
        .map(|c| (c.names.as_ref().unwrap()[0].trim_start_matches('/').to_string(), c))
        .collect()
}

impl Drop for Scope {
    fn drop(&mut self) {
        // Drop cannot await, and the test's runtime may be shutting down: clean up on a thread
        // with its own runtime.
        let docker = self.engine.docker().clone();
        let prefix = self.prefix.clone();
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async {
                for c in view(&docker, &prefix).await.values() {
                    let opts = RemoveContainerOptionsBuilder::default().force(true).build();
                    let _ = docker.remove_container(c.id.as_deref().unwrap_or_default(), Some(opts)).await;
                }
            });
        })
        .join();
    }
}

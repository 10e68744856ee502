//! The engine layer and the local converge loop against a real Docker engine, with no control
//! plane. Uses the engine at `CORRAL_TEST_DOCKER_HOST` (default `unix:///var/run/docker.sock`)
//! and the locally imported image `corral-test/busybox:latest`; pulls only what is missing.
//!
//! Every test scopes its engine handle to a label unique to that test (see `common`), so tests
//! can run in parallel and cannot remove containers that belong to anything else on the engine.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bollard::query_parameters::RemoveContainerOptionsBuilder;
use common::{is_running, Scope, IMAGE};
use corral_agent::converge::Action;
use corral_agent::{AgentError, Engine, Reconciler, ReconcilerHandle};
use corral_proto::{labels, ContainerState, DesiredSet};

#[tokio::test]
async fn converge_creates_recreates_and_removes() {
    let s = Scope::new("conv").await;
    let mut r = Reconciler::new(s.engine.clone());
    let mut desired = DesiredSet { revision: 1, containers: vec![s.spec(1), s.spec(2), s.spec(3)], ..Default::default() };

    let report = r.converge_once(&desired).await.unwrap();
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    assert_eq!(report.actions.len(), 3);
    let view = s.engine_view().await;
    assert_eq!(view.len(), 3);
    for spec in &desired.containers {
        let c = &view[&spec.name];
        assert!(is_running(c), "{} is {:?}", spec.name, c.state);
        let l = c.labels.as_ref().unwrap();
        assert_eq!(l[labels::MANAGED], "true");
        assert_eq!(l[labels::SPEC_HASH], spec.spec_hash());
        assert_eq!(l[labels::SERVICE], "sleeper");
        assert_eq!(c.image.as_deref(), Some(IMAGE));
    }
    // The report carries the observed state, as the engine lists it.
    assert_eq!(report.observed.len(), 3);
    assert!(report.observed.iter().all(|o| o.state == ContainerState::Running));

    // Converged: a second pass does nothing.
    let again = r.converge_once(&desired).await.unwrap();
    assert!(again.actions.is_empty(), "{:?}", again.actions);

    // Changing one spec recreates that one only.
    let ids_before: HashMap<_, _> = view.iter().map(|(n, c)| (n.clone(), c.id.clone().unwrap())).collect();
    desired.revision = 2;
    desired.containers[1].env = vec!["N=changed".into()];
    let report = r.converge_once(&desired).await.unwrap();
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    assert!(matches!(report.actions.as_slice(), [Action::Recreate { .. }]), "{:?}", report.actions);
    let view = s.engine_view().await;
    let changed = &desired.containers[1];
    assert_ne!(view[&changed.name].id.as_ref().unwrap(), &ids_before[&changed.name]);
    assert_eq!(view[&changed.name].labels.as_ref().unwrap()[labels::SPEC_HASH], changed.spec_hash());
    assert!(is_running(&view[&changed.name]));
    for other in [&desired.containers[0], &desired.containers[2]] {
        assert_eq!(view[&other.name].id.as_ref().unwrap(), &ids_before[&other.name], "{} untouched", other.name);
    }

    // Dropping one from the set removes it.
    desired.revision = 3;
    let dropped = desired.containers.remove(2);
    r.converge_once(&desired).await.unwrap();
    let view = s.engine_view().await;
    assert_eq!(view.len(), 2);
    assert!(!view.contains_key(&dropped.name));

    // A stopped container is started again.
    let stopped = &desired.containers[0];
    // `sleep` as PID 1 ignores SIGTERM; do not wait the default 10 s for it.
    let stop = bollard::query_parameters::StopContainerOptionsBuilder::default().t(1).build();
    s.engine.docker().stop_container(&stopped.name, Some(stop)).await.unwrap();
    let report = r.converge_once(&desired).await.unwrap();
    assert!(matches!(report.actions.as_slice(), [Action::Start { .. }]), "{:?}", report.actions);
    assert!(is_running(&s.engine_view().await[&stopped.name]));
}

#[tokio::test]
async fn missing_image_is_reported_and_the_rest_converges() {
    let s = Scope::new("img").await;
    let mut r = Reconciler::new(s.engine.clone());
    let mut broken = s.spec(2);
    broken.image = "corral-test/does-not-exist:latest".into();
    // No registry is reachable from the test machines: this image may not be pulled.
    broken.pull = corral_proto::PullPolicy::Never;
    let desired = DesiredSet { revision: 1, containers: vec![s.spec(1), broken.clone(), s.spec(3)], ..Default::default() };

    let report = r.converge_once(&desired).await.unwrap();
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    assert_eq!(report.waiting.keys().collect::<Vec<_>>(), [&broken.name], "it waits for its image, and nothing is tried");
    assert!(!report.actions.iter().any(|a| a.name() == broken.name), "{:?}", report.actions);

    let view = s.engine_view().await;
    assert_eq!(view.len(), 2, "the two good containers exist: {:?}", view.keys());
    assert!(is_running(&view[&s.spec(1).name]) && is_running(&view[&s.spec(3).name]));
}

#[tokio::test]
async fn container_removed_by_hand_comes_back_from_the_event_stream() {
    let s = Scope::new("evt").await;
    let (shutdown_tx, shutdown_rx) = tokio::sync::broadcast::channel(1);
    let desired = DesiredSet { revision: 4, containers: vec![s.spec(1), s.spec(2), s.spec(3)], ..Default::default() };
    let handle = ReconcilerHandle::spawn(s.engine.clone(), Some(desired.clone()), &shutdown_rx);
    handle.wait_for_passes(1).await;

    let all_running = |view: &HashMap<String, bollard::models::ContainerSummary>| view.len() == 3 && view.values().all(is_running);
    let view = s.engine_view().await;
    assert!(all_running(&view), "startup pass converged: {:?}", view.keys());
    let victim = s.spec(2).name;
    let old_id = view[&victim].id.clone().unwrap();

    // Give the event subscription a moment to be in place, then remove a container by hand.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let opts = RemoveContainerOptionsBuilder::default().force(true).build();
    s.engine.docker().remove_container(&victim, Some(opts)).await.unwrap();
    let removed_at = Instant::now();

    // Well under the 30 s safety net, so only the event stream can explain a quick return.
    let deadline = removed_at + Duration::from_secs(10);
    let new_id = loop {
        let view = s.engine_view().await;
        if let Some(c) = view.get(&victim) {
            if is_running(c) && c.id.as_deref() != Some(old_id.as_str()) {
                break c.id.clone().unwrap();
            }
        }
        assert!(Instant::now() < deadline, "{victim} was not restored within 10 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    eprintln!("restored {victim} in {:?}", removed_at.elapsed());
    assert!(removed_at.elapsed() < Duration::from_secs(5), "took {:?}", removed_at.elapsed());

    // The observed set followed: it names the replacement and echoes the revision.
    let mut observed = handle.observed();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let current = observed.borrow_and_update().clone();
        if let Some(o) = current {
            if o.containers.iter().any(|c| c.docker_id == new_id && c.state == ContainerState::Running) {
                assert_eq!(o.applied_revision, 4);
                assert_eq!(o.containers.len(), 3);
                break;
            }
        }
        assert!(Instant::now() < deadline, "observed set never showed the replacement");
        let _ = tokio::time::timeout(Duration::from_millis(200), observed.changed()).await;
    }

    // A new desired set through the handle is applied too.
    let mut smaller = desired.clone();
    smaller.revision = 5;
    smaller.containers.truncate(1);
    handle.set_desired(smaller);
    let deadline = Instant::now() + Duration::from_secs(10);
    while s.engine_view().await.len() != 1 {
        assert!(Instant::now() < deadline, "set_desired was not applied");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    shutdown_tx.send(()).unwrap();
    handle.stop().await;
}

#[tokio::test]
async fn unreachable_socket_names_the_socket() {
    let err = Engine::connect(Some("unix:///nonexistent.sock")).await.unwrap_err();
    assert!(matches!(err, AgentError::DockerUnreachable { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("unix:///nonexistent.sock"), "{msg}");
    assert!(msg.contains("No such file or directory"), "{msg}");
    assert!(msg.contains("Is dockerd running?"), "{msg}");
}

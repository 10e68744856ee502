//! The whole agent (`run_with_engine`) against a hand-driven control plane on loopback and a real
//! Docker engine (`CORRAL_TEST_DOCKER_HOST`, default `unix:///var/run/docker.sock`, image
//! `corral-test/busybox:latest`). The control plane side here is a test double speaking the
//! proto types over a real WebSocket; the engine handle is scoped to a per-test label so the
//! agent cannot touch containers that are not the test's own.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use common::{is_running, Scope};
use corral_agent::{run_with_engine, AgentConfig, AgentError};
use corral_proto::{AgentMessage, ContainerState, DesiredSet, ObservedSet, RejectCode, Rejected, ServerMessage, Welcome, PROTOCOL_VERSION};
use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

type Ws = WebSocketStream<TcpStream>;

fn config(server_url: String, state_dir: &Path) -> AgentConfig {
    AgentConfig {
        ca_fingerprint: None,
        server_url,
        token: "join-token".into(),
        state_dir: state_dir.to_path_buf(),
        docker_host: None,
        name: Some("h-test".into()),
        address: None,
        labels: BTreeMap::from([("zone".to_string(), "a".to_string())]),
        registry_certs_dir: state_dir.join("certs.d"),
        tunnel_port: None,
    }
}

async fn accept(listener: &TcpListener, within: Duration) -> Ws {
    let (tcp, _) = tokio::time::timeout(within, listener.accept()).await.expect("the agent did not (re)connect in time").unwrap();
    tokio_tungstenite::accept_async(tcp).await.unwrap()
}

async fn recv(ws: &mut Ws) -> AgentMessage {
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("no frame from the agent within 10 s")
            .expect("agent closed the connection")
            .unwrap();
        if let Message::Text(t) = frame {
            return serde_json::from_str(t.as_str()).unwrap();
        }
    }
}

async fn send(ws: &mut Ws, msg: &ServerMessage) {
    ws.send(Message::text(serde_json::to_string(msg).unwrap())).await.unwrap();
}

fn welcome(heartbeat_ms: u64) -> ServerMessage {
    ServerMessage::Welcome(Welcome {
        host_id: "h".into(),
        host_name: "h-test".into(),
        environment: "default".into(),
        heartbeat_interval_ms: heartbeat_ms,
        credential: None,
    })
}

/// Reads frames until an observed set satisfies `pred`; counts heartbeats on the way.
async fn observed_until(ws: &mut Ws, heartbeats: &mut u32, pred: impl Fn(&ObservedSet) -> bool) -> ObservedSet {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        assert!(Instant::now() < deadline, "no matching observed set within 15 s");
        match recv(ws).await {
            AgentMessage::Heartbeat => *heartbeats += 1,
            AgentMessage::Observed(o) if pred(&o) => return o,
            AgentMessage::Observed(_) => {}
            AgentMessage::Hello(_) => panic!("hello twice on one connection"),
            AgentMessage::Logs(_) | AgentMessage::Stats(_) => {}
        }
    }
}

/// Agent logs in the test output (shown for failing tests; `RUST_LOG` filters).
fn logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "corral_agent=debug".into()))
        .with_test_writer()
        .try_init();
}

#[tokio::test]
async fn full_session_against_a_test_double_control_plane() {
    logs();
    let s = Scope::new("sess").await;
    let state = tempfile::tempdir().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (shutdown_tx, shutdown_rx) = tokio::sync::broadcast::channel(1);
    let agent = tokio::spawn(run_with_engine(config(url, state.path()), s.engine.clone(), shutdown_rx));

    // Hello: first frame, with the persisted identity and the host's facts.
    let mut ws = accept(&listener, Duration::from_secs(10)).await;
    let AgentMessage::Hello(hello) = recv(&mut ws).await else { panic!("first frame must be hello") };
    assert_eq!(hello.protocol_version, PROTOCOL_VERSION);
    assert_eq!(hello.token, "join-token");
    let host_id = std::fs::read_to_string(state.path().join("host-id")).unwrap();
    assert_eq!(hello.host_id, host_id.trim());
    assert_eq!(hello.facts.name, "h-test");
    assert_eq!(hello.facts.address, "127.0.0.1", "the local end of the socket to the control plane");
    assert!(!hello.facts.docker_version.is_empty());
    assert!(hello.facts.cpus > 0 && hello.facts.memory_bytes > 0);
    assert_eq!(hello.facts.labels["zone"], "a");

    // Welcome -> an observed set right away, before any desired set.
    send(&mut ws, &welcome(200)).await;
    let mut heartbeats = 0;
    let first = observed_until(&mut ws, &mut heartbeats, |_| true).await;
    assert_eq!(first.applied_revision, 0);
    assert!(first.containers.is_empty());

    // Desired -> persisted, converged, reported; heartbeats keep flowing meanwhile.
    let desired = DesiredSet { revision: 7, containers: vec![s.spec(1), s.spec(2)], ..Default::default() };
    send(&mut ws, &ServerMessage::Desired(desired.clone())).await;
    let o = observed_until(&mut ws, &mut heartbeats, |o| {
        o.applied_revision == 7 && o.containers.len() == 2 && o.containers.iter().all(|c| c.state == ContainerState::Running)
    })
    .await;
    let names: Vec<_> = o.containers.iter().map(|c| c.name.as_str()).collect();
    assert!(names.contains(&desired.containers[0].name.as_str()), "{names:?}");
    assert!(o.containers.iter().all(|c| c.ip.is_some()), "bridge containers have an IP");
    let saved: DesiredSet = serde_json::from_slice(&std::fs::read(state.path().join("desired.json")).unwrap()).unwrap();
    assert_eq!(saved, desired);
    let started = Instant::now();
    while heartbeats == 0 {
        assert!(started.elapsed() < Duration::from_secs(2), "no heartbeat at a 200 ms interval");
        if let AgentMessage::Heartbeat = recv(&mut ws).await {
            heartbeats += 1;
        }
    }

    // Drop the connection: the agent redials, says hello with the same identity, and reports
    // the state it kept converging meanwhile.
    drop(ws);
    let mut ws = accept(&listener, Duration::from_secs(10)).await;
    let AgentMessage::Hello(again) = recv(&mut ws).await else { panic!("hello expected") };
    assert_eq!(again.host_id, hello.host_id);
    send(&mut ws, &welcome(200)).await;
    let o = observed_until(&mut ws, &mut heartbeats, |_| true).await;
    assert_eq!(o.applied_revision, 7);

    // Go silent: after 3 missed intervals (600 ms) the agent gives up on this connection.
    let silent_since = Instant::now();
    let mut ws3 = accept(&listener, Duration::from_secs(10)).await;
    let silence = silent_since.elapsed();
    assert!(silence >= Duration::from_millis(550), "declared dead too early: {silence:?}");
    drop(ws);
    let AgentMessage::Hello(_) = recv(&mut ws3).await else { panic!("hello expected") };

    // Already connected: logged and retried, not fatal.
    send(&mut ws3, &ServerMessage::Rejected(Rejected { code: RejectCode::AlreadyConnected, message: "h is connected".into() })).await;
    let mut ws4 = accept(&listener, Duration::from_secs(10)).await;
    let AgentMessage::Hello(_) = recv(&mut ws4).await else { panic!("hello expected") };

    // Bad token: fatal, with an actionable message; the containers stay.
    send(&mut ws4, &ServerMessage::Rejected(Rejected { code: RejectCode::BadToken, message: "unknown token".into() })).await;
    let result = tokio::time::timeout(Duration::from_secs(10), agent).await.expect("agent did not stop").unwrap();
    let err = result.unwrap_err();
    assert!(matches!(err, AgentError::Rejected { code: RejectCode::BadToken, .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("unknown token") && msg.contains("join token"), "{msg}");
    assert_eq!(s.engine_view().await.len(), 2, "the agent stopping does not remove containers");

    drop(shutdown_tx);
}

#[tokio::test]
async fn saved_desired_set_is_enforced_without_a_control_plane() {
    logs();
    let s = Scope::new("offline").await;
    let state = tempfile::tempdir().unwrap();
    let desired = DesiredSet { revision: 3, containers: vec![s.spec(1)], ..Default::default() };
    std::fs::write(state.path().join("desired.json"), serde_json::to_vec(&desired).unwrap()).unwrap();

    // A loopback port nobody listens on: every dial is refused.
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap();
    let (shutdown_tx, shutdown_rx) = tokio::sync::broadcast::channel(1);
    let agent = tokio::spawn(run_with_engine(config(format!("http://{closed}"), state.path()), s.engine.clone(), shutdown_rx));

    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let view = s.engine_view().await;
        if view.get(&desired.containers[0].name).is_some_and(is_running) {
            break;
        }
        assert!(Instant::now() < deadline, "saved desired set was not enforced");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    shutdown_tx.send(()).unwrap();
    let result = tokio::time::timeout(Duration::from_secs(5), agent).await.expect("agent ignored shutdown").unwrap();
    assert!(result.is_ok(), "{result:?}");
}

#[tokio::test]
async fn bad_config_fails_fast_with_a_clear_error() {
    let state = tempfile::tempdir().unwrap();
    let (_tx, rx) = tokio::sync::broadcast::channel(1);
    let mut c = config("http://127.0.0.1:1".into(), state.path());
    c.docker_host = Some("unix:///nonexistent.sock".into());
    let err = corral_agent::run(c, rx.resubscribe()).await.unwrap_err();
    assert!(matches!(err, AgentError::DockerUnreachable { ref socket, .. } if socket == "unix:///nonexistent.sock"), "{err:?}");

    let c = config("10.0.0.5:7070".into(), state.path());
    let err = corral_agent::run(c, rx).await.unwrap_err();
    assert!(matches!(err, AgentError::InvalidServerUrl { .. }), "{err:?}");
}

//! The event stream (`GET /v1/events`): clients learn which lists changed, per environment,
//! without polling. A control plane with no hosts is enough, except for the engine check.

use corral_e2e::*;
use futures_util::StreamExt;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::time::Duration;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

fn ws_url(cp: &ControlPlane, query: &str) -> String {
    format!("{}/v1/events?{query}", cp.url.replacen("http://", "ws://", 1))
}

async fn connect(cp: &ControlPlane, env: &str) -> Socket {
    let request = ws_request(&cp.url, &format!("/v1/events?env={env}"), &cp.admin_token());
    let (mut socket, _) = tokio_tungstenite::connect_async(request).await.expect("connect to /v1/events");
    let hello = next_frame(&mut socket, Duration::from_secs(5)).await.expect("a hello frame");
    assert_eq!(hello, json!({"type": "hello", "environment": env}));
    socket
}

/// The next JSON frame, or `None` if none comes within `timeout`.
async fn next_frame(socket: &mut Socket, timeout: Duration) -> Option<Value> {
    loop {
        match tokio::time::timeout(timeout, socket.next()).await {
            Err(_) => return None,
            Ok(None) => panic!("the event stream closed"),
            Ok(Some(msg)) => match msg.expect("read a frame") {
                Message::Text(text) => return Some(serde_json::from_str(&text).expect("frames are JSON")),
                _ => continue,
            },
        }
    }
}

/// Collects `changed` frames until `want` resources of `env` were all named; asserts the
/// frames' shape on the way.
async fn wait_changed(socket: &mut Socket, env: Option<&str>, want: &[&str]) -> Vec<Value> {
    let mut seen = BTreeSet::new();
    let mut frames = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !want.iter().all(|w| seen.contains(*w)) {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let frame = next_frame(socket, left).await.unwrap_or_else(|| panic!("no change of {want:?} announced; got {frames:?}"));
        assert_eq!(frame["type"], "changed", "{frame}");
        let resources: Vec<String> = serde_json::from_value(frame["resources"].clone()).expect("resources is a list of names");
        let unique: BTreeSet<&String> = resources.iter().collect();
        assert_eq!(unique.len(), resources.len(), "resources are de-duplicated: {frame}");
        if frame["environment"] == json!(env) {
            seen.extend(resources);
        }
        frames.push(frame);
    }
    frames
}

/// Runs a blocking client command from async code.
async fn cli(cp: &ControlPlane, args: &[&str]) -> Value {
    tokio::task::block_in_place(|| cp.json(args))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_hear_which_lists_changed_in_their_environment_only() {
    let tmp = tempfile::tempdir().unwrap();
    let cp = tokio::task::block_in_place(|| ControlPlane::start(&tmp.path().join("data")));
    cli(&cp, &["env", "create", "OPS"]).await;
    cli(&cp, &["env", "create", "DEV"]).await;
    let mut ops = connect(&cp, "OPS").await;
    let mut dev = connect(&cp, "DEV").await;
    let mut default = connect(&cp, "Default").await;

    cli(&cp, &["--env", "OPS", "stack", "create", "WEB"]).await;
    let frames = wait_changed(&mut ops, Some("OPS"), &["stacks"]).await;
    assert!(frames.iter().all(|f| f["environment"] == "OPS"), "{frames:?}");
    cli(&cp, &["--env", "OPS", "service", "create", "WEB/web", "--image", TEST_IMAGE, "--scale", "2", "--", "sleep", "3600"]).await;
    wait_changed(&mut ops, Some("OPS"), &["services"]).await;

    // Many changes at once come as few frames: coalesced over ~100 ms.
    for i in 0..5 {
        cli(&cp, &["--env", "OPS", "stack", "create", &format!("S{i}")]).await;
    }
    let mut frames = 0;
    while next_frame(&mut ops, Duration::from_millis(500)).await.is_some() {
        frames += 1;
    }
    assert!(frames <= 5, "5 writes over >100 ms, yet {frames} frames");

    // A new environment is news for everyone; environment null.
    cli(&cp, &["env", "create", "QA"]).await;
    wait_changed(&mut dev, None, &["environments"]).await;
    wait_changed(&mut default, None, &["environments"]).await;
    // ... but OPS' stacks and services were not DEV's or Default's business.
    for socket in [&mut dev, &mut default] {
        assert_eq!(next_frame(socket, Duration::from_millis(500)).await, None, "nothing else for other environments");
    }

    // A restore changes everything, everywhere.
    let file = tmp.path().join("backup.db");
    cli(&cp, &["backup", file.to_str().unwrap()]).await;
    cli(&cp, &["restore", file.to_str().unwrap()]).await;
    wait_changed(&mut ops, Some("OPS"), &["hosts", "stacks", "services", "containers"]).await;
    wait_changed(&mut dev, None, &["environments"]).await;

    // The header works as well as the query.
    let mut request = ws_url(&cp, "env=DEV").into_client_request().unwrap();
    request.headers_mut().insert("Authorization", format!("Bearer {}", cp.admin_token()).parse().unwrap());
    let (mut socket, _) = tokio_tungstenite::connect_async(request).await.expect("bearer header accepted");
    assert_eq!(next_frame(&mut socket, Duration::from_secs(5)).await.unwrap()["type"], "hello");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_come_before_the_upgrade_as_json() {
    let tmp = tempfile::tempdir().unwrap();
    let cp = tokio::task::block_in_place(|| ControlPlane::start(&tmp.path().join("data")));
    let refused = |request: tokio_tungstenite::tungstenite::http::Request<()>| async move {
        match tokio_tungstenite::connect_async(request).await {
            Err(WsError::Http(response)) => {
                let body: Value = serde_json::from_slice(response.body().as_deref().unwrap_or_default()).expect("a JSON error body");
                (response.status().as_u16(), body)
            }
            Err(e) => panic!("expected an HTTP refusal, got {e}"),
            Ok(_) => panic!("the upgrade should have been refused"),
        }
    };
    let url = |query: &str| ws_url(&cp, query).into_client_request().unwrap();
    let (status, body) = refused(ws_request(&cp.url, "/v1/events", "wrong")).await;
    assert_eq!((status, body["code"].as_str()), (401, Some("unauthorized")), "{body}");
    let (status, _) = refused(url("")).await;
    assert_eq!(status, 401, "no token at all");
    let (status, _) = refused(url(&format!("token={}", cp.admin_token()))).await;
    assert_eq!(status, 401, "a token in the URL is no credential");
    let (status, body) = refused(url("ticket=corral_t_made_up")).await;
    assert_eq!((status, body["code"].as_str()), (401, Some("bad_ticket")), "{body}");
    let (status, body) = refused(ws_request(&cp.url, "/v1/events?env=Nowhere", &cp.admin_token())).await;
    assert_eq!((status, body["code"].as_str()), (404, Some("not_found")), "{body}");
    assert!(body["message"].as_str().unwrap().contains("environment \"Nowhere\" does not exist"), "{body}");
}

/// A container starting on a real engine is announced as a `containers` change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_starting_on_an_agent_is_announced() {
    let cluster = tokio::task::block_in_place(|| Cluster::start(1));
    let cp = &cluster.cp;
    cli(cp, &["stack", "create", "EV"]).await;
    let mut socket = connect(cp, "Default").await;
    cli(cp, &["service", "create", "EV/web", "--image", TEST_IMAGE, "--scale", "1", "--", "sleep", "3600"]).await;
    wait_changed(&mut socket, Some("Default"), &["services"]).await;
    tokio::task::block_in_place(|| {
        wait_for("EV-web-1 to run on the engine", Duration::from_secs(30), || {
            cluster.engines[0].running_names().contains(&"EV-web-1".to_string()).then_some(())
        })
    });
    // Let what the write itself caused go by; then only the engine changes something.
    while next_frame(&mut socket, Duration::from_millis(1500)).await.is_some() {}
    let out = cluster.engines[0].docker(&["kill", "EV-web-1"]);
    assert!(out.status.success(), "{}", text(&out));
    wait_changed(&mut socket, Some("Default"), &["containers"]).await;
    let ps = cli(cp, &["ps"]).await;
    assert!(ps.as_array().unwrap().iter().any(|c| c["name"] == "EV-web-1"), "{ps}");
}

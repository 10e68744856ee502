//! Each principal sees only its environments; revocation is immediate; cookies are not enough
//! from another origin.
//!
//! A real control plane process, spoken to over raw HTTP/1.1 and WebSockets from the test, with
//! fake agents that speak the real protocol (hello, reports, stats, log lines), so no Docker
//! engine is needed.

use corral_e2e::*;
use corral_proto::stats::{ContainerStats, HostStats, StatsReport};
use corral_proto::{AgentMessage, LogChunk, LogLine, ObservedSet, ServerMessage};
use futures_util::StreamExt;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;

/// What the issue promises: open sockets end within this of the revoking request's answer.
const REVOKED_WITHIN: Duration = Duration::from_secs(1);
const FOREIGN: &str = "http://evil.example";

/// An HTTP answer: status, raw header block, body (JSON when it parses, else a string).
#[derive(Debug)]
struct Answer {
    status: u16,
    headers: String,
    body: Value,
}

impl Answer {
    fn header(&self, name: &str) -> Option<String> {
        self.headers.lines().find_map(|l| l.split_once(':').filter(|(n, _)| n.trim().eq_ignore_ascii_case(name)).map(|(_, v)| v.trim().to_string()))
    }

    fn text(&self) -> String {
        self.body.as_str().map_or_else(|| self.body.to_string(), str::to_string)
    }
}

/// One HTTP/1.1 exchange over a fresh connection to `base` (`http://127.0.0.1:PORT`); returns
/// once the whole answer is in, so its instant is when the client has the answer.
async fn exchange(base: &str, method: &str, path: &str, headers: &[(&str, &str)], body: Option<&Value>) -> Answer {
    let addr = base.trim_start_matches("http://").trim_end_matches('/');
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect to the control plane");
    let body = body.map(Value::to_string).unwrap_or_default();
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n", body.len());
    if !body.is_empty() {
        request.push_str("Content-Type: application/json\r\n");
    }
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(&body);
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    let raw = String::from_utf8_lossy(&raw).to_string();
    let (head, mut payload) = raw.split_once("\r\n\r\n").map(|(h, b)| (h.to_string(), b.to_string())).unwrap_or((raw.clone(), String::new()));
    if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        payload = dechunk(&payload);
    }
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = serde_json::from_str(&payload).unwrap_or(Value::String(payload));
    Answer { status, headers: head, body }
}

fn dechunk(mut text: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = text.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else { break };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        text = rest[n..].trim_start_matches("\r\n");
    }
    out
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// As the admin, through the API; asserts a success.
async fn admin(cp: &ControlPlane, method: &str, path: &str, body: Value) -> Value {
    let token = bearer(&cp.admin_token());
    let answer = exchange(&cp.url, method, path, &[("Authorization", &token)], Some(&body)).await;
    assert!((200..300).contains(&answer.status), "{method} {path}: {answer:?}");
    answer.body
}

/// A user with a password and, when `role` is given, that role in `env`.
async fn user(cp: &ControlPlane, name: &str, env: &str, role: Option<&str>) {
    admin(cp, "POST", "/v1/users", json!({"name": name, "password": format!("{name}-password")})).await;
    if let Some(role) = role {
        admin(cp, "POST", &format!("/v1/members?env={env}"), json!({"name": name, "role": role})).await;
    }
}

/// Logs `name` in (no Origin, as the CLI does); returns the session token and the cookie pair.
async fn login(cp: &ControlPlane, name: &str) -> (String, String) {
    let answer = exchange(&cp.url, "POST", "/v1/login", &[], Some(&json!({"user": name, "password": format!("{name}-password")}))).await;
    assert_eq!(answer.status, 200, "login {name}: {answer:?}");
    let cookie = answer.header("set-cookie").expect("a session cookie").split(';').next().unwrap().trim().to_string();
    (answer.body["token"].as_str().unwrap().to_string(), cookie)
}

/// A new account key of the user `credential` stands for (or an environment key with `env`).
async fn key(cp: &ControlPlane, credential: &str, name: &str, env: Option<&str>) -> String {
    let body = match env {
        Some(env) => json!({"name": name, "environment": env}),
        None => json!({"name": name}),
    };
    let answer = exchange(&cp.url, "POST", "/v1/apikeys", &[("Authorization", &bearer(credential))], Some(&body)).await;
    assert_eq!(answer.status, 201, "{answer:?}");
    answer.body["secret"].as_str().unwrap().to_string()
}

/// A single-use ticket (`POST /v1/ws-ticket`) for `credential` to open the WebSocket at `path`
/// once, as the web UI asks for one when it signs its requests with a token.
async fn ticket(cp: &ControlPlane, credential: &str, path: &str) -> String {
    let answer = exchange(&cp.url, "POST", "/v1/ws-ticket", &[("Authorization", &bearer(credential))], Some(&json!({ "path": path }))).await;
    assert_eq!(answer.status, 200, "a ticket for {path}: {answer:?}");
    answer.body["ticket"].as_str().unwrap().to_string()
}

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Opens a WebSocket at `path` with extra request headers; a refusal gives its status and body.
async fn open(base: &str, path: &str, headers: &[(&str, &str)]) -> Result<Socket, (u16, String)> {
    let mut request = format!("{}{path}", base.replacen("http://", "ws://", 1)).into_client_request().unwrap();
    for (name, value) in headers {
        request.headers_mut().insert(tokio_tungstenite::tungstenite::http::HeaderName::from_bytes(name.as_bytes()).unwrap(), value.parse().unwrap());
    }
    match tokio_tungstenite::connect_async(request).await {
        Ok((socket, _)) => Ok(socket),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            Err((response.status().as_u16(), String::from_utf8_lossy(response.body().as_deref().unwrap_or_default()).to_string()))
        }
        Err(e) => panic!("WebSocket {path}: {e}"),
    }
}

/// How a watched socket ended.
#[derive(Debug)]
struct Ended {
    at: Instant,
    close: Option<(CloseCode, String)>,
    /// The last text frame before the end (the log stream's `end` frame says why).
    last_text: Option<String>,
}

/// A socket read in the background until it ends, counting the frames it got.
struct Watched {
    what: String,
    frames: Arc<AtomicUsize>,
    ended: tokio::task::JoinHandle<Ended>,
}

fn watch(what: &str, mut socket: Socket) -> Watched {
    let frames = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&frames);
    let ended = tokio::spawn(async move {
        let mut last_text = None;
        loop {
            match socket.next().await {
                Some(Ok(Message::Close(frame))) => {
                    return Ended { at: Instant::now(), close: frame.map(|f| (f.code, f.reason.to_string())), last_text };
                }
                Some(Ok(Message::Text(t))) => {
                    counter.fetch_add(1, Ordering::SeqCst);
                    last_text = Some(t.to_string());
                }
                Some(Ok(_)) => {}
                None | Some(Err(_)) => return Ended { at: Instant::now(), close: None, last_text },
            }
        }
    });
    Watched { what: what.to_string(), frames, ended }
}

impl Watched {
    /// Waits until the socket has carried at least one frame: it is really streaming.
    async fn streaming(&self) {
        let deadline = Instant::now() + Duration::from_secs(15);
        while self.frames.load(Ordering::SeqCst) == 0 {
            assert!(!self.ended.is_finished(), "{} ended before its first frame", self.what);
            assert!(Instant::now() < deadline, "{} carried no frame within 15 s", self.what);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// A fake agent: joins with `join_token` as host `name`, reports an empty engine, heartbeats,
/// reports `containers`' stats every 500 ms, and answers every log request with a line.
async fn fake_agent(cp: &ControlPlane, join_token: &str, name: &str, containers: Vec<ContainerStats>) -> tokio::task::JoinHandle<()> {
    let facts = corral_e2e::fake_agent::facts(name);
    let mut agent =
        FakeAgent::join(cp, join_token, None, &format!("host-{name}"), facts).await.unwrap_or_else(|answer| panic!("the fake agent's hello: {answer}"));
    // Stats count only for containers the host reports it runs, under the stack and service
    // their labels name.
    let runs: Vec<_> = containers
        .iter()
        .map(|c| corral_proto::ObservedContainer {
            labels: [(corral_proto::labels::STACK.to_string(), c.stack.clone()), (corral_proto::labels::SERVICE.to_string(), c.service.clone())].into(),
            ..corral_e2e::fake_agent::running(&c.name)
        })
        .collect();
    agent.report(runs.clone());
    let name = name.to_string();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        let mut counter = 0u64;
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    counter += 1;
                    let at_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
                    let host = HostStats { cpu_percent: 10.0, cpu_core_percent: vec![10.0, 10.0], memory_used_bytes: 1 << 29, memory_total_bytes: 1 << 30, network_rx_bytes: counter * 1000, ..Default::default() };
                    agent.send(&AgentMessage::Stats(StatsReport { at_ms, host, containers: containers.clone(), tunnel: None }));
                }
                message = agent.inbox.recv() => match message {
                    None => return,
                    Some(ServerMessage::Desired(set)) => agent.send(&AgentMessage::Observed(ObservedSet { applied_revision: set.revision, containers: runs.clone(), ..Default::default() })),
                    Some(ServerMessage::Logs(request)) => agent.send(&AgentMessage::Logs(LogChunk {
                        id: request.id,
                        lines: vec![LogLine { stream: "stdout".into(), line: format!("a line from {name}") }],
                        end: None,
                    })),
                    Some(_) => {}
                },
            }
        }
    })
}

fn container(name: &str, stack: &str, service: &str) -> ContainerStats {
    ContainerStats {
        name: name.into(),
        stack: stack.into(),
        service: service.into(),
        cpu_percent: 5.0,
        memory_bytes: 1 << 20,
        memory_limit_bytes: 1 << 30,
        ..Default::default()
    }
}

async fn join_token(cp: &ControlPlane, env: &str) -> String {
    let token = bearer(&cp.admin_token());
    let answer = exchange(&cp.url, "GET", &format!("/v1/hosts/join-command?env={env}"), &[("Authorization", &token)], None).await;
    answer.body["token"].as_str().expect("a join token").to_string()
}

fn start_cp(tmp: &tempfile::TempDir, args: &[&str]) -> ControlPlane {
    let launch = Launch { args: args.iter().map(|a| a.to_string()).collect(), ..Launch::default() };
    tokio::task::block_in_place(|| ControlPlane::launch(&tmp.path().join("data"), &launch))
}

/// `/metrics` shows each caller the environments it may see: admins all of them, a member its
/// own, an environment key its one, a user without roles none; nobody without a credential.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_show_each_caller_only_its_environments() {
    let tmp = tempfile::tempdir().unwrap();
    let cp = start_cp(&tmp, &[]);
    for env in ["OPS", "DEV"] {
        admin(&cp, "POST", "/v1/environments", json!({"name": env})).await;
    }
    let _ops = fake_agent(&cp, &join_token(&cp, "OPS").await, "ops-host", vec![container("Payroll-db-1", "Payroll", "db")]).await;
    let _dev = fake_agent(&cp, &join_token(&cp, "DEV").await, "dev-host", vec![container("Sandbox-web-1", "Sandbox", "web")]).await;
    user(&cp, "dana", "DEV", Some("read-only")).await;
    user(&cp, "otto", "DEV", None).await;
    let (dana, _) = login(&cp, "dana").await;
    let (otto, _) = login(&cp, "otto").await;
    let ops_key = key(&cp, &cp.admin_token(), "ops-scraper", Some("OPS")).await;

    let page = |token: String| {
        let url = cp.url.clone();
        async move { exchange(&url, "GET", "/metrics", &[("Authorization", &bearer(&token))], None).await }
    };
    let everything =
        wait_for_async("both hosts on the admin's /metrics", || page(cp.admin_token()), |a| a.text().contains("dev-host") && a.text().contains("ops-host"))
            .await;
    for needle in ["Payroll-db-1", "Sandbox-web-1", "environment=\"OPS\"", "environment=\"DEV\"", "corral_agents_connected 2"] {
        assert!(everything.text().contains(needle), "the admin sees {needle}:\n{}", everything.text());
    }

    let cases = [
        (
            "a DEV read-only member",
            dana,
            &["dev-host", "Sandbox-web-1", "service=\"web\"", "corral_agents_connected 1"][..],
            &["ops-host", "Payroll", "environment=\"OPS\""][..],
        ),
        (
            "an OPS environment key",
            ops_key,
            &["ops-host", "Payroll-db-1", "corral_agents_connected 1"][..],
            &["dev-host", "Sandbox", "environment=\"DEV\""][..],
        ),
        ("a user without roles", otto, &["corral_agents_connected 0"][..], &["ops-host", "dev-host", "Payroll", "Sandbox"][..]),
    ];
    let mut failures = Vec::new();
    for (who, token, sees, hidden) in cases {
        let answer = page(token).await;
        if answer.status != 200 {
            failures.push(format!("{who}: {} {}", answer.status, answer.text()));
            continue;
        }
        let text = answer.text();
        failures.extend(sees.iter().filter(|n| !text.contains(**n)).map(|n| format!("{who} should see {n}")));
        failures.extend(hidden.iter().filter(|n| text.contains(**n)).map(|n| format!("{who} must not see {n}")));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    // No credential, a wrong one, or one passed in the query: 401, nothing shown.
    for (path, headers) in [
        ("/metrics", vec![]),
        ("/metrics", vec![("Authorization", "Bearer corral_nope".to_string())]),
        (&format!("/metrics?token={}", cp.admin_token())[..], vec![]),
    ] {
        let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let answer = exchange(&cp.url, "GET", path, &headers, None).await;
        assert_eq!(answer.status, 401, "{path}: {answer:?}");
        assert!(!answer.text().contains("host"), "{answer:?}");
    }
}

/// Polls `fetch` until `ok` holds for its answer (15 s at most).
async fn wait_for_async<F, Fut>(what: &str, fetch: F, ok: impl Fn(&Answer) -> bool) -> Answer
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Answer>,
{
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let answer = fetch().await;
        if ok(&answer) {
            return answer;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}: {answer:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A principal's three kinds of long-lived socket, opened with `headers`, or with a ticket for
/// each (`&ticket=…`) issued to the credential `ticketed`.
async fn open_three(cp: &ControlPlane, who: &str, headers: &[(&str, &str)], ticketed: Option<&str>) -> Vec<Watched> {
    let mut sockets = Vec::new();
    for (kind, path, query) in [
        ("events", "/v1/events", "?env=Default"),
        ("live stats", "/v1/stats/live", "?env=Default"),
        ("logs", "/v1/containers/WEB-web-1/logs", "?env=Default&tail=5"),
    ] {
        let ticket = match ticketed {
            Some(credential) => format!("&ticket={}", ticket(cp, credential, path).await),
            None => String::new(),
        };
        let socket = open(&cp.url, &format!("{path}{query}{ticket}"), headers).await.unwrap_or_else(|e| panic!("{who}'s {kind} socket: {e:?}"));
        sockets.push(watch(&format!("{who}'s {kind} socket"), socket));
    }
    for s in &sockets {
        s.streaming().await;
    }
    sockets
}

/// A request that takes access away, and the sockets it must end.
struct Revocation<'a> {
    what: &'a str,
    sockets: Vec<Watched>,
    method: &'a str,
    path: &'a str,
    headers: Vec<(&'a str, &'a String)>,
}

/// Open log, event and live-stats sockets end within a second of the session's logout, the
/// membership's removal, the key's revocation and the user's deletion, with a close frame that
/// says why; everyone else's sockets stay open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_access_ends_open_sockets_within_a_second() {
    let tmp = tempfile::tempdir().unwrap();
    let cp = start_cp(&tmp, &[]);
    let _agent = fake_agent(&cp, &join_token(&cp, "Default").await, "h1", vec![container("WEB-web-1", "WEB", "web")]).await;
    admin(&cp, "POST", "/v1/stacks?env=Default", json!({"name": "WEB"})).await;
    admin(&cp, "POST", "/v1/stacks/WEB/services?env=Default", json!({"name": "web", "image": "busybox", "scale": 1})).await;
    let token = bearer(&cp.admin_token());
    wait_for_async(
        "WEB-web-1 to be placed",
        || {
            let (url, token) = (cp.url.clone(), token.clone());
            async move { exchange(&url, "GET", "/v1/containers?env=Default", &[("Authorization", &token)], None).await }
        },
        |a| a.text().contains("WEB-web-1"),
    )
    .await;
    for name in ["lou", "mem", "kay", "del", "bystander"] {
        user(&cp, name, "Default", Some("read-only")).await;
    }
    let own_origin = cp.url.clone();

    // Bystanders: the admin and another read-only user keep their sockets through it all.
    let (bystander, _) = login(&cp, "bystander").await;
    let mut bystanders = open_three(&cp, "the bystander", &[], Some(&bystander)).await;
    bystanders.push(watch("the admin's event socket", open(&cp.url, "/v1/events?env=Default", &[("Authorization", &token)]).await.unwrap()));

    // logout: the browser's cookie session, ended by the browser's own logout.
    let (_, cookie) = login(&cp, "lou").await;
    let lou = open_three(&cp, "lou (cookie session)", &[("Cookie", &cookie), ("Origin", &own_origin)], None).await;
    // membership removal: an account key in the Authorization header, as the CLI sends it.
    let (mem_session, _) = login(&cp, "mem").await;
    let mem_key = key(&cp, &mem_session, "mem-key", None).await;
    let mem = open_three(&cp, "mem (account key)", &[("Authorization", &bearer(&mem_key))], None).await;
    // key revocation: sockets opened with tickets issued to the key, as a browser signed in by a
    // token opens them; revoked by its owner.
    let (kay_session, _) = login(&cp, "kay").await;
    let kay_key = key(&cp, &kay_session, "kay-key", None).await;
    let kay = open_three(&cp, "kay (tickets for a key)", &[], Some(&kay_key)).await;
    // user deletion: a session token in the header.
    let (del_session, _) = login(&cp, "del").await;
    let del = open_three(&cp, "del (session token)", &[("Authorization", &bearer(&del_session))], None).await;

    let admin_auth = bearer(&cp.admin_token());
    let kay_auth = bearer(&kay_session);
    let revocations = [
        Revocation {
            what: "the session's logout",
            sockets: lou,
            method: "POST",
            path: "/v1/logout",
            headers: vec![("Cookie", &cookie), ("Origin", &own_origin)],
        },
        Revocation {
            what: "the membership's removal",
            sockets: mem,
            method: "DELETE",
            path: "/v1/members/user/mem?env=Default",
            headers: vec![("Authorization", &admin_auth)],
        },
        Revocation { what: "the key's revocation", sockets: kay, method: "DELETE", path: "/v1/apikeys/kay-key", headers: vec![("Authorization", &kay_auth)] },
        Revocation { what: "the user's deletion", sockets: del, method: "DELETE", path: "/v1/users/del", headers: vec![("Authorization", &admin_auth)] },
    ];
    let mut report = Vec::new();
    let mut failures = Vec::new();
    for Revocation { what, sockets, method, path, headers } in revocations {
        let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let answer = exchange(&cp.url, method, path, &headers, None).await;
        let answered = Instant::now();
        assert!((200..300).contains(&answer.status), "{what}: {method} {path}: {answer:?}");
        for socket in sockets {
            let ended = match tokio::time::timeout(Duration::from_secs(3), socket.ended).await {
                Ok(ended) => ended.unwrap(),
                Err(_) => {
                    failures.push(format!("{}: still open 3 s after {what}", socket.what));
                    continue;
                }
            };
            let after = ended.at.saturating_duration_since(answered);
            report.push(format!("{}: closed {after:?} after {what}", socket.what));
            if after > REVOKED_WITHIN {
                failures.push(format!("{}: closed {after:?} after {what}, more than {REVOKED_WITHIN:?}", socket.what));
            }
            match &ended.close {
                Some((CloseCode::Policy, reason)) if !reason.is_empty() => {}
                other => failures.push(format!("{}: closed with {other:?}, want a policy close frame saying why", socket.what)),
            }
            // A log reader also gets the stream's own last frame, as for any other end.
            if socket.what.ends_with("logs socket") && !ended.last_text.as_deref().is_some_and(|t| t.contains(r#""type":"end""#) && t.contains("revoked")) {
                failures.push(format!("{}: last frame {:?}, want an end frame saying access was revoked", socket.what, ended.last_text));
            }
        }
    }
    eprintln!("{}", report.join("\n"));
    assert!(failures.is_empty(), "{}\n(all: {report:#?})", failures.join("\n"));

    // Nobody else lost a socket, and the bystanders' streams still carry news.
    tokio::time::sleep(Duration::from_millis(500)).await;
    for s in &bystanders {
        assert!(!s.ended.is_finished(), "{} was closed by someone else's revocation", s.what);
    }
    let before = bystanders[0].frames.load(Ordering::SeqCst);
    admin(&cp, "POST", "/v1/stacks?env=Default", json!({"name": "AFTER"})).await;
    let events = &bystanders[0];
    let deadline = Instant::now() + Duration::from_secs(5);
    while events.frames.load(Ordering::SeqCst) == before {
        assert!(Instant::now() < deadline, "the bystander's event stream went quiet");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A session that expires while its socket is open loses the socket within seconds, without
/// any request to trigger it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expiring_session_ends_its_sockets() {
    let tmp = tempfile::tempdir().unwrap();
    let cp = start_cp(&tmp, &["--session-ttl", "2"]);
    user(&cp, "eve", "Default", Some("read-only")).await;
    let (session, _) = login(&cp, "eve").await;
    let opened = Instant::now();
    let socket = watch("eve's event socket", open(&cp.url, "/v1/events?env=Default", &[("Authorization", &bearer(&session))]).await.unwrap());
    socket.streaming().await;
    // Two seconds of session, then at most the periodic re-check (5 s) and a second of slack.
    let ended = tokio::time::timeout(Duration::from_secs(10), socket.ended).await.expect("the socket outlived its expired session by far").unwrap();
    let lived = ended.at - opened;
    assert!(lived >= Duration::from_secs(2) && lived <= Duration::from_secs(8), "closed after {lived:?}");
    assert!(matches!(&ended.close, Some((CloseCode::Policy, r)) if !r.is_empty()), "{:?}", ended.close);
}

/// A page on another origin (another site, or another port of this very host, as any service
/// Corral runs there is) cannot act with the browser's session cookie: state-changing requests
/// need the UI's own `Origin` (or `Referer`), and changes nothing otherwise.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_session_cookie_does_not_act_for_another_origin() {
    let tmp = tempfile::tempdir().unwrap();
    let cp = start_cp(&tmp, &[]);
    user(&cp, "olga", "Default", Some("restricted")).await;
    let (_, cookie) = login(&cp, "olga").await;
    let own = cp.url.clone();
    let port: u16 = own.rsplit(':').next().unwrap().parse().unwrap();
    let same_host_other_port = format!("http://127.0.0.1:{}", port.wrapping_add(1));
    let from_evil_page = format!("{FOREIGN}/page.html");
    let own_page = format!("{own}/#/stacks");
    let refused: [(&str, Vec<(&str, &str)>); 5] = [
        ("a foreign Origin", vec![("Origin", FOREIGN)]),
        ("another port of the same host", vec![("Origin", &same_host_other_port)]),
        ("the literal null origin", vec![("Origin", "null")]),
        ("no Origin and a foreign Referer", vec![("Referer", &from_evil_page)]),
        ("neither Origin nor Referer", vec![]),
    ];
    for (what, extra) in &refused {
        let mut headers = vec![("Cookie", cookie.as_str())];
        headers.extend(extra.iter().copied());
        let answer = exchange(&own, "POST", "/v1/stacks", &headers, Some(&json!({"name": "CSRF"}))).await;
        assert_eq!(answer.status, 403, "{what}: {answer:?}");
        let message = answer.body["message"].as_str().unwrap_or_default();
        assert!(message.contains("origin") || message.contains("Origin"), "{what}: the refusal says why: {message}");
        let deleted = exchange(&own, "DELETE", "/v1/stacks/KEEP", &headers, None).await;
        assert_eq!(deleted.status, 403, "{what}: {deleted:?}");
    }
    let admin_auth = bearer(&cp.admin_token());
    let stacks = exchange(&own, "GET", "/v1/stacks", &[("Authorization", &admin_auth)], None).await;
    assert_eq!(stacks.body, json!([]), "a refused request changed nothing");

    // A foreign page cannot sign the browser out either.
    let out = exchange(&own, "POST", "/v1/logout", &[("Cookie", &cookie), ("Origin", FOREIGN)], None).await;
    assert_eq!(out.status, 403, "{out:?}");
    assert_eq!(exchange(&own, "GET", "/v1/whoami", &[("Cookie", &cookie)], None).await.status, 200, "the session survived");

    // The UI's own page, by Origin or by Referer, acts as before; so does a bearer token without either.
    for (name, header) in [("BY-ORIGIN", ("Origin", own.as_str())), ("BY-REFERER", ("Referer", own_page.as_str()))] {
        let answer = exchange(&own, "POST", "/v1/stacks", &[("Cookie", &cookie), header], Some(&json!({"name": name}))).await;
        assert_eq!(answer.status, 201, "{name}: {answer:?}");
    }
    let by_cli = exchange(&own, "POST", "/v1/stacks", &[("Authorization", &admin_auth)], Some(&json!({"name": "BY-CLI"}))).await;
    assert_eq!(by_cli.status, 201, "{by_cli:?}");
}

/// A foreign page cannot sign a browser into an attacker's account (login CSRF): a login that
/// carries a foreign Origin is refused and sets no cookie; the UI's own and the CLI's work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_from_another_origin_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let cp = start_cp(&tmp, &[]);
    user(&cp, "mallory", "Default", None).await;
    let body = json!({"user": "mallory", "password": "mallory-password"});
    let refused = exchange(&cp.url, "POST", "/v1/login", &[("Origin", FOREIGN)], Some(&body)).await;
    assert_eq!(refused.status, 403, "{refused:?}");
    assert!(refused.header("set-cookie").is_none(), "{refused:?}");
    let own = exchange(&cp.url, "POST", "/v1/login", &[("Origin", &cp.url)], Some(&body)).await;
    assert_eq!(own.status, 200, "{own:?}");
    assert!(own.header("set-cookie").is_some_and(|c| c.starts_with("corral_session=")), "{own:?}");
    assert_eq!(exchange(&cp.url, "POST", "/v1/login", &[], Some(&body)).await.status, 200, "the CLI sends no Origin");
}

/// WebSocket upgrades check Origin too (browsers apply no same-origin rule to them): a foreign
/// page cannot open the event stream with the cookie, nor with a ticket it got hold of.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_upgrades_from_another_origin_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let cp = start_cp(&tmp, &[]);
    user(&cp, "wes", "Default", Some("read-only")).await;
    let (session, cookie) = login(&cp, "wes").await;
    let ticketed = || async { format!("/v1/events?ticket={}", ticket(&cp, &session, "/v1/events").await) };
    for (what, path, headers) in [
        ("cookie", "/v1/events".to_string(), vec![("Cookie", cookie.as_str()), ("Origin", FOREIGN)]),
        ("?ticket=", ticketed().await, vec![("Origin", FOREIGN)]),
        ("cookie, another port of this host", "/v1/events".to_string(), vec![("Cookie", cookie.as_str()), ("Origin", "http://127.0.0.1:1")]),
    ] {
        match open(&cp.url, &path, &headers).await {
            Err((403, body)) => assert!(body.to_lowercase().contains("origin"), "{what}: {body}"),
            Err(other) => panic!("{what}: want 403, got {other:?}"),
            Ok(_) => panic!("{what}: a foreign page opened the event stream"),
        }
    }
    for (what, path, headers) in [
        ("cookie from the UI", "/v1/events".to_string(), vec![("Cookie", cookie.as_str()), ("Origin", cp.url.as_str())]),
        ("?ticket= from the UI", ticketed().await, vec![("Origin", cp.url.as_str())]),
        ("?ticket= from the desktop app", ticketed().await, vec![("Origin", "tauri://localhost")]),
        ("a client that sends no Origin", ticketed().await, vec![]),
    ] {
        let socket = open(&cp.url, &path, &headers).await.unwrap_or_else(|e| panic!("{what}: {e:?}"));
        watch(what, socket).streaming().await;
    }
}

/// No credential ever travels in a URL: `?token=` opens nothing, not even a WebSocket. A ticket
/// opens one WebSocket, once, on the path it was issued for, and only on a real upgrade; on any
/// other route (even with an `Upgrade` header) it is ignored, so the request is unauthenticated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tickets_open_one_websocket_once_and_query_tokens_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let cp = start_cp(&tmp, &[]);
    let token = cp.admin_token();
    let upgrade = [("Upgrade", "websocket"), ("Connection", "Upgrade"), ("Sec-WebSocket-Version", "13"), ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")];
    let with = |path: &str, param: &str| format!("{path}{}{param}", if path.contains('?') { "&" } else { "?" });
    let spare = ticket(&cp, &token, "/v1/events").await;
    for (method, path) in [("GET", "/v1/stacks"), ("GET", "/v1/users"), ("GET", "/v1/backup"), ("POST", "/v1/stacks"), ("GET", "/metrics")] {
        for param in [format!("token={token}"), format!("ticket={spare}")] {
            let body = (method == "POST").then(|| json!({"name": "SNEAKY"}));
            let answer = exchange(&cp.url, method, &with(path, &param), &upgrade, body.as_ref()).await;
            assert_eq!(answer.status, 401, "{method} {path} with {param} and an Upgrade header: {}", answer.status);
        }
    }
    // The WebSocket route itself: a token in the URL is refused, and so is a half handshake.
    match open(&cp.url, &with("/v1/events", &format!("token={token}")), &[]).await {
        Err((401, _)) => {}
        other => panic!("?token= on a real upgrade: want 401, got {:?}", other.map(|_| ())),
    }
    let half = exchange(&cp.url, "GET", &with("/v1/events", &format!("ticket={spare}")), &[("Upgrade", "websocket")], None).await;
    assert_eq!(half.status, 401, "{half:?}");
    let stacks = exchange(&cp.url, "GET", "/v1/stacks", &[("Authorization", &bearer(&token))], None).await;
    assert_eq!(stacks.body, json!([]), "nothing was created");
    // A ticket opens its own path once; on another WebSocket path it is spent and refused.
    let events = ticket(&cp, &token, "/v1/events").await;
    let socket = open(&cp.url, &with("/v1/events", &format!("ticket={events}")), &[]).await.expect("a real upgrade with a ticket opens the event stream");
    watch("events", socket).streaming().await;
    for (what, path) in [("used twice", "/v1/events"), ("for another path", "/v1/stats/live")] {
        let ticket = if what == "used twice" { events.clone() } else { ticket(&cp, &token, "/v1/events").await };
        match open(&cp.url, &with(path, &format!("ticket={ticket}")), &[]).await {
            Err((401, body)) => assert!(body.contains("bad_ticket"), "a ticket {what}: {body}"),
            other => panic!("a ticket {what}: want 401, got {:?}", other.map(|_| ())),
        }
    }
    // Only the API's WebSocket paths get tickets, and a ticket is no credential for another.
    let refused = exchange(&cp.url, "POST", "/v1/ws-ticket", &[("Authorization", &bearer(&token))], Some(&json!({"path": "/v1/backup"}))).await;
    assert_eq!((refused.status, refused.body["field"].as_str()), (400, Some("path")), "{refused:?}");
    let no_credential = exchange(&cp.url, "POST", "/v1/ws-ticket", &[], Some(&json!({"path": "/v1/events"}))).await;
    assert_eq!(no_credential.status, 401, "{no_credential:?}");
}

/// Over TLS the session cookie is `Secure`, so a browser never sends it over plain HTTP; the
/// desktop's plain loopback listener keeps it usable there. Origins compare with the scheme.
#[test]
fn the_session_cookie_is_secure_over_tls() {
    let tmp = tempfile::tempdir().unwrap();
    let launch =
        Launch { listen: "0.0.0.0:0".into(), args: ["--tls", "auto", "--local-listen", "127.0.0.1:0"].map(String::from).to_vec(), ..Launch::default() };
    let cp = ControlPlane::launch(&tmp.path().join("data"), &launch);
    let tls_url = cp.url.replace("0.0.0.0", "127.0.0.1");
    assert!(tls_url.starts_with("https://"), "{tls_url}");
    let output = cp.proc.output();
    let plain_url =
        output.lines().find_map(|l| l.strip_prefix("Plain HTTP for this machine only on ")).expect("the plain listener's address").trim().to_string();
    let curl = |url: &str, path: &str, headers: &[String], body: &Value| {
        let mut cmd = std::process::Command::new("curl");
        cmd.args(["-sk", "-o", "/dev/null", "-D", "-", "-w", "%{http_code}", "-X", "POST", "-H", "Content-Type: application/json", "-d", &body.to_string()]);
        for h in headers {
            cmd.args(["-H", h]);
        }
        let out = cmd.arg(format!("{url}{path}")).output().unwrap();
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let admin = format!("Authorization: Bearer {}", cp.admin_token());
    let created = curl(&plain_url, "/v1/users", std::slice::from_ref(&admin), &json!({"name": "tess", "password": "tess-password"}));
    assert!(created.ends_with("201"), "{created}");
    let login = json!({"user": "tess", "password": "tess-password"});
    let cookie_line = |answer: &str| {
        answer.lines().find(|l| l.to_lowercase().starts_with("set-cookie:")).map(str::to_string).unwrap_or_else(|| panic!("no cookie: {answer}"))
    };

    let over_tls = cookie_line(&curl(&tls_url, "/v1/login", &[], &login));
    assert!(over_tls.split(';').any(|a| a.trim().eq_ignore_ascii_case("secure")), "over TLS: {over_tls}");
    let plain = cookie_line(&curl(&plain_url, "/v1/login", &[], &login));
    assert!(!plain.to_lowercase().contains("secure"), "over plain loopback HTTP: {plain}");

    // Over TLS the UI's origin is https://HOST; the same host over http is another origin.
    let cookie = over_tls.split_once(':').unwrap().1.split(';').next().unwrap().trim().to_string();
    let logout = |origin: &str| curl(&tls_url, "/v1/logout", &[format!("Cookie: {cookie}"), format!("Origin: {origin}")], &json!({}));
    let wrong_scheme = logout(&tls_url.replacen("https://", "http://", 1));
    assert!(wrong_scheme.ends_with("403"), "{wrong_scheme}");
    let right = logout(&tls_url);
    assert!(right.ends_with("204"), "{right}");
}

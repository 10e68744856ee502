//! Users, roles and access control, against a real control plane process (no Docker engine:
//! hosts join by speaking the agent protocol's hello from the test).
//!
//! The matrix test walks every route of the API's own route table, so a new endpoint without an
//! expectation here fails it.

use corral_e2e::*;
use corral_proto::{AgentMessage, Hello, HostFacts, PROTOCOL_VERSION};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

/// An HTTP answer: status, headers as curl printed them, JSON body.
struct Answer {
    status: u16,
    headers: String,
    body: Value,
}

/// One raw HTTP request with curl: `auth` is a bearer token or a `Cookie:` header value.
fn http(cp: &ControlPlane, method: &str, path: &str, auth: Option<&str>, body: Option<&Value>) -> Answer {
    http_from(None, cp, method, path, auth, body)
}

/// [`http`] from the loopback address `from` (e.g. 127.0.0.2), as another client machine would.
fn http_from(from: Option<&str>, cp: &ControlPlane, method: &str, path: &str, auth: Option<&str>, body: Option<&Value>) -> Answer {
    request(from, cp, method, &format!("/v1{path}"), auth, body, &[])
}

/// One raw HTTP request for the path `url_path` as clients request it (`/v1/...` or `/metrics`),
/// with extra headers (`Name: value`).
fn request(from: Option<&str>, cp: &ControlPlane, method: &str, url_path: &str, auth: Option<&str>, body: Option<&Value>, extra: &[&str]) -> Answer {
    let dir = tempfile::tempdir().unwrap();
    let headers = dir.path().join("headers");
    let mut cmd = Command::new("curl");
    if let Some(address) = from {
        cmd.args(["--interface", address]);
    }
    // The range keeps the agent binary's download to one byte; other endpoints ignore it.
    cmd.args(["-s", "-o", "-", "-w", "\n%{http_code}", "-H", "Range: bytes=0-0", "-X", method, "-D"]).arg(&headers);
    match auth {
        Some(cookie) if cookie.starts_with("corral_session=") => cmd.args(["-H", &format!("Cookie: {cookie}")]),
        Some(token) => cmd.args(["-H", &format!("Authorization: Bearer {token}")]),
        None => &mut cmd,
    };
    if let Some(body) = body {
        cmd.args(["-H", "Content-Type: application/json", "-d", &body.to_string()]);
    }
    for header in extra {
        cmd.args(["-H", header]);
    }
    let out = cmd.arg(format!("{}{url_path}", cp.url)).output().expect("run curl");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (json, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    Answer {
        status: code.trim().parse().unwrap_or(0),
        headers: std::fs::read_to_string(headers).unwrap_or_default(),
        body: serde_json::from_str(json).unwrap_or(Value::Null),
    }
}

/// A `corral` client command with `token` (none: no credential at all), run with `-o json`.
fn corral(cp: &ControlPlane, token: Option<&str>, args: &[&str]) -> std::process::Output {
    let mut cmd = cp.cli(&[]);
    cmd.env_remove("CORRAL_TOKEN").args(["-o", "json"]).args(args);
    if let Some(t) = token {
        cmd.env("CORRAL_TOKEN", t);
    }
    cmd.output().expect("run corral")
}

fn ok_json(out: &std::process::Output) -> Value {
    assert!(out.status.success(), "corral failed: {}", text(out));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", text(out)))
}

/// Creates `name` with a password and an account key; returns the key.
fn user_with_key(cp: &ControlPlane, name: &str) -> String {
    create_user(cp, name, "pass-word-1");
    let key = http(cp, "POST", "/apikeys", Some(&login_token(cp, name, "pass-word-1")), Some(&json!({"name": format!("{name}-key")})));
    assert_eq!(key.status, 201, "{}", key.body);
    key.body["secret"].as_str().unwrap().to_string()
}

fn create_user(cp: &ControlPlane, name: &str, password: &str) {
    let user = ok_json(&cp.cli_with_input(&["-o", "json", "user", "create", name, "--password-stdin"], &format!("{password}\n")));
    assert_eq!(user["name"], name);
}

fn login_token(cp: &ControlPlane, user: &str, password: &str) -> String {
    let answer = http(cp, "POST", "/login", None, Some(&json!({"user": user, "password": password})));
    assert_eq!(answer.status, 200, "login {user}: {}", answer.body);
    answer.body["token"].as_str().unwrap().to_string()
}

/// What the test expects a route to need; written here, independently of the server's table.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Need {
    Public,
    SignedIn,
    Admin,
    /// The weakest role that may, in the environment `?env=` names.
    Role(&'static str),
}

fn expectations() -> BTreeMap<(&'static str, &'static str), Need> {
    use Need::*;
    let (ro, restricted, member, owner) = (Role("read-only"), Role("restricted"), Role("member"), Role("owner"));
    [
        (("GET", "/health"), Public),
        (("GET", "/agent"), Public),
        (("GET", "/agent/binary"), Public),
        (("GET", "/ca.pem"), Public),
        (("POST", "/login"), Public),
        (("POST", "/logout"), Public),
        (("GET", "/whoami"), SignedIn),
        (("POST", "/ws-ticket"), SignedIn),
        (("GET", "/settings"), SignedIn),
        (("PATCH", "/settings"), Admin),
        (("GET", "/environments"), SignedIn),
        (("POST", "/environments"), Admin),
        (("PATCH", "/environments/{name}"), Admin),
        (("DELETE", "/environments/{name}"), Admin),
        (("GET", "/users"), Admin),
        (("POST", "/users"), Admin),
        (("DELETE", "/users/{user}"), Admin),
        (("PUT", "/users/{user}/password"), Admin),
        (("GET", "/groups"), Admin),
        (("POST", "/groups"), Admin),
        (("DELETE", "/groups/{group}"), Admin),
        (("POST", "/groups/{group}/members"), Admin),
        (("DELETE", "/groups/{group}/members/{user}"), Admin),
        (("GET", "/members"), ro),
        (("POST", "/members"), owner),
        (("DELETE", "/members/{kind}/{name}"), owner),
        (("GET", "/apikeys"), SignedIn),
        (("POST", "/apikeys"), SignedIn),
        (("DELETE", "/apikeys/{name}"), SignedIn),
        (("GET", "/audit"), owner),
        (("GET", "/events"), ro),
        (("GET", "/hosts"), ro),
        (("GET", "/hosts/join-command"), member),
        (("POST", "/hosts/join-command/rotate"), owner),
        (("GET", "/hosts/{host}"), ro),
        (("DELETE", "/hosts/{host}"), member),
        (("POST", "/hosts/{host}/deactivate"), member),
        (("POST", "/hosts/{host}/activate"), member),
        (("POST", "/hosts/{host}/revoke"), owner),
        (("GET", "/hosts/{host}/stats"), ro),
        // Registries hold logins and make every host install their CA: those who manage hosts.
        (("GET", "/network"), ro),
        (("GET", "/registries"), ro),
        (("PUT", "/registries/{host}"), member),
        (("DELETE", "/registries/{host}"), member),
        (("GET", "/stacks"), ro),
        (("POST", "/stacks"), restricted),
        (("GET", "/stacks/{stack}"), ro),
        (("DELETE", "/stacks/{stack}"), restricted),
        (("GET", "/stacks/{stack}/services"), ro),
        (("POST", "/stacks/{stack}/services"), restricted),
        (("GET", "/stacks/{stack}/services/{service}"), ro),
        (("DELETE", "/stacks/{stack}/services/{service}"), restricted),
        (("PUT", "/stacks/{stack}/services/{service}/scale"), restricted),
        (("POST", "/stacks/{stack}/services/{service}/upgrade"), restricted),
        (("POST", "/stacks/{stack}/services/{service}/stop"), restricted),
        (("POST", "/stacks/{stack}/services/{service}/start"), restricted),
        (("GET", "/stacks/{stack}/services/{service}/stats"), ro),
        (("GET", "/services"), ro),
        (("GET", "/containers"), ro),
        (("GET", "/containers/{name}"), ro),
        (("DELETE", "/containers/{name}"), restricted),
        (("POST", "/containers/{name}/stop"), restricted),
        (("POST", "/containers/{name}/start"), restricted),
        (("POST", "/containers/{name}/restart"), restricted),
        (("GET", "/containers/{name}/logs"), ro),
        (("GET", "/containers/{name}/stats"), ro),
        (("GET", "/stats/summary"), ro),
        (("GET", "/stats/live"), ro),
        (("GET", "/backup"), Admin),
        (("POST", "/restore"), Admin),
        // At the root; each caller sees its own environments' series (tests/attacks/web.rs).
        (("GET", "/metrics"), SignedIn),
    ]
    .into_iter()
    .collect()
}

/// The WebSocket routes browsers open, the only ones that take `?ticket=` (paths as requested).
const SOCKETS: [&str; 3] = ["/v1/events", "/v1/containers/{name}/logs", "/v1/stats/live"];

/// A single-use ticket (`POST /v1/ws-ticket`) for `key` to open the WebSocket at `path`, as the
/// web UI gets one when it signs its requests with a token.
fn ticket(cp: &ControlPlane, key: &str, path: &str) -> String {
    let answer = request(None, cp, "POST", "/v1/ws-ticket", Some(key), Some(&json!({ "path": path })), &[]);
    answer.body["ticket"].as_str().unwrap_or_else(|| panic!("a ticket for {path}: {} {}", answer.status, answer.body)).to_string()
}

/// A WebSocket handshake to `url_path`; its refusal as an [`Answer`], a 101 as status 101.
fn upgrade(cp: &ControlPlane, url_path: &str) -> Answer {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let url = format!("{}{url_path}", cp.url.replacen("http://", "ws://", 1));
    match runtime.block_on(tokio_tungstenite::connect_async(url)) {
        Ok(_) => Answer { status: 101, headers: String::new(), body: Value::Null },
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => Answer {
            status: response.status().as_u16(),
            headers: String::new(),
            body: serde_json::from_slice(response.body().as_deref().unwrap_or_default()).unwrap_or(Value::Null),
        },
        Err(e) => panic!("WebSocket {url_path}: {e}"),
    }
}

const ROLES: [&str; 4] = ["read-only", "restricted", "member", "owner"];

fn rank(role: &str) -> usize {
    ROLES.iter().position(|r| *r == role).unwrap()
}

#[derive(Debug, PartialEq)]
enum Outcome {
    Passed,
    Unauthorized,
    Forbidden,
    /// 404 for the environment itself: as if it did not exist.
    Hidden,
}

fn outcome(answer: &Answer, env: &str) -> Outcome {
    let message = answer.body["message"].as_str().unwrap_or_default();
    match answer.status {
        401 => Outcome::Unauthorized,
        403 => Outcome::Forbidden,
        404 if message.contains(&format!("environment \"{env}\" does not exist")) => Outcome::Hidden,
        _ => Outcome::Passed,
    }
}

/// Every route × every role × own and other environment: allowed, 403, or 404 as specified.
/// Path names point at things that do not exist and bodies are empty, so an allowed call fails
/// after the access check (404/400) and changes nothing. WebSocket routes are walked again as
/// real upgrades with a ticket for the credential in `?ticket=`, as browsers open them; a token in
/// the URL is no credential anywhere, nor is a ticket on any other route, even on an upgrade.
#[test]
fn every_route_answers_every_role_as_specified() {
    let tmp = tempfile::tempdir().unwrap();
    let cp = ControlPlane::start(&tmp.path().join("data"));
    let routes = corral_server::api::routes();
    let expected = expectations();
    let listed: Vec<(&str, &str)> = routes.iter().map(|r| (r.method.as_str(), r.path)).collect();
    let missing: Vec<_> = listed.iter().filter(|r| !expected.contains_key(*r)).collect();
    assert!(missing.is_empty(), "routes without an expectation in tests/access.rs: {missing:?}");
    let stale: Vec<_> = expected.keys().filter(|k| !listed.contains(k)).collect();
    assert!(stale.is_empty(), "expectations for routes the API no longer has: {stale:?}");
    let sockets: Vec<String> = routes.iter().filter(|r| r.websocket).map(|r| r.url_path()).collect();
    assert_eq!(sockets, SOCKETS, "the routes that take ?ticket=");

    cp.json(&["env", "create", "OPS"]);
    cp.json(&["env", "create", "DEV"]);
    let mut principals: Vec<(String, Option<String>, String)> = vec![("admin".into(), None, cp.admin_token())];
    for role in ROLES {
        let name = format!("u-{role}");
        let key = user_with_key(&cp, &name);
        cp.json(&["member", "add", "OPS", &name, "--role", role]);
        principals.push((name, Some(role.to_string()), key));
    }
    principals.push(("outsider".into(), None, user_with_key(&cp, "outsider")));

    let mut failures = Vec::new();
    let admin_token = cp.admin_token();
    let unused_ticket = ticket(&cp, &admin_token, "/v1/events");
    for route in &routes {
        let need = expected[&(route.method.as_str(), route.path)];
        let path = route.url_path().replace("{kind}", "user").split('/').map(|s| if s.starts_with('{') { "nope" } else { s }).collect::<Vec<_>>().join("/");
        let body = matches!(route.method.as_str(), "POST" | "PUT").then(|| json!({"name": "not a valid name"}));
        let method = route.method.as_str();
        // No credential at all.
        let anonymous = outcome(&request(None, &cp, method, &format!("{path}?env=OPS"), None, body.as_ref(), &[]), "OPS");
        let want = if need == Need::Public { Outcome::Passed } else { Outcome::Unauthorized };
        if anonymous != want {
            failures.push(format!("{method} {path} anonymous: {anonymous:?}, want {want:?}"));
        }
        if need != Need::Public {
            // The admin's token in the query, on a request dressed as an upgrade: ignored; and a
            // ticket (for the event stream) on any route but its own: no credential either.
            let upgrade_headers = ["Upgrade: websocket", "Connection: Upgrade", "Sec-WebSocket-Version: 13", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ=="];
            let token_answer = request(None, &cp, method, &format!("{path}?env=OPS&token={admin_token}"), None, body.as_ref(), &upgrade_headers);
            // Only a WebSocket route tries (and so uses up) a ticket; the others ignore it.
            let elsewhere = if route.websocket { ticket(&cp, &admin_token, "/v1/events") } else { unused_ticket.clone() };
            let ticket_answer = (path != "/v1/events")
                .then(|| request(None, &cp, method, &format!("{path}?env=OPS&ticket={elsewhere}"), None, body.as_ref(), &upgrade_headers));
            for (how, answer) in [("?token=", Some(token_answer)), ("another route's ?ticket=", ticket_answer)] {
                if let Some(answer) = answer.filter(|a| outcome(a, "OPS") != Outcome::Unauthorized) {
                    failures.push(format!("{method} {path} with {how} on an upgrade: {} {}, want Unauthorized", answer.status, answer.body));
                }
            }
        }
        for (name, role, key) in &principals {
            for env in ["OPS", "DEV"] {
                let admin = name == "admin";
                let own_role = role.as_deref().filter(|_| env == "OPS");
                let want = match need {
                    Need::Public | Need::SignedIn => Outcome::Passed,
                    Need::Admin if admin => Outcome::Passed,
                    Need::Admin => Outcome::Forbidden,
                    Need::Role(_) if admin => Outcome::Passed,
                    Need::Role(least) => match own_role {
                        None => Outcome::Hidden,
                        Some(r) if rank(r) >= rank(least) => Outcome::Passed,
                        Some(_) => Outcome::Forbidden,
                    },
                };
                let mut answers = vec![("", request(None, &cp, method, &format!("{path}?env={env}"), Some(key), body.as_ref(), &[]))];
                if route.websocket {
                    let ticket = ticket(&cp, key, &path);
                    answers.push((" (upgrade, ?ticket=)", upgrade(&cp, &format!("{path}?env={env}&ticket={ticket}"))));
                }
                for (how, answer) in answers {
                    let got = outcome(&answer, env);
                    if got != want {
                        failures.push(format!("{method} {path}?env={env} as {name}{how}: {got:?} ({} {}), want {want:?}", answer.status, answer.body));
                    }
                }
            }
        }
    }
    assert!(failures.is_empty(), "{} mismatches:\n{}", failures.len(), failures.join("\n"));
    // Nothing the matrix sent changed anything.
    let stacks = cp.json(&["--env", "OPS", "stack", "ls"]);
    assert_eq!(stacks, json!([]), "{stacks}");
}

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A hello as an agent would send it; returns the control plane's first answer.
async fn hello(cp: &ControlPlane, token: &str, host_id: &str, name: &str) -> (Value, Socket) {
    hello_with(cp, token, None, host_id, name).await
}

/// [`hello`] showing the host's own credential, as an agent that has joined does.
async fn hello_with(cp: &ControlPlane, token: &str, credential: Option<&str>, host_id: &str, name: &str) -> (Value, Socket) {
    let url = format!("{}/v1/agent", cp.url.replacen("http://", "ws://", 1));
    let (mut socket, _) = tokio_tungstenite::connect_async(url).await.expect("connect to /v1/agent");
    let facts =
        HostFacts { name: name.into(), address: "127.0.0.1".into(), docker_version: "test".into(), cpus: 1, memory_bytes: 1 << 30, ..Default::default() };
    let credential = credential.map(str::to_string);
    let msg = AgentMessage::Hello(Hello { protocol_version: PROTOCOL_VERSION, token: token.into(), credential, host_id: host_id.into(), facts });
    socket.send(Message::Text(serde_json::to_string(&msg).unwrap().into())).await.unwrap();
    loop {
        match tokio::time::timeout(Duration::from_secs(5), socket.next()).await.expect("an answer to the hello") {
            Some(Ok(Message::Text(t))) => return (serde_json::from_str(&t).unwrap(), socket),
            Some(Ok(_)) => continue,
            other => panic!("no answer to the hello: {other:?}"),
        }
    }
}

/// A DEV member sees nothing of OPS: not its hosts, stacks or events, over REST and WebSocket.
/// Join tokens belong to one environment.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dev_member_sees_nothing_of_ops_and_join_tokens_stay_in_their_environment() {
    let tmp = tempfile::tempdir().unwrap();
    let cp = tokio::task::block_in_place(|| ControlPlane::start(&tmp.path().join("data")));
    let dev_key = tokio::task::block_in_place(|| {
        cp.json(&["env", "create", "OPS"]);
        cp.json(&["env", "create", "DEV"]);
        cp.json(&["--env", "OPS", "stack", "create", "OPS-web"]);
        let key = user_with_key(&cp, "dev");
        cp.json(&["member", "add", "DEV", "dev", "--role", "member"]);
        key
    });
    let ops_token = cp.json(&["--env", "OPS", "host", "join-command"])["token"].as_str().unwrap().to_string();
    let dev_token = cp.json(&["--env", "DEV", "host", "join-command"])["token"].as_str().unwrap().to_string();

    // OPS's token registers a host in OPS only.
    let (welcome, ops_host) = hello(&cp, &ops_token, "host-ops-1", "ops-1").await;
    assert_eq!((welcome["type"].as_str(), welcome["environment"].as_str()), (Some("welcome"), Some("OPS")), "{welcome}");
    // Once gone, the same host cannot be taken into DEV with DEV's token, nor a wrong token join anywhere.
    drop(ops_host);
    let refused = loop {
        let (answer, _) = hello(&cp, &dev_token, "host-ops-1", "ops-1").await;
        if answer["code"] != "already_connected" {
            break answer;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(refused["type"], "rejected", "{refused}");
    assert!(refused["message"].as_str().unwrap().contains("another environment"), "{refused}");
    let (refused, _) = hello(&cp, "not-a-join-token", "host-x", "x").await;
    assert_eq!((refused["type"].as_str(), refused["code"].as_str()), (Some("rejected"), Some("bad_token")), "{refused}");
    tokio::task::block_in_place(|| {
        let names = |env: &str, key: Option<&str>| -> Vec<String> {
            let hosts = ok_json(&corral(&cp, Some(key.unwrap_or(&cp.admin_token())), &["--env", env, "host", "ls"]));
            hosts.as_array().unwrap().iter().map(|h| h["name"].as_str().unwrap().to_string()).collect()
        };
        assert_eq!(names("OPS", None), ["ops-1"]);
        assert!(names("DEV", None).is_empty(), "OPS's join token registered nothing in DEV");
        assert!(names("DEV", Some(&dev_key)).is_empty());

        // REST: OPS answers as if it did not exist.
        for args in [&["--env", "OPS", "host", "ls"][..], &["--env", "OPS", "stack", "ls"], &["--env", "OPS", "ps"], &["--env", "OPS", "host", "join-command"]]
        {
            let out = corral(&cp, Some(&dev_key), args);
            assert!(!out.status.success() && text(&out).contains("environment \"OPS\" does not exist"), "{args:?}: {}", text(&out));
        }
        let envs = ok_json(&corral(&cp, Some(&dev_key), &["env", "ls"]));
        let names: Vec<&str> = envs.as_array().unwrap().iter().map(|e| e["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["DEV"], "{envs}");
        assert_eq!(envs[0]["role"], "member");
    });

    // WebSocket: the OPS stream is refused like a missing environment; the DEV stream carries no OPS change.
    let ws = |query: String| format!("{}/v1/events?{query}", cp.url.replacen("http://", "ws://", 1));
    let ticketed = |env: &str| {
        let ticket = tokio::task::block_in_place(|| ticket(&cp, &dev_key, "/v1/events"));
        ws(format!("env={env}&ticket={ticket}"))
    };
    match tokio_tungstenite::connect_async(ticketed("OPS")).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => assert_eq!(response.status().as_u16(), 404),
        other => panic!("the OPS event stream should be refused, got {:?}", other.map(|_| ())),
    }
    let (mut dev_events, _) = tokio_tungstenite::connect_async(ticketed("DEV")).await.expect("DEV events");
    tokio::task::block_in_place(|| {
        cp.json(&["--env", "OPS", "stack", "create", "OPS-db"]);
        cp.json(&["--env", "DEV", "stack", "create", "DEV-web"]);
    });
    let mut frames = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !frames.iter().any(|f: &Value| f["environment"] == "DEV" && f["type"] == "changed") && Instant::now() < deadline {
        if let Ok(Some(Ok(Message::Text(t)))) = tokio::time::timeout(Duration::from_secs(1), dev_events.next()).await {
            frames.push(serde_json::from_str(&t).unwrap());
        }
    }
    assert!(frames.iter().any(|f| f["environment"] == "DEV" && f["type"] == "changed"), "the DEV change arrives: {frames:?}");
    assert!(!frames.iter().any(|f| f.to_string().contains("OPS")), "no OPS event reaches a DEV member: {frames:?}");
}

#[test]
fn failed_logins_are_slow_then_limited_and_sessions_expire_and_end() {
    let tmp = tempfile::tempdir().unwrap();
    let launch = Launch { args: vec!["--session-ttl".into(), "2".into()], ..Launch::default() };
    let cp = ControlPlane::launch(&tmp.path().join("data"), &launch);
    create_user(&cp, "alice", "alice-password");
    create_user(&cp, "bob", "bob-password");

    // A session works as a bearer token and as the HttpOnly, SameSite=Strict cookie.
    let login = http(&cp, "POST", "/login", None, Some(&json!({"user": "alice", "password": "alice-password"})));
    assert_eq!(login.status, 200, "{}", login.body);
    let cookie_line = login.headers.lines().find(|l| l.to_lowercase().starts_with("set-cookie:")).expect("a session cookie").to_string();
    assert!(cookie_line.contains("HttpOnly") && cookie_line.contains("SameSite=Strict"), "{cookie_line}");
    let token = login.body["token"].as_str().unwrap().to_string();
    let cookie = format!("corral_session={token}");
    assert_eq!(http(&cp, "GET", "/whoami", Some(&token), None).body["user"], "alice");
    assert_eq!(http(&cp, "GET", "/whoami", Some(&cookie), None).body["user"], "alice");
    // Logged in but in no environment: sees none, and Default is hidden.
    assert_eq!(http(&cp, "GET", "/environments", Some(&token), None).body, json!([]));
    assert_eq!(http(&cp, "GET", "/stacks", Some(&token), None).status, 404);

    // Expired: refused.
    std::thread::sleep(Duration::from_millis(2500));
    let expired = http(&cp, "GET", "/whoami", Some(&token), None);
    assert_eq!((expired.status, expired.body["code"].as_str()), (401, Some("unauthorized")), "{}", expired.body);

    // Logout ends the session at once.
    let token = login_token(&cp, "alice", "alice-password");
    assert_eq!(http(&cp, "POST", "/logout", Some(&token), None).status, 204);
    assert_eq!(http(&cp, "GET", "/whoami", Some(&token), None).status, 401);

    // Wrong passwords: slow, then limited for this user even with the right one.
    for attempt in 0..10 {
        let start = Instant::now();
        let answer = http(&cp, "POST", "/login", None, Some(&json!({"user": "bob", "password": "wrong"})));
        assert_eq!((answer.status, answer.body["message"].as_str()), (401, Some("wrong user name or password")), "attempt {attempt}");
        assert!(start.elapsed() >= Duration::from_millis(450), "a failed login answers slowly, took {:?}", start.elapsed());
    }
    let limited = http(&cp, "POST", "/login", None, Some(&json!({"user": "bob", "password": "bob-password"})));
    assert_eq!((limited.status, limited.body["code"].as_str()), (429, Some("too_many_attempts")), "{}", limited.body);
    assert!(limited.body["message"].as_str().unwrap().contains("try again in"), "{}", limited.body);
    // Another user is not affected; an unknown user answers like a wrong password.
    login_token(&cp, "alice", "alice-password");
    assert_eq!(http(&cp, "POST", "/login", None, Some(&json!({"user": "nobody", "password": "x"}))).status, 401);
}

#[test]
fn api_keys_act_as_their_user_and_stop_when_revoked() {
    let tmp = tempfile::tempdir().unwrap();
    let cp = ControlPlane::start(&tmp.path().join("data"));
    cp.json(&["env", "create", "OPS"]);
    cp.json(&["env", "create", "DEV"]);
    let account = user_with_key(&cp, "carol");
    cp.json(&["member", "add", "OPS", "carol", "--role", "owner"]);
    cp.json(&["member", "add", "DEV", "carol", "--role", "read-only"]);

    // An environment key, created through the CLI: the secret is in the answer once.
    let created = ok_json(&corral(&cp, Some(&account), &["--env", "OPS", "apikey", "create", "--name", "ops-ci"]));
    assert_eq!((created["kind"].as_str(), created["environment"].as_str()), (Some("environment"), Some("OPS")), "{created}");
    let env_key = created["secret"].as_str().unwrap().to_string();
    ok_json(&corral(&cp, Some(&env_key), &["--env", "OPS", "stack", "create", "WEB"]));
    let other = corral(&cp, Some(&env_key), &["--env", "DEV", "stack", "ls"]);
    assert!(text(&other).contains("environment \"DEV\" does not exist"), "{}", text(&other));
    // The account key reaches DEV, read-only there.
    ok_json(&corral(&cp, Some(&account), &["--env", "DEV", "stack", "ls"]));
    let refused = corral(&cp, Some(&account), &["--env", "DEV", "stack", "create", "X"]);
    assert!(text(&refused).contains("read-only in environment DEV"), "{}", text(&refused));
    // An environment key cannot make an account key.
    let escalate = http(&cp, "POST", "/apikeys", Some(&env_key), Some(&json!({})));
    assert_eq!(escalate.status, 403, "{}", escalate.body);

    let keys = ok_json(&corral(&cp, Some(&account), &["apikey", "ls"]));
    assert!(keys.as_array().unwrap().iter().all(|k| k["user"] == "carol" && k.get("secret").is_none()), "{keys}");
    ok_json(&corral(&cp, Some(&account), &["apikey", "revoke", "ops-ci"]));
    let revoked = http(&cp, "GET", "/stacks?env=OPS", Some(&env_key), None);
    assert_eq!(revoked.status, 401, "a revoked key opens nothing: {}", revoked.body);
    // Someone else's key is not found, and the admin token still opens everything.
    let dave = user_with_key(&cp, "dave");
    assert_eq!(http(&cp, "DELETE", "/apikeys/carol-key", Some(&dave), None).status, 404);
    assert_eq!(http(&cp, "GET", "/stacks?env=OPS", Some(&cp.admin_token()), None).status, 200);
}

#[test]
fn the_cli_logs_in_manages_groups_and_the_audit_log_says_who_did_what_from_where() {
    let tmp = tempfile::tempdir().unwrap();
    let cp = ControlPlane::start(&tmp.path().join("data"));
    cp.json(&["env", "create", "OPS"]);
    create_user(&cp, "erin", "erin-password");
    create_user(&cp, "frank", "frank-password");
    cp.json(&["group", "create", "ops-team"]);
    let group = cp.json(&["group", "add", "ops-team", "erin"]);
    assert_eq!(group["members"], json!(["erin"]));
    let member = cp.json(&["member", "add", "OPS", "ops-team", "--role", "owner"]);
    assert_eq!((member["kind"].as_str(), member["role"].as_str()), (Some("group"), Some("owner")), "{member}");
    cp.json(&["member", "add", "OPS", "frank", "--role", "restricted"]);
    let users = cp.json(&["user", "ls"]);
    let names: Vec<&str> = users.as_array().unwrap().iter().map(|u| u["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["admin", "erin", "frank"]);

    // `corral login -o json` prints the token; without -o json the session is kept for later commands.
    let home = tmp.path().join("home");
    // A client with no token of its own: only what `corral login` keeps in its home.
    let at_home = || {
        let mut cmd = Command::new(corral_bin());
        cmd.env("CORRAL_URL", &cp.url)
            .env_remove("CORRAL_TOKEN")
            .env_remove("CORRAL_ENV")
            .env("HOME", &home)
            .env("XDG_CONFIG_HOME", home.join(".config"))
            .env("XDG_DATA_HOME", home.join(".local/share"));
        cmd
    };
    let login = |user: &str, password: &str, json_out: bool| {
        let mut cmd = at_home();
        if json_out {
            cmd.args(["-o", "json"]);
        }
        let mut child =
            cmd.args(["login", "--user", user, "--password-stdin"]).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        std::io::Write::write_all(child.stdin.as_mut().unwrap(), format!("{password}\n").as_bytes()).unwrap();
        child.wait_with_output().unwrap()
    };
    let printed = ok_json(&login("frank", "frank-password", true));
    assert!(printed["token"].as_str().is_some_and(|t| !t.is_empty()), "{printed}");
    let out = login("erin", "erin-password", false);
    assert!(out.status.success(), "{}", text(&out));
    let session_file = home.join(".config/corral/session.json");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&session_file).unwrap().permissions().mode() & 0o777, 0o600);
    let as_erin = |args: &[&str]| at_home().args(["-o", "json"]).args(args).output().unwrap();
    ok_json(&as_erin(&["--env", "OPS", "stack", "create", "WEB"]));
    let frank = printed["token"].as_str().unwrap();
    let refused = corral(&cp, Some(frank), &["--env", "OPS", "host", "join-command"]);
    assert!(text(&refused).contains("restricted in environment OPS"), "{}", text(&refused));
    // Straight API call: from "api".
    assert_eq!(http(&cp, "DELETE", "/stacks/nope?env=OPS", Some(frank), None).status, 404);

    // The owner (through the group) reads OPS's log; frank may not.
    let entries = ok_json(&as_erin(&["--env", "OPS", "audit", "ls"]));
    let find = |method: &str, path: &str| {
        entries
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["method"] == method && e["path"] == path)
            .cloned()
            .unwrap_or_else(|| panic!("no {method} {path} in {entries}"))
    };
    let created = find("POST", "/v1/stacks");
    assert_eq!(
        (created["user"].as_str(), created["client"].as_str(), created["status"].as_u64(), created["target"].as_str(), created["environment"].as_str()),
        (Some("erin"), Some("cli"), Some(201), Some("WEB"), Some("OPS")),
        "{created}"
    );
    assert!(created["remote"].as_str().is_some_and(|r| r == "127.0.0.1"), "{created}");
    let api = find("DELETE", "/v1/stacks/nope");
    assert_eq!((api["user"].as_str(), api["client"].as_str(), api["status"].as_u64()), (Some("frank"), Some("api"), Some(404)), "{api}");
    let refused = corral(&cp, Some(frank), &["--env", "OPS", "audit", "ls"]);
    assert!(text(&refused).contains("owner role"), "{}", text(&refused));
    // The admin reads every entry, logins included (by the user they were for), never a password.
    let all = cp.json(&["audit", "ls", "--limit", "1000"]);
    let logins: Vec<&Value> = all.as_array().unwrap().iter().filter(|e| e["path"] == "/v1/login").collect();
    assert!(logins.iter().any(|e| e["user"] == "erin" && e["status"] == 200), "{all}");
    assert!(!all.to_string().contains("erin-password"), "passwords never reach the audit log");

    // Logout forgets the session; later commands have no credential.
    let out = as_erin(&["logout"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(!session_file.exists());
    let out = as_erin(&["--env", "OPS", "stack", "ls"]);
    assert!(text(&out).contains("missing or wrong API token"), "{}", text(&out));
}

/// `corral user create --admin` makes an administrator: it sees every environment without a
/// role in any, and may do what only admins may; a user made without the flag may not.
#[test]
fn a_user_created_as_admin_manages_every_environment() {
    let tmp = tempfile::tempdir().unwrap();
    let cp = ControlPlane::start(&tmp.path().join("data"));
    cp.json(&["env", "create", "OPS"]);
    let grace = ok_json(&cp.cli_with_input(&["-o", "json", "user", "create", "grace", "--admin", "--password-stdin"], "grace-password\n"));
    assert_eq!((grace["name"].as_str(), grace["admin"].as_bool()), (Some("grace"), Some(true)), "{grace}");
    create_user(&cp, "hank", "hank-password");
    let users = cp.json(&["user", "ls"]);
    let hank = users.as_array().unwrap().iter().find(|u| u["name"] == "hank").unwrap();
    assert_eq!(hank["admin"], false, "{users}");

    let grace = login_token(&cp, "grace", "grace-password");
    let envs = http(&cp, "GET", "/environments", Some(&grace), None);
    let names: Vec<&str> = envs.body.as_array().unwrap().iter().map(|e| e["name"].as_str().unwrap()).collect();
    assert!(names.contains(&"OPS") && names.contains(&"Default"), "{}", envs.body);
    assert_eq!(http(&cp, "GET", "/stacks?env=OPS", Some(&grace), None).status, 200);
    assert_eq!(http(&cp, "POST", "/environments", Some(&grace), Some(&json!({"name": "QA"}))).status, 201);

    let hank = login_token(&cp, "hank", "hank-password");
    assert_eq!(http(&cp, "POST", "/environments", Some(&hank), Some(&json!({"name": "QA2"}))).status, 403);
    assert_eq!(http(&cp, "GET", "/users", Some(&hank), None).status, 403);
    // A flag of the wrong type is refused and creates nobody.
    let bad = http(&cp, "POST", "/users", Some(&cp.admin_token()), Some(&json!({"name": "ivan", "admin": "yes"})));
    assert_eq!(bad.status, 400, "{}", bad.body);
    assert!(!cp.json(&["user", "ls"]).to_string().contains("ivan"));
}

/// A rotated join token: the old one lets no new host in, the new one does, and a host that
/// joined before keeps its session and reconnects with its own credential.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_join_token_refuses_the_old_one_and_joined_hosts_stay() {
    let tmp = tempfile::tempdir().unwrap();
    let cp = tokio::task::block_in_place(|| ControlPlane::start(&tmp.path().join("data")));
    let old = cp.json(&["host", "join-command"]);
    let old_token = old["token"].as_str().unwrap().to_string();
    let (welcome, mut joined) = hello(&cp, &old_token, "host-a", "a").await;
    assert_eq!(welcome["type"], "welcome", "{welcome}");
    // The joined host keeps its session as an agent does, with heartbeats; the task ends only
    // when the control plane closes the session.
    let session = tokio::spawn(async move {
        let heartbeat = serde_json::to_string(&AgentMessage::Heartbeat).unwrap();
        let mut tick = tokio::time::interval(Duration::from_millis(300));
        loop {
            tokio::select! {
                _ = tick.tick() => if joined.send(Message::Text(heartbeat.clone().into())).await.is_err() { return },
                message = joined.next() => if matches!(message, None | Some(Err(_)) | Some(Ok(Message::Close(_)))) { return },
            }
        }
    });
    let credential = welcome["credential"].as_str().expect("a credential in the welcome").to_string();

    let rotated = tokio::task::block_in_place(|| cp.json(&["host", "join-command", "--rotate"]));
    let new_token = rotated["token"].as_str().unwrap().to_string();
    assert_ne!(new_token, old_token);
    assert!(rotated["command"].as_str().unwrap().contains(&new_token) && !rotated["command"].as_str().unwrap().contains(&old_token), "{rotated}");
    assert_eq!(tokio::task::block_in_place(|| cp.json(&["host", "join-command"]))["token"], new_token.as_str(), "the rotation is kept");
    // Without -o json: the new command itself.
    let printed = tokio::task::block_in_place(|| cp.cli(&["host", "join-command"]).output().unwrap());
    assert!(String::from_utf8_lossy(&printed.stdout).contains(&new_token), "{}", text(&printed));

    // The joined host's session goes on.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(!session.is_finished(), "the joined host's session was not closed by the rotation");
    let hosts = tokio::task::block_in_place(|| cp.hosts());
    assert_eq!((hosts[0]["name"].as_str(), hosts[0]["state"].as_str()), (Some("a"), Some("active")), "{hosts:?}");

    // A new host: the old token is refused, the new one works.
    let (refused, _) = hello(&cp, &old_token, "host-b", "b").await;
    assert_eq!((refused["type"].as_str(), refused["code"].as_str()), (Some("rejected"), Some("bad_token")), "{refused}");
    let (welcome, _b) = hello(&cp, &new_token, "host-b", "b").await;
    assert_eq!(welcome["type"], "welcome", "{welcome}");
    // The first host reconnects with its own credential, whatever token its command line still has.
    session.abort();
    let again = loop {
        let (answer, socket) = hello_with(&cp, &old_token, Some(&credential), "host-a", "a").await;
        if answer["code"] != "already_connected" {
            break (answer, socket);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(again.0["type"], "welcome", "{}", again.0);

    // Rotating needs the owner role: a member may read the join command but not rotate it.
    let member = tokio::task::block_in_place(|| {
        let key = user_with_key(&cp, "mia");
        cp.json(&["member", "add", "Default", "mia", "--role", "member"]);
        key
    });
    let out = tokio::task::block_in_place(|| corral(&cp, Some(&member), &["host", "join-command", "--rotate"]));
    assert!(!out.status.success() && text(&out).contains("owner role"), "{}", text(&out));
    assert_eq!(tokio::task::block_in_place(|| cp.json(&["host", "join-command"]))["token"], new_token.as_str(), "a refused rotation changed nothing");
}

/// A browser signs in with the cookie only (no header, no `?token=`), and its event stream works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_event_stream_opens_with_the_session_cookie_alone() {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let tmp = tempfile::tempdir().unwrap();
    let cp = tokio::task::block_in_place(|| ControlPlane::start(&tmp.path().join("data")));
    let cookie = tokio::task::block_in_place(|| {
        create_user(&cp, "gina", "gina-password");
        cp.json(&["member", "add", "Default", "gina", "--role", "restricted"]);
        let login = http(&cp, "POST", "/login", None, Some(&json!({"user": "gina", "password": "gina-password"})));
        assert_eq!(login.status, 200, "{}", login.body);
        let line = login.headers.lines().find(|l| l.to_lowercase().starts_with("set-cookie:")).expect("a session cookie").to_string();
        line.split_once(':').unwrap().1.split(';').next().unwrap().trim().to_string()
    });
    assert!(cookie.starts_with("corral_session="), "{cookie}");
    let url = format!("{}/v1/events", cp.url.replacen("http://", "ws://", 1));
    // Without any credential: refused before the upgrade.
    match tokio_tungstenite::connect_async(url.clone()).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => assert_eq!(response.status().as_u16(), 401),
        other => panic!("an event stream without a credential should be refused, got {:?}", other.map(|_| ())),
    }
    let mut handshake = url.into_client_request().unwrap();
    handshake.headers_mut().insert("cookie", cookie.parse().unwrap());
    let (mut events, _) = tokio_tungstenite::connect_async(handshake).await.expect("the event stream opens with the cookie");
    let first = tokio::time::timeout(Duration::from_secs(5), events.next()).await.expect("a hello frame");
    let Some(Ok(Message::Text(hello))) = first else { panic!("no hello frame: {first:?}") };
    assert_eq!(serde_json::from_str::<Value>(&hello).unwrap(), json!({"type": "hello", "environment": "Default"}));
    // A change made with the same session (as the browser's own request, from the UI's origin) arrives as a frame.
    let origin = format!("Origin: {}", cp.url);
    let created = tokio::task::block_in_place(|| request(None, &cp, "POST", "/v1/stacks", Some(&cookie), Some(&json!({"name": "WEB"})), &[&origin]));
    assert_eq!(created.status, 201, "{}", created.body);
    let mut frames = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !frames.iter().any(|f: &Value| f["type"] == "changed" && f["resources"].to_string().contains("stacks")) && Instant::now() < deadline {
        if let Ok(Some(Ok(Message::Text(t)))) = tokio::time::timeout(Duration::from_secs(1), events.next()).await {
            frames.push(serde_json::from_str(&t).unwrap());
        }
    }
    assert!(frames.iter().any(|f| f["environment"] == "Default" && f["resources"].to_string().contains("stacks")), "{frames:?}");
}

/// Failed logins are counted in the database: per user name across addresses and per address
/// across user names, and a restart of the control plane forgets none of them.
#[test]
fn failed_logins_are_limited_per_user_and_per_address_across_restarts() {
    let tmp = tempfile::tempdir().unwrap();
    let cp = ControlPlane::start(&tmp.path().join("data"));
    create_user(&cp, "hank", "hank-password");
    create_user(&cp, "ivy", "ivy-password");
    let login = |from: &str, user: &str, password: &str| http_from(Some(from), &cp, "POST", "/login", None, Some(&json!({"user": user, "password": password})));
    // Guesses for one user from several machines, in parallel: they all count.
    std::thread::scope(|s| {
        let guesses: Vec<_> = (0..10).map(|i| s.spawn(move || login(&format!("127.0.0.{}", 2 + i % 3), "hank", "wrong").status)).collect();
        let statuses: Vec<u16> = guesses.into_iter().map(|g| g.join().unwrap()).collect();
        assert!(statuses.iter().all(|s| *s == 401), "{statuses:?}");
    });
    let refused = |answer: &Answer, whom: &str| {
        assert_eq!((answer.status, answer.body["code"].as_str()), (429, Some("too_many_attempts")), "{}", answer.body);
        let message = answer.body["message"].as_str().unwrap();
        assert!(message.contains(whom) && message.contains("try again in"), "{message}");
        let retry_after: u64 = answer
            .headers
            .lines()
            .find_map(|l| l.to_lowercase().strip_prefix("retry-after:").map(|v| v.trim().parse().unwrap()))
            .expect("a Retry-After header");
        assert!(retry_after > 800 && retry_after <= 900, "within the 15-minute window: {retry_after}");
    };
    // A fresh address, the right password: still refused for this user.
    refused(&login("127.0.0.9", "hank", "hank-password"), "user hank");
    // Another user from those addresses is not affected.
    assert_eq!(login("127.0.0.2", "ivy", "ivy-password").status, 200);

    // The count survives a restart.
    let cp = cp.restart();
    let login = |from: &str, user: &str, password: &str| http_from(Some(from), &cp, "POST", "/login", None, Some(&json!({"user": user, "password": password})));
    refused(&login("127.0.0.9", "hank", "hank-password"), "user hank");

    // One address guessing many user names is limited too, whoever it tries next.
    std::thread::scope(|s| {
        let guesses: Vec<_> = (0..30).map(|i| s.spawn(move || login("127.0.0.7", &format!("guess-{i}"), "x").status)).collect();
        assert!(guesses.into_iter().all(|g| g.join().unwrap() == 401));
    });
    refused(&login("127.0.0.7", "ivy", "ivy-password"), "this address");
    assert_eq!(login("127.0.0.8", "ivy", "ivy-password").status, 200, "other addresses are not affected");
    // Refusals are in the audit log, under the user they were for.
    let all = cp.json(&["audit", "ls", "--limit", "1000"]);
    assert!(all.as_array().unwrap().iter().any(|e| e["user"] == "hank" && e["status"] == 429 && e["path"] == "/v1/login"), "{all}");
}

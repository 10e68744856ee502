//! What the API takes, taken apart: times at the edges of `i64`, a hostile `Host` header in the
//! join command, API key names that leak across users, passwords of spaces, and lists and
//! strings of any size. A control plane with no hosts is enough: nothing here reaches an engine.

use corral_e2e::*;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::path::Path;
use std::time::{Duration, Instant};

/// One answer from [`http`]: `status` is `None` when the connection closed without one (a
/// handler that panicked, for instance).
#[derive(Debug)]
struct Answer {
    status: Option<u16>,
    body: Value,
    raw: String,
}

/// One raw HTTP/1.1 request (`Connection: close`), with whatever headers a client may send,
/// `Host` included (`127.0.0.1:PORT` unless given). The body is written from its own thread,
/// so an answer that comes before the whole body was read is still seen.
fn http(cp: &ControlPlane, token: Option<&str>, method: &str, path: &str, headers: &[(&str, &str)], body: Option<Vec<u8>>) -> Answer {
    let address = cp.url.trim_start_matches("http://").to_string();
    let mut stream = std::net::TcpStream::connect(&address).expect("connect to the control plane");
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut head = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\n");
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        head.push_str(&format!("Host: {address}\r\n"));
    }
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if let Some(token) = token {
        head.push_str(&format!("Authorization: Bearer {token}\r\n"));
    }
    let body = body.unwrap_or_default();
    if !body.is_empty() || matches!(method, "POST" | "PUT" | "PATCH") {
        head.push_str(&format!("Content-Type: application/json\r\nContent-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).expect("send the request head");
    let mut writer = stream.try_clone().unwrap();
    let sending = std::thread::spawn(move || {
        let _ = writer.write_all(&body);
    });
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let _ = sending.join();
    let raw = String::from_utf8_lossy(&answer).to_string();
    let status = raw.strip_prefix("HTTP/1.1 ").and_then(|rest| rest.get(..3)).and_then(|code| code.parse().ok());
    let (head, payload) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let payload = if head.to_ascii_lowercase().contains("transfer-encoding: chunked") { dechunk(payload) } else { payload.to_string() };
    Answer { status, body: serde_json::from_str(&payload).unwrap_or(Value::Null), raw }
}

fn dechunk(mut text: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = text.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else { break };
        if size == 0 || rest.len() < size {
            break;
        }
        out.push_str(&rest[..size]);
        text = rest[size..].trim_start_matches("\r\n");
    }
    out
}

fn admin(cp: &ControlPlane, method: &str, path: &str, body: Option<Value>) -> Answer {
    http(cp, Some(&cp.admin_token()), method, path, &[], body.map(|b| b.to_string().into_bytes()))
}

/// Asserts a `400 invalid` naming `field`, whose message holds every one of `words`.
#[track_caller]
fn assert_invalid(answer: &Answer, field: &str, words: &[&str]) {
    assert_eq!(answer.status, Some(400), "expected a 400 for {field}, got: {}", answer.raw.chars().take(600).collect::<String>());
    assert_eq!((answer.body["code"].as_str(), answer.body["field"].as_str()), (Some("invalid"), Some(field)), "{}", answer.body);
    let message = answer.body["message"].as_str().unwrap_or_default();
    for w in words {
        assert!(message.contains(w), "the message should say {w:?}: {message}");
    }
    assert!(message.len() < 1000, "a refusal does not echo what it refused: {} bytes", message.len());
}

#[test]
fn stats_ranges_at_the_edges_of_time_are_refused_not_crashed() {
    let tmp = tempfile::tempdir().unwrap();
    let cp = ControlPlane::start(&tmp.path().join("data"));
    cp.json(&["stack", "create", "S"]);
    cp.json(&["service", "create", "S/web", "--image", TEST_IMAGE, "--scale", "0"]);
    let max = i64::MAX.to_string();
    let min_age = format!("-{}", i64::MAX);
    let cases: Vec<(String, &str, Vec<&str>)> = vec![
        // Before the fix `to - from` overflowed: the handler panicked and the connection dropped.
        (format!("from={min_age}&to={max}"), "from", vec!["between"]),
        (format!("to={max}"), "to", vec!["between", "9999-12-31T23:59:59Z"]),
        (format!("to={min_age}"), "to", vec!["between"]),
        (format!("from={min_age}"), "from", vec!["between", "1970-01-01T00:00:00Z"]),
        ("from=0001-01-01T00:00:00Z".into(), "from", vec!["between"]),
        (format!("from=-{}d", i64::MAX / 86_400), "from", vec!["between"]),
        (format!("from=0&to={max}&step={max}"), "to", vec!["between"]),
        (format!("from=0&to=now&step={}h", i64::MAX / 60), "step", vec!["between"]),
        (format!("step={}d", i64::MAX / 86_400 + 1), "step", vec!["between"]),
        ("step=99999999999999999999999".into(), "step", vec!["between"]),
        ("from=-99999999999999999999999s".into(), "from", vec!["between"]),
        ("from=now&to=-1h".into(), "from", vec!["must be before"]),
    ];
    for (query, field, words) in &cases {
        let started = Instant::now();
        let answer = admin(&cp, "GET", &format!("/v1/stacks/S/services/web/stats?{query}"), None);
        assert_invalid(&answer, field, words);
        assert!(started.elapsed() < Duration::from_secs(5), "{query} took {:?}", started.elapsed());
    }
    // The widest range that is allowed answers, with a bounded number of points.
    let answer = admin(&cp, "GET", "/v1/stacks/S/services/web/stats?from=0&to=253402300799&step=1", None);
    assert_eq!(answer.status, Some(200), "{}", answer.raw);
    assert!(answer.body["step_seconds"].as_i64().unwrap() >= 253_402_300_799 / 2_000, "{}", answer.body);
    let health = admin(&cp, "GET", "/v1/health", None);
    assert_eq!(health.status, Some(200), "the control plane still serves");
}

/// A directory with stand-ins for what the join command runs: `curl` writes an "agent" to its
/// `-o` path, and that agent writes the arguments it got, one per line, to `agent-args`.
fn fake_host(dir: &Path) -> std::path::PathBuf {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let curl = r#"#!/bin/sh
out=""
for a in "$@"; do printf '%s\n' "$a" >> curl-args; done
while [ $# -gt 0 ]; do
  if [ "$1" = "-o" ]; then out="$2"; shift; fi
  shift
done
printf '#!/bin/sh\nfor a in "$@"; do printf "%%s\\n" "$a"; done > agent-args\n' > "$out"
"#;
    std::fs::write(bin.join("curl"), curl).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(bin.join("curl"), std::fs::Permissions::from_mode(0o755)).unwrap();
    bin
}

/// Runs a join command line the way an operator pastes it into `sh`, with the fake tools of
/// [`fake_host`]; returns the arguments the agent was started with.
fn run_join_line(line: &str, dir: &Path) -> Vec<String> {
    let bin = fake_host(dir);
    let syntax = std::process::Command::new("sh").args(["-n", "-c", line]).output().unwrap();
    assert!(syntax.status.success(), "the line is not valid shell: {line}: {}", text(&syntax));
    let path = format!("{}:/usr/bin:/bin", bin.display());
    let out = std::process::Command::new("sh").args(["-c", line]).current_dir(dir).env("PATH", path).output().unwrap();
    assert!(out.status.success(), "{line}: {}", text(&out));
    std::fs::read_to_string(dir.join("agent-args")).unwrap_or_default().lines().map(str::to_string).collect()
}

#[test]
fn the_join_command_ignores_the_host_header_and_quotes_what_it_carries() {
    let tmp = tempfile::tempdir().unwrap();
    let cp = ControlPlane::start(&tmp.path().join("data"));
    let marker = tmp.path().join("pwned");
    let hostile = format!("x;touch {};#", marker.display());
    let answer = http(&cp, Some(&cp.admin_token()), "GET", "/v1/hosts/join-command", &[("Host", &hostile)], None);
    assert_eq!(answer.status, Some(200), "{}", answer.raw);
    let command = answer.body["command"].as_str().unwrap().to_string();
    let server_url = answer.body["server_url"].as_str().unwrap();
    assert!(!command.contains("touch") && !server_url.contains("touch"), "the request's Host header reached the line: {command}");
    assert_eq!(server_url, cp.url, "a control plane on a loopback address names that address and its port");
    // The line does what it says, whoever asked for it and however.
    let host = tmp.path().join("host");
    std::fs::create_dir_all(&host).unwrap();
    let args = run_join_line(&command, &host);
    assert!(!marker.exists(), "running the join command ran the header's command");
    let token = answer.body["token"].as_str().unwrap();
    assert_eq!(args, ["agent", "--server", &cp.url, "--token", token], "{command}");
    // The rotated command is built the same way.
    let rotated = http(&cp, Some(&cp.admin_token()), "POST", "/v1/hosts/join-command/rotate", &[("Host", &hostile)], None);
    assert_eq!(rotated.status, Some(200), "{}", rotated.raw);
    assert!(!rotated.body["command"].as_str().unwrap().contains("touch"), "{}", rotated.body);
}

#[test]
fn an_advertised_url_is_one_shell_word_in_the_join_command() {
    let tmp = tempfile::tempdir().unwrap();
    let marker = tmp.path().join("pwned-advertised");
    let advertised = format!("http://cp.lan:7070/$(touch {})'\"`x`", marker.display());
    let cp = ControlPlane::launch(&tmp.path().join("data"), &Launch { args: vec!["--advertise-url".into(), advertised.clone()], ..Launch::default() });
    let join = cp.json(&["host", "join-command"]);
    assert_eq!(join["server_url"].as_str(), Some(advertised.as_str()));
    let host = tmp.path().join("host");
    std::fs::create_dir_all(&host).unwrap();
    let args = run_join_line(join["command"].as_str().unwrap(), &host);
    assert!(!marker.exists(), "the advertised URL ran as a command: {}", join["command"]);
    assert_eq!(args.get(2), Some(&advertised), "the agent gets the URL as it was given: {args:?}");
    let fetched = std::fs::read_to_string(host.join("curl-args")).unwrap();
    assert!(fetched.lines().any(|a| a == format!("{advertised}/v1/agent/binary")), "{fetched}");
}

/// Signs `user` in with `password` and answers the session token.
fn session(cp: &ControlPlane, user: &str, password: &str) -> String {
    let answer = http(cp, None, "POST", "/v1/login", &[], Some(json!({ "user": user, "password": password }).to_string().into_bytes()));
    assert_eq!(answer.status, Some(200), "{}", answer.raw);
    answer.body["token"].as_str().unwrap().to_string()
}

fn create_key(cp: &ControlPlane, token: &str, body: Value) -> Answer {
    http(cp, Some(token), "POST", "/v1/apikeys", &[], Some(body.to_string().into_bytes()))
}

fn works(cp: &ControlPlane, token: &str) -> bool {
    http(cp, Some(token), "GET", "/v1/whoami", &[], None).status == Some(200)
}

#[test]
fn api_key_names_belong_to_their_user() {
    let tmp = tempfile::tempdir().unwrap();
    let cp = ControlPlane::start(&tmp.path().join("data"));
    for user in ["alice", "bob"] {
        let created = admin(&cp, "POST", "/v1/users", Some(json!({ "name": user, "password": format!("{user}-password") })));
        assert_eq!(created.status, Some(201), "{}", created.raw);
    }
    let alice = session(&cp, "alice", "alice-password");
    let bob = session(&cp, "bob", "bob-password");
    let alices = create_key(&cp, &alice, json!({ "name": "laptop" }));
    assert_eq!(alices.status, Some(201), "{}", alices.raw);
    // Before the fix this was a 409 that told bob alice has a key named laptop.
    let bobs = create_key(&cp, &bob, json!({ "name": "laptop" }));
    assert_eq!(bobs.status, Some(201), "another user's key name is not taken from bob: {}", bobs.raw);
    let again = create_key(&cp, &bob, json!({ "name": "laptop" }));
    assert_eq!((again.status, again.body["code"].as_str()), (Some(409), Some("conflict")), "{}", again.raw);
    let message = again.body["message"].as_str().unwrap();
    assert!(message.contains("you already have an API key named \"laptop\""), "{message}");
    assert!(!message.contains("alice"), "{message}");
    // The built-in admin's key name is not reserved for others either, and stays the admin's.
    assert_eq!(create_key(&cp, &bob, json!({ "name": "admin" })).status, Some(201));

    let (alice_secret, bob_secret) = (alices.body["secret"].as_str().unwrap().to_string(), bobs.body["secret"].as_str().unwrap().to_string());
    // Each revokes their own key by name; someone else's is not there for them.
    let refused = http(&cp, Some(&alice), "DELETE", "/v1/apikeys/laptop?user=bob", &[], None);
    assert_eq!(refused.status, Some(404), "{}", refused.raw);
    assert!(works(&cp, &bob_secret), "alice cannot revoke bob's key");
    let revoked = http(&cp, Some(&bob), "DELETE", "/v1/apikeys/laptop", &[], None);
    assert_eq!((revoked.status, revoked.body["user"].as_str()), (Some(200), Some("bob")), "{}", revoked.raw);
    assert!(!works(&cp, &bob_secret) && works(&cp, &alice_secret), "bob revoked his own laptop key, not alice's");
    // An admin names the user whose key it means; without one, its own keys are meant.
    assert_eq!(admin(&cp, "DELETE", "/v1/apikeys/laptop", None).status, Some(404));
    let by_admin = admin(&cp, "DELETE", "/v1/apikeys/laptop?user=alice", None);
    assert_eq!((by_admin.status, by_admin.body["user"].as_str()), (Some(200), Some("alice")), "{}", by_admin.raw);
    assert!(!works(&cp, &alice_secret));
    assert!(works(&cp, &cp.admin_token()), "the admin token is untouched by bob's key named admin");
    let restarted = cp.restart();
    assert!(works(&restarted, &restarted.admin_token()), "after a restart the admin token is still the admin's key");
    assert!(restarted.banner.starts_with("Corral control plane on"), "no new admin token was made: {}", restarted.banner);
}

#[test]
fn an_environment_key_reaches_no_further_than_its_environment() {
    let tmp = tempfile::tempdir().unwrap();
    let cp = ControlPlane::start(&tmp.path().join("data"));
    cp.json(&["env", "create", "OPS"]);
    cp.json(&["env", "create", "DEV"]);
    assert_eq!(admin(&cp, "POST", "/v1/users", Some(json!({ "name": "alice", "password": "alice-password" }))).status, Some(201));
    cp.json(&["member", "add", "OPS", "alice", "--role", "owner"]);
    cp.json(&["member", "add", "DEV", "alice", "--role", "owner"]);
    let alice = session(&cp, "alice", "alice-password");
    let account = create_key(&cp, &alice, json!({ "name": "main" }));
    let ops = create_key(&cp, &alice, json!({ "name": "ops-ci", "environment": "OPS" }));
    let dev = create_key(&cp, &alice, json!({ "name": "dev-ci", "environment": "DEV" }));
    let secret = |a: &Answer| a.body["secret"].as_str().unwrap().to_string();
    let (account, ops, dev) = (secret(&account), secret(&ops), secret(&dev));

    // Before the fix the OPS key revoked its owner's account key.
    for target in ["main", "dev-ci"] {
        let answer = http(&cp, Some(&ops), "DELETE", &format!("/v1/apikeys/{target}"), &[], None);
        assert_eq!((answer.status, answer.body["code"].as_str()), (Some(403), Some("forbidden")), "{target}: {}", answer.raw);
        assert!(answer.body["message"].as_str().unwrap().contains("environment key"), "{}", answer.body);
    }
    assert!(works(&cp, &account) && works(&cp, &dev), "the account key and the DEV key still work");
    let listed = http(&cp, Some(&ops), "GET", "/v1/apikeys", &[], None);
    let names: Vec<&str> = listed.body.as_array().unwrap().iter().filter_map(|k| k["name"].as_str()).collect();
    assert_eq!(names, ["ops-ci"], "an environment key lists the keys of its environment only");
    let listed = http(&cp, Some(&account), "GET", "/v1/apikeys", &[], None);
    assert_eq!(listed.body.as_array().unwrap().len(), 3, "the account key lists all of alice's keys: {}", listed.body);
    // It may still revoke itself, and an account key may revoke any of its user's keys.
    assert_eq!(http(&cp, Some(&ops), "DELETE", "/v1/apikeys/ops-ci", &[], None).status, Some(200));
    assert!(!works(&cp, &ops));
    assert_eq!(http(&cp, Some(&account), "DELETE", "/v1/apikeys/dev-ci", &[], None).status, Some(200));
    assert!(!works(&cp, &dev) && works(&cp, &account));
}

#[test]
fn passwords_need_eight_characters_that_are_not_all_whitespace() {
    let tmp = tempfile::tempdir().unwrap();
    let cp = ControlPlane::start(&tmp.path().join("data"));
    let too_long = "p".repeat(1025);
    for (password, words) in [
        ("        ", &["at least 8 characters", "whitespace"][..]),
        ("\t \u{3000} \n\r \u{a0}\u{2003}", &["whitespace"]),
        ("short", &["at least 8 characters"]),
        (too_long.as_str(), &["1024"]),
    ] {
        let answer = admin(&cp, "POST", "/v1/users", Some(json!({ "name": "carol", "password": password })));
        assert_invalid(&answer, "password", words);
    }
    assert!(!cp.json(&["user", "ls"]).as_array().unwrap().iter().any(|u| u["name"] == "carol"), "a refused user is not created");
    // The same rule when the password is set later, and from the CLI.
    assert_eq!(admin(&cp, "POST", "/v1/users", Some(json!({ "name": "carol", "password": "correct horse" }))).status, Some(201));
    assert_invalid(&admin(&cp, "PUT", "/v1/users/carol/password", Some(json!({ "password": "          " }))), "password", &["whitespace"]);
    session(&cp, "carol", "correct horse");
    for args in [&["user", "create", "dave", "--password-stdin"][..], &["user", "passwd", "carol", "--password-stdin"]] {
        let out = cp.cli_with_input(args, "           \n");
        assert!(!out.status.success() && text(&out).contains("whitespace"), "corral {args:?}: {}", text(&out));
    }
    assert!(!cp.json(&["user", "ls"]).as_array().unwrap().iter().any(|u| u["name"] == "dave"));
    session(&cp, "carol", "correct horse");
    // Leading and trailing spaces are part of a password that has other characters.
    assert_eq!(admin(&cp, "PUT", "/v1/users/carol/password", Some(json!({ "password": "  a      " }))).status, Some(204));
    session(&cp, "carol", "  a      ");
}

#[test]
fn every_list_and_string_the_api_takes_has_a_cap() {
    let tmp = tempfile::tempdir().unwrap();
    let cp = ControlPlane::start(&tmp.path().join("data"));
    cp.json(&["stack", "create", "S"]);
    cp.json(&["service", "create", "S/web", "--image", TEST_IMAGE, "--scale", "0"]);
    let before = (cp.json(&["stack", "ls"]), cp.json(&["service", "ls"]));
    let many = |n: usize, f: &dyn Fn(usize) -> String| (0..n).map(f).collect::<Vec<_>>();
    let service = |extra: Value| {
        let mut body = json!({ "name": "x", "image": TEST_IMAGE, "scale": 0 });
        body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        body
    };
    let lb = |extra: Value| {
        let mut lb = json!({ "ports": ["8080:80"], "targets": ["S/web"] });
        lb.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        json!({ "name": "lb", "kind": "load-balancer", "lb": lb })
    };
    let labels = |n: usize, key: usize, value: usize| -> Value {
        (0..n)
            .map(|i| (format!("{i}{}", "k".repeat(key.saturating_sub(i.to_string().len()))), json!("v".repeat(value))))
            .collect::<serde_json::Map<_, _>>()
            .into()
    };
    let cases: Vec<(&str, Value, &str, &[&str])> = vec![
        // Before the fix 100,000 arguments were taken, stored and sent to every host.
        ("100,000 command arguments", service(json!({ "command": many(100_000, &|_| "a".into()) })), "command", &["100000", "256"]),
        ("one 40 KB argument", service(json!({ "command": ["sh", "-c", "x".repeat(40_000)] })), "command", &["32 KiB"]),
        ("10,000 environment entries", service(json!({ "env": many(10_000, &|i| format!("K{i}=v")) })), "env", &["10000", "256"]),
        ("a 100 KB environment", service(json!({ "env": [format!("BIG={}", "v".repeat(100_000))] })), "env", &["64 KiB"]),
        ("10,000 labels", service(json!({ "labels": labels(10_000, 1, 1) })), "labels", &["10000", "64"]),
        ("a 300-byte label key", service(json!({ "labels": labels(1, 300, 1) })), "labels", &["255"]),
        ("a 10 KB label value", service(json!({ "labels": labels(1, 3, 10_000) })), "labels", &["4096"]),
        ("1,000 ports", service(json!({ "ports": many(1_000, &|i| (i + 1).to_string()) })), "ports", &["1000", "64"]),
        ("1,000 constraints", service(json!({ "constraints": many(1_000, &|i| format!("host.zone!=z{i}")) })), "constraints", &["1000", "32"]),
        ("a 1 KB constraint", service(json!({ "constraints": [format!("host.zone={}", "z".repeat(1_000))] })), "constraints", &["255"]),
        ("a 64-character name", service(json!({ "name": "n".repeat(64) })), "name", &["1-63"]),
        ("a 300-character image", service(json!({ "image": "i".repeat(300) })), "image", &["255"]),
        ("1,000 balancer ports", lb(json!({ "ports": many(1_000, &|i| format!("{}:80", 10_000 + i)) })), "ports", &["1000", "64"]),
        ("1,000 balancer targets", lb(json!({ "targets": many(1_000, &|_| "S/web".into()) })), "targets", &["1000", "32"]),
        ("1,000 balancer rules", lb(json!({ "rules": many(1_000, &|i| format!("path=/{i} -> S/web:80")) })), "rules", &["1000", "64"]),
        ("a 1 KB balancer rule", lb(json!({ "rules": [format!("path=/{} -> S/web:80", "p".repeat(1_000))] })), "rules", &["512"]),
    ];
    for (what, body, field, words) in &cases {
        let started = Instant::now();
        let answer = admin(&cp, "POST", "/v1/stacks/S/services", Some(body.clone()));
        assert!(answer.status.is_some(), "{what}: no answer");
        assert_invalid(&answer, field, words);
        assert!(started.elapsed() < Duration::from_secs(5), "{what} took {:?}", started.elapsed());
    }
    let upgrade = admin(&cp, "POST", "/v1/stacks/S/services/web/upgrade", Some(json!({ "command": many(100_000, &|_| "a".into()) })));
    assert_invalid(&upgrade, "command", &["256"]);
    let upgrade = admin(&cp, "POST", "/v1/stacks/S/services/web/upgrade", Some(json!({ "env": many(1_000, &|i| format!("K{i}=v")) })));
    assert_invalid(&upgrade, "env", &["256"]);
    for (path, field) in [("/v1/stacks", "name"), ("/v1/groups", "name"), ("/v1/users", "name"), ("/v1/environments", "name"), ("/v1/apikeys", "name")] {
        assert_invalid(&admin(&cp, "POST", path, Some(json!({ "name": "n".repeat(64) }))), field, &["1-63"]);
    }
    // A body over 1 MiB is refused as a whole, before anything reads it as JSON.
    let huge = service(json!({ "env": [format!("BIG={}", "v".repeat(1_100_000))] })).to_string().into_bytes();
    let answer = http(&cp, Some(&cp.admin_token()), "POST", "/v1/stacks/S/services", &[], Some(huge));
    assert_eq!((answer.status, answer.body["code"].as_str()), (Some(413), Some("too_large")), "{}", answer.raw.chars().take(600).collect::<String>());
    assert!(answer.body["message"].as_str().unwrap().contains("1 MiB"), "{}", answer.body);

    assert_eq!((cp.json(&["stack", "ls"]), cp.json(&["service", "ls"])), before, "nothing refused changed anything");
    assert!(cp.json(&["group", "ls"]).as_array().unwrap().is_empty() && cp.json(&["apikey", "ls"]).as_array().unwrap().len() == 1);
}

//! A restore brings back exactly the backup, or changes nothing.
//!
//! - An unmodified backup comes back row for row, in every table: API keys of every user,
//!   agents' last reports and metrics included.
//! - Crafted backups (a malformed row, a dropped table, a broken reference, values the API would
//!   refuse) are refused with 400 and the reason before anything is replaced; the control plane
//!   keeps answering, and the next good restore works.
//! - A backup that would lock the admin out is refused with 409 unless forced; after a forced
//!   restore the data-dir admin token still works, as an administrator.

use corral_e2e::*;
use corral_proto::stats::{ContainerStats, HostStats, StatsReport};
use corral_proto::{AgentMessage, ObservedContainer};
use serde_json::{json, Value};
use sqlx::Connection;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// Runs curl with `-w` printing the status last: the status and the JSON body (`Null` if none).
fn curl(cmd: &mut Command) -> (u16, Value) {
    let out = cmd.args(["-s", "-w", "\n%{http_code}"]).output().expect("run curl");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), serde_json::from_str(body).unwrap_or(Value::Null))
}

/// An API request with a bearer token.
fn http(cp: &ControlPlane, method: &str, path: &str, token: &str, body: Option<&Value>) -> (u16, Value) {
    let mut cmd = Command::new("curl");
    cmd.args(["-X", method, "-H", &format!("Authorization: Bearer {token}")]);
    if let Some(body) = body {
        cmd.args(["-H", "Content-Type: application/json", "-d", &body.to_string()]);
    }
    curl(cmd.arg(format!("{}/v1{path}", cp.url)))
}

/// `POST /v1/restore{query}` with `file` as the body, as the admin.
fn upload(cp: &ControlPlane, file: &Path, query: &str) -> (u16, Value) {
    let mut cmd = Command::new("curl");
    cmd.args(["-X", "POST", "-H", &format!("Authorization: Bearer {}", cp.admin_token()), "-H", "Content-Type: application/octet-stream"])
        .arg("--data-binary")
        .arg(format!("@{}", file.display()))
        .arg(format!("{}/v1/restore{query}", cp.url));
    curl(&mut cmd)
}

fn create_user(cp: &ControlPlane, name: &str) {
    let out = cp.cli_with_input(&["-o", "json", "user", "create", name, "--password-stdin"], "pass-word-1\n");
    assert!(out.status.success(), "user create {name}: {}", text(&out));
}

/// Logs `user` in (password `pass-word-1`); returns the session token.
fn login(cp: &ControlPlane, user: &str) -> String {
    let (status, body) = http(cp, "POST", "/login", "", Some(&json!({"user": user, "password": "pass-word-1"})));
    assert_eq!(status, 200, "login {user}: {body}");
    body["token"].as_str().unwrap().to_string()
}

/// Creates an API key with the credential `as_who` (for `env` only, when given); returns its secret.
fn api_key(cp: &ControlPlane, as_who: &str, name: &str, env: Option<&str>) -> String {
    let (status, body) = http(cp, "POST", "/apikeys", as_who, Some(&json!({"name": name, "environment": env})));
    assert_eq!(status, 201, "apikey {name}: {body}");
    body["secret"].as_str().unwrap().to_string()
}

/// `corral backup FILE`.
fn backup(cp: &ControlPlane, file: &Path) -> PathBuf {
    let out = cp.cli(&["backup", file.to_str().unwrap()]).output().unwrap();
    assert!(out.status.success(), "corral backup: {}", text(&out));
    file.to_path_buf()
}

/// A host that joins by speaking the agent protocol from the test: hello, one observed report,
/// one stats report, then heartbeats only. It runs nothing; dropping it closes its connection.
/// A host that joined, reported one container and its stats, and stays connected while kept.
struct FakeHost(#[allow(dead_code)] FakeAgent);

fn fake_host(rt: &tokio::runtime::Runtime, cp: &ControlPlane, join_token: &str, id: &str, name: &str) -> FakeHost {
    let mut facts = corral_e2e::fake_agent::facts(name);
    facts.labels = BTreeMap::from([("zone".to_string(), name.to_string())]);
    let agent = rt.block_on(FakeAgent::join(cp, join_token, None, id, facts)).unwrap_or_else(|answer| panic!("the fake host's hello: {answer}"));
    let sidecar = format!("{name}-sidecar");
    let container = ObservedContainer {
        ip: Some("172.17.0.9".into()),
        ports: vec!["80".parse().unwrap()],
        labels: BTreeMap::from([("team".to_string(), "blue".to_string())]),
        ..corral_e2e::fake_agent::running(&sidecar)
    };
    agent.report(vec![container]);
    let at_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
    let host = HostStats { cpu_percent: 12.5, load1: 0.5, memory_used_bytes: 1 << 28, memory_total_bytes: 1 << 30, ..Default::default() };
    let containers =
        vec![ContainerStats { name: sidecar, stack: "WEB".into(), service: "web".into(), cpu_percent: 3.0, memory_bytes: 1 << 20, ..Default::default() }];
    agent.send(&AgentMessage::Stats(StatsReport { at_ms, host, containers, tunnel: None }));
    FakeHost(agent)
}

/// Every row of every table of an SQLite file, each as `column=literal, ...`, sorted by table.
fn rows_of(rt: &tokio::runtime::Runtime, db: &Path) -> BTreeMap<String, Vec<String>> {
    rt.block_on(async {
        let options = sqlx::sqlite::SqliteConnectOptions::new().filename(db).create_if_missing(false);
        let mut conn = sqlx::SqliteConnection::connect_with(&options).await.unwrap();
        let tables: Vec<String> =
            sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'").fetch_all(&mut conn).await.unwrap();
        let mut all = BTreeMap::new();
        for table in tables {
            let columns: Vec<String> = sqlx::query_scalar("SELECT name FROM pragma_table_info(?)").bind(&table).fetch_all(&mut conn).await.unwrap();
            let row = columns.iter().map(|c| format!("'{c}=' || quote(\"{c}\")")).collect::<Vec<_>>().join(" || ', ' || ");
            let rows: Vec<String> = sqlx::query_scalar(&format!("SELECT {row} FROM \"{table}\" ORDER BY 1")).fetch_all(&mut conn).await.unwrap();
            all.insert(table, rows);
        }
        conn.close().await.unwrap();
        all
    })
}

/// A copy of `good` changed by `sql` (foreign keys not enforced, as a hand edit would be).
fn craft(rt: &tokio::runtime::Runtime, good: &Path, dest: &Path, sql: &str) -> PathBuf {
    std::fs::copy(good, dest).unwrap();
    rt.block_on(async {
        let options = sqlx::sqlite::SqliteConnectOptions::new().filename(dest).foreign_keys(false);
        let mut conn = sqlx::SqliteConnection::connect_with(&options).await.unwrap();
        sqlx::raw_sql(sql).execute(&mut conn).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
        conn.close().await.unwrap();
    });
    dest.to_path_buf()
}

/// The control plane rolls metrics up every minute from its start: a roll-up between a backup
/// and the comparison would add rows the backup rightly lacks. Waits until the next 15 seconds
/// are clear of one.
fn clear_of_rollups(started: Instant) {
    let phase = started.elapsed().as_secs_f64() % 60.0;
    if !(3.0..=45.0).contains(&phase) {
        std::thread::sleep(Duration::from_secs_f64((63.0 - phase) % 60.0));
    }
}

#[test]
fn an_unmodified_backup_comes_back_row_for_row() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let cp = ControlPlane::start(&tmp.path().join("data"));
    let started = Instant::now();
    let admin = cp.admin_token();

    // People: environments (one renamed), users, an admin, a group, roles, keys of several users
    // (account and environment keys), sessions and a failed login.
    cp.json(&["env", "create", "DEV"]);
    cp.json(&["env", "create", "OPS"]);
    cp.json(&["env", "rename", "OPS", "PROD"]);
    create_user(&cp, "ann");
    create_user(&cp, "bob");
    cp.json(&["user", "create", "carol", "--admin"]);
    cp.json(&["group", "create", "devs"]);
    cp.json(&["group", "add", "devs", "ann"]);
    cp.json(&["group", "add", "devs", "bob"]);
    cp.json(&["member", "add", "DEV", "ann", "--role", "member"]);
    cp.json(&["member", "add", "DEV", "devs", "--role", "read-only"]);
    cp.json(&["member", "add", "Default", "bob", "--role", "restricted"]);
    let ann_session = login(&cp, "ann");
    let ann_key = api_key(&cp, &ann_session, "ann-laptop", None);
    let ann_dev_key = api_key(&cp, &ann_session, "ann-dev-ci", Some("DEV"));
    let bob_key = api_key(&cp, &login(&cp, "bob"), "bob-laptop", None);
    api_key(&cp, &admin, "ci", None);
    let (status, _) = http(&cp, "POST", "/login", "", Some(&json!({"user": "bob", "password": "wrong-password"})));
    assert_eq!(status, 401);

    // Hosts: two joined with their credentials, reports and metrics, one removed, one deactivated.
    let join_token = cp.json(&["host", "join-command"])["token"].as_str().unwrap().to_string();
    let _h1 = fake_host(&rt, &cp, &join_token, "host-1", "h1");
    let _h2 = fake_host(&rt, &cp, &join_token, "host-2", "h2");
    drop(fake_host(&rt, &cp, &join_token, "host-3", "h3"));
    wait_for("h3 to be disconnected", Duration::from_secs(10), || cp.hosts().iter().any(|h| h["name"] == "h3" && h["state"] == "disconnected").then_some(()));
    cp.json(&["host", "rm", "h3"]);

    // Stacks: services placed on the hosts, a load balancer, a stopped service.
    cp.json(&["stack", "create", "WEB"]);
    cp.json(&["--env", "DEV", "stack", "create", "DEV-tools"]);
    cp.json(&[
        "service",
        "create",
        "WEB/web",
        "--image",
        TEST_IMAGE,
        "--scale",
        "3",
        "--port",
        "80",
        "-e",
        "PASSWORD=hunter2",
        "--label",
        "team=blue",
        "--constraint",
        "host.zone!=h9",
        "--",
        "sleep",
        "3600",
    ]);
    cp.json(&["lb", "create", "WEB/web-lb", "--port", "8080:80", "--target", "WEB/web"]);
    cp.json(&["service", "create", "WEB/batch", "--image", TEST_IMAGE, "--", "sleep", "60"]);
    cp.json(&["service", "stop", "WEB/batch"]);
    wait_for("every instance to be placed", Duration::from_secs(20), || {
        cp.json(&["service", "ls"]).as_array().unwrap().iter().all(|s| s["placed"] == s["scale"]).then_some(())
    });
    cp.json(&["host", "deactivate", "h2"]);

    clear_of_rollups(started);
    let before = rows_of(&rt, &backup(&cp, &tmp.path().join("before.db")));
    for table in [
        "environments",
        "users",
        "groups",
        "group_members",
        "memberships",
        "sessions",
        "api_tokens",
        "login_failures",
        "hosts",
        "removed_hosts",
        "observed",
        "stacks",
        "services",
        "containers",
        "metric_series",
        "metric_raw",
        "audit_log",
    ] {
        assert!(!before[table].is_empty(), "the backup has rows in {table}, so the round trip shows something");
    }
    let restored = cp.json(&["restore", tmp.path().join("before.db").to_str().unwrap()]);
    assert_eq!(restored["restored"], true, "{restored}");
    let after = rows_of(&rt, &backup(&cp, &tmp.path().join("after.db")));

    assert_eq!(after.keys().collect::<Vec<_>>(), before.keys().collect::<Vec<_>>(), "the same tables");
    for (table, rows) in &before {
        if table == "audit_log" {
            // The audit log also says that the restore happened, and nothing else.
            let new: Vec<&String> = after[table].iter().filter(|r| !rows.contains(r)).collect();
            assert!(rows.iter().all(|r| after[table].contains(r)), "audit rows of the backup are all back");
            assert!(new.len() == 1 && new[0].contains("path='/v1/restore'"), "one new audit row, for the restore: {new:?}");
            continue;
        }
        assert_eq!(&after[table], rows, "table {table} after restoring an unmodified backup");
    }

    // Everyone gets in with what they had.
    for (who, token, path) in [
        ("ann's account key", &ann_key, "/stacks?env=DEV"),
        ("ann's DEV key", &ann_dev_key, "/stacks?env=DEV"),
        ("ann's session", &ann_session, "/stacks?env=DEV"),
        ("bob's key", &bob_key, "/stacks"),
        ("the admin token", &admin, "/users"),
    ] {
        let (status, body) = http(&cp, "GET", path, token, None);
        assert_eq!(status, 200, "{who} after the restore: {body}");
    }
}

/// What the API shows of the state a restore may change.
fn api_state(cp: &ControlPlane) -> Vec<Value> {
    [&["stack", "ls"][..], &["service", "ls"], &["user", "ls"], &["group", "ls"], &["member", "ls", "Default"], &["apikey", "ls"], &["env", "ls"]]
        .iter()
        .map(|args| cp.json(args))
        .collect()
}

fn safety_copies(cp: &ControlPlane) -> usize {
    std::fs::read_dir(&cp.data_dir).unwrap().filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().starts_with("corral.db.before-restore-")).count()
}

#[test]
fn crafted_backups_are_refused_with_the_reason_and_change_nothing() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let cp = ControlPlane::start(&tmp.path().join("data"));
    cp.json(&["stack", "create", "WEB"]);
    cp.json(&["service", "create", "WEB/web", "--image", TEST_IMAGE, "--scale", "2", "-e", "PASSWORD=hunter2", "--", "sleep", "3600"]);
    create_user(&cp, "ann");
    cp.json(&["group", "create", "devs"]);
    cp.json(&["group", "add", "devs", "ann"]);
    cp.json(&["member", "add", "Default", "ann", "--role", "member"]);
    let good = backup(&cp, &tmp.path().join("good.db"));
    let before = api_state(&cp);

    let refused = [
        ("malformed JSON in a service's env", "UPDATE services SET env = '[\"PASSWORD=hunter2\", oops'", 400, "bad_backup", &["table services, row id", "env"][..]),
        ("text where a number belongs", "UPDATE services SET scale = 'many'", 400, "bad_backup", &["table services, row id", "scale"]),
        ("a dropped table", "DROP TABLE sessions", 400, "bad_backup", &["table sessions", "missing"]),
        ("services whose stack is gone", "DELETE FROM stacks", 400, "bad_backup", &["table services, row id", "stacks"]),
        ("a scale of 4294967295", "UPDATE services SET scale = 4294967295", 400, "bad_backup", &["table services, row id", "scale", "1000"]),
        ("a stack name with terminal escape codes", "UPDATE stacks SET name = 'WEB' || char(27) || '[2J'", 400, "bad_backup", &["table stacks, row id", "stack name"]),
        (
            "a host whose name holds terminal escape codes",
            "INSERT INTO hosts (id, environment_id, name, address, docker_version, cpus, memory_bytes, os, kernel, agent_version, labels, state, state_since, last_seen, created_at)
             VALUES ('h-evil', (SELECT id FROM environments LIMIT 1), 'evil' || char(27) || '[2J', '10.0.0.1', '28.2', 1, 1, 'linux', '6.1', '0.1.0', '{}', 'disconnected',
                     '2026-01-01T00:00:00Z', '2026-01-01T00:00:00Z', '2026-01-01T00:00:00Z')",
            400,
            "bad_backup",
            &["table hosts, row id \"h-evil\"", "the host name", "is refused"],
        ),
        ("an image reference that is no image", "UPDATE services SET image = 'Not An Image'", 400, "bad_backup", &["table services, row id", "invalid image reference"]),
        ("a network that does not exist", "UPDATE services SET network = 'overlay'", 400, "bad_backup", &["table services, row id", "network", "overlay"]),
        (
            "a host-network service with a published port",
            "UPDATE services SET network = 'host', ports = '[{\"host_port\":8080,\"container_port\":80,\"protocol\":\"tcp\"}]'",
            400,
            "bad_backup",
            &["table services, row id", "host's own ports"],
        ),
        ("a role that does not exist", "UPDATE memberships SET role = 'superuser'", 400, "bad_backup", &["table memberships, row id", "role"]),
        ("an admin without the admin flag", "UPDATE users SET admin = 0 WHERE name = 'admin'", 409, "restore_would_lock_out", &["admin flag", "--force"]),
        ("no admin key", "DELETE FROM api_tokens WHERE name = 'admin'", 409, "restore_would_lock_out", &["admin token", "--force"]),
    ];
    for (n, (what, sql, status, code, words)) in refused.into_iter().enumerate() {
        let copies = safety_copies(&cp);
        let file = craft(&rt, &good, &tmp.path().join(format!("crafted-{n}.db")), sql);
        let (got, body) = upload(&cp, &file, "");
        assert_eq!((got, body["code"].as_str()), (status, Some(code)), "{what}: {body}");
        let message = body["message"].as_str().unwrap_or_default();
        for word in words {
            assert!(message.contains(word), "{what}: expected {word:?} in {message:?}");
        }
        assert_eq!(safety_copies(&cp), copies, "{what}: nothing was replaced, so no safety copy either");
        assert_eq!(api_state(&cp), before, "{what}: the refused restore changed nothing and the API answers as before");
        // Every later restore works too.
        cp.json(&["stack", "create", "LATER"]);
        let (got, body) = upload(&cp, &good, "");
        assert_eq!(got, 200, "{what}: a good restore afterwards: {body}");
        assert_eq!(api_state(&cp), before, "{what}: the good restore brought the backup back");
    }
    let leftovers: Vec<String> =
        std::fs::read_dir(&cp.data_dir).unwrap().filter_map(|e| e.ok()?.file_name().into_string().ok()).filter(|n| n.starts_with(".corral-")).collect();
    assert!(leftovers.is_empty(), "temp files are cleaned up: {leftovers:?}");

    // The CLI says what would happen and how to go ahead anyway; forced, the data-dir admin
    // token still works, as an administrator.
    let no_admin =
        craft(&rt, &good, &tmp.path().join("no-admin.db"), "UPDATE users SET admin = 0 WHERE name = 'admin'; DELETE FROM api_tokens WHERE name = 'admin'");
    let err = cp.fails(&["restore", no_admin.to_str().unwrap()]);
    assert!(err.contains("lock") && err.contains("corral restore") && err.contains("--force"), "{err}");
    let forced = cp.json(&["restore", no_admin.to_str().unwrap(), "--force"]);
    assert_eq!(forced["restored"], true, "{forced}");
    let users = cp.json(&["user", "ls"]);
    let admin = users.as_array().unwrap().iter().find(|u| u["name"] == "admin").unwrap_or_else(|| panic!("{users}"));
    assert_eq!(admin["admin"], true, "the built-in admin is an administrator again: {users}");
    let (status, body) = upload(&cp, &good, "");
    assert_eq!(status, 200, "{body}");
    assert_eq!(api_state(&cp), before);

    // Over HTTP, `?force=true` is the override.
    let (status, body) = upload(&cp, &no_admin, "?force=true");
    assert_eq!(status, 200, "{body}");
    assert_eq!(http(&cp, "GET", "/users", &cp.admin_token(), None).0, 200);
}

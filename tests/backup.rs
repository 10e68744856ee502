//! Backup and restore while the control plane runs: the restored state comes back in the API
//! and on the engines; a bad file is refused with what is wrong, and changes nothing.

use corral_e2e::*;
use serde_json::Value;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// `curl` against the API: `(status, body)`.
fn curl(cp: &ControlPlane, args: &[&str]) -> (String, Vec<u8>) {
    let out =
        Command::new("curl").args(["-s", "-w", "\n%{http_code}", "-H", &format!("Authorization: Bearer {}", cp.admin_token())]).args(args).output().unwrap();
    let split = out.stdout.iter().rposition(|b| *b == b'\n').expect("curl printed the status");
    (String::from_utf8_lossy(&out.stdout[split + 1..]).to_string(), out.stdout[..split].to_vec())
}

fn restore_upload(cp: &ControlPlane, file: &Path) -> (String, Value) {
    let (code, body) = curl(
        cp,
        &["-X", "POST", "-H", "Content-Type: application/octet-stream", "--data-binary", &format!("@{}", file.display()), &format!("{}/v1/restore", cp.url)],
    );
    (code, serde_json::from_slice(&body).unwrap_or_else(|_| panic!("not JSON: {}", String::from_utf8_lossy(&body))))
}

fn safety_copies(cp: &ControlPlane) -> Vec<String> {
    std::fs::read_dir(&cp.data_dir)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with("corral.db.before-restore-"))
        .collect()
}

fn services(cp: &ControlPlane) -> Vec<(String, u64)> {
    let mut out: Vec<(String, u64)> = cp
        .json(&["service", "ls"])
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (format!("{}/{}", s["stack"].as_str().unwrap(), s["name"].as_str().unwrap()), s["scale"].as_u64().unwrap()))
        .collect();
    out.sort();
    out
}

#[test]
fn restore_brings_back_the_backup_in_the_api_and_on_the_engines() {
    let cluster = Cluster::start(1);
    let cp = &cluster.cp;
    cp.json(&["stack", "create", "B"]);
    cp.json(&["service", "create", "B/keep", "--image", TEST_IMAGE, "--scale", "2", "--", "sleep", "3600"]);
    let kept = instance_names("B-keep", 2);
    cluster.wait_exactly("the backed-up service to run", &kept, Duration::from_secs(60));

    let file = cluster.tmp.path().join("corral.backup.db");
    let out = cp.cli(&["backup", file.to_str().unwrap()]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("wrote ") && stdout.contains("corral.backup.db") && stdout.contains("MiB"), "{stdout}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("backing up:"), "progress on stderr: {}", text(&out));
    assert!(std::fs::read(&file).unwrap().starts_with(b"SQLite format 3\0"));

    // The same over HTTP, as a download with a dated file name.
    let headers = cluster.tmp.path().join("headers.txt");
    let (code, body) = curl(cp, &["-D", headers.to_str().unwrap(), &format!("{}/v1/backup", cp.url)]);
    assert_eq!(code, "200");
    assert!(body.starts_with(b"SQLite format 3\0"));
    let headers = std::fs::read_to_string(headers).unwrap().to_lowercase();
    assert!(headers.contains("content-type: application/vnd.sqlite3"), "{headers}");
    assert!(headers.contains("content-disposition: attachment; filename=\"corral-2"), "{headers}");

    // Things change after the backup ...
    cp.json(&["service", "create", "B/later", "--image", TEST_IMAGE, "--scale", "1", "--", "sleep", "3600"]);
    cp.json(&["service", "scale", "B/keep", "3"]);
    cp.json(&["stack", "create", "C"]);
    let mut after = instance_names("B-keep", 3);
    after.extend(instance_names("B-later", 1));
    cluster.wait_exactly("the later changes to run", &after, Duration::from_secs(60));

    // ... and the restore takes them back, without a restart.
    let restored = cp.json(&["restore", file.to_str().unwrap()]);
    assert_eq!(restored["restored"], true, "{restored}");
    assert!(restored["schema_version"].as_i64().is_some_and(|v| v > 0), "{restored}");
    let safety = restored["safety_copy"].as_str().unwrap();
    assert!(safety.starts_with("corral.db.before-restore-") && cp.data_dir.join(safety).is_file(), "{restored}");
    assert_eq!(safety_copies(cp), [safety]);

    assert_eq!(services(cp), [("B/keep".to_string(), 2)]);
    let stacks: Vec<String> = cp.json(&["stack", "ls"]).as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap().to_string()).collect();
    assert_eq!(stacks, ["B"]);
    // The engine follows: what was created after the backup is removed.
    cluster.wait_exactly("the engine to converge to the backup", &kept, Duration::from_secs(60));
    cluster.cp.wait_hosts_active(&[cluster.engines[0].name.as_str()]);
    // And the control plane keeps working on the restored state.
    cp.json(&["service", "scale", "B/keep", "1"]);
    cluster.wait_exactly("a scale after the restore", &instance_names("B-keep", 1), Duration::from_secs(60));
}

#[test]
fn bad_backups_are_refused_clearly_and_change_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let cp = ControlPlane::start(&tmp.path().join("data"));
    cp.json(&["stack", "create", "WEB"]);
    cp.json(&["service", "create", "WEB/web", "--image", TEST_IMAGE, "--scale", "2", "--", "sleep", "3600"]);
    let before = (cp.json(&["stack", "ls"]), cp.json(&["service", "ls"]), cp.json(&["env", "ls"]));

    let text_file = tmp.path().join("notes.txt");
    std::fs::write(&text_file, "these are notes, not a database; long enough to have a header").unwrap();
    let other = tmp.path().join("other.db");
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let options = sqlx::sqlite::SqliteConnectOptions::new().filename(&other).create_if_missing(true);
        let pool = sqlx::SqlitePool::connect_with(options).await.unwrap();
        sqlx::query("CREATE TABLE songs (title TEXT)").execute(&pool).await.unwrap();
        sqlx::query("INSERT INTO songs VALUES ('a')").execute(&pool).await.unwrap();
        pool.close().await;
    });
    let good = tmp.path().join("good.db");
    let out = cp.cli(&["backup", good.to_str().unwrap()]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let bytes = std::fs::read(&good).unwrap();
    let truncated = tmp.path().join("truncated.db");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let empty = tmp.path().join("empty.db");
    std::fs::write(&empty, "").unwrap();

    let cases = [(&text_file, "not a SQLite database"), (&other, "not a Corral database"), (&truncated, "damaged"), (&empty, "empty")];
    for (file, expected) in cases {
        let (code, body) = restore_upload(&cp, file);
        assert_eq!((code.as_str(), body["code"].as_str()), ("400", Some("bad_backup")), "{}: {body}", file.display());
        assert!(body["message"].as_str().unwrap().contains(expected), "{}: expected {expected:?} in {body}", file.display());
        let err = cp.fails(&["restore", file.to_str().unwrap()]);
        assert!(err.contains(expected) && !err.contains("internal"), "corral restore {}: {err}", file.display());
    }
    let err = cp.fails(&["restore", "/nonexistent/backup.db"]);
    assert!(err.contains("cannot read /nonexistent/backup.db"), "{err}");

    assert!(safety_copies(&cp).is_empty(), "no safety copy for a refused file");
    let leftovers: Vec<String> =
        std::fs::read_dir(&cp.data_dir).unwrap().filter_map(|e| e.ok()?.file_name().into_string().ok()).filter(|n| n.starts_with(".corral-")).collect();
    assert!(leftovers.is_empty(), "temp files are cleaned up: {leftovers:?}");
    assert_eq!((cp.json(&["stack", "ls"]), cp.json(&["service", "ls"]), cp.json(&["env", "ls"])), before, "bad backups changed nothing");
}

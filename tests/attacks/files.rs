//! Files on disk are private: the data dir is 0700, and the database with its WAL and
//! shared-memory files, pre-restore copies, backups `corral backup` writes, the admin token, the
//! sealing key and the TLS keys are 0600. Another local user reads none of them, also after an
//! older version left them readable. Join tokens, which must be shown again, are in none of the
//! database's files or copies: they are sealed with a key kept outside them.

use corral_e2e::*;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).permissions().mode() & 0o777
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// Runs `args` as the unprivileged user `nobody`: `(succeeded, stderr)`.
fn as_nobody(args: &[&str]) -> (bool, String) {
    let out = Command::new("setpriv").args(["--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"]).args(args).output().expect("run setpriv");
    (out.status.success(), String::from_utf8_lossy(&out.stderr).to_string())
}

/// The data dir is 0700 and each file 0600, and `nobody` can neither list the dir nor read a file.
fn assert_private(data_dir: &Path, files: &[PathBuf]) {
    assert_eq!(format!("{:o}", mode(data_dir)), "700", "data dir {}", data_dir.display());
    let (listed, err) = as_nobody(&["ls", data_dir.to_str().unwrap()]);
    assert!(!listed && err.contains("Permission denied"), "another user lists the data dir: {err}");
    for file in files {
        assert_eq!(format!("{:o}", mode(file)), "600", "{}", file.display());
        let (read, err) = as_nobody(&["cat", file.to_str().unwrap()]);
        assert!(!read && err.contains("Permission denied"), "another user reads {}: {err}", file.display());
    }
}

#[test]
fn another_local_user_reads_nothing_the_control_plane_writes() {
    let tmp = tempfile::tempdir().unwrap();
    // Only Corral's own modes may keep others out, not those of the test's temp dir.
    chmod(tmp.path(), 0o755);
    let control = tmp.path().join("control.txt");
    std::fs::write(&control, "readable by all").unwrap();
    chmod(&control, 0o644);
    assert!(as_nobody(&["cat", control.to_str().unwrap()]).0, "nobody reads a world-readable file here, so a refusal below means something");

    let data = tmp.path().join("data");
    let cp = ControlPlane::start(&data);
    cp.json(&["stack", "create", "WEB"]);
    cp.json(&["service", "create", "WEB/db", "--image", TEST_IMAGE, "-e", "DB_PASSWORD=hunter2", "--", "sleep", "3600"]);
    let backup = tmp.path().join("backup.db");
    let out = cp.cli(&["backup", backup.to_str().unwrap()]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let restored = cp.json(&["restore", backup.to_str().unwrap()]);
    let safety = data.join(restored["safety_copy"].as_str().unwrap());
    let db = |suffix: &str| data.join(format!("corral.db{suffix}"));
    let mut files = vec![db(""), db("-wal"), db("-shm"), data.join("admin-token"), data.join("sealing.key"), safety, backup];
    assert_private(&data, &files);

    // An older version left the data dir and the database readable: the next start tightens them.
    // With TLS on, the keys it writes are private too.
    assert!(cp.proc.stop().success());
    chmod(&data, 0o755);
    for file in [db(""), data.join("admin-token")] {
        chmod(&file, 0o644);
    }
    let cp = ControlPlane::launch(&data, &Launch { args: vec!["--tls".into(), "on".into()], ..Launch::default() });
    assert!(cp.url.starts_with("https://"), "{}", cp.url);
    files.extend([data.join("tls/ca.key"), data.join("tls/server.key")]);
    // The pre-restore copy and the backup stay as they were: private.
    assert_private(&data, &files);
}

fn holds(path: &Path, needle: &str) -> bool {
    let bytes = std::fs::read(path).unwrap_or_default();
    bytes.windows(needle.len()).any(|w| w == needle.as_bytes())
}

/// A copy of the database holds no usable join token: the database file, its log and a backup
/// keep tokens only sealed, with a key in a 0600 file beside them that backups do not carry. A
/// control plane with another key that restores such a backup gives its environments new
/// tokens and says so, rather than serving tokens it cannot read.
#[test]
fn join_tokens_are_in_neither_the_database_file_nor_its_backups() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let cp = ControlPlane::start(&data);
    cp.json(&["env", "create", "OPS"]);
    let token = cp.json(&["host", "join-command"])["token"].as_str().unwrap().to_string();
    let ops_token = cp.json(&["host", "join-command", "--env", "OPS"])["token"].as_str().unwrap().to_string();
    let backup = tmp.path().join("backup.db");
    cp.json(&["backup", backup.to_str().unwrap()]);
    let cp = cp.restart();
    for file in [data.join("corral.db"), data.join("corral.db-wal"), backup.clone()] {
        for t in [&token, &ops_token] {
            assert!(!holds(&file, t), "{} holds a join token in plaintext", file.display());
        }
    }
    assert_eq!(mode(&data.join("sealing.key")), 0o600, "the sealing key file");
    assert_eq!(cp.json(&["host", "join-command"])["token"], token.as_str(), "the same token after a restart");

    let other = ControlPlane::start(&tmp.path().join("other"));
    let answer = other.json(&["restore", backup.to_str().unwrap()]);
    let mut replaced: Vec<&str> = answer["join_tokens_replaced"].as_array().expect("join_tokens_replaced").iter().filter_map(|v| v.as_str()).collect();
    replaced.sort();
    assert_eq!(replaced, ["Default", "OPS"], "{answer}");
    let new_token = other.json(&["host", "join-command"])["token"].as_str().unwrap().to_string();
    assert_ne!(new_token, token, "a token another key sealed is replaced, not shown");
    let out = other.cli(&["restore", backup.to_str().unwrap()]).output().unwrap();
    assert!(text(&out).contains("were sealed with another control plane's key and have been replaced"), "{}", text(&out));
}

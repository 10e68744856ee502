//! Files on disk are private, and the secrets that must be shown again are sealed at rest.

use corral_e2e::*;
use std::path::Path;

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
    let key = data.join("sealing.key");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&key).expect("the sealing key file").permissions().mode() & 0o777, 0o600);
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

//! Environments: create, list, remove through the CLI and the API; bad input is refused with a
//! clear error and changes nothing. A control plane with no hosts is enough.

use corral_e2e::*;
use serde_json::Value;
use std::process::Command;

fn names(envs: &Value) -> Vec<String> {
    envs.as_array().unwrap().iter().map(|e| e["name"].as_str().unwrap().to_string()).collect()
}

#[test]
fn environments_are_created_listed_and_removed() {
    let tmp = tempfile::tempdir().unwrap();
    let cp = ControlPlane::start(&tmp.path().join("data"));
    let created = cp.json(&["env", "create", "OPS"]);
    assert_eq!(created["name"], "OPS");
    assert!(created["created_at"].as_str().is_some_and(|t| t.ends_with('Z')), "{created}");
    assert!(created.get("join_token").is_none(), "secrets stay out of listings: {created}");
    cp.json(&["env", "create", "DEV"]);
    cp.json(&["--env", "OPS", "stack", "create", "WEB"]);

    let envs = cp.json(&["env", "ls"]);
    assert_eq!(names(&envs), ["Default", "DEV", "OPS"], "by name, ignoring case");
    let ops = envs.as_array().unwrap().iter().find(|e| e["name"] == "OPS").unwrap();
    assert_eq!((ops["hosts"].as_u64(), ops["stacks"].as_u64()), (Some(0), Some(1)), "{ops}");

    // Each environment joins hosts with its own token.
    let tokens: Vec<String> = ["Default", "OPS", "DEV"]
        .iter()
        .map(|e| cp.json(&["--env", e, "host", "join-command"])["token"].as_str().unwrap().to_string())
        .collect();
    assert!(tokens[0] != tokens[1] && tokens[1] != tokens[2] && tokens[0] != tokens[2], "{tokens:?}");

    // The table for people.
    let out = cp.cli(&["env", "ls"]).output().unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("NAME") && table.contains("STACKS") && table.contains("OPS"), "{table}");

    cp.json(&["env", "rm", "DEV"]);
    cp.json(&["--env", "OPS", "stack", "rm", "WEB"]);
    let out = cp.cli(&["env", "rm", "OPS"]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(text(&out).trim(), "removed environment OPS");
    assert_eq!(names(&cp.json(&["env", "ls"])), ["Default"]);
}

#[test]
fn bad_environment_input_is_refused_clearly_and_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let cp = ControlPlane::start(&tmp.path().join("data"));
    cp.json(&["env", "create", "OPS"]);
    cp.json(&["--env", "OPS", "stack", "create", "WEB"]);
    let before = (cp.json(&["env", "ls"]), cp.json(&["--env", "OPS", "stack", "ls"]));

    let cases: &[(&[&str], &str)] = &[
        (&["env", "create", "OPS"], "environment \"OPS\" already exists"),
        (&["env", "create", "ops"], "already exists"),
        (&["env", "create", "bad name"], "invalid environment name \"bad name\""),
        (&["env", "create", "-x"], "invalid environment name"),
        (&["env", "create", ""], "invalid environment name"),
        (&["env", "rm", "Nowhere"], "environment \"Nowhere\" does not exist"),
        (&["env", "rm", "OPS"], "remove them first"),
        (&["env", "rm", "Default"], "cannot be removed"),
        (&["env", "rm", "default"], "cannot be removed"),
    ];
    for (args, expected) in cases {
        let mut argv = args.to_vec();
        // `-x` would be read as a flag; pass it after `--` as a name.
        if argv.last() == Some(&"-x") {
            argv.insert(2, "--");
        }
        let err = cp.fails(&argv);
        assert!(err.contains(expected), "corral {argv:?}: expected {expected:?} in {err:?}");
        assert!(!err.contains("internal"), "bad input is never an internal error: {err}");
    }

    // The same over raw HTTP: status codes and the field a form shows the message beside.
    let token = cp.admin_token();
    let curl = |args: &[&str]| {
        let out = Command::new("curl").args(["-s", "-w", "\n%{http_code}", "-H", &format!("Authorization: Bearer {token}")]).args(args).output().unwrap();
        let body = String::from_utf8_lossy(&out.stdout).to_string();
        let (json, code) = body.rsplit_once('\n').unwrap();
        (code.to_string(), serde_json::from_str::<Value>(json).unwrap_or(Value::Null))
    };
    let post = |body: &str| curl(&["-X", "POST", "-H", "Content-Type: application/json", "-d", body, &format!("{}/v1/environments", cp.url)]);
    let (code, body) = post(r#"{"name":"no/slash"}"#);
    assert_eq!((code.as_str(), body["code"].as_str(), body["field"].as_str()), ("400", Some("invalid"), Some("name")), "{body}");
    let (code, body) = post(r#"{"name":"OPS"}"#);
    assert_eq!((code.as_str(), body["code"].as_str()), ("409", Some("conflict")), "{body}");
    let (code, body) = post(r#"{"nom":"X"}"#);
    assert_eq!(code, "400", "{body}");
    let (code, body) = curl(&["-X", "DELETE", &format!("{}/v1/environments/OPS", cp.url)]);
    assert_eq!((code.as_str(), body["code"].as_str()), ("409", Some("conflict")), "{body}");
    let (code, body) = curl(&["-X", "DELETE", &format!("{}/v1/environments/Default", cp.url)]);
    assert_eq!((code.as_str(), body["code"].as_str()), ("409", Some("conflict")), "{body}");
    let (code, _) = post(r#"{"name":"QA"}"#);
    assert_eq!(code, "201");
    let (code, _) = curl(&["-X", "DELETE", &format!("{}/v1/environments/QA", cp.url)]);
    assert_eq!(code, "204");

    assert_eq!((cp.json(&["env", "ls"]), cp.json(&["--env", "OPS", "stack", "ls"])), before, "bad input changed nothing");
}

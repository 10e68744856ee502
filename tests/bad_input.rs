//! Bad input gets a clear error that says what was wrong, and changes nothing.
//! A control plane with no hosts is enough: nothing here reaches an engine.

use corral_e2e::*;
use std::process::Command;

#[test]
fn bad_input_is_refused_clearly_and_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let cp = ControlPlane::start(&tmp.path().join("data"));
    cp.json(&["stack", "create", "WEB-Server"]);
    cp.json(&["service", "create", "WEB-Server/web", "--image", TEST_IMAGE, "--scale", "2"]);
    let before = (cp.json(&["stack", "ls"]), cp.json(&["service", "ls"]));
    let long_constraint = format!("host.zone={}", "z".repeat(300));

    let cases: &[(&[&str], &str)] = &[
        (&["stack", "create", "WEB-Server"], "already exists"),
        (&["stack", "create", "bad name"], "invalid stack name"),
        (&["stack", "rm", "nope"], "stack \"nope\" does not exist"),
        (&["service", "create", "nope/web", "--image", TEST_IMAGE], "stack \"nope\" does not exist"),
        (&["service", "create", "WEB-Server/web", "--image", TEST_IMAGE], "already exists"),
        (&["service", "create", "WEB-Server/x", "--image", "Not An Image"], "invalid image reference"),
        (&["service", "create", "WEB-Server/x", "--image", "nginx:"], "invalid image reference"),
        (&["service", "create", "WEB-Server/x", "--image", TEST_IMAGE, "--port", "http"], "invalid port"),
        (&["service", "create", "WEB-Server/x", "--image", TEST_IMAGE, "--port", "70000"], "invalid port"),
        (&["service", "create", "WEB-Server/x", "--image", TEST_IMAGE, "--scale", "-3"], "invalid scale -3"),
        (&["service", "create", "WEB-Server/x", "--image", TEST_IMAGE, "--constraint", "zone=a"], "invalid constraint"),
        (&["service", "create", "WEB-Server/x", "--image", TEST_IMAGE, "-e", "NOVALUE"], "KEY=VALUE"),
        (&["service", "create", "WEB-Server/x", "--image", TEST_IMAGE, "--constraint", &long_constraint], "at most 255 are allowed"),
        (&["service", "create", "noslash", "--image", TEST_IMAGE], "expected STACK/SERVICE"),
        (&["service", "scale", "WEB-Server/web", "-1"], "invalid scale -1"),
        (&["service", "scale", "WEB-Server/nope", "3"], "service WEB-Server/nope does not exist"),
        (&["service", "rm", "WEB-Server/nope"], "does not exist"),
        (&["ps", "nope"], "stack \"nope\" does not exist"),
        (&["host", "ls", "--env", "Nowhere"], "environment \"Nowhere\" does not exist"),
    ];
    for (args, expected) in cases {
        let err = cp.fails(args);
        assert!(err.contains(expected), "corral {args:?}: expected {expected:?} in {err:?}");
        assert!(!err.contains("internal"), "bad input is never an internal error: {err}");
    }

    // Wrong token: refused, with what to do.
    let out = Command::new(corral_bin()).args(["stack", "ls"]).env("CORRAL_URL", &cp.url).env("CORRAL_TOKEN", "wrong").output().unwrap();
    assert!(!out.status.success());
    assert!(text(&out).contains("missing or wrong API token"), "{}", text(&out));

    // Raw HTTP: a body that is not JSON, an unknown field, an unknown endpoint — all JSON errors.
    let token = cp.admin_token();
    let curl = |args: &[&str]| {
        let out = Command::new("curl").args(["-s", "-w", "\n%{http_code}", "-H", &format!("Authorization: Bearer {token}")]).args(args).output().unwrap();
        let body = String::from_utf8_lossy(&out.stdout).to_string();
        let (json, code) = body.rsplit_once('\n').unwrap();
        (code.to_string(), serde_json::from_str::<serde_json::Value>(json).unwrap_or_else(|_| panic!("not JSON: {json}")))
    };
    let (code, body) = curl(&["-X", "POST", "-H", "Content-Type: application/json", "-d", "not json", &format!("{}/v1/stacks", cp.url)]);
    assert_eq!(code, "400", "{body}");
    assert_eq!(body["code"], "bad_request");
    assert!(body["message"].as_str().unwrap().contains("JSON"), "{body}");
    let (code, body) = curl(&[
        "-X",
        "POST",
        "-H",
        "Content-Type: application/json",
        "-d",
        r#"{"name":"x","image":"busybox","replicas":3}"#,
        &format!("{}/v1/stacks/WEB-Server/services", cp.url),
    ]);
    assert_eq!(code, "400", "unknown fields are refused, not ignored: {body}");
    assert!(body["message"].as_str().unwrap().contains("replicas"), "{body}");
    let (code, body) = curl(&[
        "-X",
        "POST",
        "-H",
        "Content-Type: application/json",
        "-d",
        r#"{"name":"x","image":"busybox","scale":-1}"#,
        &format!("{}/v1/stacks/WEB-Server/services", cp.url),
    ]);
    assert_eq!((code.as_str(), body["field"].as_str()), ("400", Some("scale")), "{body}");
    let (code, body) = curl(&[&format!("{}/v1/nothing-here", cp.url)]);
    assert_eq!((code.as_str(), body["code"].as_str()), ("404", Some("not_found")), "{body}");

    assert_eq!((cp.json(&["stack", "ls"]), cp.json(&["service", "ls"])), before, "bad input changed nothing");
}

#[test]
fn agent_with_unreachable_docker_says_which_socket_and_why() {
    let tmp = tempfile::tempdir().unwrap();
    let cp = ControlPlane::start(&tmp.path().join("data"));
    let join = cp.json(&["host", "join-command"]);
    let out = Command::new(corral_bin())
        .args(["agent", "--server", &cp.url, "--token", join["token"].as_str().unwrap()])
        .args(["--docker-host", "unix:///nonexistent/docker.sock", "--state-dir"])
        .arg(tmp.path().join("state"))
        .output()
        .unwrap();
    assert!(!out.status.success(), "the agent must exit when it cannot reach Docker");
    let msg = text(&out);
    assert!(msg.contains("unix:///nonexistent/docker.sock") && msg.contains("dockerd"), "{msg}");
    assert!(cp.hosts().is_empty(), "no host registered");
}

#[test]
fn agent_with_wrong_join_token_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let cp = ControlPlane::start(&tmp.path().join("data"));
    let _engines_are_mine = exclusive();
    let engine = engines(1).remove(0);
    let mut agent = start_agent(&cp, "not-a-token", &engine, &tmp.path().join("state"), &[]);
    let status = agent.wait_exit(std::time::Duration::from_secs(20));
    assert!(!status.success());
    assert!(agent.output().contains("unknown join token"), "{}", agent.output());
    assert!(cp.hosts().is_empty(), "no host registered");
}

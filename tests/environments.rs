//! Environments: create, list, rename, remove through the CLI and the API; bad input is refused
//! with a clear error and changes nothing. A control plane with no hosts is enough, except to
//! show that a rename restarts no container (real engines).

use corral_e2e::*;
use serde_json::Value;
use std::process::Command;
use std::time::Duration;

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
    let tokens: Vec<String> =
        ["Default", "OPS", "DEV"].iter().map(|e| cp.json(&["--env", e, "host", "join-command"])["token"].as_str().unwrap().to_string()).collect();
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

    // Renames: to a name taken (in any case), invalid, of a missing or the default environment.
    let patch =
        |env: &str, body: &str| curl(&["-X", "PATCH", "-H", "Content-Type: application/json", "-d", body, &format!("{}/v1/environments/{env}", cp.url)]);
    let (code, body) = patch("OPS", r#"{"name":"default"}"#);
    assert_eq!((code.as_str(), body["code"].as_str()), ("409", Some("conflict")), "{body}");
    assert!(body["message"].as_str().unwrap().contains("already exists"), "{body}");
    let (code, body) = patch("OPS", r#"{"name":"bad name"}"#);
    assert_eq!((code.as_str(), body["code"].as_str(), body["field"].as_str()), ("400", Some("invalid"), Some("name")), "{body}");
    let (code, body) = patch("Nowhere", r#"{"name":"X"}"#);
    assert_eq!((code.as_str(), body["code"].as_str()), ("404", Some("not_found")), "{body}");
    let (code, body) = patch("Default", r#"{"name":"Main"}"#);
    assert_eq!((code.as_str(), body["code"].as_str()), ("409", Some("conflict")), "{body}");
    assert!(body["message"].as_str().unwrap().contains("cannot be renamed"), "{body}");
    let (code, _) = patch("OPS", r#"{"nom":"X"}"#);
    assert_eq!(code, "400");
    for (args, expected) in [
        (&["env", "rename", "OPS", "Default"][..], "already exists"),
        (&["env", "rename", "OPS", "no/slash"], "invalid environment name"),
        (&["env", "rename", "Nowhere", "X"], "environment \"Nowhere\" does not exist"),
    ] {
        let err = cp.fails(args);
        assert!(err.contains(expected), "corral {args:?}: expected {expected:?} in {err:?}");
    }

    assert_eq!((cp.json(&["env", "ls"]), cp.json(&["--env", "OPS", "stack", "ls"])), before, "bad input changed nothing");
}

/// The start time of each managed container on the engine, by name.
fn started(engine: &Engine) -> std::collections::BTreeMap<String, String> {
    engine
        .managed()
        .into_iter()
        .map(|c| {
            let out = engine.docker(&["inspect", "--format", "{{.State.StartedAt}}", &c.id]);
            (c.name, String::from_utf8_lossy(&out.stdout).trim().to_string())
        })
        .collect()
}

/// A rename with containers running: nothing restarts, everything is listed under the new
/// name, the old name is gone, and the service still scales.
#[test]
fn renaming_an_environment_restarts_nothing() {
    let _engines = exclusive();
    let engine = engines(1).remove(0);
    engine.clear();
    let tmp = tempfile::tempdir().unwrap();
    let cp = ControlPlane::start(&tmp.path().join("data"));
    cp.json(&["env", "create", "OPS"]);
    let token = cp.json(&["--env", "OPS", "host", "join-command"])["token"].as_str().unwrap().to_string();
    let agent = start_agent(&cp, &token, &engine, &tmp.path().join("agent"), &[]);
    let run = |args: &[&str]| cp.json(&[&["--env", "PROD"][..], args].concat());
    cp.json(&["--env", "OPS", "stack", "create", "S"]);
    cp.json(&["--env", "OPS", "service", "create", "S/web", "--image", TEST_IMAGE, "--scale", "2", "--", "sleep", "3600"]);
    let want = instance_names("S-web", 2);
    wait_for("two running", Duration::from_secs(30), || (engine.running_names() == want).then_some(()));
    let before = started(&engine);

    let renamed = cp.json(&["env", "rename", "OPS", "PROD"]);
    assert_eq!((renamed["name"].as_str(), renamed["stacks"].as_u64(), renamed["hosts"].as_u64()), (Some("PROD"), Some(1), Some(1)), "{renamed}");
    let names: Vec<String> = cp.json(&["env", "ls"]).as_array().unwrap().iter().map(|e| e["name"].as_str().unwrap().to_string()).collect();
    assert_eq!(names, ["Default", "PROD"]);
    let err = cp.fails(&["--env", "OPS", "ps"]);
    assert!(err.contains("environment \"OPS\" does not exist"), "{err}");
    // A few control-loop passes later: nothing recreated or restarted, all listed under PROD.
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(started(&engine), before, "the rename restarted nothing");
    let ps = run(&["ps"]);
    let listed: Vec<&str> = ps.as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(listed, ["S-web-1", "S-web-2"], "{ps}");
    assert!(ps.as_array().unwrap().iter().all(|c| c["state"] == "running"), "{ps}");
    let hosts = run(&["host", "ls"]);
    assert_eq!(
        (hosts[0]["environment"].as_str(), hosts[0]["state"].as_str(), hosts[0]["in_sync"].as_bool()),
        (Some("PROD"), Some("active"), Some(true)),
        "{hosts}"
    );

    // Still managed: it scales, and the first two keep running untouched.
    run(&["service", "scale", "S/web", "3"]);
    wait_for("three running", Duration::from_secs(30), || (engine.running_names() == instance_names("S-web", 3)).then_some(()));
    let after = started(&engine);
    assert!(before.iter().all(|(name, at)| after.get(name) == Some(at)), "before {before:?}, after {after:?}");
    // New containers carry the label value the environment was created with, like the old ones.
    let labels: Vec<String> = engine.managed().into_iter().map(|c| c.labels["io.corral.environment"].clone()).collect();
    assert_eq!(labels, ["OPS", "OPS", "OPS"]);
    let detail = run(&["container", "inspect", "S-web-3"]);
    assert_eq!(detail["labels"]["io.corral.environment"], "OPS", "{detail}");

    // A restart of the control plane changes nothing either.
    let cp = cp.restart();
    wait_for("the host back", Duration::from_secs(30), || {
        let hosts = cp.json(&["--env", "PROD", "host", "ls"]);
        (hosts[0]["state"] == "active" && hosts[0]["in_sync"] == true).then_some(())
    });
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(started(&engine), after, "nothing restarted after the control plane restarted");

    // A lost database: a fresh control plane, the environment made again under its new name,
    // the host joining it. Its containers are adopted there, labels from before the rename and
    // all, and none is recreated.
    cp.proc.signal(nix::sys::signal::Signal::SIGKILL);
    drop(agent);
    let launch = Launch { args: vec!["--adoption-window".into(), "4".into()], ..Launch::default() };
    let cp = ControlPlane::launch(&tmp.path().join("fresh-data"), &launch);
    cp.json(&["env", "create", "PROD"]);
    let token = cp.json(&["--env", "PROD", "host", "join-command"])["token"].as_str().unwrap().to_string();
    let _agent = start_agent(&cp, &token, &engine, &tmp.path().join("agent"), &[]);
    wait_for("the containers adopted under PROD", Duration::from_secs(30), || {
        let ps = cp.json(&["--env", "PROD", "ps"]);
        let running = ps.as_array()?.iter().filter(|c| c["state"] == "running").count();
        (running == 3).then_some(())
    });
    std::thread::sleep(Duration::from_secs(6));
    assert_eq!(started(&engine), after, "adoption after the rename recreated nothing");
    let services = cp.json(&["--env", "PROD", "service", "ls"]);
    assert_eq!((services[0]["name"].as_str(), services[0]["scale"].as_u64()), (Some("web"), Some(3)), "{services}");
    engine.clear();
}

/// An event stream follows its environment through a rename, and ends when it is removed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_stream_follows_its_environment_through_a_rename() {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    let tmp = tempfile::tempdir().unwrap();
    let cp = tokio::task::block_in_place(|| {
        let cp = ControlPlane::start(&tmp.path().join("data"));
        cp.json(&["env", "create", "OPS"]);
        cp
    });
    let (mut events, _) = tokio_tungstenite::connect_async(ws_request(&cp.url, "/v1/events?env=OPS", &cp.admin_token())).await.expect("the OPS event stream");
    // Frames until `done` says enough, or the stream ends (`None` in the list).
    async fn frames_until(
        events: &mut (impl StreamExt<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin),
        done: impl Fn(&[Option<Value>]) -> bool,
    ) -> Vec<Option<Value>> {
        let mut frames = Vec::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !done(&frames) && tokio::time::Instant::now() < deadline {
            match tokio::time::timeout(Duration::from_secs(1), events.next()).await {
                Ok(Some(Ok(Message::Text(t)))) => frames.push(Some(serde_json::from_str(&t).unwrap())),
                Ok(None | Some(Ok(Message::Close(_))) | Some(Err(_))) => {
                    frames.push(None);
                    break;
                }
                _ => {}
            }
        }
        frames
    }
    let hello = frames_until(&mut events, |f| !f.is_empty()).await;
    assert_eq!(hello[0].as_ref().unwrap()["environment"], "OPS");

    tokio::task::block_in_place(|| {
        cp.json(&["env", "rename", "OPS", "PROD"]);
        cp.json(&["--env", "PROD", "stack", "create", "WEB"]);
    });
    let under =
        |name: &'static str| move |f: &[Option<Value>]| f.iter().flatten().any(|f| f["environment"] == name && f["resources"].to_string().contains("stacks"));
    let listed = |f: &[Option<Value>]| f.iter().flatten().any(|f| f["resources"] == serde_json::json!(["environments"]));
    let frames = frames_until(&mut events, |f| under("PROD")(f) && listed(f)).await;
    assert!(under("PROD")(&frames), "the change in the renamed environment arrives under its new name: {frames:?}");
    assert!(listed(&frames), "clients are told to refetch the environments: {frames:?}");

    tokio::task::block_in_place(|| {
        cp.json(&["--env", "PROD", "stack", "rm", "WEB"]);
        cp.json(&["env", "rm", "PROD"]);
        cp.json(&["env", "create", "QA"]);
    });
    let frames = frames_until(&mut events, |f| f.last().is_some_and(Option::is_none)).await;
    assert_eq!(frames.last(), Some(&None), "the stream ends with its environment: {frames:?}");
}

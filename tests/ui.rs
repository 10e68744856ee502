//! The web UI in a real browser (headless Chromium driven by `tests/ui/e2e.mjs`) against a real
//! control plane with real agents on real engines: environments OPS and DEV with one host each.
//! The browser creates a stack, a service and a load balancer through the forms; this side then
//! checks that the engine itself runs what the UI asked for. The browser also signs out and in
//! again as a user with the member role in OPS only, and gives a user (through a group) the
//! read-only role in DEV; after it deactivated DEV's host, this side checks that the engine gets
//! no new container until the host is activated again. A third host, in the default
//! environment, is a fake agent whose report the control plane refuses in part: the browser
//! checks that the host's card says what was refused and why.

use corral_e2e::{control_plane_with_ui, engines, exclusive, fake_agent, run_browser_script, start_agent, wait_for, FakeAgent, TEST_IMAGE};
use std::time::Duration;

const STACK: &str = "ui-shop";
/// The default environment's fake host, whose report is refused in part.
const PROBLEM_HOST: &str = "ui-reporter";

#[test]
fn web_ui_drives_a_real_cluster() {
    let _engines_are_ours = exclusive();
    let engines = engines(2);
    for e in &engines {
        e.clear();
    }
    let tmp = tempfile::tempdir().unwrap();
    let cp = control_plane_with_ui(&tmp.path().join("data"));

    // One host in each environment, joined with that environment's own join token.
    let envs = [("OPS", &engines[0]), ("DEV", &engines[1])];
    let mut agents = Vec::new();
    for (env, engine) in envs {
        cp.json(&["env", "create", env]);
        let token = cp.json(&["--env", env, "host", "join-command"])["token"].as_str().expect("join token").to_string();
        agents.push(start_agent(&cp, &token, engine, &tmp.path().join(format!("agent-{}", engine.name)), &[]));
    }
    for (env, engine) in envs {
        wait_for(&format!("{} to be active in {env}", engine.name), Duration::from_secs(30), || {
            let hosts = cp.json(&["--env", env, "host", "ls"]);
            let hosts = hosts.as_array().cloned().unwrap_or_default();
            (hosts.len() == 1 && hosts[0]["name"] == engine.name.as_str() && hosts[0]["state"] == "active").then_some(())
        });
    }

    // A host whose agent reports a container no engine could have (its id is no engine's): the
    // control plane keeps the rest of the report and says on the host what it refused.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let default_token = cp.json(&["host", "join-command"])["token"].as_str().expect("join token").to_string();
    let reporter = rt
        .block_on(FakeAgent::join(&cp, &default_token, None, "ui-reporter", fake_agent::facts(PROBLEM_HOST)))
        .unwrap_or_else(|answer| panic!("the fake host's hello: {answer}"));
    reporter.report(vec![corral_proto::ObservedContainer {
        name: "ghost".into(),
        docker_id: "not-an-engine-id".into(),
        image: TEST_IMAGE.into(),
        state: corral_proto::ContainerState::Running,
        status: "Up 1 minute".into(),
        ip: None,
        ports: Vec::new(),
        labels: Default::default(),
    }]);
    wait_for("the fake host to show what was refused", Duration::from_secs(15), || {
        let hosts = cp.json(&["host", "ls"]);
        hosts.as_array()?.iter().find(|h| h["name"] == PROBLEM_HOST)?["problem"].as_str().map(str::to_string)
    });

    // A member of OPS only, who signs in with a password in the browser.
    let (user, password) = ("ui-member", "correct horse battery");
    let created = cp.cli_with_input(&["user", "create", user, "--password-stdin"], &format!("{password}\n"));
    assert!(created.status.success(), "corral user create: {}", String::from_utf8_lossy(&created.stderr));
    cp.json(&["member", "add", "OPS", user, "--role", "member"]);

    run_browser_script(
        &cp,
        "e2e.mjs",
        &[
            ("CORRAL_UI_ENVS", &format!("OPS={},DEV={}", engines[0].name, engines[1].name)),
            ("CORRAL_UI_STACK", STACK),
            ("CORRAL_UI_IMAGE", TEST_IMAGE),
            ("CORRAL_UI_USER", &format!("{user}:{password}")),
            ("CORRAL_UI_PROBLEM_HOST", PROBLEM_HOST),
        ],
    );

    // What the form created is what the OPS engine runs (the balancer lives inside the agent).
    let want: Vec<String> = (1..=3).map(|i| format!("{STACK}-web-{i}")).collect();
    wait_for("the OPS engine to run the three containers the UI created", Duration::from_secs(30), || (engines[0].running_names() == want).then_some(()));
    assert!(engines[1].running_names().is_empty(), "nothing was created in DEV, yet its engine runs {:?}", engines[1].running_names());

    // The browser deactivated DEV's only host: a service created there now gets no container on
    // its engine, until the host is activated again.
    let dev_host = &cp.json(&["--env", "DEV", "host", "ls"])[0];
    assert_eq!(
        (dev_host["deactivated"].as_bool(), dev_host["status"].as_str()),
        (Some(true), Some("deactivated")),
        "DEV's host after the UI deactivated it: {dev_host}"
    );
    cp.json(&["--env", "DEV", "stack", "create", "parked"]);
    cp.json(&["--env", "DEV", "service", "create", "parked/idle", "--image", TEST_IMAGE, "--scale", "1", "--", "sleep", "3600"]);
    wait_for("the service on a deactivated host to say why it is unplaced", Duration::from_secs(15), || {
        let svc = cp.json(&["--env", "DEV", "service", "ls", "parked"]);
        svc[0]["unplaced"].as_array().is_some_and(|u| !u.is_empty()).then_some(())
    });
    assert!(engines[1].running_names().is_empty(), "a deactivated host got a new container: {:?}", engines[1].running_names());
    cp.json(&["--env", "DEV", "host", "activate", &engines[1].name]);
    wait_for("the activated host to run the parked service", Duration::from_secs(30), || (engines[1].running_names() == ["parked-idle-1"]).then_some(()));

    drop(reporter);
    drop(agents);
    for e in &engines {
        e.clear();
    }
}

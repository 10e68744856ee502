//! The web UI's rough edges, in a real browser (headless Chromium driven by
//! `tests/ui/polish.mjs`) against a real control plane with a real agent on a real engine:
//! scaling by typing and by fast clicks, an environment removed (or restored away) while it is
//! on screen, links that are links (navigation, names, graph nodes), filter boxes, the 390 px
//! layout, chart axes and the audit log read as actions. This side then checks what the engine runs after the
//! browser's clicks, and that `corral audit ls` tells the same actions as the browser saw.

use corral_e2e::{control_plane_with_ui, engines, exclusive, run_browser_script, start_agent, wait_for, TEST_IMAGE};
use std::time::Duration;

const STACK: &str = "polish";
/// The environment the browser shows when another client removes it.
const DOOMED: &str = "DOOMED";
const USER: &str = "ann";
const PASSWORD: &str = "ann's long password";

#[test]
fn web_ui_rough_edges_are_smoothed() {
    let _engines_are_ours = exclusive();
    let engines = engines(1);
    let engine = &engines[0];
    engine.clear();
    let tmp = tempfile::tempdir().unwrap();
    let cp = control_plane_with_ui(&tmp.path().join("data"));

    let token = cp.json(&["host", "join-command"])["token"].as_str().expect("join token").to_string();
    let _agent = start_agent(&cp, &token, engine, &tmp.path().join("agent"), &[]);
    cp.wait_hosts_active(&[engine.name.as_str()]);

    // Two services to filter and to draw; `web` is the one the browser scales.
    cp.json(&["stack", "create", STACK]);
    cp.json(&["stack", "create", "other"]);
    for (service, scale) in [("web", "1"), ("api", "1")] {
        cp.json(&["service", "create", &format!("{STACK}/{service}"), "--image", TEST_IMAGE, "--scale", scale, "--", "sleep", "3600"]);
    }
    wait_for("both services to run", Duration::from_secs(30), || {
        (engine.running_names() == [format!("{STACK}-api-1"), format!("{STACK}-web-1")]).then_some(())
    });
    cp.json(&["env", "create", DOOMED]);

    // An owner of the default environment, who signs in with a password: the audit log names her.
    let created = cp.cli_with_input(&["user", "create", USER, "--password-stdin"], &format!("{PASSWORD}\n"));
    assert!(created.status.success(), "corral user create: {}", String::from_utf8_lossy(&created.stderr));
    cp.json(&["member", "add", "Default", USER, "--role", "owner"]);
    cp.json(&["member", "add", DOOMED, USER, "--role", "read-only"]);

    let log = run_browser_script(
        &cp,
        "polish.mjs",
        &[("CORRAL_UI_USER", &format!("{USER}:{PASSWORD}")), ("CORRAL_UI_HOST", &engine.name), ("CORRAL_UI_STACK", STACK), ("CORRAL_UI_DOOMED", DOOMED)],
    );

    // The browser left `web` at the scale it printed; the engine runs exactly that many.
    let last = log
        .lines()
        .find_map(|l| l.split_once("[polish] final scale ").map(|(_, n)| n))
        .and_then(|n| n.trim().parse::<usize>().ok())
        .expect("the script prints the final scale");
    let service = cp.json(&["service", "ls", STACK]);
    let web = service.as_array().unwrap().iter().find(|s| s["name"] == "web").cloned().expect("web is listed");
    assert_eq!(web["scale"].as_u64(), Some(last as u64), "the API's scale of web: {web}");
    let web_prefix = format!("{STACK}-web-");
    wait_for(&format!("the engine to run exactly {last} containers of web"), Duration::from_secs(30), || {
        (engine.running_names().iter().filter(|n| n.starts_with(&web_prefix)).count() == last).then_some(())
    });

    // The CLI tells the same actions, as sentences.
    let table = cp.cli(&["audit", "ls", "--limit", "200"]).output().unwrap();
    let table = String::from_utf8_lossy(&table.stdout).to_string();
    for said in
        [format!("{USER} scaled {STACK}/web to {last}"), format!("{USER} tried to scale {STACK}/web to -1"), format!("admin removed environment {DOOMED}")]
    {
        assert!(table.contains(&said), "`corral audit ls` does not say {said:?}:\n{table}");
    }
    engine.clear();
}

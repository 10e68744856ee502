//! The web UI's actions beyond creating things, in a real browser (`tests/ui/features.mjs`)
//! against a control plane as `corral server` runs by default: TLS on every interface, plus the
//! plain loopback listener the printed URL points at, which the browser uses. One real host runs
//! a service; the browser restarts, stops, starts and removes a container, edits the service,
//! changes the URL hosts join at, downloads a backup and restores it, checking each against the
//! engine (`docker inspect`) and the API. This side then checks the engine runs what the
//! restored control plane wants.

use corral_e2e::*;
use std::process::Command;
use std::time::Duration;

const STACK: &str = "feat";
/// Stops at once on SIGTERM, so stops and restarts take no 10 s grace.
const QUICK_STOP: &str = "trap 'exit 0' TERM; while :; do sleep 1; done";

#[test]
fn web_ui_acts_on_containers_services_settings_and_backups() {
    let _engines_are_ours = exclusive();
    let engine = engines(1).remove(0);
    engine.clear();
    let ui_dir = repo_root().join("ui/dist");
    assert!(ui_dir.join("index.html").is_file(), "the web UI is not built: run `npm --prefix ui run build` (scripts/setup.sh does)");
    let tmp = tempfile::tempdir().unwrap();
    let args = ["--tls", "auto", "--local-listen", "127.0.0.1:0", "--ui-dir"].map(String::from).into_iter().chain([ui_dir.display().to_string()]).collect();
    let cp = ControlPlane::launch(&tmp.path().join("data"), &Launch { listen: "0.0.0.0:0".into(), args, ..Launch::default() });
    let local = cp
        .proc
        .output()
        .lines()
        .find_map(|l| l.strip_prefix("Plain HTTP for this machine only on ").map(|u| u.trim().to_string()))
        .expect("the plain listener");
    let corral = |args: &[&str]| -> serde_json::Value {
        let mut all = vec!["--server", local.as_str(), "-o", "json"];
        all.extend_from_slice(args);
        let out = cp.cli(&all).output().unwrap();
        assert!(out.status.success(), "corral {args:?}: {}", text(&out));
        serde_json::from_slice(&out.stdout).unwrap()
    };

    // The host joins over the loopback listener too (its agent runs on this machine).
    let token = corral(&["host", "join-command"])["token"].as_str().unwrap().to_string();
    let _agent = start_agent_in(None, &local, &token, &engine, &tmp.path().join("agent"), &[]);
    wait_for("the host to be active", Duration::from_secs(30), || {
        let hosts = corral(&["host", "ls"]);
        (hosts[0]["state"] == "active" && hosts[0]["in_sync"] == true).then_some(())
    });
    corral(&["stack", "create", STACK]);
    corral(&["service", "create", &format!("{STACK}/web"), "--image", TEST_IMAGE, "--scale", "2", "-e", "GREETING=hello", "--", "sh", "-c", QUICK_STOP]);
    let names = instance_names(&format!("{STACK}-web"), 2);
    wait_for("two running containers", Duration::from_secs(30), || (engine.running_names() == names).then_some(()));

    let out = Command::new("node")
        .arg(repo_root().join("tests/ui/features.mjs"))
        .env("CORRAL_UI_URL", &local)
        .env("CORRAL_UI_TOKEN", cp.admin_token())
        .env("CORRAL_UI_ENGINE", &engine.socket)
        .env("CORRAL_UI_STACK", STACK)
        .output()
        .expect("run node tests/ui/features.mjs (Node.js is installed by scripts/setup.sh)");
    let log = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    println!("{log}");
    assert!(out.status.success(), "the browser checks failed:\n{log}\ncontrol plane log:\n{}", cp.proc.output());

    // The restored control plane wants the service as the backup had it (edited, scale 2), and
    // the engine runs exactly that.
    let services = corral(&["service", "ls", STACK]);
    assert_eq!((services[0]["revision"].as_u64(), services[0]["env"][0].as_str()), (Some(2), Some("GREETING=bonjour")), "{services}");
    wait_for("the engine to run the restored service", Duration::from_secs(30), || (engine.running_names() == names).then_some(()));
    engine.clear();
}

//! What a user does to one container (restart, stop, start), checked against what the engine
//! reports; an agent restarted without its join token; the URL join commands name, whichever
//! listener is asked and as an administrator sets it; the web UI's assets as they go over the
//! wire.

use corral_e2e::*;
use serde_json::Value;
use std::process::Command;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);

/// A container that stops at once on SIGTERM (busybox `sleep` as PID 1 would ignore it, and
/// every stop would wait out the engine's 10 s).
const QUICK_STOP: &str = "trap 'exit 0' TERM; while :; do sleep 1; done";

/// `(running, StartedAt, id)` of container `name` as the engine reports it.
fn engine_state(engine: &Engine, name: &str) -> Option<(bool, String, String)> {
    let out = engine.docker(&["inspect", "--format", "{{.State.Running}} {{.State.StartedAt}} {{.Id}}", name]);
    let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let mut parts = text.split_whitespace();
    let running = parts.next()? == "true";
    Some((running, parts.next()?.to_string(), parts.next()?.to_string()))
}

/// `corral agent` for the cluster's engine `i` with no `--token` (and none in the environment):
/// what runs it after the first join.
fn start_agent_without_token(cluster: &Cluster, i: usize) -> Proc {
    let engine = &cluster.engines[i];
    let mut cmd = Command::new(corral_bin());
    cmd.args(["agent", "--server", &cluster.cp.url, "--docker-host", &engine.socket, "--name", &engine.name, "--address", &engine.address])
        .arg("--state-dir")
        .arg(cluster.state_dir(i))
        .env_remove("CORRAL_TOKEN")
        .env("RUST_LOG", "info");
    Proc::spawn(cmd, cluster.state_dir(i).with_extension("agent-no-token.log"))
}

fn ps_row(cp: &ControlPlane, name: &str) -> Value {
    cp.json(&["ps"]).as_array().and_then(|rows| rows.iter().find(|r| r["name"] == name).cloned()).unwrap_or(Value::Null)
}

/// Restart restarts the same container once; stop keeps it stopped through an agent's crash and
/// restart (without `--token`: the state dir holds the host's own credential), and a start given
/// while the agent was away is carried out when it is back.
#[test]
fn container_restart_stop_and_start_hold_across_agent_restarts() {
    let mut cluster = Cluster::start(1);
    let engine = cluster.engines[0].clone();
    let cp = &cluster.cp;
    cp.json(&["stack", "create", "act"]);
    cp.json(&["service", "create", "act/web", "--image", TEST_IMAGE, "--scale", "2", "--", "sh", "-c", QUICK_STOP]);
    cluster.wait_exactly("two running containers", &instance_names("act-web", 2), WAIT);
    let (_, started_1, id_1) = engine_state(&engine, "act-web-1").unwrap();
    let (_, started_2, id_2) = engine_state(&engine, "act-web-2").unwrap();

    // Restart: the same container (same id) starts again; its sibling is left alone.
    let answer = cp.json(&["container", "restart", "act-web-1"]);
    assert_eq!(answer["name"], "act-web-1", "{answer}");
    let restarted_at = wait_for("act-web-1 to be restarted in place", WAIT, || {
        let (running, started, id) = engine_state(&engine, "act-web-1")?;
        (running && started != started_1).then(|| {
            assert_eq!(id, id_1, "restarted, not recreated");
            started
        })
    });
    assert_eq!(engine_state(&engine, "act-web-2").unwrap().1, started_2, "the other container was not restarted");

    // Stop: kept, not running, not replaced; said so where people look.
    let answer = cp.json(&["container", "stop", "act-web-2"]);
    assert_eq!(answer["stopped"], true, "{answer}");
    wait_for("act-web-2 to stop on the engine", WAIT, || engine_state(&engine, "act-web-2").filter(|s| !s.0));
    assert_eq!(engine_state(&engine, "act-web-2").unwrap().2, id_2, "stopped, not removed");
    let row = wait_for("ps to say why act-web-2 is not running", WAIT, || {
        let row = ps_row(cp, "act-web-2");
        (row["state"] == "exited").then_some(row)
    });
    assert!(row["reason"].as_str().unwrap_or_default().contains("stopped on request"), "{row}");
    let out = cp.cli(&["ps", "act/web"]).output().unwrap();
    assert!(text(&out).contains("stopped on request (`corral container start act-web-2` runs it again)"), "{}", text(&out));
    let services = cp.json(&["service", "ls", "act"]);
    assert_eq!((services[0]["running"].as_u64(), services[0]["scale"].as_u64()), (Some(1), Some(2)), "{services}");

    // The agent crashes and comes back without --token: nothing restarts again, the stop holds.
    cluster.kill_agent(0);
    let agent = start_agent_without_token(&cluster, 0);
    let cp = &cluster.cp;
    cp.wait_hosts_active(&[&engine.name]);
    assert!(agent.output().contains("connected to the control plane"), "{}", agent.output());
    std::thread::sleep(Duration::from_secs(3));
    let (running, started, id) = engine_state(&engine, "act-web-1").unwrap();
    assert_eq!((running, started.as_str(), id.as_str()), (true, restarted_at.as_str(), id_1.as_str()), "the restart happened once");
    assert!(!engine_state(&engine, "act-web-2").unwrap().0, "still stopped after the agent's restart");

    // Asked while the agent is away, a start is carried out when it is back.
    drop(agent);
    wait_for("the host to be disconnected", WAIT, || (cp.hosts()[0]["state"] == "disconnected").then_some(()));
    let answer = cp.json(&["container", "start", "act-web-2"]);
    assert_eq!(answer["stopped"], false, "{answer}");
    let err = cp.fails(&["container", "restart", "act-web-1"]);
    assert!(err.contains("disconnected"), "a restart is an act for now, refused while the host is away: {err}");
    assert!(!engine_state(&engine, "act-web-2").unwrap().0, "nothing reached the engine while its agent was away");
    let _agent = start_agent_without_token(&cluster, 0);
    cluster.cp.wait_hosts_active(&[&engine.name]);
    let cp = &cluster.cp;
    wait_for("act-web-2 to run again", WAIT, || engine_state(&engine, "act-web-2").filter(|s| s.0));
    assert_eq!(engine_state(&engine, "act-web-2").unwrap().2, id_2, "started, not recreated");

    // Refusals say what to do, and change nothing.
    cp.json(&["service", "stop", "act/web"]);
    let err = cp.fails(&["container", "start", "act-web-1"]);
    assert!(err.contains("service act/web is stopped") && err.contains("corral service start act/web"), "{err}");
    cp.json(&["service", "start", "act/web"]);
    let err = cp.fails(&["container", "restart", "act-web-9"]);
    assert!(err.contains("act-web-9") && err.contains("corral ps"), "{err}");
    cluster.wait_exactly("both running again", &instance_names("act-web", 2), WAIT);

    // Removed on request, a container is replaced by a new one, also on its host, the only one.
    let (_, _, old_id) = engine_state(&engine, "act-web-1").unwrap();
    cp.json(&["container", "rm", "act-web-1"]);
    wait_for("a new act-web-1 on the engine", WAIT, || engine_state(&engine, "act-web-1").filter(|s| s.0 && s.2 != old_id));
    cluster.wait_exactly("both running after the replacement", &instance_names("act-web", 2), WAIT);
}

/// Without `--token` the agent needs a state dir it has joined with, and says so.
#[test]
fn an_agent_without_a_token_needs_the_state_dir_it_joined_with() {
    let tmp = tempfile::tempdir().unwrap();
    let out = Command::new(corral_bin())
        .args(["agent", "--server", "http://127.0.0.1:9", "--state-dir"])
        .arg(tmp.path().join("never-joined"))
        .env_remove("CORRAL_TOKEN")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = text(&out);
    assert!(err.contains("has not joined yet") && err.contains("--token") && err.contains("corral host join-command"), "{err}");
}

/// The plain loopback listener the browser on this machine uses (`--local-listen`).
fn plain_url(cp: &ControlPlane) -> String {
    let output = cp.proc.output();
    output.lines().find_map(|l| l.strip_prefix("Plain HTTP for this machine only on ")).expect("the plain listener's address").trim().to_string()
}

/// `GET /v1/health` over TLS at `https://NAME:PORT`, with NAME resolving to this machine and
/// the control plane's CA as the only one trusted: whether the certificate names NAME.
fn tls_health(cp: &ControlPlane, name: &str, port: &str) -> Result<(), String> {
    let out = Command::new("curl")
        .args(["-sS", "--fail", "--max-time", "5", "--resolve", &format!("{name}:{port}:127.0.0.1"), "--cacert"])
        .arg(cp.data_dir.join("tls/ca.pem"))
        .arg(format!("https://{name}:{port}/v1/health"))
        .output()
        .unwrap();
    if out.status.success() {
        Ok(())
    } else {
        Err(text(&out))
    }
}

/// Asked through the plain loopback listener (the browser on this machine), join commands name
/// the LAN address, never loopback; an administrator sets another URL, which is checked, named
/// by the TLS certificate at once and used from then on; `--advertise-url` wins over it.
#[test]
fn join_commands_name_the_lan_address_or_the_url_an_admin_set() {
    let tmp = tempfile::tempdir().unwrap();
    let args = |extra: &[&str]| ["--tls", "auto", "--local-listen", "127.0.0.1:0"].iter().chain(extra).map(|s| s.to_string()).collect::<Vec<_>>();
    let launch = Launch { listen: "0.0.0.0:0".into(), args: args(&[]), ..Launch::default() };
    let cp = ControlPlane::launch(&tmp.path().join("data"), &launch);
    let port = cp.url.rsplit(':').next().unwrap().to_string();
    let local = plain_url(&cp);
    let run = |cp: &ControlPlane, args: &[&str]| {
        let mut all = vec!["--server", local.as_str(), "-o", "json"];
        all.extend_from_slice(args);
        let out = cp.cli(&all).output().unwrap();
        (out.status.success(), text(&out))
    };
    let json = |cp: &ControlPlane, args: &[&str]| -> Value {
        let (ok, out) = run(cp, args);
        assert!(ok, "corral {args:?}: {out}");
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
    };

    let join = json(&cp, &["host", "join-command"]);
    let server_url = join["server_url"].as_str().unwrap().to_string();
    let host = server_url.trim_start_matches("https://").rsplit_once(':').unwrap().0.to_string();
    let ip: std::net::IpAddr = host.parse().unwrap_or_else(|_| panic!("an address: {server_url}"));
    assert!(!ip.is_loopback() && !ip.is_unspecified(), "asked over loopback, the join command names {server_url}");
    assert_eq!(server_url, format!("https://{host}:{port}"), "the LAN port, not the loopback listener's");
    let ours = String::from_utf8_lossy(&Command::new("ip").args(["-o", "addr", "show"]).output().unwrap().stdout).to_string();
    assert!(ours.contains(&format!("inet {host}/")), "{host} is one of this machine's addresses: {ours}");
    let settings = json(&cp, &["settings", "show"]);
    assert_eq!((settings["agent_url"].as_str(), settings["agent_url_source"].as_str()), (Some(server_url.as_str()), Some("detected")), "{settings}");

    // A URL that is no URL hosts could use is refused, and changes nothing.
    for bad in ["ftp://cp.test", "cp.test:7070", "https://cp.test/corral"] {
        let (ok, err) = run(&cp, &["settings", "set", "advertise-url", bad]);
        assert!(!ok && err.contains("invalid URL") && err.contains("e.g. https://"), "{bad}: {err}");
    }
    assert_eq!(json(&cp, &["host", "join-command"])["server_url"], server_url.as_str());

    // A name for this machine: refused by TLS before, named by the certificate once it is set.
    let name = "corral-features.test";
    assert!(tls_health(&cp, name, &port).is_err(), "the certificate does not name {name} yet");
    let wanted = format!("https://{name}:{port}");
    let settings = json(&cp, &["settings", "set", "advertise-url", &format!("{wanted}/")]);
    assert_eq!((settings["agent_url"].as_str(), settings["agent_url_source"].as_str()), (Some(wanted.as_str()), Some("settings")), "{settings}");
    let join = json(&cp, &["host", "join-command"]);
    assert_eq!(join["server_url"], wanted.as_str());
    assert!(join["command"].as_str().unwrap().contains(&format!("--server {wanted} ")), "{join}");
    tls_health(&cp, name, &port).unwrap_or_else(|e| panic!("the certificate names {name} at once: {e}"));

    // Only administrators change it; anyone signed in may read it (an owner here).
    let created = cp.cli_with_input(&["--server", &local, "user", "create", "mia", "--password-stdin"], "mia-password-long\n");
    assert!(created.status.success(), "{}", text(&created));
    json(&cp, &["member", "add", "Default", "mia", "--role", "owner"]);
    let login = cp.cli_with_input(&["--server", &local, "-o", "json", "login", "--user", "mia", "--password-stdin"], "mia-password-long\n");
    assert!(login.status.success(), "{}", text(&login));
    let session: Value = serde_json::from_slice(&login.stdout).unwrap();
    let token = session["token"].as_str().unwrap();
    let as_mia = |args: &[&str]| {
        let mut all = vec!["--server", local.as_str(), "--token", token];
        all.extend_from_slice(args);
        let out = cp.cli(&all).output().unwrap();
        (out.status.success(), text(&out))
    };
    let (ok, out) = as_mia(&["settings", "show"]);
    assert!(ok && out.contains(&wanted), "{out}");
    let (ok, out) = as_mia(&["settings", "set", "advertise-url", "https://elsewhere.test:1"]);
    assert!(!ok && out.contains("for admins"), "{out}");

    // Restarted with --advertise-url: that one wins, and the stored one is said to wait.
    let data = cp.data_dir.clone();
    assert!(cp.proc.stop().success());
    let flag = format!("https://flag.test:{port}");
    let launch = Launch { listen: format!("0.0.0.0:{port}"), args: args(&["--advertise-url", &flag]), ..Launch::default() };
    let cp = ControlPlane::launch(&data, &launch);
    let local = plain_url(&cp);
    let run = |args: &[&str]| {
        let mut all = vec!["--server", local.as_str()];
        all.extend_from_slice(args);
        text(&cp.cli(&all).output().unwrap())
    };
    let shown = run(&["settings", "show"]);
    assert!(shown.contains(&format!("hosts join at {flag} (from --advertise-url")) && shown.contains("wins over"), "{shown}");
    assert!(run(&["host", "join-command"]).contains(&format!("--server {flag} ")));
    assert!(tls_health(&cp, name, &port).is_ok(), "the stored name is still in the certificate after a restart");
    let shown = run(&["settings", "unset", "advertise-url"]);
    assert!(shown.contains(&flag) && !shown.contains("wins over"), "{shown}");
}

/// `curl` of the web UI's `path` accepting `encoding`: (status, headers, bytes on the wire).
fn fetch(base: &str, path: &str, encoding: &str) -> (u16, String, usize) {
    let dir = tempfile::tempdir().unwrap();
    let (head, body) = (dir.path().join("head"), dir.path().join("body"));
    let out = Command::new("curl")
        .args(["-s", "-H", &format!("Accept-Encoding: {encoding}"), "-D"])
        .arg(&head)
        .arg("-o")
        .arg(&body)
        .args(["-w", "%{http_code}"])
        .arg(format!("{base}{path}"))
        .output()
        .unwrap();
    let status = String::from_utf8_lossy(&out.stdout).parse().unwrap_or(0);
    (status, std::fs::read_to_string(head).unwrap_or_default().to_lowercase(), std::fs::metadata(body).map_or(0, |m| m.len() as usize))
}

/// The UI's JavaScript and CSS go out compressed (brotli or gzip, as accepted) and, named by
/// their content's hash, cached for a year; `index.html` is revalidated on every load; a hashed
/// asset that is not there is a 404, not the index page. Prints the bytes a first load moves.
#[test]
fn the_web_ui_goes_out_compressed_and_cached() {
    let ui_dir = repo_root().join("ui/dist");
    assert!(ui_dir.join("index.html").is_file(), "the web UI is not built: run `npm --prefix ui run build`");
    let tmp = tempfile::tempdir().unwrap();
    let launch = Launch { args: vec!["--ui-dir".into(), ui_dir.display().to_string()], ..Launch::default() };
    let cp = ControlPlane::launch(&tmp.path().join("data"), &launch);
    let (status, head, _) = fetch(&cp.url, "/", "br, gzip");
    assert_eq!(status, 200);
    assert!(head.contains("cache-control: no-cache"), "{head}");
    let index = std::fs::read_to_string(ui_dir.join("index.html")).unwrap();
    let mut assets: Vec<String> = index.split('"').filter(|s| s.starts_with("/assets/")).map(str::to_string).collect();
    // The graph is a chunk of its own, which the main script loads when the graph tab opens.
    let main = assets.iter().find(|a| a.ends_with(".js")).expect("the main script").clone();
    let script = std::fs::read_to_string(ui_dir.join(main.trim_start_matches('/'))).unwrap();
    let at = script.find("StackGraph-").expect("the graph chunk's name in the main script");
    let graph = &script[at..at + script[at..].find(".js").expect("a script name") + 3];
    assets.push(format!("/assets/{graph}"));
    assert!(assets.len() >= 3, "{assets:?}");
    let mut report = Vec::new();
    for path in &assets {
        let (status, plain_head, plain) = fetch(&cp.url, path, "identity");
        assert_eq!(status, 200, "{path}");
        assert!(plain_head.contains("cache-control: public, max-age=31536000, immutable"), "{path}: {plain_head}");
        for encoding in ["br", "gzip"] {
            let (status, head, wire) = fetch(&cp.url, path, encoding);
            assert_eq!(status, 200);
            assert!(head.contains(&format!("content-encoding: {encoding}")), "{path} {encoding}: {head}");
            assert!(head.contains("cache-control: public, max-age=31536000, immutable"), "{path}: {head}");
            assert!(wire * 2 < plain, "{path} {encoding}: {wire} bytes of {plain}");
            report.push(format!("{path} {encoding}: {wire} of {plain} bytes"));
        }
        // What the browser decodes is the file itself.
        let decoded = Command::new("curl").args(["-s", "--compressed"]).arg(format!("{}{path}", cp.url)).output().unwrap().stdout;
        assert_eq!(decoded, std::fs::read(ui_dir.join(path.trim_start_matches('/'))).unwrap(), "{path} decodes to the file");
    }
    println!("{}", report.join("\n"));
    let (status, head, _) = fetch(&cp.url, "/assets/index-gone.js", "br");
    assert_eq!(status, 404, "{head}");
    assert!(head.contains("text/plain") && head.contains("cache-control: no-cache"), "{head}");
}

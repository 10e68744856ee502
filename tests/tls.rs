//! TLS between the control plane and its agents and clients, with the control plane's own CA
//! pinned by fingerprint, and each host's own credential after it joined.

use corral_e2e::*;
use serde_json::Value;
use std::process::Command;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);

/// A control plane serving TLS on every interface, reached by clients at 127.0.0.1.
struct TlsControlPlane {
    cp: ControlPlane,
    fingerprint: String,
}

impl TlsControlPlane {
    fn start(data_dir: &std::path::Path, extra: &[&str]) -> TlsControlPlane {
        let mut cp = ControlPlane::launch(
            data_dir,
            &Launch { listen: "0.0.0.0:0".into(), args: ["--tls", "auto"].iter().chain(extra).map(|a| a.to_string()).collect(), ..Launch::default() },
        );
        assert!(cp.url.starts_with("https://0.0.0.0:"), "auto: TLS on a non-loopback address: {}", cp.url);
        cp.url = cp.url.replace("0.0.0.0", "127.0.0.1");
        let out = cp.proc.output();
        let fingerprint = out
            .lines()
            .find_map(|l| l.strip_prefix("CA fingerprint (agents and the CLI pin it with --ca-fingerprint): "))
            .unwrap_or_else(|| panic!("the fingerprint is printed at start: {out}"))
            .to_string();
        TlsControlPlane { cp, fingerprint }
    }

    /// A client command pinning `pin` (none when `None`).
    fn cli(&self, pin: Option<&str>, args: &[&str]) -> std::process::Output {
        self.command(pin, args).output().expect("run corral")
    }

    fn command(&self, pin: Option<&str>, args: &[&str]) -> Command {
        let mut cmd = self.cp.cli(args);
        cmd.env_remove("CORRAL_CA_FINGERPRINT");
        if let Some(pin) = pin {
            cmd.env("CORRAL_CA_FINGERPRINT", pin);
        }
        cmd
    }

    fn json(&self, args: &[&str]) -> Value {
        let mut all = vec!["-o", "json"];
        all.extend_from_slice(args);
        let out = self.cli(Some(&self.fingerprint), &all);
        assert!(out.status.success(), "corral {args:?}: {}", text(&out));
        serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
    }

    fn host_state(&self, name: &str) -> Option<String> {
        let hosts = self.json(&["host", "ls"]);
        hosts.as_array()?.iter().find(|h| h["name"] == name).map(|h| h["state"].as_str().unwrap_or_default().to_string())
    }
}

fn wrong_pin() -> String {
    format!("sha256:{}", "ab".repeat(32))
}

#[test]
fn clients_pin_the_control_planes_ca() {
    let tmp = tempfile::tempdir().unwrap();
    let tls = TlsControlPlane::start(&tmp.path().join("data"), &["--local-listen", "127.0.0.1:0"]);

    // With the fingerprint: a normal client.
    assert_eq!(tls.json(&["host", "ls"]), serde_json::json!([]));
    // Without it: refused, saying what is missing.
    let out = tls.cli(None, &["host", "ls"]);
    assert!(!out.status.success());
    assert!(text(&out).contains("--ca-fingerprint"), "{}", text(&out));
    // With another one: refused, naming both.
    let out = tls.cli(Some(&wrong_pin()), &["host", "ls"]);
    assert!(!out.status.success());
    assert!(text(&out).contains(&tls.fingerprint) && text(&out).contains(&wrong_pin()), "{}", text(&out));
    // A malformed one: refused before anything is sent.
    let out = tls.cli(Some("sha256:nothex"), &["host", "ls"]);
    assert!(!out.status.success() && text(&out).contains("64 hex digits"), "{}", text(&out));

    // Plain HTTP on the TLS port gets no answer from the API.
    let port = tls.cp.url.rsplit(':').next().unwrap().to_string();
    let plain = Command::new("curl").args(["-sS", "--max-time", "5", &format!("http://127.0.0.1:{port}/v1/health")]).output().unwrap();
    assert!(!plain.status.success() && !String::from_utf8_lossy(&plain.stdout).contains("ok"), "{}", text(&plain));
    // The CLI sent there says what to use instead.
    let out = tls.command(None, &["host", "ls"]).env("CORRAL_URL", format!("http://127.0.0.1:{port}")).output().unwrap();
    let expected = format!("speaks TLS: use --server https://127.0.0.1:{port}");
    assert!(!out.status.success() && text(&out).contains(&expected), "{}", text(&out));
    // On the control plane's own machine the CLI trusts the CA in its data dir by itself.
    let xdg = tmp.path().join("xdg");
    std::fs::create_dir_all(&xdg).unwrap();
    std::os::unix::fs::symlink(tmp.path().join("data"), xdg.join("corral")).unwrap();
    let out = tls.command(None, &["host", "ls"]).env("XDG_DATA_HOME", &xdg).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    // The loopback listener serves plain HTTP, for this machine only.
    let out = tls.cp.proc.output();
    let local = out.lines().find_map(|l| l.strip_prefix("Plain HTTP for this machine only on ")).expect("the local listener is printed");
    let health = Command::new("curl").args(["-fsS", &format!("{local}/v1/health")]).output().unwrap();
    assert!(health.status.success() && String::from_utf8_lossy(&health.stdout).contains("ok"), "{}", text(&health));

    // The join command names the https URL and the fingerprint, and its CA check passes with
    // standard tools against the CA the control plane serves.
    let join = tls.json(&["host", "join-command"]);
    assert_eq!(join["ca_fingerprint"].as_str(), Some(tls.fingerprint.as_str()));
    let command = join["command"].as_str().unwrap();
    assert!(command.contains(&format!("--ca-fingerprint {}", tls.fingerprint)) && command.contains("--server https://"), "{command}");
    let fetch_and_check = command.split(" && curl -fsSL").next().unwrap();
    let work = tmp.path().join("host");
    std::fs::create_dir_all(&work).unwrap();
    let checked = Command::new("sh").arg("-c").arg(fetch_and_check).current_dir(&work).output().unwrap();
    assert!(checked.status.success(), "{fetch_and_check}: {}", text(&checked));
    // A CA that is not the one pinned fails the same check.
    std::fs::write(work.join("corral-ca.pem"), "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n").unwrap();
    let check_only = fetch_and_check.split(" && ").nth(1).unwrap();
    let refused = Command::new("sh").arg("-c").arg(check_only).current_dir(&work).output().unwrap();
    assert!(!refused.status.success(), "a wrong CA passes the check");

    // The CA is kept across restarts: the pin stays valid.
    let data_dir = tls.cp.data_dir.clone();
    assert!(tls.cp.proc.stop().success());
    let again = TlsControlPlane::start(&data_dir, &[]);
    assert_eq!(again.fingerprint, tls.fingerprint);
    assert_eq!(again.json(&["host", "ls"]), serde_json::json!([]));
}

fn agent(tls: &TlsControlPlane, pin: &str, token: &str, engine: &Engine, state_dir: &std::path::Path, log: &str) -> Proc {
    let mut cmd = Command::new(corral_bin());
    cmd.args(["agent", "--server", &tls.cp.url, "--ca-fingerprint", pin, "--token", token])
        .args(["--docker-host", &engine.socket, "--name", &engine.name, "--address", &engine.address])
        .arg("--state-dir")
        .arg(state_dir)
        .env_remove("CORRAL_CA_FINGERPRINT")
        .env("RUST_LOG", "info");
    Proc::spawn(cmd, state_dir.with_extension(log))
}

#[test]
fn agents_join_over_tls_and_then_use_their_own_credential() {
    let _engines = exclusive();
    let engine = engines(1).remove(0);
    engine.clear();
    let tmp = tempfile::tempdir().unwrap();
    let tls = TlsControlPlane::start(&tmp.path().join("data"), &[]);
    let token = tls.json(&["host", "join-command"])["token"].as_str().unwrap().to_string();
    let state_dir = tmp.path().join("agent");

    // Another CA pinned: the agent stops at once, naming both, and the host never registers.
    let mut impostor = agent(&tls, &wrong_pin(), &token, &engine, &state_dir, "wrong.log");
    assert!(!impostor.wait_exit(WAIT).success());
    let said = impostor.output();
    assert!(said.contains(&wrong_pin()) && said.contains(&tls.fingerprint), "{said}");
    assert_eq!(tls.json(&["host", "ls"]), serde_json::json!([]));

    // The right CA: the host joins and runs what it is told, as its engine reports.
    let mut joined = agent(&tls, &tls.fingerprint, &token, &engine, &state_dir, "agent.log");
    wait_for("the host active", WAIT, || (tls.host_state(&engine.name)? == "active").then_some(()));
    tls.json(&["stack", "create", "tls"]);
    tls.json(&["service", "create", "tls/web", "--image", "corral-test/busybox:latest", "--", "sleep", "3600"]);
    wait_for("the container running on the engine", WAIT, || engine.running_names().contains(&"tls-web-1".to_string()).then_some(()));

    // Its own credential is in its state dir, readable by its user only.
    let credential = std::fs::read_to_string(state_dir.join("credential")).expect("the credential is kept");
    assert!(!credential.trim().is_empty() && !credential.contains(&token));
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(state_dir.join("credential")).unwrap().permissions().mode() & 0o777, 0o600);

    // The join token changes; the host still gets back in: it no longer needs the join token.
    let rotated = tls.json(&["host", "join-command", "--rotate"]);
    let new_token = rotated["token"].as_str().expect("a new join token").to_string();
    assert_ne!(new_token, token);
    joined.signal(nix::sys::signal::Signal::SIGKILL);
    let _ = joined.child.wait();
    wait_for("the host disconnected", WAIT, || (tls.host_state(&engine.name)? == "disconnected").then_some(()));
    let joined = agent(&tls, &tls.fingerprint, &token, &engine, &state_dir, "again.log");
    wait_for("the host active again", WAIT, || (tls.host_state(&engine.name)? == "active").then_some(()));

    // Revoked: its session ends, the agent is refused and stops, its credential forgotten.
    let mut joined = joined;
    let revoked = tls.json(&["host", "revoke", &engine.name]);
    assert!(revoked["revoked_at"].is_string(), "{revoked}");
    assert!(!joined.wait_exit(WAIT).success());
    assert!(joined.output().contains("revoked"), "{}", joined.output());
    assert!(!state_dir.join("credential").exists());
    assert_eq!(tls.host_state(&engine.name).as_deref(), Some("disconnected"));
    // Re-joining needs the join token again: the old one no longer works, the current one does.
    let mut stale = agent(&tls, &tls.fingerprint, &token, &engine, &state_dir, "stale.log");
    assert!(!stale.wait_exit(WAIT).success());
    assert!(stale.output().contains("BadToken"), "{}", stale.output());
    let _rejoined = agent(&tls, &tls.fingerprint, &new_token, &engine, &state_dir, "rejoin.log");
    wait_for("the host re-joined", WAIT, || (tls.host_state(&engine.name)? == "active").then_some(()));
    assert!(state_dir.join("credential").exists(), "a new credential after re-joining");
    assert!(tls.json(&["host", "ls"])[0]["revoked_at"].is_null());
    assert!(engine.running_names().contains(&"tls-web-1".to_string()), "the host kept its container throughout");
    tls.json(&["stack", "rm", "tls"]);
    wait_for("the container removed", WAIT, || (!engine.running_names().contains(&"tls-web-1".to_string())).then_some(()));
}

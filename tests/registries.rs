//! Registries with logins and private CAs, on real engines pulling from a real registry
//! (`scripts/test-registry.sh`: Debian's docker-registry with TLS from a test CA and htpasswd
//! logins). The test engines read their own certs dirs, so a pull works only once the agent has
//! installed the registry's CA there. Each case is checked where it shows: the engines (what
//! runs, which images they hold, that a failed pull leaves no container or image behind), the
//! CA files, `ps` and `service ls` (why a pull failed), and the places a password must never be (the
//! database file, logs, the agent's state dir, `registry ls`).

use corral_e2e::{wait_for, Cluster, ControlPlane, Engine, TestRegistry};
use std::path::Path;
use std::time::Duration;

const STACK: &str = "reg";

/// Every file under `dir` (recursively) that holds `needle`.
fn files_holding(dir: &Path, needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else { return found };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(files_holding(&path, needle));
        } else if std::fs::read(&path).is_ok_and(|bytes| bytes.windows(needle.len()).any(|w| w == needle.as_bytes())) {
            found.push(path.display().to_string());
        }
    }
    found
}

fn has_image(engine: &Engine, image: &str) -> bool {
    engine.docker(&["image", "inspect", image]).status.success()
}

/// `registry add` with a login, the password on standard input.
fn add_with_login(cp: &ControlPlane, reg: &TestRegistry, password: &str) -> String {
    let out = cp.cli_with_input(&["registry", "add", &reg.host, "--user", &reg.user, "--password-stdin", "--ca-file", reg.ca_file.to_str().unwrap()], password);
    assert!(out.status.success(), "registry add: {}", corral_e2e::text(&out));
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// Waits until `ps` says why the first container of `service` does not run: the pull of `image`
/// failed with `reason`, as a failure; `service ls` says it too, on the service.
fn wait_pull_failure(cp: &ControlPlane, service: &str, image: &str, reason: &str) {
    let wanted = format!("cannot pull {image}: {reason}");
    let name = format!("{STACK}-{service}-1");
    wait_for(&format!("ps to say {wanted:?} on {name}"), Duration::from_secs(30), || {
        let rows = cp.json(&["ps"]);
        let row = rows.as_array()?.iter().find(|c| c["name"] == name.as_str())?.clone();
        (row["reason"].as_str()?.starts_with(&wanted) && row["failing"] == true).then_some(())
    });
    let services = cp.json(&["service", "ls", STACK]);
    let svc = services.as_array().unwrap().iter().find(|s| s["name"] == service).cloned().unwrap();
    assert_eq!(svc["status"], "failing", "{svc}");
    assert!(svc["reason"].as_str().unwrap().contains(&wanted), "{svc}");
    let table = corral_e2e::text(&cp.cli(&["ps", &format!("{STACK}/{service}")]).output().unwrap());
    assert!(table.contains(&wanted), "{table}");
}

fn log_lengths(cluster: &Cluster) -> Vec<usize> {
    cluster.agents.iter().map(|a| a.as_ref().map_or(0, |a| a.output().len())).collect()
}

/// A service that runs no container anywhere, and whose image no engine holds: nothing half-made.
fn assert_nothing_made(cluster: &Cluster, service: &str, image: &str) {
    for e in &cluster.engines {
        let made: Vec<String> = e.managed().into_iter().map(|c| c.name).filter(|n| n.starts_with(&format!("{STACK}-{service}-"))).collect();
        assert!(made.is_empty(), "{} made {made:?} for a failed pull", e.name);
        assert!(!has_image(e, image), "{} holds {image} after a failed pull", e.name);
    }
}

fn remove_image_everywhere(cluster: &Cluster, image: &str) {
    for e in &cluster.engines {
        e.docker(&["rmi", "-f", image]);
    }
}

#[test]
fn pulls_use_the_registry_login_and_ca_and_say_why_they_fail() {
    let cluster = Cluster::start(2);
    let cp = &cluster.cp;
    let reg = TestRegistry::up();
    let good = reg.image("latest");
    let missing_tag = reg.image("no-such-tag");
    let unreachable = "10.213.0.1:5999/corral-test/busybox:latest".to_string();
    remove_image_everywhere(&cluster, &good);
    for e in &cluster.engines {
        let _ = std::fs::remove_dir_all(e.certs_dir().join(&reg.host));
    }

    // With its login and CA: the CA is installed for each engine, and `ls` never shows the password.
    let added = add_with_login(cp, &reg, &reg.password);
    assert!(added.contains(&format!("registry {} with login {}", reg.host, reg.user)), "{added}");
    let listed = cp.json(&["registry", "ls"]);
    assert_eq!(listed[0]["host"], reg.host.as_str(), "{listed}");
    assert_eq!(listed[0]["password"], "set", "{listed}");
    let table = String::from_utf8_lossy(&cp.cli(&["registry", "ls"]).output().unwrap().stdout).to_string();
    assert!(table.contains(&reg.host) && table.contains(" set ") && !table.contains(&reg.password), "{table}");
    let ca = std::fs::read_to_string(&reg.ca_file).unwrap();
    for e in &cluster.engines {
        let path = e.certs_dir().join(&reg.host).join("ca.crt");
        wait_for(&format!("the CA in {}", path.display()), Duration::from_secs(10), || (std::fs::read_to_string(&path).ok()? == ca).then_some(()));
    }

    // Pulled with the login on both engines; an unknown tag and an unreachable registry fail
    // with their reasons at the same time, and leave nothing behind.
    cp.json(&["stack", "create", STACK]);
    cp.json(&["service", "create", &format!("{STACK}/ok"), "--image", &good, "--scale", "2", "--", "sleep", "3600"]);
    cp.json(&["service", "create", &format!("{STACK}/tag"), "--image", &missing_tag, "--", "sleep", "3600"]);
    cp.json(&["service", "create", &format!("{STACK}/down"), "--image", &unreachable, "--", "sleep", "3600"]);
    wait_for("both instances of the service pulled and running", Duration::from_secs(60), || {
        let running: Vec<String> = cluster.all_running().into_iter().filter(|n| n.starts_with("reg-ok-")).collect();
        (running == ["reg-ok-1", "reg-ok-2"]).then_some(())
    });
    assert!(cluster.engines.iter().all(|e| has_image(e, &good)), "each engine pulled the image");
    wait_pull_failure(cp, "tag", &missing_tag, "image not found");
    wait_pull_failure(cp, "down", &unreachable, "registry unreachable");
    assert_nothing_made(&cluster, "tag", &missing_tag);
    assert_nothing_made(&cluster, "down", &unreachable);

    // The password is nowhere it could be read: not in the database file, nor in any log or the
    // agents' state dirs (desired.json keeps the registry without it).
    let leaks = files_holding(cluster.tmp.path(), &reg.password);
    assert!(leaks.is_empty(), "the registry password is readable in {leaks:?}");
    let desired = std::fs::read_to_string(cluster.state_dir(0).join("desired.json")).unwrap();
    assert!(desired.contains(&reg.host), "the saved desired set keeps the registry (and its CA): {desired}");

    // A wrong password, then no login at all: unauthorized, nothing made.
    for svc in ["ok", "tag", "down"] {
        cp.json(&["service", "rm", &format!("{STACK}/{svc}")]);
    }
    wait_for("the services' containers to go", Duration::from_secs(30), || cluster.engines.iter().all(|e| e.managed().is_empty()).then_some(()));
    remove_image_everywhere(&cluster, &good);
    add_with_login(cp, &reg, "not-the-password");
    cp.json(&["service", "create", &format!("{STACK}/denied"), "--image", &good, "--", "sleep", "3600"]);
    wait_pull_failure(cp, "denied", &good, "unauthorized");
    assert_nothing_made(&cluster, "denied", &good);

    // The host is told at once, and pulls again without a login.
    let logs = log_lengths(&cluster);
    let out = cp.cli(&["registry", "add", &reg.host, "--ca-file", reg.ca_file.to_str().unwrap()]).output().unwrap();
    assert!(out.status.success() && String::from_utf8_lossy(&out.stdout).contains("without a login"), "{}", corral_e2e::text(&out));
    assert_eq!(cp.json(&["registry", "ls"])[0]["password"], "none");
    wait_for("a pull without a login", Duration::from_secs(30), || {
        cluster
            .agents
            .iter()
            .zip(&logs)
            .any(|(a, from)| a.as_ref().is_some_and(|a| a.output().get(*from..).is_some_and(|l| l.contains("pulling image without a login"))))
            .then_some(())
    });
    wait_pull_failure(cp, "denied", &good, "unauthorized");
    assert_nothing_made(&cluster, "denied", &good);

    // Removing the registry removes the CA files the agents installed.
    cp.json(&["service", "rm", &format!("{STACK}/denied")]);
    let removed = cp.json(&["registry", "rm", &reg.host]);
    assert_eq!(removed["host"], reg.host.as_str());
    for e in &cluster.engines {
        let dir = e.certs_dir().join(&reg.host);
        wait_for(&format!("{} to be removed", dir.display()), Duration::from_secs(10), || (!dir.exists()).then_some(()));
    }
    assert!(cp.json(&["registry", "ls"]).as_array().unwrap().is_empty());
    assert!(cp.fails(&["registry", "rm", &reg.host]).contains("is not known in this environment"));
}

/// A backup restored on another control plane cannot open the passwords (its sealing key is
/// not in the backup): the registry is listed as needing its password again, and setting it
/// again works. Bad input changes nothing. No engine needed.
#[test]
fn registry_passwords_must_be_set_again_after_a_restore_elsewhere() {
    let tmp = tempfile::tempdir().unwrap();
    let a = ControlPlane::start(&tmp.path().join("a"));
    let password = "pw-sealed-in-a";
    let out = a.cli_with_input(&["registry", "add", "registry.example:5000", "--user", "ci", "--password-stdin"], password);
    assert!(out.status.success(), "{}", corral_e2e::text(&out));
    let backup = tmp.path().join("a.backup.db");
    assert!(a.cli(&["backup", backup.to_str().unwrap()]).output().unwrap().status.success());
    assert!(files_holding(&tmp.path().join("a"), password).is_empty() && files_holding(tmp.path(), password).is_empty(), "no file holds the password");

    let b = ControlPlane::start(&tmp.path().join("b"));
    b.json(&["restore", backup.to_str().unwrap()]);
    let listed = b.json(&["registry", "ls"]);
    assert_eq!((listed[0]["host"].as_str(), listed[0]["password"].as_str()), (Some("registry.example:5000"), Some("must_be_set_again")), "{listed}");
    let table = String::from_utf8_lossy(&b.cli(&["registry", "ls"]).output().unwrap().stdout).to_string();
    assert!(table.contains("must be set again"), "{table}");
    let out = b.cli_with_input(&["registry", "add", "registry.example:5000", "--user", "ci", "--password-stdin"], "pw-set-in-b");
    assert!(out.status.success(), "{}", corral_e2e::text(&out));
    assert_eq!(b.json(&["registry", "ls"])[0]["password"], "set");

    // Refused with what was wrong, and nothing changed.
    for (args, input, says) in [
        (vec!["registry", "add", "https://registry.example"], "", "invalid registry host"),
        (vec!["registry", "add", "r.example", "--user", "ci", "--password-stdin"], "", "standard input held no password"),
        (vec!["registry", "add", "r.example", "--ca-file", "/etc/hostname"], "", "is not a PEM certificate"),
    ] {
        let out = b.cli_with_input(&args, input);
        assert!(!out.status.success() && corral_e2e::text(&out).contains(says), "{args:?}: {}", corral_e2e::text(&out));
    }
    let key = tmp.path().join("key.pem");
    std::fs::write(&key, "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
        .unwrap();
    assert!(b.fails(&["registry", "add", "r.example", "--ca-file", key.to_str().unwrap()]).contains("holds a private key"));
    assert_eq!(b.json(&["registry", "ls"]).as_array().unwrap().len(), 1, "nothing was added");
}

/// The Registries page in Chromium (`tests/ui/registries.mjs`): a service waits for an image
/// from the test registry; the browser adds the registry with its login and CA, the engine then
/// pulls and runs it, and the browser removes the registry, whose CA the agent then removes.
#[test]
fn the_registries_page_adds_a_registry_an_engine_then_pulls_from() {
    let ui_dir = corral_e2e::repo_root().join("ui/dist");
    assert!(ui_dir.join("index.html").is_file(), "the web UI is not built: run `npm --prefix ui run build` (scripts/setup.sh does)");
    let launch = corral_e2e::Launch { args: vec!["--ui-dir".into(), ui_dir.display().to_string()], ..Default::default() };
    let cluster = Cluster::start_with(1, launch, false);
    let cp = &cluster.cp;
    let engine = &cluster.engines[0];
    let reg = TestRegistry::up();
    let image = reg.image("latest");
    remove_image_everywhere(&cluster, &image);
    let _ = std::fs::remove_dir_all(engine.certs_dir().join(&reg.host));
    cp.json(&["stack", "create", STACK]);
    cp.json(&["service", "create", &format!("{STACK}/ui"), "--image", &image, "--", "sleep", "3600"]);

    let out = std::process::Command::new("node")
        .arg(corral_e2e::repo_root().join("tests/ui/registries.mjs"))
        .env("CORRAL_UI_URL", &cp.url)
        .env("CORRAL_UI_TOKEN", cp.admin_token())
        .env("CORRAL_UI_REGISTRY", &reg.host)
        .env("CORRAL_UI_REGISTRY_LOGIN", format!("{}:{}", reg.user, reg.password))
        .env("CORRAL_UI_REGISTRY_CA", &reg.ca_file)
        .env("CORRAL_UI_CONTAINER", format!("{STACK}-ui-1"))
        .output()
        .expect("run node tests/ui/registries.mjs (Node.js is installed by scripts/setup.sh)");
    let log = corral_e2e::text(&out);
    println!("{log}");
    assert!(out.status.success(), "the browser checks failed:\n{log}");

    assert_eq!(engine.running_names(), [format!("{STACK}-ui-1")], "the engine runs what the registry's login let it pull");
    assert!(has_image(engine, &image));
    let dir = engine.certs_dir().join(&reg.host);
    wait_for(&format!("{} to be removed after the UI removed the registry", dir.display()), Duration::from_secs(10), || (!dir.exists()).then_some(()));
    let leaks = files_holding(cluster.tmp.path(), &reg.password);
    assert!(leaks.is_empty(), "the registry password is readable in {leaks:?}");
}

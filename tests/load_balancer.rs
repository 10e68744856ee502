//! The seed's WEB-Server stack behind Corral's built-in load balancer, on two real engines: the
//! balancer runs inside the agents, reaches containers on every host, and follows scaling
//! without failing a single request.

use corral_e2e::*;
use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(30);

/// One HTTP/1.1 GET on a fresh connection; the status code and body.
fn get(addr: &str, host: &str, path: &str) -> Result<(u16, String), String> {
    let mut s = TcpStream::connect_timeout(&addr.parse().map_err(|e| format!("{e}"))?, Duration::from_secs(3)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").map_err(|e| e.to_string())?;
    let mut raw = String::new();
    s.read_to_string(&mut raw).map_err(|e| e.to_string())?;
    let status = raw.split_whitespace().nth(1).and_then(|c| c.parse().ok()).ok_or(format!("no status line in {raw:?}"))?;
    let body = raw.split_once("\r\n\r\n").map(|(_, b)| b.trim().to_string()).unwrap_or_default();
    Ok((status, body))
}

/// Serves its own container name (the hostname Corral gives it) on port 80.
const NAMED_HTTPD: [&str; 3] = ["sh", "-c", "hostname > /www/index.html && exec httpd -f -p 80 -h /www"];

fn web_service(cluster: &Cluster, path: &str, scale: u32) {
    let scale = scale.to_string();
    let mut args = vec!["service", "create", path, "--image", TEST_IMAGE, "--scale", &scale, "--port", "80", "--"];
    args.extend_from_slice(&NAMED_HTTPD);
    cluster.cp.json(&args);
}

/// The address a balancer instance of `service` listens on, once it reports `backends` backends up.
fn balancer_address(cluster: &Cluster, service: &str, port: u16, backends: usize) -> String {
    wait_for(&format!("{service} to listen with {backends} backends up"), WAIT, || {
        let svc = cluster.cp.json(&["service", "ls"]);
        let lb = svc.as_array()?.iter().find(|s| format!("{}/{}", s["stack"].as_str().unwrap(), s["name"].as_str().unwrap()) == service)?.clone();
        let b = lb["balancers"].as_array()?.first()?.clone();
        let listener = b["listeners"].as_array()?.iter().find(|l| l["port"] == port)?.clone();
        let up = listener["backends"].as_array()?.iter().filter(|b| b["up"] == true).count();
        (up == backends && listener["error"].is_null()).then(|| {
            let host = cluster.engines.iter().find(|e| e.name == b["host"].as_str().unwrap()).unwrap();
            format!("{}:{port}", host.address)
        })
    })
}

fn control_plane_in_its_namespace() -> Launch {
    let (ns, ip) = bare_netns(0);
    Launch { listen: "0.0.0.0:0".into(), netns: Some((ns, ip)), args: vec![] }
}

#[test]
fn seed_stack_behind_the_balancer_scales_without_a_failed_request() {
    let cluster = Cluster::start_with(2, control_plane_in_its_namespace(), true);
    cluster.cp.json(&["stack", "create", "WEB-Server"]);
    web_service(&cluster, "WEB-Server/Nginx-cluster", 10);
    cluster.wait_exactly("ten web containers", &instance_names("WEB-Server-Nginx-cluster", 10), WAIT);
    let created = cluster.cp.json(&["lb", "create", "WEB-Server/web-lb", "--port", "8080:80", "--target", "WEB-Server/Nginx-cluster"]);
    assert_eq!(created["kind"], "load-balancer");
    let addr = balancer_address(&cluster, "WEB-Server/web-lb", 8080, 10);

    // Requests through the balancer reach all ten containers, on both hosts.
    let ten: BTreeSet<String> = instance_names("WEB-Server-Nginx-cluster", 10).into_iter().collect();
    let mut seen = BTreeSet::new();
    for _ in 0..60 {
        let (status, body) = get(&addr, "web.example.com", "/").unwrap();
        assert_eq!(status, 200, "{body}");
        seen.insert(body);
    }
    assert_eq!(seen, ten, "every container answers through the balancer");
    let ps = cluster.cp.json(&["ps", "WEB-Server/web-lb"]);
    assert_eq!(ps[0]["state"], "running", "{ps}");
    assert!(ps[0]["status"].as_str().unwrap().contains("10/10 backends up"), "{ps}");

    // A steady request loop while the target scales 10 -> 4 -> 10: zero failures.
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let errors = Arc::new(std::sync::Mutex::new(Vec::new()));
    let loops: Vec<_> = (0..3)
        .map(|_| {
            let (stop, ok, failed, errors, addr) = (stop.clone(), ok.clone(), failed.clone(), errors.clone(), addr.clone());
            std::thread::spawn(move || {
                let deadline = Instant::now() + Duration::from_secs(90);
                while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                    match get(&addr, "web.example.com", "/") {
                        Ok((200, _)) => ok.fetch_add(1, Ordering::Relaxed),
                        other => {
                            errors.lock().unwrap().push(format!("{other:?}"));
                            failed.fetch_add(1, Ordering::Relaxed)
                        }
                    };
                }
            })
        })
        .collect();
    cluster.cp.json(&["service", "scale", "WEB-Server/Nginx-cluster", "4"]);
    cluster.wait_exactly("four web containers and nothing else", &instance_names("WEB-Server-Nginx-cluster", 4), WAIT);
    balancer_address(&cluster, "WEB-Server/web-lb", 8080, 4);
    cluster.cp.json(&["service", "scale", "WEB-Server/Nginx-cluster", "10"]);
    cluster.wait_exactly("ten again", &instance_names("WEB-Server-Nginx-cluster", 10), WAIT);
    balancer_address(&cluster, "WEB-Server/web-lb", 8080, 10);
    // A rolling upgrade under the same loop: every container moves to v2, still no failure.
    let upgraded = cluster.cp.json(&[
        "service",
        "upgrade",
        "WEB-Server/Nginx-cluster",
        "--",
        "sh",
        "-c",
        "echo v2 $(hostname) > /www/index.html && exec httpd -f -p 80 -h /www",
    ]);
    assert_eq!(upgraded["revision"], 2);
    wait_for("every container upgraded and serving v2", Duration::from_secs(120), || {
        let svc = cluster.cp.json(&["service", "ls", "WEB-Server"]);
        let web = svc.as_array()?.iter().find(|s| s["name"] == "Nginx-cluster")?.clone();
        let on_v2 = cluster.engines.iter().flat_map(|e| e.managed()).filter(|c| c.labels.get("io.corral.revision").map(String::as_str) == Some("2")).count();
        (web["upgraded"] == 10 && on_v2 == 10).then_some(())
    });
    balancer_address(&cluster, "WEB-Server/web-lb", 8080, 10);
    let (_, body) = get(&addr, "web.example.com", "/").unwrap();
    assert!(body.starts_with("v2 WEB-Server-Nginx-cluster-"), "{body}");
    stop.store(true, Ordering::Relaxed);
    for l in loops {
        l.join().unwrap();
    }
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    eprintln!("requests during scaling and upgrade: {ok} ok, {failed} failed");
    assert!(ok > 100, "the loop really ran ({ok} requests)");
    assert_eq!(failed, 0, "no request fails while the target scales and upgrades: {:?}", errors.lock().unwrap().iter().take(5).collect::<Vec<_>>());

    // A killed container drops out without a failed request either.
    let victim = &cluster.engines[0];
    let name = victim.running_names().into_iter().find(|n| n.contains("Nginx")).unwrap();
    victim.docker(&["kill", &name]);
    for _ in 0..30 {
        let (status, _) = get(&addr, "web.example.com", "/").unwrap();
        assert_eq!(status, 200, "a request after a backend was killed");
    }
}

#[test]
fn rules_tcp_mode_no_backend_and_bad_syntax() {
    let cluster = Cluster::start_with(2, control_plane_in_its_namespace(), true);
    cluster.cp.json(&["stack", "create", "S"]);
    web_service(&cluster, "S/web", 2);
    web_service(&cluster, "S/api", 2);
    web_service(&cluster, "S/empty", 0);
    let mut want = instance_names("S-web", 2);
    want.extend(instance_names("S-api", 2));
    cluster.wait_exactly("web and api containers", &want, WAIT);

    // Bad input: a clear error, and nothing is created.
    for (args, why) in [
        (vec!["--port", "8080:80", "--target", "S/web", "--rule", "colour=red -> S/api:80"], "neither host"),
        (vec!["--port", "8080:80", "--target", "S/web", "--rule", "host=a.example.com S/api:80"], "no '->'"),
        (vec!["--port", "8080", "--target", "S/web"], "invalid load-balancer port"),
        (vec!["--port", "8080:80", "--target", "S/nope"], "service does not exist"),
        (vec!["--port", "8080:80"], "needs a target"),
    ] {
        let mut full = vec!["lb", "create", "S/bad"];
        full.extend(args);
        let err = cluster.cp.fails(&full);
        assert!(err.contains(why), "{full:?}: {err}");
    }
    assert_eq!(cluster.cp.json(&["service", "ls", "S"]).as_array().unwrap().len(), 3, "nothing was created");

    cluster.cp.json(&[
        "lb",
        "create",
        "S/front",
        "--port",
        "8080:80",
        "--port",
        "9090:80/tcp",
        "--target",
        "S/web",
        "--rule",
        "host=api.example.com -> S/api:80",
        "--rule",
        "host=web.example.com,path=/none -> S/empty:80",
    ]);
    // The listener reports every distinct backend of its rules: two web and two api containers.
    let http = balancer_address(&cluster, "S/front", 8080, 4);
    let names = |host: &str, path: &str| -> BTreeSet<String> {
        (0..12)
            .map(|_| {
                let (status, body) = get(&http, host, path).unwrap();
                assert_eq!(status, 200, "{host}{path}: {body}");
                body
            })
            .collect()
    };
    assert_eq!(names("API.example.com:8080", "/"), instance_names("S-api", 2).into_iter().collect(), "host rule, case and port ignored");
    assert_eq!(names("other.example.com", "/"), instance_names("S-web", 2).into_iter().collect(), "default target");
    let (status, body) = get(&http, "web.example.com", "/none/x").unwrap();
    assert_eq!(status, 503, "a rule whose service has no container: {body}");
    assert!(body.contains("no backend"), "{body}");

    // TCP mode carries any bytes; here, HTTP to the default target.
    let tcp = http.replace(":8080", ":9090");
    let (status, body) = get(&tcp, "anything", "/").unwrap();
    assert!(status == 200 && body.starts_with("S-web-"), "{status} {body}");

    // A global balancer runs one instance on every host, each reaching every backend.
    cluster.cp.json(&["lb", "create", "S/edge", "--port", "8081:80", "--target", "S/web", "--global"]);
    let instances = wait_for("a balancer instance on each host", WAIT, || {
        let ps = cluster.cp.json(&["ps", "S/edge"]);
        let rows = ps.as_array()?.clone();
        (rows.len() == 2 && rows.iter().all(|r| r["state"] == "running")).then_some(rows)
    });
    let hosts: BTreeSet<&str> = instances.iter().map(|r| r["host"].as_str().unwrap()).collect();
    assert_eq!(hosts, BTreeSet::from(["h1", "h2"]));
    for engine in &cluster.engines {
        let addr = format!("{}:8081", engine.address);
        let seen: BTreeSet<String> = (0..8).map(|_| get(&addr, "x", "/").unwrap().1).collect();
        assert_eq!(seen, instance_names("S-web", 2).into_iter().collect(), "the instance on {} reaches both hosts", engine.name);
    }

    // Deactivating a host leaves its global balancer instance in place: traffic that reaches
    // that host is still answered (deactivation only stops new placements).
    let deactivated = cluster.cp.json(&["host", "deactivate", "h2"]);
    assert_eq!(deactivated["status"], "deactivated", "{deactivated}");
    std::thread::sleep(Duration::from_secs(2));
    let ps = cluster.cp.json(&["ps", "S/edge"]);
    let on: BTreeSet<&str> = ps.as_array().unwrap().iter().filter(|r| r["state"] == "running").map(|r| r["host"].as_str().unwrap()).collect();
    assert_eq!(on, BTreeSet::from(["h1", "h2"]), "{ps}");
    let h2 = cluster.engines.iter().find(|e| e.name == "h2").unwrap();
    let (status, body) = get(&format!("{}:8081", h2.address), "x", "/").unwrap();
    assert!(status == 200 && body.starts_with("S-web-"), "the deactivated host's balancer still answers: {status} {body}");
}

//! An audit entry as a sentence a person reads: "ann scaled WEB-Server/web to 4", "bob tried to
//! remove host h1". One phrase per route of the route table that changes something, made from
//! the names in its path and the few body fields the audit log keeps; a route without a phrase
//! (or an entry written before routes were recorded) reads as its method and path.

use corral_store::audit::{AuditDetail, AuditEntry};

/// The entry as a sentence, with who did it and whether it was done.
pub fn sentence(e: &AuditEntry) -> String {
    let who = e.user.as_deref().unwrap_or("someone without a valid credential");
    let Some(p) = e.route.as_deref().and_then(|route| phrase(&e.method, route, &e.detail)) else {
        let outcome = match e.status {
            ..400 => "",
            400..500 => " (refused)",
            _ => " (failed)",
        };
        return format!("{who}: {} {}{outcome}", e.method, e.path);
    };
    let (verb, prefix) = match e.status {
        ..400 => (p.past, ""),
        400..500 => (p.base, "tried to "),
        _ => (p.base, "failed to "),
    };
    let object = if p.object.is_empty() { String::new() } else { format!(" {}", p.object) };
    format!("{who} {prefix}{verb}{object}")
}

/// What a request did: its verb in the past ("scaled") and plain ("scale"), and the rest.
struct Phrase {
    past: &'static str,
    base: &'static str,
    object: String,
}

fn says(past: &'static str, base: &'static str, object: impl Into<String>) -> Phrase {
    Phrase { past, base, object: object.into() }
}

/// "stack WEB", or "a stack" when the request did not name it (a body that was not JSON).
fn named(what: &str, name: Option<String>) -> String {
    match name {
        Some(name) => format!("{what} {name}"),
        None if what.to_ascii_lowercase().starts_with(['a', 'e', 'i', 'o', 'u']) => format!("an {what}"),
        None => format!("a {what}"),
    }
}

fn phrase(method: &str, route: &str, d: &AuditDetail) -> Option<Phrase> {
    let path = |name: &str| d.path.get(name).cloned().unwrap_or_else(|| "?".into());
    let body = |name: &str| d.body_text(name);
    let service = || format!("{}/{}", path("stack"), path("service"));
    // Every route that changes something is under /v1.
    let route = route.strip_prefix("/v1")?;
    Some(match (method, route) {
        ("POST", "/login") => says("signed in", "sign in", ""),
        ("POST", "/logout") => says("signed out", "sign out", ""),
        ("POST", "/environments") => says("created", "create", named("environment", body("name"))),
        ("PATCH", "/environments/{name}") => {
            let to = body("name").map(|n| format!(" to {n}")).unwrap_or_default();
            says("renamed", "rename", format!("environment {}{to}", path("name")))
        }
        ("DELETE", "/environments/{name}") => says("removed", "remove", format!("environment {}", path("name"))),
        ("POST", "/users") => {
            let what = if d.body.get("admin").and_then(|a| a.as_bool()) == Some(true) { "administrator" } else { "user" };
            says("created", "create", named(what, body("name")))
        }
        ("DELETE", "/users/{user}") => says("deleted", "delete", format!("user {}", path("user"))),
        ("PUT", "/users/{user}/password") => says("set", "set", format!("the password of {}", path("user"))),
        ("POST", "/groups") => says("created", "create", named("group", body("name"))),
        ("DELETE", "/groups/{group}") => says("deleted", "delete", format!("group {}", path("group"))),
        ("POST", "/groups/{group}/members") => says("added", "add", format!("{} to group {}", body("user").unwrap_or_else(|| "a user".into()), path("group"))),
        ("DELETE", "/groups/{group}/members/{user}") => says("removed", "remove", format!("{} from group {}", path("user"), path("group"))),
        ("POST", "/members") => {
            // `user:ann` or `group:ops` says which one is meant when both have the name.
            let who = body("name").map_or_else(|| "someone".into(), |n| n.replacen(':', " ", 1));
            let role = body("role").map_or_else(|| "a role".into(), |r| format!("the {r} role"));
            says("gave", "give", format!("{who} {role}"))
        }
        ("DELETE", "/members/{kind}/{name}") => says("took away", "take away", format!("the role of {} {}", path("kind"), path("name"))),
        ("POST", "/apikeys") => {
            let scope = body("environment").map(|e| format!(" for environment {e}")).unwrap_or_default();
            says("created", "create", format!("{}{scope}", named("API key", body("name"))))
        }
        ("DELETE", "/apikeys/{name}") => says("revoked", "revoke", format!("API key {}", path("name"))),
        ("POST", "/hosts/join-command/rotate") => says("rotated", "rotate", "the join token"),
        ("DELETE", "/hosts/{host}") => says("removed", "remove", format!("host {}", path("host"))),
        ("POST", "/hosts/{host}/deactivate") => says("deactivated", "deactivate", format!("host {}", path("host"))),
        ("POST", "/hosts/{host}/activate") => says("activated", "activate", format!("host {}", path("host"))),
        ("POST", "/hosts/{host}/revoke") => says("revoked", "revoke", format!("the credential of host {}", path("host"))),
        ("POST", "/stacks") => says("created", "create", named("stack", body("name"))),
        ("DELETE", "/stacks/{stack}") => says("removed", "remove", format!("stack {}", path("stack"))),
        ("POST", "/stacks/{stack}/services") => {
            let what = if body("kind").as_deref() == Some("load-balancer") { "load balancer" } else { "service" };
            let name = body("name").map_or_else(|| format!("a {what} in {}", path("stack")), |n| format!("{what} {}/{n}", path("stack")));
            let how: Vec<String> = [body("image"), body("scale").map(|s| format!("scale {s}"))].into_iter().flatten().collect();
            let how = if how.is_empty() { String::new() } else { format!(" ({})", how.join(", ")) };
            says("created", "create", format!("{name}{how}"))
        }
        ("DELETE", "/stacks/{stack}/services/{service}") => says("removed", "remove", format!("service {}", service())),
        ("PUT", "/stacks/{stack}/services/{service}/scale") => {
            let to = body("scale").map(|s| format!(" to {s}")).unwrap_or_default();
            says("scaled", "scale", format!("{}{to}", service()))
        }
        ("POST", "/stacks/{stack}/services/{service}/upgrade") => {
            let to = body("image").map(|i| format!(" to {i}")).unwrap_or_default();
            says("upgraded", "upgrade", format!("{}{to}", service()))
        }
        ("POST", "/stacks/{stack}/services/{service}/stop") => says("stopped", "stop", format!("service {}", service())),
        ("POST", "/stacks/{stack}/services/{service}/start") => says("started", "start", format!("service {}", service())),
        ("DELETE", "/containers/{name}") => says("removed", "remove", format!("container {}", path("name"))),
        ("POST", "/containers/{name}/stop") => says("stopped", "stop", format!("container {}", path("name"))),
        ("POST", "/containers/{name}/start") => says("started", "start", format!("container {}", path("name"))),
        ("POST", "/containers/{name}/restart") => says("restarted", "restart", format!("container {}", path("name"))),
        ("PATCH", "/settings") => match d.body.get("advertise_url") {
            Some(serde_json::Value::String(url)) if !url.trim().is_empty() => says("set", "set", format!("the agent endpoint to {url}")),
            Some(_) => says("reset", "reset", "the agent endpoint to this machine's address"),
            None => says("changed", "change", "the settings"),
        },
        ("PUT", "/registries/{host}") => says("saved", "save", format!("registry {}", path("host"))),
        ("DELETE", "/registries/{host}") => says("removed", "remove", format!("registry {}", path("host"))),
        ("POST", "/restore") => says("restored", "restore", "the database from a backup"),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    /// Sample names for a route's path parameters.
    fn param(name: &str) -> &'static str {
        match name {
            "stack" => "WEB-Server",
            "service" => "web",
            "host" => "h1",
            "user" => "bob",
            "group" => "ops",
            "kind" => "user",
            "name" => "old",
            other => panic!("no sample for path parameter {other}: add one"),
        }
    }

    fn entry(method: &str, route: &str, body: Value, status: u16) -> AuditEntry {
        let path = route.split('/').filter_map(|s| s.strip_prefix('{')?.strip_suffix('}')).map(|p| (p.to_string(), param(p).to_string())).collect();
        let body = body.as_object().map(|b| b.iter().map(|(k, v)| (k.clone(), v.clone())).collect()).unwrap_or_default();
        let concrete = route.split('/').map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')).map_or(s, |p| param(p))).collect::<Vec<_>>().join("/");
        AuditEntry {
            id: 1,
            at: "2025-01-01T00:00:00Z".into(),
            user: Some("ann".into()),
            key: None,
            client: "ui".into(),
            remote: None,
            method: method.into(),
            path: concrete,
            environment: Some("Default".into()),
            target: None,
            status,
            route: Some(route.into()),
            detail: AuditDetail { path, body },
        }
    }

    /// Every route that changes something, with a request body it may carry and what it reads as.
    fn expected() -> Vec<(&'static str, &'static str, Value, &'static str)> {
        vec![
            ("POST", "/v1/login", json!({"user": "ann"}), "ann signed in"),
            ("POST", "/v1/logout", json!({}), "ann signed out"),
            ("POST", "/v1/environments", json!({"name": "DEV"}), "ann created environment DEV"),
            ("PATCH", "/v1/environments/{name}", json!({"name": "new"}), "ann renamed environment old to new"),
            ("DELETE", "/v1/environments/{name}", json!({}), "ann removed environment old"),
            ("POST", "/v1/users", json!({"name": "carl", "admin": true}), "ann created administrator carl"),
            ("DELETE", "/v1/users/{user}", json!({}), "ann deleted user bob"),
            ("PUT", "/v1/users/{user}/password", json!({}), "ann set the password of bob"),
            ("POST", "/v1/groups", json!({"name": "ops"}), "ann created group ops"),
            ("DELETE", "/v1/groups/{group}", json!({}), "ann deleted group ops"),
            ("POST", "/v1/groups/{group}/members", json!({"user": "bob"}), "ann added bob to group ops"),
            ("DELETE", "/v1/groups/{group}/members/{user}", json!({}), "ann removed bob from group ops"),
            ("POST", "/v1/members", json!({"name": "user:bob", "role": "owner"}), "ann gave user bob the owner role"),
            ("DELETE", "/v1/members/{kind}/{name}", json!({}), "ann took away the role of user old"),
            ("POST", "/v1/apikeys", json!({"name": "ci", "environment": "DEV"}), "ann created API key ci for environment DEV"),
            ("DELETE", "/v1/apikeys/{name}", json!({}), "ann revoked API key old"),
            ("POST", "/v1/hosts/join-command/rotate", json!({}), "ann rotated the join token"),
            ("DELETE", "/v1/hosts/{host}", json!({}), "ann removed host h1"),
            ("POST", "/v1/hosts/{host}/deactivate", json!({}), "ann deactivated host h1"),
            ("POST", "/v1/hosts/{host}/activate", json!({}), "ann activated host h1"),
            ("POST", "/v1/hosts/{host}/revoke", json!({}), "ann revoked the credential of host h1"),
            ("POST", "/v1/stacks", json!({"name": "WEB-Server"}), "ann created stack WEB-Server"),
            ("DELETE", "/v1/stacks/{stack}", json!({}), "ann removed stack WEB-Server"),
            (
                "POST",
                "/v1/stacks/{stack}/services",
                json!({"name": "web", "image": "nginx:1.27", "scale": 3}),
                "ann created service WEB-Server/web (nginx:1.27, scale 3)",
            ),
            ("DELETE", "/v1/stacks/{stack}/services/{service}", json!({}), "ann removed service WEB-Server/web"),
            ("PUT", "/v1/stacks/{stack}/services/{service}/scale", json!({"scale": 4}), "ann scaled WEB-Server/web to 4"),
            ("POST", "/v1/stacks/{stack}/services/{service}/upgrade", json!({"image": "nginx:1.28"}), "ann upgraded WEB-Server/web to nginx:1.28"),
            ("POST", "/v1/stacks/{stack}/services/{service}/stop", json!({}), "ann stopped service WEB-Server/web"),
            ("POST", "/v1/stacks/{stack}/services/{service}/start", json!({}), "ann started service WEB-Server/web"),
            ("DELETE", "/v1/containers/{name}", json!({}), "ann removed container old"),
            ("POST", "/v1/containers/{name}/stop", json!({}), "ann stopped container old"),
            ("POST", "/v1/containers/{name}/start", json!({}), "ann started container old"),
            ("POST", "/v1/containers/{name}/restart", json!({}), "ann restarted container old"),
            ("PATCH", "/v1/settings", json!({"advertise_url": "https://10.0.0.5:7946"}), "ann set the agent endpoint to https://10.0.0.5:7946"),
            ("PUT", "/v1/registries/{host}", json!({}), "ann saved registry h1"),
            ("DELETE", "/v1/registries/{host}", json!({}), "ann removed registry h1"),
            ("POST", "/v1/restore", json!({}), "ann restored the database from a backup"),
        ]
    }

    #[test]
    fn every_route_that_changes_something_reads_as_an_action() {
        let expected = expected();
        // Unaudited routes (a WebSocket ticket) leave no entry to phrase.
        let audited = |path: &str| !crate::access::UNAUDITED.iter().any(|u| path == format!("/v1{u}"));
        let changing: Vec<_> = crate::api::routes().into_iter().filter(|r| r.method != axum::http::Method::GET && audited(&r.url_path())).collect();
        for route in &changing {
            let (method, path) = (route.method.as_str(), route.url_path());
            let Some((_, _, body, want)) = expected.iter().find(|(m, p, _, _)| *m == method && *p == path) else {
                panic!("{method} {path} has no sentence here: give it a phrase in sentence.rs and an expectation in this table");
            };
            assert_eq!(sentence(&entry(method, &path, body.clone(), 200)), *want, "{method} {path}");
        }
        for (method, path, _, _) in &expected {
            assert!(changing.iter().any(|r| r.method.as_str() == *method && r.url_path() == *path), "{method} {path} is no route any more");
        }
    }

    #[test]
    fn routes_that_only_read_are_never_phrased() {
        for route in crate::api::routes().into_iter().filter(|r| r.method == axum::http::Method::GET) {
            let path = route.url_path();
            let e = entry("GET", &path, json!({}), 200);
            assert_eq!(sentence(&e), format!("ann: GET {}", e.path), "GET {path}");
        }
    }

    #[test]
    fn refusals_and_failures_say_what_was_tried() {
        let scale = |status| sentence(&entry("PUT", "/v1/stacks/{stack}/services/{service}/scale", json!({"scale": -1}), status));
        assert_eq!(scale(400), "ann tried to scale WEB-Server/web to -1");
        assert_eq!(scale(500), "ann failed to scale WEB-Server/web to -1");
        let mut anonymous = entry("POST", "/v1/hosts/{host}/deactivate", json!({}), 401);
        anonymous.user = None;
        assert_eq!(sentence(&anonymous), "someone without a valid credential tried to deactivate host h1");
    }

    #[test]
    fn what_the_request_did_not_name_reads_plainly() {
        assert_eq!(sentence(&entry("POST", "/v1/stacks", json!(null), 400)), "ann tried to create a stack");
        assert_eq!(sentence(&entry("POST", "/v1/environments", json!(null), 201)), "ann created an environment");
        assert_eq!(sentence(&entry("PUT", "/v1/stacks/{stack}/services/{service}/scale", json!(null), 400)), "ann tried to scale WEB-Server/web");
        assert_eq!(sentence(&entry("POST", "/v1/stacks/{stack}/services/{service}/upgrade", json!({}), 200)), "ann upgraded WEB-Server/web");
        assert_eq!(
            sentence(&entry("POST", "/v1/stacks/{stack}/services", json!({"name": "lb", "kind": "load-balancer", "scale": 2}), 201)),
            "ann created load balancer WEB-Server/lb (scale 2)"
        );
        assert_eq!(sentence(&entry("POST", "/v1/members", json!({"name": "ops", "role": "member"}), 200)), "ann gave ops the member role");
        assert_eq!(sentence(&entry("PATCH", "/v1/settings", json!({"advertise_url": null}), 200)), "ann reset the agent endpoint to this machine's address");
    }

    #[test]
    fn entries_without_a_known_route_read_as_method_and_path() {
        let mut old = entry("PUT", "/v1/stacks/{stack}/services/{service}/scale", json!({"scale": 4}), 200);
        old.route = None;
        assert_eq!(sentence(&old), "ann: PUT /v1/stacks/WEB-Server/services/web/scale");
        let mut unknown = entry("POST", "/v1/things", json!({}), 404);
        unknown.route = Some("/v1/things".into());
        assert_eq!(sentence(&unknown), "ann: POST /v1/things (refused)");
    }
}

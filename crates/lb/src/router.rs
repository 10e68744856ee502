//! Pure HTTP route matching: (Host header, path) -> index of the rule in the listener's config.
//!
//! Precedence, most specific first:
//! 1. rules naming this host (compared case-insensitively, port and trailing dot stripped), the
//!    longest matching path prefix winning;
//! 2. otherwise rules without a host, again by longest prefix.
//!
//! So a host rule for `/api` does not hide the catch-all rule's `/` for that host's other paths:
//! a request falls through to the catch-all only when no rule for its host matches its path.
//! Prefixes match on path-segment boundaries (`/api` matches `/api` and `/api/x`, not `/apix`),
//! because a rule for one service silently taking another's similarly named paths is the kind
//! of surprise a load balancer must not spring. Equal rules: the first in the config wins.

use crate::config::Route;

#[derive(Debug, Clone, Default)]
pub struct Router {
    rules: Vec<Rule>,
}

#[derive(Debug, Clone)]
struct Rule {
    host: Option<String>,
    prefix: String,
    index: usize,
}

impl Router {
    pub fn new(routes: &[Route]) -> Self {
        let rules = routes
            .iter()
            .enumerate()
            .map(|(index, r)| Rule {
                host: r.host.as_deref().map(normalize_host).filter(|h| !h.is_empty()),
                prefix: normalize_prefix(r.path_prefix.as_deref()),
                index,
            })
            .collect();
        Router { rules }
    }

    /// `host` is the raw Host header (or None when the request had none); `path` the request
    /// path without query.
    pub fn route(&self, host: Option<&str>, path: &str) -> Option<usize> {
        let path = if path.is_empty() { "/" } else { path };
        // Compared without building the normalized host: this runs for every request.
        if let Some(h) = host.map(host_key) {
            let specific = self.best(path, |r| r.host.as_deref().is_some_and(|rh| rh.eq_ignore_ascii_case(h)));
            if specific.is_some() {
                return specific;
            }
        }
        self.best(path, |r| r.host.is_none())
    }

    fn best(&self, path: &str, eligible: impl Fn(&Rule) -> bool) -> Option<usize> {
        let mut best: Option<&Rule> = None;
        for rule in self.rules.iter().filter(|r| eligible(r)) {
            if prefix_matches(&rule.prefix, path) && best.is_none_or(|b| rule.prefix.len() > b.prefix.len()) {
                best = Some(rule);
            }
        }
        best.map(|r| r.index)
    }
}

/// Lowercases and strips a port and a trailing dot: `Example.COM:8080` -> `example.com`,
/// `[::1]:80` -> `[::1]`.
pub fn normalize_host(raw: &str) -> String {
    host_key(raw).to_ascii_lowercase()
}

/// [`normalize_host`] without the lowercasing, so without allocating.
fn host_key(raw: &str) -> &str {
    let raw = raw.trim();
    let without_port = if raw.starts_with('[') {
        // IPv6 literal: the port, if any, follows the closing bracket.
        match raw.find(']') {
            Some(end) => &raw[..=end],
            None => raw,
        }
    } else {
        match raw.rsplit_once(':') {
            Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
            _ => raw,
        }
    };
    without_port.trim_end_matches('.')
}

fn normalize_prefix(prefix: Option<&str>) -> String {
    match prefix.map(str::trim) {
        None | Some("") => "/".to_string(),
        Some(p) if p.starts_with('/') => p.to_string(),
        Some(p) => format!("/{p}"),
    }
}

fn prefix_matches(prefix: &str, path: &str) -> bool {
    if prefix.ends_with('/') {
        return path.starts_with(prefix);
    }
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(host: Option<&str>, prefix: Option<&str>) -> Route {
        Route { host: host.map(str::to_string), path_prefix: prefix.map(str::to_string), backends: vec![] }
    }

    #[test]
    fn catch_all_matches_everything() {
        let r = Router::new(&[route(None, None)]);
        assert_eq!(r.route(Some("a.example"), "/"), Some(0));
        assert_eq!(r.route(Some("b.example"), "/x/y"), Some(0));
        assert_eq!(r.route(None, "/x"), Some(0));
        assert_eq!(r.route(None, ""), Some(0));
    }

    #[test]
    fn no_rules_match_nothing() {
        let r = Router::new(&[]);
        assert_eq!(r.route(Some("a"), "/"), None);
    }

    #[test]
    fn host_match_is_exact_case_insensitive_and_port_stripped() {
        let r = Router::new(&[route(Some("App.Example.com"), None)]);
        assert_eq!(r.route(Some("app.example.com"), "/"), Some(0));
        assert_eq!(r.route(Some("APP.EXAMPLE.COM:8080"), "/"), Some(0));
        assert_eq!(r.route(Some("app.example.com."), "/"), Some(0));
        assert_eq!(r.route(Some("other.example.com"), "/"), None);
        assert_eq!(r.route(Some("sub.app.example.com"), "/"), None);
        assert_eq!(r.route(Some("example.com"), "/"), None);
        assert_eq!(r.route(None, "/"), None);
    }

    #[test]
    fn rule_host_with_port_is_normalized_too() {
        let r = Router::new(&[route(Some("a.example:80"), None)]);
        assert_eq!(r.route(Some("a.example"), "/"), Some(0));
    }

    #[test]
    fn longest_prefix_wins_regardless_of_order() {
        let r = Router::new(&[route(None, Some("/api")), route(None, None), route(None, Some("/api/v2"))]);
        assert_eq!(r.route(Some("x"), "/api/v2/users"), Some(2));
        assert_eq!(r.route(Some("x"), "/api/v2"), Some(2));
        assert_eq!(r.route(Some("x"), "/api/v1"), Some(0));
        assert_eq!(r.route(Some("x"), "/api"), Some(0));
        assert_eq!(r.route(Some("x"), "/static/a.css"), Some(1));
    }

    #[test]
    fn prefixes_match_on_segment_boundaries() {
        let r = Router::new(&[route(None, Some("/api")), route(None, Some("/"))]);
        assert_eq!(r.route(None, "/apix"), Some(1));
        assert_eq!(r.route(None, "/api/"), Some(0));
        let slash = Router::new(&[route(None, Some("/api/"))]);
        assert_eq!(slash.route(None, "/api/x"), Some(0));
        assert_eq!(slash.route(None, "/api"), None);
    }

    #[test]
    fn prefix_without_leading_slash_is_accepted() {
        let r = Router::new(&[route(None, Some("api"))]);
        assert_eq!(r.route(None, "/api/x"), Some(0));
    }

    #[test]
    fn host_rules_beat_catch_all_but_fall_through_on_path() {
        let r = Router::new(&[route(None, None), route(Some("a.example"), Some("/api")), route(None, Some("/api/long/prefix"))]);
        // The host rule wins even though the catch-all has a longer prefix.
        assert_eq!(r.route(Some("a.example"), "/api/long/prefix/x"), Some(1));
        // No rule for this host matches /web: the catch-all takes it.
        assert_eq!(r.route(Some("a.example"), "/web"), Some(0));
        assert_eq!(r.route(Some("b.example"), "/api"), Some(0));
        assert_eq!(r.route(Some("b.example"), "/api/long/prefix"), Some(2));
    }

    #[test]
    fn first_of_equal_rules_wins() {
        let r = Router::new(&[route(Some("a"), Some("/x")), route(Some("A"), Some("/x"))]);
        assert_eq!(r.route(Some("a"), "/x"), Some(0));
    }

    #[test]
    fn empty_rule_host_means_any_host() {
        let r = Router::new(&[route(Some(""), None)]);
        assert_eq!(r.route(Some("whatever"), "/"), Some(0));
    }

    #[test]
    fn normalize_host_cases() {
        assert_eq!(normalize_host("Example.COM:8080"), "example.com");
        assert_eq!(normalize_host("example.com"), "example.com");
        assert_eq!(normalize_host("[::1]:80"), "[::1]");
        assert_eq!(normalize_host("[::1]"), "[::1]");
        assert_eq!(normalize_host("10.0.0.1:80"), "10.0.0.1");
        assert_eq!(normalize_host(" a.b. "), "a.b");
    }
}

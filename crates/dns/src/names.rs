//! The names table: which addresses a name stands for, as seen from one asking container.
//!
//! Pure and immutable: the agent builds a new [`Names`] from its view of the environment's
//! containers and swaps it into the server whole ([`crate::DnsServer::set_names`]); nothing is
//! ever added to a table in place.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};

/// The domain under which every name is also served (`web.corral.internal`,
/// `web.shop.corral.internal`, `shop-web-1.corral.internal`). Containers may get it as their
/// search domain; a name under it is never forwarded. `.internal` is reserved for private use, so
/// it cannot shadow a public name.
pub const DOMAIN: &str = "corral.internal";

/// What one container contributes to the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The environment the container belongs to (its `io.corral.environment` label). A table
    /// keeps only the records of its own environment, whatever it is given.
    pub environment: String,
    /// The container's name, e.g. `shop-web-1`.
    pub container: String,
    pub stack: String,
    pub service: String,
    /// Its address on the managed network.
    pub ip: Ipv4Addr,
    /// Only running containers are answered; the others still make their names ours (answered
    /// NXDOMAIN rather than forwarded) and identify their stack when they ask.
    pub running: bool,
}

/// What a name resolves to for one asker: the decision the server carries out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolution {
    /// A name of this environment with running containers: their addresses, sorted.
    Found(Vec<Ipv4Addr>),
    /// A name that can only be ours (see [`Names::resolve`]) with nothing running behind it:
    /// answered NXDOMAIN at once, never forwarded.
    NotFound,
    /// Not one of ours: the host's own resolvers answer it.
    Forward,
}

/// The names of ONE environment's containers.
///
/// Built only by [`Names::new`], which takes the environment and drops any record of another
/// one: a table can never answer another environment's names, whatever list it was built from.
/// Keys are lowercased (names are case-insensitive).
#[derive(Debug, Clone, Default)]
pub struct Names {
    environment: String,
    /// stack → service → running addresses (an empty list: the service exists, nothing runs).
    stacks: HashMap<String, HashMap<String, Vec<Ipv4Addr>>>,
    /// container name → its address when running.
    containers: HashMap<String, Option<Ipv4Addr>>,
    /// address → the stack of the container that has it: who is asking.
    askers: HashMap<Ipv4Addr, String>,
    /// Records given for another environment and left out.
    dropped: usize,
}

impl Names {
    /// The table of `environment`, from the records of its containers. Records of any other
    /// environment are left out (counted in [`Names::dropped`] and logged).
    pub fn new(environment: impl Into<String>, records: Vec<Record>) -> Self {
        let environment = environment.into();
        let mut names = Names { environment, ..Names::default() };
        // Stopped containers first, so that when a stopped and a running container share an
        // address (it was handed on), the running one says who is asking.
        let (running, stopped): (Vec<Record>, Vec<Record>) = records.into_iter().partition(|r| r.running);
        for record in stopped.into_iter().chain(running) {
            if record.environment != names.environment {
                names.dropped += 1;
                continue;
            }
            let stack = record.stack.to_ascii_lowercase();
            let addresses = names.stacks.entry(stack.clone()).or_default().entry(record.service.to_ascii_lowercase()).or_default();
            let container = names.containers.entry(record.container.to_ascii_lowercase()).or_default();
            if record.running {
                addresses.push(record.ip);
                *container = Some(record.ip);
            }
            names.askers.insert(record.ip, stack);
        }
        for services in names.stacks.values_mut() {
            for addresses in services.values_mut() {
                addresses.sort_unstable();
                addresses.dedup();
            }
        }
        if names.dropped > 0 {
            tracing::warn!(
                environment = %names.environment,
                dropped = names.dropped,
                "names of another environment were left out of the DNS table"
            );
        }
        names
    }

    /// The environment whose names these are.
    pub fn environment(&self) -> &str {
        &self.environment
    }

    /// How many records were given for another environment and left out.
    pub fn dropped(&self) -> usize {
        self.dropped
    }

    /// How many containers the table knows (running or not).
    pub fn len(&self) -> usize {
        self.containers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.containers.is_empty()
    }

    /// What `name` (absolute or not, any case) means to the container at `asker`.
    ///
    /// The forms, tried in this order, the first with running containers winning:
    /// 1. `SERVICE`: a service of the asker's own stack (an asker not in the table has none);
    /// 2. `CONTAINER`: a container's own name, from anywhere in the environment;
    /// 3. `SERVICE.STACK`: from anywhere in the environment (names may hold dots, so every split
    ///    at a dot whose right part is a known stack is tried).
    ///
    /// Each may end in `.corral.internal` ([`DOMAIN`]). A name is ours — answered here, NXDOMAIN
    /// when nothing runs behind it, never forwarded — when it is a single label, is under
    /// [`DOMAIN`], names a known container or a service of the asker's stack, or ends in `.STACK`
    /// for a known stack of the environment. Every other name is forwarded.
    pub fn resolve(&self, asker: IpAddr, name: &str) -> Resolution {
        let name = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
        let (name, in_domain) = match name.strip_suffix(DOMAIN) {
            Some("") => return Resolution::NotFound,
            Some(rest) if rest.ends_with('.') => (&rest[..rest.len() - 1], true),
            _ => (name.as_str(), false),
        };
        if name.is_empty() {
            // The root: nothing of ours.
            return Resolution::Forward;
        }
        let mut ours = in_domain || !name.contains('.');
        let mut candidates: Vec<&[Ipv4Addr]> = Vec::new();

        let own_stack = match asker {
            IpAddr::V4(ip) => self.askers.get(&ip).and_then(|stack| self.stacks.get(stack)),
            IpAddr::V6(_) => None,
        };
        if let Some(addresses) = own_stack.and_then(|services| services.get(name)) {
            candidates.push(addresses);
        }
        if let Some(container) = self.containers.get(name) {
            candidates.push(container.as_slice());
        }
        for (dot, _) in name.match_indices('.') {
            if let Some(services) = self.stacks.get(&name[dot + 1..]) {
                ours = true;
                if let Some(addresses) = services.get(&name[..dot]) {
                    candidates.push(addresses);
                }
            }
        }

        match candidates.iter().find(|addresses| !addresses.is_empty()) {
            Some(addresses) => Resolution::Found(addresses.to_vec()),
            None if ours || !candidates.is_empty() => Resolution::NotFound,
            None => Resolution::Forward,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ENV: &str = "ops";

    fn record(container: &str, stack: &str, service: &str, ip: [u8; 4], running: bool) -> Record {
        Record { environment: ENV.into(), container: container.into(), stack: stack.into(), service: service.into(), ip: Ipv4Addr::from(ip), running }
    }

    fn ip(octets: [u8; 4]) -> IpAddr {
        IpAddr::V4(Ipv4Addr::from(octets))
    }

    fn found(addresses: &[[u8; 4]]) -> Resolution {
        Resolution::Found(addresses.iter().map(|a| Ipv4Addr::from(*a)).collect())
    }

    /// Two stacks that both have a `web` and a `db` service, one of them scaled to 2 with a
    /// stopped third instance.
    fn table() -> Names {
        Names::new(
            ENV,
            vec![
                record("shop-web-1", "shop", "web", [10, 42, 1, 2], true),
                record("shop-web-2", "shop", "web", [10, 42, 2, 2], true),
                record("shop-web-3", "shop", "web", [10, 42, 1, 9], false),
                record("shop-db-1", "shop", "db", [10, 42, 1, 3], true),
                record("blog-web-1", "blog", "web", [10, 42, 2, 5], true),
                record("blog-db-1", "blog", "db", [10, 42, 2, 6], false),
            ],
        )
    }

    const SHOP_WEB: [u8; 4] = [10, 42, 1, 2];
    const BLOG_WEB: [u8; 4] = [10, 42, 2, 5];

    #[test]
    fn a_service_name_alone_means_the_askers_own_stack() {
        let names = table();
        assert_eq!(names.resolve(ip(SHOP_WEB), "db"), found(&[[10, 42, 1, 3]]));
        assert_eq!(names.resolve(ip(SHOP_WEB), "web"), found(&[[10, 42, 1, 2], [10, 42, 2, 2]]));
        assert_eq!(names.resolve(ip(BLOG_WEB), "web"), found(&[[10, 42, 2, 5]]));
    }

    #[test]
    fn another_stacks_service_is_not_answered_relatively() {
        let names = table();
        // blog's db is stopped; shop's db runs but is not blog's: nothing for blog.
        assert_eq!(names.resolve(ip(BLOG_WEB), "db"), Resolution::NotFound);
        // A stopped container still tells which stack is asking.
        assert_eq!(names.resolve(ip([10, 42, 2, 6]), "web"), found(&[[10, 42, 2, 5]]));
    }

    #[test]
    fn an_asker_not_in_the_table_gets_no_relative_answer() {
        let names = table();
        let stranger = ip([10, 42, 9, 9]);
        assert_eq!(names.resolve(stranger, "web"), Resolution::NotFound);
        assert_eq!(names.resolve(IpAddr::V6(std::net::Ipv6Addr::LOCALHOST), "web"), Resolution::NotFound);
        // ...but the qualified forms work from anywhere.
        assert_eq!(names.resolve(stranger, "web.blog"), found(&[[10, 42, 2, 5]]));
        assert_eq!(names.resolve(stranger, "shop-db-1"), found(&[[10, 42, 1, 3]]));
    }

    #[test]
    fn qualified_names_work_from_any_stack() {
        let names = table();
        assert_eq!(names.resolve(ip(BLOG_WEB), "db.shop"), found(&[[10, 42, 1, 3]]));
        assert_eq!(names.resolve(ip(SHOP_WEB), "web.blog"), found(&[[10, 42, 2, 5]]));
        assert_eq!(names.resolve(ip(SHOP_WEB), "web.blog."), found(&[[10, 42, 2, 5]]));
    }

    #[test]
    fn a_container_name_is_its_address() {
        let names = table();
        assert_eq!(names.resolve(ip(BLOG_WEB), "shop-web-2"), found(&[[10, 42, 2, 2]]));
        assert_eq!(names.resolve(ip(SHOP_WEB), "blog-web-1."), found(&[[10, 42, 2, 5]]));
    }

    #[test]
    fn only_running_containers_are_answered() {
        let names = table();
        assert_eq!(names.resolve(ip(SHOP_WEB), "shop-web-3"), Resolution::NotFound);
        assert_eq!(names.resolve(ip(SHOP_WEB), "db.blog"), Resolution::NotFound);
        let web = names.resolve(ip(SHOP_WEB), "web.shop");
        assert_eq!(web, found(&[[10, 42, 1, 2], [10, 42, 2, 2]]), "the stopped shop-web-3 is not listed");
    }

    #[test]
    fn names_are_case_insensitive() {
        let names = Names::new(ENV, vec![record("Shop-Web-1", "Shop", "Web", SHOP_WEB, true)]);
        for name in ["web", "WEB", "Web.SHOP", "shop-web-1", "SHOP-WEB-1.", "web.shop.Corral.Internal."] {
            assert_eq!(names.resolve(ip(SHOP_WEB), name), found(&[SHOP_WEB]), "{name}");
        }
    }

    #[test]
    fn every_form_is_also_served_under_the_corral_domain() {
        let names = table();
        assert_eq!(names.resolve(ip(SHOP_WEB), "db.corral.internal"), found(&[[10, 42, 1, 3]]));
        assert_eq!(names.resolve(ip(BLOG_WEB), "db.shop.corral.internal."), found(&[[10, 42, 1, 3]]));
        assert_eq!(names.resolve(ip(BLOG_WEB), "shop-db-1.corral.internal"), found(&[[10, 42, 1, 3]]));
        // Anything else under the domain is ours, and unknown.
        assert_eq!(names.resolve(ip(SHOP_WEB), "a.b.c.corral.internal"), Resolution::NotFound);
        assert_eq!(names.resolve(ip(SHOP_WEB), "corral.internal."), Resolution::NotFound);
    }

    #[test]
    fn unknown_names_that_can_only_be_ours_are_not_found_and_the_rest_forwarded() {
        let names = table();
        // A single label is never a public name.
        assert_eq!(names.resolve(ip(SHOP_WEB), "cache"), Resolution::NotFound);
        // X.STACK for a known stack is ours, even with no such service.
        assert_eq!(names.resolve(ip(SHOP_WEB), "cache.shop"), Resolution::NotFound);
        // Everything else goes to the host's resolvers.
        assert_eq!(names.resolve(ip(SHOP_WEB), "example.com"), Resolution::Forward);
        assert_eq!(names.resolve(ip(SHOP_WEB), "web.shop.example.com"), Resolution::Forward);
        assert_eq!(names.resolve(ip(SHOP_WEB), "cache.nostack"), Resolution::Forward);
        assert_eq!(names.resolve(ip(SHOP_WEB), "."), Resolution::Forward);
    }

    #[test]
    fn names_with_dots_still_resolve() {
        let names = Names::new(ENV, vec![record("my.app-api.v2-1", "my.app", "api.v2", SHOP_WEB, true)]);
        assert_eq!(names.resolve(ip(SHOP_WEB), "api.v2"), found(&[SHOP_WEB]));
        assert_eq!(names.resolve(ip([10, 0, 0, 1]), "api.v2.my.app"), found(&[SHOP_WEB]));
        assert_eq!(names.resolve(ip([10, 0, 0, 1]), "my.app-api.v2-1"), found(&[SHOP_WEB]));
        assert_eq!(names.resolve(ip([10, 0, 0, 1]), "other.my.app"), Resolution::NotFound);
    }

    #[test]
    fn another_environments_records_never_enter_the_table() {
        let mut dev = record("dev-web-1", "dev", "web", [10, 43, 1, 2], true);
        dev.environment = "dev".into();
        let names = Names::new(ENV, vec![record("shop-web-1", "shop", "web", SHOP_WEB, true), dev]);
        assert_eq!(names.environment(), ENV);
        assert_eq!(names.dropped(), 1);
        assert_eq!(names.len(), 1);
        assert_eq!(names.resolve(ip([10, 43, 1, 2]), "web"), Resolution::NotFound, "the DEV asker is a stranger here");
        assert_eq!(names.resolve(ip(SHOP_WEB), "dev-web-1"), Resolution::NotFound);
        assert_eq!(names.resolve(ip(SHOP_WEB), "web.dev"), Resolution::Forward, "DEV's stack is not even known");
    }

    #[test]
    fn the_empty_table_answers_nothing_and_forwards_the_rest() {
        let names = Names::default();
        assert!(names.is_empty());
        assert_eq!(names.resolve(ip(SHOP_WEB), "web"), Resolution::NotFound);
        assert_eq!(names.resolve(ip(SHOP_WEB), "example.com"), Resolution::Forward);
    }
}

//! One listener's routing table: its rules compiled and its backends resolved. Tables are
//! immutable and swapped whole, so a request sees either the old config or the new one, never
//! a mix; a request keeps its table (and so its backends) alive until it is done.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use crate::backends::{Backend, ListenerStatus, Pool};
use crate::config::{Listener, Mode};
use crate::router::Router;

pub struct Table {
    pub mode: Mode,
    pub router: Router,
    /// One per route, same order as the config's routes.
    pub pools: Vec<Arc<Pool>>,
}

impl Table {
    /// Backends that `previous` already had keep their `Arc`: health, counters and idle
    /// connections carry over, and requests in flight to them are unaffected.
    pub fn build(config: &Listener, previous: Option<&Table>) -> Table {
        let mut known: HashMap<SocketAddr, Arc<Backend>> = HashMap::new();
        if let Some(prev) = previous.filter(|p| p.mode == config.mode) {
            for b in prev.pools.iter().flat_map(|p| p.backends()) {
                known.entry(b.addr).or_insert_with(|| b.clone());
            }
        }
        let pools = config
            .routes
            .iter()
            .map(|route| {
                let backends =
                    route.backends.iter().map(|addr| known.entry(*addr).or_insert_with(|| Arc::new(Backend::new(*addr, config.mode))).clone()).collect();
                Arc::new(Pool::new(backends))
            })
            .collect();
        Table { mode: config.mode, router: Router::new(&config.routes), pools }
    }

    pub fn status(&self, port: u16) -> ListenerStatus {
        let mut seen = Vec::new();
        let mut backends = Vec::new();
        for b in self.pools.iter().flat_map(|p| p.backends()) {
            if !seen.contains(&b.addr) {
                seen.push(b.addr);
                backends.push(b.status());
            }
        }
        ListenerStatus { port, mode: self.mode, backends }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Route;

    fn listener(mode: Mode, backends: &[u16]) -> Listener {
        Listener {
            port: 80,
            mode,
            routes: vec![Route { host: None, path_prefix: None, backends: backends.iter().map(|p| ([127, 0, 0, 1], *p).into()).collect() }],
        }
    }

    #[test]
    fn kept_backends_keep_their_state() {
        let old = Table::build(&listener(Mode::Http, &[1, 2]), None);
        old.pools[0].backends()[0].mark_down("refused");
        let new = Table::build(&listener(Mode::Http, &[1, 3]), Some(&old));
        assert!(Arc::ptr_eq(&old.pools[0].backends()[0], &new.pools[0].backends()[0]));
        let st = new.status(80);
        assert_eq!(st.backends.len(), 2);
        assert!(!st.backends[0].up);
        assert!(st.backends[1].up);
    }

    #[test]
    fn mode_change_starts_fresh() {
        let old = Table::build(&listener(Mode::Http, &[1]), None);
        let new = Table::build(&listener(Mode::Tcp, &[1]), Some(&old));
        assert!(!Arc::ptr_eq(&old.pools[0].backends()[0], &new.pools[0].backends()[0]));
        assert!(new.pools[0].backends()[0].pool.is_none());
    }
}

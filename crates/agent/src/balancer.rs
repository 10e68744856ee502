//! The host's built-in load balancer: runs the listeners of the desired set with `corral-lb`,
//! and reports how they fare.

use corral_lb::{LbConfig, Listener, LoadBalancer, Mode, Route};
use corral_proto::lb::{LbBackendStatus, LbListenerStatus, LbMode, LbSet};
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

pub struct Balancer {
    proxy: LoadBalancer,
    /// The set last handed to the proxy, whether or not every listener started.
    wanted: Option<LbSet>,
    /// Why a listener could not start, by port, from the last apply.
    errors: BTreeMap<u16, String>,
}

impl Default for Balancer {
    fn default() -> Self {
        Balancer { proxy: LoadBalancer::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED)), wanted: None, errors: BTreeMap::new() }
    }
}

impl Balancer {
    /// Makes the proxy serve `set`; a no-op when it already does.
    pub async fn apply(&mut self, set: &LbSet) {
        // A port that could not be bound (another process holds it) is tried again next pass.
        if self.wanted.as_ref() == Some(set) && self.errors.is_empty() {
            return;
        }
        self.errors.clear();
        for error in self.proxy.apply(&config(set)).await {
            tracing::error!(%error, "load-balancer listener not started");
            self.errors.insert(error.port(), error.to_string());
        }
        self.wanted = Some(set.clone());
    }

    pub fn status(&self) -> Vec<LbListenerStatus> {
        let running: BTreeMap<u16, _> = self.proxy.status().into_iter().map(|l| (l.port, l)).collect();
        let wanted = self.wanted.iter().flat_map(|s| s.listeners.iter());
        wanted
            .map(|listener| LbListenerStatus {
                port: listener.port,
                labels: listener.labels.clone(),
                error: self.errors.get(&listener.port).cloned(),
                backends: running
                    .get(&listener.port)
                    .map(|l| l.backends.iter().map(|b| LbBackendStatus { address: b.addr.to_string(), up: b.up }).collect())
                    .unwrap_or_default(),
            })
            .collect()
    }

    pub async fn shutdown(&self) {
        self.proxy.shutdown().await;
    }
}

/// The wire form to the proxy's own; backends that are not `IP:PORT` are dropped with a warning.
fn config(set: &LbSet) -> LbConfig {
    LbConfig {
        listeners: set
            .listeners
            .iter()
            .map(|l| Listener {
                port: l.port,
                mode: match l.mode {
                    LbMode::Http => Mode::Http,
                    LbMode::Tcp => Mode::Tcp,
                },
                routes: l
                    .routes
                    .iter()
                    .map(|r| Route {
                        host: r.host.clone(),
                        path_prefix: r.path_prefix.clone(),
                        backends: r
                            .backends
                            .iter()
                            .filter_map(|b| match b.parse::<SocketAddr>() {
                                Ok(a) => Some(a),
                                Err(_) => {
                                    tracing::warn!(backend = %b, service = %l.service, "ignoring a backend that is not IP:PORT");
                                    None
                                }
                            })
                            .collect(),
                    })
                    .collect(),
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use corral_proto::lb::{LbListener, LbRoute};

    #[test]
    fn wire_config_converts() {
        let set = LbSet {
            listeners: vec![LbListener {
                port: 8080,
                mode: LbMode::Tcp,
                service: "S/lb".into(),
                routes: vec![LbRoute { host: None, path_prefix: None, backends: vec!["10.0.0.1:80".into(), "bogus".into()] }],
                labels: Default::default(),
            }],
        };
        let c = config(&set);
        assert_eq!(c.listeners[0].mode, Mode::Tcp);
        assert_eq!(c.listeners[0].routes[0].backends, vec!["10.0.0.1:80".parse::<SocketAddr>().unwrap()]);
    }

    #[tokio::test]
    async fn a_taken_port_is_reported() {
        let taken = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
        let port = taken.local_addr().unwrap().port();
        let mut b = Balancer::default();
        let set = LbSet { listeners: vec![LbListener { port, mode: LbMode::Http, service: "S/lb".into(), routes: vec![], labels: Default::default() }] };
        b.apply(&set).await;
        let status = b.status();
        assert_eq!(status.len(), 1);
        assert!(status[0].error.as_deref().is_some_and(|e| e.contains(&port.to_string())), "{status:?}");
        b.shutdown().await;
    }
}

//! The host's service-discovery DNS server ([`corral_dns`]): bound on the managed network's
//! gateway address (the first address of the host's lease, which the engine's bridge holds),
//! port 53, UDP and TCP, in the agent's own network namespace; the resolver of this host's
//! managed containers.
//!
//! Two callers drive it:
//!
//! - the converge loop, after it made the engine's managed network, asks [`ServiceDns::serve`]
//!   for the resolver its new containers get: the gateway once the server listens there (it is
//!   started, or moved to a new lease's gateway, on the spot), none when it cannot (then the
//!   containers keep the engine's default resolvers, and reach the outside world as before);
//! - [`follow_names`] swaps the table on every desired set, the saved one first, so names
//!   resolve while the control plane is away.
//!
//! The table is built by the pure [`table`]: the environment's names, as the control plane sent
//! them, for that environment only.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use corral_dns::{DnsError, DnsServer, Names, Record};
use corral_proto::network::NetworkPlan;
use corral_proto::DesiredSet;
use ipnet::Ipv4Net;
use tokio::sync::{broadcast, watch, Mutex};

/// The port containers' resolvers ask on.
pub const PORT: u16 = 53;

/// The search domain managed containers get, so that a name the engine's own resolver would not
/// pass on (some engines keep single labels to themselves) is still asked as `NAME.corral.internal`.
pub const SEARCH_DOMAIN: &str = corral_dns::DOMAIN;

/// The table a plan's names make: the environment's running containers' addresses by name.
pub fn table(plan: &NetworkPlan) -> Names {
    let records = plan
        .names
        .iter()
        .map(|n| Record {
            environment: plan.environment.clone(),
            container: n.container.clone(),
            stack: n.stack.clone(),
            service: n.service.clone(),
            ip: n.ip,
            running: n.running,
        })
        .collect();
    Names::new(plan.environment.clone(), records)
}

/// The gateway of a lease: its first address, which the engine's bridge holds
/// ([`crate::engine::Engine::ensure_managed_network`]) and where the server listens.
pub fn gateway(lease: &Ipv4Net) -> Option<Ipv4Addr> {
    lease.hosts().next()
}

/// The server as it runs on this host, and the table it answers from.
pub struct ServiceDns {
    upstreams: Vec<SocketAddr>,
    shutdown: broadcast::Receiver<()>,
    state: Mutex<State>,
}

impl std::fmt::Debug for ServiceDns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceDns").field("upstreams", &self.upstreams).finish_non_exhaustive()
    }
}

#[derive(Default)]
struct State {
    server: Option<DnsServer>,
    names: Names,
    /// Why the server does not listen on a gateway, as last logged: said once, not every pass.
    said: Option<(Ipv4Addr, String)>,
}

impl ServiceDns {
    /// A server that forwards other names to `upstreams` (the host's resolvers) and stops on
    /// `shutdown`; it listens nowhere until [`ServiceDns::serve`].
    pub fn new(upstreams: Vec<SocketAddr>, shutdown: &broadcast::Receiver<()>) -> Arc<ServiceDns> {
        Arc::new(ServiceDns { upstreams, shutdown: shutdown.resubscribe(), state: Mutex::default() })
    }

    /// [`ServiceDns::new`] with the resolvers of the host's `/etc/resolv.conf`; without them,
    /// names that are not the environment's get SERVFAIL (and the log says why).
    pub fn with_host_resolvers(shutdown: &broadcast::Receiver<()>) -> Arc<ServiceDns> {
        let upstreams = corral_dns::upstreams::from_resolv_conf(std::path::Path::new(corral_dns::upstreams::RESOLV_CONF)).unwrap_or_else(|e| {
            tracing::warn!(error = %e, "the DNS server has no upstream resolvers");
            Vec::new()
        });
        Self::new(upstreams, shutdown)
    }

    /// Makes the server listen on `lease`'s gateway (moving it from an older lease's), or stops
    /// it when there is no lease. Returns the address managed containers get as their resolver:
    /// the gateway while the server listens there, `None` when it cannot (the gateway is not an
    /// address of this agent's network namespace, the port is taken, ...), said once in the log.
    pub async fn serve(&self, lease: Option<Ipv4Net>) -> Option<Ipv4Addr> {
        let mut state = self.state.lock().await;
        let Some(gateway) = lease.as_ref().and_then(gateway) else {
            if state.server.take().is_some() {
                tracing::info!("no managed network any more; DNS server stopped");
            }
            return None;
        };
        let bind = SocketAddr::from((gateway, PORT));
        if state.server.as_ref().is_some_and(|s| s.local_addr() == bind) {
            return Some(gateway);
        }
        // A new lease: the old gateway's server goes first (its address is going too).
        state.server = None;
        match DnsServer::start(bind, self.upstreams.clone(), self.shutdown.resubscribe()).await {
            Ok((server, _)) => {
                server.set_names(state.names.clone());
                tracing::info!(%bind, names = state.names.len(), "DNS server of the managed network listening");
                state.server = Some(server);
                state.said = None;
                Some(gateway)
            }
            Err(e) => {
                let why = why_not_serving(&e, gateway);
                if state.said.as_ref() != Some(&(gateway, why.clone())) {
                    tracing::warn!(%bind, error = %e, "{why}");
                    state.said = Some((gateway, why));
                }
                None
            }
        }
    }

    /// Answers from `plan`'s names from now on (none without a plan).
    pub async fn set_names(&self, plan: Option<&NetworkPlan>) {
        let names = plan.map(table).unwrap_or_default();
        let mut state = self.state.lock().await;
        if let Some(server) = &state.server {
            server.set_names(names.clone());
        }
        tracing::debug!(names = names.len(), "DNS table swapped");
        state.names = names;
    }

    /// The table answered from now.
    pub async fn names(&self) -> Names {
        self.state.lock().await.names.clone()
    }
}

/// What the log says when the server cannot listen on the gateway.
fn why_not_serving(e: &DnsError, gateway: Ipv4Addr) -> String {
    let not_here = matches!(e, DnsError::Bind { source, .. } if source.kind() == std::io::ErrorKind::AddrNotAvailable);
    if not_here {
        format!(
            "the managed network's gateway {gateway} is not an address of the agent's network namespace (is the agent running in its host's namespace?): \
             this host's containers get no service-discovery DNS and keep the engine's own resolvers"
        )
    } else {
        format!("cannot run the DNS server on the managed network's gateway {gateway}: this host's containers keep the engine's own resolvers")
    }
}

/// Swaps the server's table on every desired set (the saved one first) until shutdown.
pub async fn follow_names(dns: Arc<ServiceDns>, mut desired: watch::Receiver<Option<Arc<DesiredSet>>>, mut shutdown: broadcast::Receiver<()>) {
    loop {
        let plan = desired.borrow_and_update().as_ref().and_then(|d| d.network.clone());
        dns.set_names(plan.as_ref()).await;
        tokio::select! {
            _ = shutdown.recv() => return,
            changed = desired.changed() => if changed.is_err() { return },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use corral_proto::network::NameRecord;
    use std::net::IpAddr;

    fn name(container: &str, service: &str, ip: [u8; 4], running: bool) -> NameRecord {
        NameRecord { container: container.into(), stack: "shop".into(), service: service.into(), ip: ip.into(), running }
    }

    #[test]
    fn a_plans_names_make_the_environments_table() {
        let plan = NetworkPlan {
            network: "10.42.0.0/16".into(),
            subnet: "10.42.1.0/24".into(),
            environment: "OPS".into(),
            names: vec![
                name("shop-web-1", "web", [10, 42, 1, 2], true),
                name("shop-web-2", "web", [10, 42, 2, 2], true),
                name("shop-db-1", "db", [10, 42, 1, 3], false),
            ],
            ..Default::default()
        };
        let names = table(&plan);
        assert_eq!(names.environment(), "OPS");
        assert_eq!(names.len(), 3);
        assert_eq!(names.dropped(), 0);
        let asker = IpAddr::from([10, 42, 1, 2]);
        assert_eq!(names.resolve(asker, "web"), corral_dns::Resolution::Found(vec![[10, 42, 1, 2].into(), [10, 42, 2, 2].into()]));
        assert_eq!(names.resolve(asker, "db"), corral_dns::Resolution::NotFound, "stopped");
        assert!(table(&NetworkPlan::default()).is_empty());
    }

    #[test]
    fn the_gateway_is_the_leases_first_address() {
        assert_eq!(gateway(&"10.42.3.0/24".parse().unwrap()), Some(Ipv4Addr::new(10, 42, 3, 1)));
    }

    #[tokio::test]
    async fn a_gateway_that_is_not_here_gives_no_resolver_and_names_wait_for_a_server() {
        let (_stop, shutdown) = broadcast::channel(1);
        let dns = ServiceDns::new(Vec::new(), &shutdown);
        let plan = NetworkPlan { environment: "OPS".into(), names: vec![name("shop-web-1", "web", [10, 42, 1, 2], true)], ..Default::default() };
        dns.set_names(Some(&plan)).await;
        // 192.0.2.0/24 (TEST-NET-1) is on no interface of any machine.
        assert_eq!(dns.serve(Some("192.0.2.0/24".parse().unwrap())).await, None);
        assert_eq!(dns.names().await.len(), 1, "the table is kept for when a server listens");
        assert_eq!(dns.serve(None).await, None);
    }

    /// An A query for `name` from `from`, and the first address of the answer, when there is one.
    async fn ask(server: Ipv4Addr, from: Ipv4Addr, name: &str) -> Option<Ipv4Addr> {
        let socket = tokio::net::UdpSocket::bind((from, 0)).await.unwrap();
        let mut query = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        for label in name.split('.') {
            query.push(label.len() as u8);
            query.extend(label.as_bytes());
        }
        query.extend([0, 0, 1, 0, 1]);
        socket.send_to(&query, (server, PORT)).await.unwrap();
        let mut answer = [0u8; 512];
        let n = tokio::time::timeout(std::time::Duration::from_secs(2), socket.recv(&mut answer)).await.expect("an answer").unwrap();
        let answers = u16::from_be_bytes([answer[6], answer[7]]);
        // The one answer follows the question: a name pointer, type, class, TTL, length, address.
        (answers > 0).then(|| Ipv4Addr::new(answer[n - 4], answer[n - 3], answer[n - 2], answer[n - 1]))
    }

    #[tokio::test]
    async fn the_server_listens_on_the_gateway_answers_the_table_and_follows_the_lease() {
        let (_stop, shutdown) = broadcast::channel(1);
        let dns = ServiceDns::new(Vec::new(), &shutdown);
        // Loopback holds all of 127.0.0.0/8: a lease there is "here", away from real resolvers.
        let octet = (std::process::id() % 200) as u8 + 20;
        let (first, second): (Ipv4Net, Ipv4Net) = (format!("127.{octet}.1.0/24").parse().unwrap(), format!("127.{octet}.2.0/24").parse().unwrap());
        let gateway1 = gateway(&first).unwrap();
        assert_eq!(dns.serve(Some(first)).await, Some(gateway1));
        assert_eq!(dns.serve(Some(first)).await, Some(gateway1), "the same lease: the same server");
        let asker = Ipv4Addr::new(127, octet, 1, 2);
        let plan = NetworkPlan { environment: "OPS".into(), names: vec![name("shop-web-1", "web", asker.octets(), true)], ..Default::default() };
        dns.set_names(Some(&plan)).await;
        assert_eq!(ask(gateway1, asker, "web").await, Some(asker));
        assert_eq!(ask(gateway1, asker, "shop-web-1.corral.internal").await, Some(asker));
        assert_eq!(ask(gateway1, asker, "nothing").await, None);

        // A new lease moves the server, with its table; the old gateway's port is free again.
        let gateway2 = gateway(&second).unwrap();
        assert_eq!(dns.serve(Some(second)).await, Some(gateway2));
        assert_eq!(ask(gateway2, asker, "web.shop").await, Some(asker));
        released(gateway1).await;
        assert_eq!(dns.serve(None).await, None);
        released(gateway2).await;
    }

    /// Waits (a second at most) until nothing listens on `gateway`'s port: a dropped server's
    /// sockets close once its tasks are cancelled.
    async fn released(gateway: Ipv4Addr) {
        for _ in 0..50 {
            if tokio::net::UdpSocket::bind((gateway, PORT)).await.is_ok() {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        panic!("the DNS server still holds {gateway}:{PORT}");
    }
}

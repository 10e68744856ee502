//! Corral's service-discovery DNS: the server each agent runs on its host's managed-network
//! gateway address, the resolver of every container on that network.
//!
//! Containers find each other by name: `SERVICE` within the asker's own stack, `SERVICE.STACK`
//! from anywhere in the environment, and each container's own name, answered with the managed
//! addresses of the running containers only, with TTL 0 so a scale-down is seen by the next
//! query. Every other name goes to the host's own resolvers. The rule for what is ours, and
//! the optional `.corral.internal` suffix, are on [`Names::resolve`].
//!
//! One server serves ONE environment: its table is built for an environment and keeps nothing of
//! another, so an OPS container never resolves a DEV name.
//!
//! Modules:
//!
//! - [`names`]: the table ([`Names`], built from [`Record`]s) and the pure decision
//!   [`Names::resolve`]: found, NXDOMAIN, or forward. No I/O; unit-tested.
//! - `server`: [`DnsServer`], hickory-server on UDP and TCP; answers from the table swapped in
//!   whole with [`DnsServer::set_names`] (an `ArcSwap`, so a query never sees half a table) and
//!   forwards the rest through hickory's forwarder, with a timeout and SERVFAIL when no upstream
//!   answers.
//! - [`upstreams`]: the host's resolvers, read from `/etc/resolv.conf`.
//! - `error`: [`DnsError`].
//!
//! The `bench-dns` example measures the answer latency on loopback (docs/benchmarks.md).

mod error;
pub mod names;
mod server;
pub mod upstreams;

pub use error::DnsError;
pub use names::{Names, Record, Resolution, DOMAIN};
pub use server::{DnsConfig, DnsServer, DEFAULT_FORWARD_TIMEOUT, NAME_TTL};

//! Corral's managed network between hosts: a user-space WireGuard tunnel for one host.
//!
//! Each host runs one [`Overlay`]: a TUN device (e.g. `corral0`) holding the first address of the
//! host's subnet, a UDP port, and one WireGuard session per peer host of the same environment.
//! The kernel routes each peer's subnet into the device; the overlay encrypts what it reads
//! there and sends it to that peer over UDP, and writes what peers send (decrypted, and only from
//! sources in the sending peer's subnet) back into the device. The protocol is the `boringtun`
//! crate's (`noise::Tunn`); the device is `tun-rs`'s.
//!
//! - [`keys`]: [`KeyPair`], this host's X25519 keys in a 0600 file, and [`PublicKey`] (base64).
//! - [`config`]: [`OverlayConfig`] (device, port, this host's subnet, the environment's
//!   network), [`Peer`], their checks, and [`plan_peers`], the pure diff of a peer-list change.
//!   No I/O; unit-tested.
//! - `routes`: the routes to peers' subnets, with the `ip` command (why: see the module).
//! - `tunnel`: [`Overlay`] (`start`, `set_peers`, `stats`) and its three loops: device → UDP,
//!   UDP → device, timers, each working in batches (TUN offloads, UDP GSO/GRO).
//! - `batch`: the pure plan of which encrypted datagrams go out in one GSO send.
//! - `error`: [`OverlayError`].
//!
//! The `overlay-probe` binary brings one tunnel up from the command line; the integration test
//! runs it in two network namespaces.

mod batch;
pub mod config;
mod error;
pub mod keys;
mod routes;
mod tunnel;

pub use config::{plan_peers, validate_peers, OverlayConfig, Peer, PeerPlan, MTU};
pub use error::{OverlayError, Result};
pub use keys::{KeyPair, PublicKey};
pub use tunnel::{Overlay, PeerStats};

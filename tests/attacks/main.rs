//! The attack suite: what an attacker or a careless operator would try, each as a test that
//! fails if the hole it names comes back. Real control plane processes, real SQLite files, real
//! agents' protocol spoken by a hostile peer, real file modes checked as another user. Traffic
//! stays on loopback; load is bounded in count and time.
//!
//! - [`restore`]: a restore brings back exactly the backup, or changes nothing.
//! - [`agent`]: an agent is trusted with no more than its own host.
//! - [`files`]: files on disk are private; secrets shown again are sealed at rest.
//! - [`web`]: each principal sees only its environments; revocation is immediate; cookies are
//!   not enough from another origin.
//! - [`api`]: arithmetic, quoting, names, passwords and sizes on what the API takes.
//! - [`proxy`]: the load balancer against slow and malformed clients.

mod agent;
mod api;
mod files;
mod proxy;
mod restore;
mod web;

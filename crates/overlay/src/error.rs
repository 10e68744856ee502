//! The crate's one error type.

use std::net::SocketAddr;
use std::path::PathBuf;

use ipnet::Ipv4Net;

/// Everything that can go wrong bringing up or changing the overlay. Messages say what failed
/// and, where there is one, what to check.
#[derive(Debug, thiserror::Error)]
pub enum OverlayError {
    #[error("cannot read the overlay key file {path}: {source}")]
    KeyRead { path: PathBuf, source: std::io::Error },
    #[error("cannot write the overlay key file {path}: {source} (does its directory exist and is it writable?)")]
    KeyWrite { path: PathBuf, source: std::io::Error },
    #[error("the overlay key file {path} does not hold a key: {reason} (remove it to make a new key pair; peers must then learn the new public key)")]
    KeyInvalid { path: PathBuf, reason: String },
    #[error("not a WireGuard public key ({reason}): expected 32 bytes in base64, e.g. from `public_key()`")]
    PublicKeyInvalid { reason: String },
    #[error("invalid overlay configuration: {0}")]
    Config(String),
    #[error("invalid peer {public_key} ({subnet}): {reason}")]
    Peer { public_key: String, subnet: Ipv4Net, reason: String },
    #[error("cannot create TUN device {device}: {source} ({hint})")]
    Tun { device: String, source: std::io::Error, hint: &'static str },
    #[error("cannot bind the tunnel's UDP port {addr}: {source} (is another process, or another overlay, using it?)")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("cannot run `{command}`: {source} (is iproute2 installed?)")]
    IpSpawn { command: String, source: std::io::Error },
    #[error("`{command}` failed: {stderr}")]
    IpFailed { command: String, stderr: String },
}

/// What to check when the TUN device cannot be made, from the kernel's answer.
pub(crate) fn tun_hint(e: &std::io::Error) -> &'static str {
    const EPERM: i32 = 1;
    const ENOENT: i32 = 2;
    const EBUSY: i32 = 16;
    const ENODEV: i32 = 19;
    match e.raw_os_error() {
        Some(EBUSY) => "a device of that name is in use: is another overlay running on this host?",
        Some(EPERM) => "is the agent root, or does it have CAP_NET_ADMIN?",
        Some(ENOENT) | Some(ENODEV) => "is /dev/net/tun there? `modprobe tun` loads it",
        _ => "is /dev/net/tun there, and is the agent root?",
    }
}

pub type Result<T, E = OverlayError> = std::result::Result<T, E>;

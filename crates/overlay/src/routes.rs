//! Routes to peers' subnets through the tunnel device, with the `ip` command (iproute2).
//!
//! Why `ip` and not rtnetlink: routes change only when the peer list does (never per packet), the
//! `ip` command is on every Linux host that runs Docker, its errors are the ones an operator
//! knows ("Nexthop has invalid gateway", "File exists"), and what the agent did can be replayed by
//! hand. rtnetlink's API changes between its 0.x releases and would pull in the netlink-packet
//! crates for three commands. The device's own address and MTU are set by `tun-rs` when the
//! device is made.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

use crate::error::{OverlayError, Result};

async fn ip(args: &[String]) -> Result<()> {
    let command = format!("ip {}", args.join(" "));
    let out = tokio::process::Command::new("ip")
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .map_err(|source| OverlayError::IpSpawn { command: command.clone(), source })?;
    if out.status.success() {
        tracing::debug!(%command, "route changed");
        Ok(())
    } else {
        Err(OverlayError::IpFailed { command, stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned() })
    }
}

/// Sends `subnet` through `device`, from `src` (this host's tunnel address, so replies come back
/// through the tunnel even when the host has other addresses). `replace` makes it idempotent.
pub async fn add(device: &str, subnet: Ipv4Net, src: Ipv4Addr) -> Result<()> {
    ip(&["route".into(), "replace".into(), subnet.to_string(), "dev".into(), device.into(), "src".into(), src.to_string()]).await
}

/// Removes the route to `subnet` through `device`, if it is there.
pub async fn remove(device: &str, subnet: Ipv4Net) -> Result<()> {
    ip(&["route".into(), "del".into(), subnet.to_string(), "dev".into(), device.into()]).await
}

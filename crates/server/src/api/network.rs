//! The environment's managed network as the hosts take part in it: `GET /v1/network` lists each
//! host's lease, address and tunnel, and the network itself.

use super::{EnvQuery, Json, Query};
use crate::error::ApiResult;
use crate::state::AppState;
use axum::extract::State;
use corral_store::HostState;
use serde::Serialize;

#[derive(Serialize)]
pub struct NetworkOut {
    pub environment: String,
    /// The environment's managed network, e.g. `10.42.0.0/16`.
    pub subnet: Option<String>,
    pub hosts: Vec<HostNetworkOut>,
}

#[derive(Serialize)]
pub struct HostNetworkOut {
    pub host: String,
    pub host_state: HostState,
    /// Its `/24` lease, `None` while it has none (its problem says why).
    pub subnet: Option<String>,
    pub address: String,
    /// Its tunnel's public key and port, once its agent has said them.
    pub public_key: Option<String>,
    pub tunnel_port: Option<u16>,
    /// Its tunnel as its agent last reported it; `None` while its agent is not connected or
    /// runs no tunnel.
    pub tunnel: Option<TunnelOut>,
    pub problem: Option<String>,
}

#[derive(Serialize)]
pub struct TunnelOut {
    /// `up` or `down` (then `error` says why).
    pub state: &'static str,
    #[serde(flatten)]
    pub report: crate::tunnels::TunnelState,
}

pub async fn get(State(state): State<AppState>, Query(q): Query<EnvQuery>) -> ApiResult<Json<NetworkOut>> {
    let env = q.resolve(&state).await?;
    let leases = state.store.leases(Some(env.id)).await?;
    let now = std::time::Instant::now();
    let hosts = state
        .store
        .hosts(Some(env.id))
        .await?
        .into_iter()
        .map(|h| {
            let lease = leases.iter().find(|l| l.host_id == h.id);
            HostNetworkOut {
                host: h.name,
                host_state: h.state,
                subnet: lease.map(|l| l.subnet.clone()),
                address: h.address,
                public_key: lease.and_then(|l| l.tunnel_key.clone()),
                tunnel_port: lease.and_then(|l| l.tunnel_port),
                tunnel: state.hub.tunnel(&h.id).map(|t| TunnelOut { state: if t.running { "up" } else { "down" }, report: t.aged(now) }),
                problem: h.problem,
            }
        })
        .collect();
    Ok(Json(NetworkOut { environment: env.name, subnet: env.subnet, hosts }))
}

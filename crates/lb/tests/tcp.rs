//! TCP mode: relaying, round-robin, fail-over on connect errors, and closing when no backend is up.

mod common;

use std::time::Duration;

use common::*;
use corral_lb::{LbConfig, Listener, Mode};
use tokio::io::AsyncReadExt;

fn tcp_config(port: u16, backends: &[std::net::SocketAddr]) -> LbConfig {
    LbConfig { listeners: vec![Listener { port, mode: Mode::Tcp, routes: vec![route(None, None, backends)] }] }
}

#[tokio::test]
async fn round_trip_alternates_between_backends() {
    init_tracing();
    let a = TcpBackend::start("a").await;
    let b = TcpBackend::start("b").await;
    let (lb, port) = lb_with(|p| tcp_config(p, &[a.addr, b.addr])).await;
    let mut replies = Vec::new();
    for i in 0..4 {
        replies.push(tcp_round_trip(port, &format!("ping{i}")).await.unwrap());
    }
    assert_eq!(replies, ["a ping0\n", "b ping1\n", "a ping2\n", "b ping3\n"]);
    let st = &lb.status()[0];
    assert_eq!(st.mode, Mode::Tcp);
    assert!(st.backends.iter().all(|b| b.requests_served == 2));
    lb.shutdown().await;
}

#[tokio::test]
async fn fails_over_past_refusing_and_killed_backends() {
    init_tracing();
    let a = TcpBackend::start("a").await;
    let b = TcpBackend::start("b").await;
    let dead = refusing_addr();
    let (lb, port) = lb_with(|p| tcp_config(p, &[dead, a.addr, b.addr])).await;
    for i in 0..6 {
        let reply = tcp_round_trip(port, &format!("x{i}")).await.unwrap();
        assert!(reply == format!("a x{i}\n") || reply == format!("b x{i}\n"), "{reply:?}");
    }
    b.kill().await;
    for i in 0..6 {
        assert_eq!(tcp_round_trip(port, &format!("y{i}")).await.unwrap(), format!("a y{i}\n"));
    }
    let st = &lb.status()[0];
    assert_eq!(st.backends.iter().filter(|s| s.up).count(), 1);
    lb.shutdown().await;
}

#[tokio::test]
async fn no_backend_closes_the_client_at_once() {
    init_tracing();
    let dead = refusing_addr();
    for backends in [vec![], vec![dead]] {
        let (lb, port) = lb_with(|p| tcp_config(p, &backends)).await;
        let mut s = tokio::net::TcpStream::connect((LOCALHOST, port)).await.unwrap();
        let mut buf = [0u8; 16];
        let n = tokio::time::timeout(Duration::from_secs(2), s.read(&mut buf)).await.expect("closed promptly");
        assert!(matches!(n, Ok(0) | Err(_)), "{n:?}");
        lb.shutdown().await;
    }
}

#[tokio::test]
async fn tcp_listener_needs_exactly_one_route() {
    init_tracing();
    let lb = corral_lb::LoadBalancer::new(LOCALHOST);
    let port = free_port();
    let config = LbConfig { listeners: vec![Listener { port, mode: Mode::Tcp, routes: vec![route(None, None, &[]), route(None, None, &[])] }] };
    let errors = lb.apply(&config).await;
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].port(), port);
    assert!(errors[0].to_string().contains("exactly one route"), "{}", errors[0]);
    assert!(lb.status().is_empty());
    lb.shutdown().await;
}

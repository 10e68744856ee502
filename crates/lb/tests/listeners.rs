//! Listener lifecycle: removal drains, ports in use are reported, apply is idempotent,
//! mode changes rebind, shutdown lets requests finish.

mod common;

use std::time::{Duration, Instant};

use common::*;
use corral_lb::{LbConfig, LbError, LoadBalancer, Mode};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removed_listener_refuses_new_connections_but_finishes_the_request_in_flight() {
    init_tracing();
    let a = HttpBackend::start("a").await;
    let lb = LoadBalancer::new(LOCALHOST);
    let (gone, kept) = (free_port(), free_port());
    let both = LbConfig { listeners: vec![http_listener(gone, vec![route(None, None, &[a.addr])]), http_listener(kept, vec![route(None, None, &[a.addr])])] };
    assert!(lb.apply(&both).await.is_empty());

    let c = client();
    let slow = tokio::spawn({
        let c = c.clone();
        async move { get(&c, gone, "x", "/slow?delay_ms=800").await }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let only_kept = LbConfig { listeners: vec![both.listeners[1].clone()] };
    let t = Instant::now();
    assert!(lb.apply(&only_kept).await.is_empty());
    assert!(t.elapsed() < Duration::from_millis(300), "apply waited for the in-flight request");

    assert!(tokio::net::TcpStream::connect((LOCALHOST, gone)).await.is_err(), "removed port still accepts");
    let r = slow.await.unwrap().unwrap();
    assert_eq!((r.status, r.body.as_str()), (200, "a"));
    assert_eq!(get(&c, kept, "x", "/").await.unwrap().body, "a");
    assert_eq!(lb.status().iter().map(|s| s.port).collect::<Vec<_>>(), [kept]);
    lb.shutdown().await;
}

#[tokio::test]
async fn port_in_use_is_reported_and_other_listeners_still_work() {
    init_tracing();
    let a = HttpBackend::start("a").await;
    let squatter = std::net::TcpListener::bind((LOCALHOST, 0)).unwrap();
    let taken = squatter.local_addr().unwrap().port();
    let free = free_port();
    let lb = LoadBalancer::new(LOCALHOST);
    let config =
        LbConfig { listeners: vec![http_listener(taken, vec![route(None, None, &[a.addr])]), http_listener(free, vec![route(None, None, &[a.addr])])] };
    let errors = lb.apply(&config).await;
    assert_eq!(errors.len(), 1, "{errors:?}");
    match &errors[0] {
        LbError::Bind { port, reason } => {
            assert_eq!(*port, taken);
            assert!(!reason.is_empty());
        }
        other => panic!("expected a bind error, got {other:?}"),
    }
    let msg = errors[0].to_string();
    assert!(msg.contains(&taken.to_string()) && msg.to_lowercase().contains("in use"), "{msg}");
    assert_eq!(get(&client(), free, "x", "/").await.unwrap().body, "a");

    // Once the port is free, applying the same config again picks it up.
    drop(squatter);
    assert!(lb.apply(&config).await.is_empty());
    assert_eq!(get(&client(), taken, "x", "/").await.unwrap().body, "a");
    lb.shutdown().await;
}

#[tokio::test]
async fn applying_the_same_config_twice_changes_nothing() {
    init_tracing();
    let a = HttpBackend::start("a").await;
    let (lb, port) = lb_with(|p| one_listener(p, &[a.addr])).await;
    let c = client();
    for _ in 0..3 {
        get(&c, port, "x", "/").await.unwrap();
    }
    let config = one_listener(port, &[a.addr]);
    for _ in 0..3 {
        assert!(lb.apply(&config).await.is_empty());
    }
    // Same keep-alive connection, same counters.
    assert_eq!(get(&c, port, "x", "/").await.unwrap().body, "a");
    assert_eq!(lb.status()[0].backends[0].requests_served, 4);
    lb.shutdown().await;
}

#[tokio::test]
async fn changing_a_ports_mode_rebinds_it() {
    init_tracing();
    let h = HttpBackend::start("h").await;
    let t = TcpBackend::start("t").await;
    let (lb, port) = lb_with(|p| one_listener(p, &[h.addr])).await;
    assert_eq!(get(&client(), port, "x", "/").await.unwrap().body, "h");
    let mut tcp = one_listener(port, &[t.addr]);
    tcp.listeners[0].mode = Mode::Tcp;
    assert!(lb.apply(&tcp).await.is_empty());
    assert_eq!(tcp_round_trip(port, "hi").await.unwrap(), "t hi\n");
    assert_eq!(lb.status()[0].mode, Mode::Tcp);
    lb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_the_request_in_flight_finish() {
    init_tracing();
    let a = HttpBackend::start("a").await;
    let (lb, port) = lb_with(|p| one_listener(p, &[a.addr])).await;
    let c = client();
    let slow = tokio::spawn({
        let c = c.clone();
        async move { get(&c, port, "x", "/?delay_ms=500").await }
    });
    tokio::time::sleep(Duration::from_millis(150)).await;
    let t = Instant::now();
    lb.shutdown().await;
    let waited = t.elapsed();
    let r = slow.await.unwrap().unwrap();
    assert_eq!((r.status, r.body.as_str()), (200, "a"));
    assert!(waited >= Duration::from_millis(200) && waited < Duration::from_secs(5), "{waited:?}");
    assert!(tokio::net::TcpStream::connect((LOCALHOST, port)).await.is_err());
    // A config arriving after shutdown binds nothing.
    assert!(lb.apply(&one_listener(port, &[a.addr])).await.is_empty());
    assert!(lb.status().is_empty());
}

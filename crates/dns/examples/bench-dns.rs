//! `bench-dns`: the latency of the service-discovery DNS server's own answers, on loopback.
//!
//! Starts a [`DnsServer`] on 127.0.0.1 with a table of an environment of `--stacks` stacks ×
//! `--services` services × `--instances` instances, and swaps a new table in every
//! `--swap-ms` (as the agent does when containers change). `--clients` UDP clients, each
//! sending its next query when the previous one is answered (as a container's stub resolver
//! does), fire `--queries` queries in all: a mix of `SERVICE` (relative to the asker),
//! `SERVICE.STACK`, container names and unknown names (NXDOMAIN). Every answer is checked.
//! Prints p50/p90/p99/max latency and queries per second, with the issue's target next to them
//! (p99 ≤ 2 ms). Exits 0 whether the target is met or not; non-zero when it cannot run or an
//! answer is wrong.
//!
//! ```sh
//! cargo run --release -p corral-dns --example bench-dns -- [--queries 200000] [--clients 4]
//! ```
//!
//! With `--server ADDR`, no server is started: the clients ask the one at ADDR (e.g. run in a
//! container's network namespace, the engine's resolver 127.0.0.11:53 or the agent's server on the
//! gateway) the `--ask` names in turn, each of which must have answers. With `--until-answered`
//! it asks the first `--ask` name every 5 ms until it has an answer, then prints the wall-clock
//! time of that answer in milliseconds since the Unix epoch (tests/bench/dns_names.rs).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;
use corral_dns::{DnsServer, Names, Record};
use hickory_server::proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_server::proto::rr::{Name, RecordType};
use tokio::net::UdpSocket;
use tokio::sync::broadcast;

#[derive(Parser, Debug)]
#[command(about = "Latency of the service-discovery DNS server's answers on loopback (p50/p99, queries/s)")]
struct Args {
    /// Queries in all, after the warm-up.
    #[arg(long, default_value_t = 200_000)]
    queries: usize,
    /// Concurrent clients, each with its own UDP socket and one query in flight.
    #[arg(long, default_value_t = 4)]
    clients: usize,
    #[arg(long, default_value_t = 50)]
    stacks: usize,
    #[arg(long, default_value_t = 4)]
    services: usize,
    #[arg(long, default_value_t = 5)]
    instances: usize,
    /// A new table is swapped in this often during the run (0: never).
    #[arg(long, default_value_t = 100)]
    swap_ms: u64,
    /// Worker threads of the runtime that serves DNS and runs the clients.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Ask this running server instead of starting one (ADDRESS:PORT).
    #[arg(long)]
    server: Option<SocketAddr>,
    /// With --server: a name to ask, in turn with the others; each must have answers. Repeatable.
    #[arg(long = "ask", requires = "server")]
    ask: Vec<String>,
    /// With --server: wait until the first --ask name has an answer, and print when (ms since the epoch).
    #[arg(long, requires = "server")]
    until_answered: bool,
}

const ENV: &str = "bench";
/// The first client asks from here; client i from 127.0.0.(2+i). Each is a container of stack i.
const FIRST_ASKER: u8 = 2;
/// How long one query may wait for its answer before the benchmark fails.
const QUERY_TIMEOUT: Duration = Duration::from_secs(1);

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.clients == 0 || args.clients > 200 || args.stacks < args.clients || args.services == 0 || args.instances == 0 {
        bail!("give 1-200 clients, at least as many stacks as clients, and at least one service and instance");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(args.threads).enable_all().build()?;
    runtime.block_on(run(args))
}

/// The environment's containers; stack s's first instance of service 0 has the address of
/// client s, so that client's relative names are stack s's. `generation` changes the other
/// addresses, so that every swap really is a new table.
fn records(args: &Args, generation: u8) -> Vec<Record> {
    let mut records = Vec::with_capacity(args.stacks * args.services * args.instances);
    for stack in 0..args.stacks {
        for service in 0..args.services {
            for instance in 0..args.instances {
                let ip = if service == 0 && instance == 0 && stack < args.clients {
                    Ipv4Addr::new(127, 0, 0, FIRST_ASKER + stack as u8)
                } else {
                    Ipv4Addr::new(10, generation, stack as u8, (service * args.instances + instance + 1) as u8)
                };
                records.push(Record {
                    environment: ENV.into(),
                    container: format!("s{stack}-svc{service}-{}", instance + 1),
                    stack: format!("s{stack}"),
                    service: format!("svc{service}"),
                    ip,
                    // One instance in five is stopped: the table is not all hits.
                    running: instance % 5 != 4,
                });
            }
        }
    }
    records
}

/// The names client `client` asks in turn, with whether each must have answers.
fn names(args: &Args, client: usize) -> Vec<(Name, bool)> {
    let other = (client + 1) % args.stacks;
    let mut names = Vec::new();
    for service in 0..args.services {
        names.push((format!("svc{service}."), true));
        names.push((format!("svc{service}.s{other}."), true));
        names.push((format!("s{other}-svc{service}-1."), true));
    }
    names.push(("nothing-here.".into(), false));
    names.push((format!("nothing.s{other}."), false));
    names.into_iter().map(|(name, found)| (Name::from_ascii(&name).expect("a valid name"), found)).collect()
}

async fn run(args: Args) -> anyhow::Result<()> {
    if let Some(server) = args.server {
        return ask_running(&args, server).await;
    }
    let (_shutdown, rx) = broadcast::channel(1);
    let (server, addr) = DnsServer::start("127.0.0.1:0".parse()?, Vec::new(), rx).await?;
    let server = Arc::new(server);
    server.set_names(Names::new(ENV, records(&args, 0)));
    let args = Arc::new(args);
    println!(
        "bench-dns: {} containers ({} stacks × {} services × {} instances), {} clients, {} queries, a new table every {} ms, {} worker threads",
        args.stacks * args.services * args.instances,
        args.stacks,
        args.services,
        args.instances,
        args.clients,
        args.queries,
        args.swap_ms,
        args.threads
    );

    // Warm-up: every client, every name, a few times.
    run_clients(&args, addr, args.clients * 2_000).await?;

    let done = Arc::new(AtomicBool::new(false));
    let swaps = Arc::new(AtomicUsize::new(0));
    let swapper = (args.swap_ms > 0).then(|| {
        let (server, args, done, swaps) = (server.clone(), args.clone(), done.clone(), swaps.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(args.swap_ms));
            tick.tick().await;
            while !done.load(Ordering::Relaxed) {
                tick.tick().await;
                let generation = swaps.fetch_add(1, Ordering::Relaxed) as u8 % 200 + 1;
                server.set_names(Names::new(ENV, records(&args, generation)));
            }
        })
    });

    let started = Instant::now();
    let latencies = run_clients(&args, addr, args.queries).await?;
    let elapsed = started.elapsed();
    done.store(true, Ordering::Relaxed);
    if let Some(swapper) = swapper {
        swapper.await?;
    }

    report(latencies, elapsed, swaps.load(Ordering::Relaxed));
    Ok(())
}

/// Prints the figures of a run.
fn report(mut latencies: Vec<Duration>, elapsed: Duration, swaps: usize) {
    latencies.sort_unstable();
    let percentile = |p: f64| {
        let index = ((latencies.len() as f64 * p).ceil() as usize).clamp(1, latencies.len()) - 1;
        latencies[index].as_secs_f64() * 1000.0
    };
    let p99 = percentile(0.99);
    println!("queries answered:  {} in {:.2} s, {swaps} table swaps", latencies.len(), elapsed.as_secs_f64());
    println!("queries/s:         {:.0}", latencies.len() as f64 / elapsed.as_secs_f64());
    println!("latency p50:       {:.3} ms", percentile(0.50));
    println!("latency p90:       {:.3} ms", percentile(0.90));
    println!("latency p99:       {p99:.3} ms   (target ≤ 2 ms: {})", if p99 <= 2.0 { "met" } else { "NOT met" });
    println!("latency max:       {:.3} ms", percentile(1.0));
}

/// `total` queries spread over the clients; the latency of each.
async fn run_clients(args: &Arc<Args>, server: SocketAddr, total: usize) -> anyhow::Result<Vec<Duration>> {
    let mut tasks = Vec::new();
    for client in 0..args.clients {
        let count = total / args.clients + usize::from(client < total % args.clients);
        let names = names(args, client);
        tasks.push(tokio::spawn(async move { client_loop(client, server, names, count).await }));
    }
    let mut latencies = Vec::with_capacity(total);
    for task in tasks {
        latencies.extend(task.await??);
    }
    Ok(latencies)
}

async fn client_loop(client: usize, server: SocketAddr, names: Vec<(Name, bool)>, count: usize) -> anyhow::Result<Vec<Duration>> {
    let from = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, FIRST_ASKER + client as u8)), 0);
    ask_from(from, server, &names, count).await.with_context(|| format!("client {client}"))
}

/// `count` queries from `from` to `server`, one at a time, the names in turn; the latency of each.
async fn ask_from(from: SocketAddr, server: SocketAddr, names: &[(Name, bool)], count: usize) -> anyhow::Result<Vec<Duration>> {
    let socket = UdpSocket::bind(from).await.with_context(|| format!("binding a client on {from}"))?;
    socket.connect(server).await?;
    let mut latencies = Vec::with_capacity(count);
    let mut buffer = vec![0u8; 4096];
    for i in 0..count {
        let (name, found) = &names[i % names.len()];
        let id = (i % 65_536) as u16;
        let mut message = Message::new(id, MessageType::Query, OpCode::Query);
        message.metadata.recursion_desired = true;
        message.add_query(Query::query(name.clone(), RecordType::A));
        let bytes = message.to_vec()?;

        let started = Instant::now();
        socket.send(&bytes).await?;
        let response = loop {
            let len = tokio::time::timeout(QUERY_TIMEOUT, socket.recv(&mut buffer))
                .await
                .with_context(|| format!("no answer to {name} within {QUERY_TIMEOUT:?}"))??;
            let response = Message::from_vec(&buffer[..len])?;
            // A late answer to an earlier query is not this one's.
            if response.metadata.id == id {
                break response;
            }
        };
        latencies.push(started.elapsed());

        let code = response.metadata.response_code;
        let ok = if *found { code == ResponseCode::NoError && !response.answers.is_empty() } else { code == ResponseCode::NXDomain };
        if !ok {
            bail!("wrong answer to {name}: {code} with {} answers", response.answers.len());
        }
    }
    Ok(latencies)
}

/// `--server`: the latency of a running server's answers to the `--ask` names, or (with
/// `--until-answered`) when the first of them is first answered.
async fn ask_running(args: &Args, server: SocketAddr) -> anyhow::Result<()> {
    if args.ask.is_empty() {
        bail!("give the names to ask with --ask NAME");
    }
    let names: Vec<(Name, bool)> =
        args.ask.iter().map(|n| Ok((Name::from_ascii(format!("{}.", n.trim_end_matches('.')))?, true))).collect::<anyhow::Result<_>>()?;
    let from: SocketAddr = "0.0.0.0:0".parse()?;
    if args.until_answered {
        loop {
            if ask_from(from, server, &names[..1], 1).await.is_ok() {
                let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?;
                println!("{}", now.as_millis());
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    println!("bench-dns: {} queries of {:?} to {server}, one at a time", args.queries, args.ask);
    ask_from(from, server, &names, 500.min(args.queries)).await?;
    let started = Instant::now();
    let latencies = ask_from(from, server, &names, args.queries).await?;
    report(latencies, started.elapsed(), 0);
    Ok(())
}

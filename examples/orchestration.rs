//! The orchestration loop in one process, as far as it is built today: a
//! supervisor tree runs real TCP servers on 127.0.0.1, probes them, restarts
//! a crashed one (which comes back on a new port and is routed to again only
//! once ready), scales a replica group up and down, supervises an OS process,
//! and shuts everything down in reverse start order. A client calls the
//! replicas through the resilience stack (retry with a budget, circuit
//! breaker, timeouts), so a replica that dies under it costs a retry, not an
//! error.
//!
//! ```text
//! cargo run --example orchestration              # scenario, then serve until Ctrl-C
//! cargo run --example orchestration -- --bounded # scenario, then exit (CI)
//! ```

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use orch::core::{
    BackoffPolicy, ChildSpec, EventKind, InstanceId, InstanceInfo, ProbeSpec, ProcessSpec, RestartType,
    Strategy, Supervisor, SupervisorSpec, TcpProbe, Update,
};
use orch::resilience::{AlwaysSafe, CircuitBreakerConfig, ResilienceLayer, RetryConfig};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::time::Instant;
use tower::{Layer, ServiceExt};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// One API replica: a line protocol server on an ephemeral loopback port.
/// `ping` answers `pong from <id>`; `crash` simulates a bug (a panic).
fn api_replica() -> ChildSpec {
    ChildSpec::task("api", |ctx| async move {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        ctx.announce(listener.local_addr()?);
        loop {
            let (stream, _) = tokio::select! {
                () = ctx.cancelled() => return Ok::<_, BoxError>(()),
                accepted = listener.accept() => accepted?,
            };
            let mut lines = BufReader::new(stream);
            let mut line = String::new();
            // Probes connect and hang up without a line: that is fine.
            if lines.read_line(&mut line).await.unwrap_or(0) == 0 {
                continue;
            }
            match line.trim() {
                "crash" => panic!("simulated bug in {}", ctx.id()),
                _ => {
                    let reply = format!("pong from {} (generation {})\n", ctx.id(), ctx.generation());
                    lines.get_mut().write_all(reply.as_bytes()).await?;
                }
            }
        }
    })
    .replicas(3)
    .ready_on_announce()
    .readiness(ProbeSpec::new(TcpProbe::new()).period(Duration::from_millis(200)))
    .liveness(ProbeSpec::new(TcpProbe::new()).period(Duration::from_millis(500)))
    .backoff(BackoffPolicy::default().initial(Duration::from_millis(50)))
    .shutdown_grace(Duration::from_secs(2))
}

/// An OS process child: fails on its first run, then runs until SIGTERM.
fn reporter(marker: &std::path::Path) -> ChildSpec {
    let script = "if [ ! -e \"$MARK\" ]; then touch \"$MARK\"; exit 3; fi; trap 'exit 0' TERM; while :; do sleep 0.1; done";
    ChildSpec::process(
        "reporter",
        ProcessSpec::new("sh")
            .arg("-c")
            .arg(script)
            .env("MARK", marker.display().to_string()),
    )
    .restart(RestartType::Transient)
    .backoff(
        BackoffPolicy::default()
            .initial(Duration::from_millis(100))
            .jitter(false),
    )
    .shutdown_grace(Duration::from_secs(2))
}

/// A nested one-for-all supervisor: queue and worker restart together.
fn jobs() -> Result<ChildSpec, BoxError> {
    let task = |id: &str| {
        ChildSpec::task(id, |ctx| async move {
            ctx.cancelled().await;
            Ok::<_, BoxError>(())
        })
    };
    let spec = SupervisorSpec::builder("jobs")
        .strategy(Strategy::OneForAll)
        .child(task("queue"))
        .child(task("worker"))
        .build()?;
    Ok(ChildSpec::supervisor(spec))
}

async fn ask(addr: SocketAddr, line: &str) -> Result<String, BoxError> {
    let mut stream = TcpStream::connect(addr).await?;
    stream.write_all(format!("{line}\n").as_bytes()).await?;
    let mut reply = String::new();
    BufReader::new(stream).read_line(&mut reply).await?;
    Ok(reply.trim().to_owned())
}

/// A client that sends lines round-robin over a fixed list of addresses,
/// wrapped in the resilience stack. The list is taken once and goes stale
/// when a replica dies (the registry and balancer of `orch-discovery` will
/// keep it live); retries carry the calls that hit a dead address to the
/// next one. `attempts` counts what reached the network.
fn resilient_client(
    addresses: Vec<SocketAddr>,
    attempts: Arc<AtomicUsize>,
) -> Result<
    impl tower::Service<String, Response = String, Error = orch::resilience::ResilienceError> + Clone,
    BoxError,
> {
    let next = Arc::new(AtomicUsize::new(0));
    let transport = tower::service_fn(move |line: String| {
        let addr = addresses
            .get(next.fetch_add(1, Ordering::Relaxed) % addresses.len().max(1))
            .copied();
        attempts.fetch_add(1, Ordering::Relaxed);
        async move { ask(addr.ok_or("no address")?, &line).await }
    });
    let stack = ResilienceLayer::builder()
        .overall_timeout(Duration::from_secs(3))
        .retry(RetryConfig::default().max_attempts(3))
        .circuit_breaker(CircuitBreakerConfig::default().name("api"))
        .attempt_timeout(Duration::from_millis(500))
        // `ping` is a read: safe to repeat.
        .safety(AlwaysSafe)
        .build()?;
    Ok(stack.layer(transport))
}

/// The ready API replicas and their addresses, as a registry would see them.
type Rotation = BTreeMap<InstanceId, SocketAddr>;

/// The rotation in a snapshot of the tree's instances.
fn api_rotation(instances: &[InstanceInfo]) -> Rotation {
    instances
        .iter()
        .filter(|i| &*i.child == "api" && i.state.is_ready())
        .filter_map(|i| Some((i.id.clone(), i.address?)))
        .collect()
}

async fn wait_rotation(rx: &mut watch::Receiver<Rotation>, pred: impl Fn(&Rotation) -> bool) -> Rotation {
    match tokio::time::timeout(Duration::from_secs(20), rx.wait_for(|r| pred(r))).await {
        Ok(Ok(r)) => r.clone(),
        _ => panic!("the rotation never reached the expected state"),
    }
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let bounded = std::env::args().any(|a| a == "--bounded");
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .init();

    // The simulated bug panics on purpose: one line instead of a backtrace.
    std::panic::set_hook(Box::new(|info| {
        eprintln!("panic (caught by the supervisor): {info}")
    }));

    let marker = std::env::temp_dir().join(format!("orch-example-{}.mark", std::process::id()));
    let spec = SupervisorSpec::builder("app")
        .child(api_replica())
        .child(reporter(&marker))
        .child(jobs()?)
        .build()?;
    let handle = Supervisor::start(spec)?;

    // The subscriber: prints every event and keeps the rotation of ready
    // API replicas up to date, starting from the snapshot.
    let sub = handle.subscribe();
    // Replicas that were ready before the subscription are in its snapshot,
    // not in its events.
    let (rotation_tx, mut rotation) = watch::channel(api_rotation(&sub.snapshot));
    let t0 = Instant::now();
    let printer = tokio::spawn(async move {
        let mut events = sub.events;
        while let Some(update) = events.next().await {
            let e = match update {
                Update::Event(e) => e,
                // A lagging subscriber gets a fresh snapshot instead of the missed events.
                Update::Resync(snapshot) => {
                    rotation_tx.send_replace(api_rotation(&snapshot));
                    continue;
                }
            };
            println!(
                "{:>6} ms  {:<22} gen {}  {:?}",
                t0.elapsed().as_millis(),
                e.id,
                e.generation,
                e.kind
            );
            if &*e.child == "api" {
                rotation_tx.send_modify(|r| match e.kind {
                    EventKind::Ready { address: Some(addr) } => {
                        r.insert(e.id.clone(), addr);
                    }
                    EventKind::Ready { address: None } => {}
                    _ => {
                        r.remove(&e.id);
                    }
                });
            }
        }
    });

    println!("--- waiting for 3 API replicas to be ready");
    let ready = wait_rotation(&mut rotation, |r| r.len() == 3).await;
    for addr in ready.values() {
        println!("--- client: {}", ask(*addr, "ping").await?);
    }

    let (victim, addr) = ready
        .iter()
        .nth(1)
        .map(|(i, a)| (i.clone(), *a))
        .ok_or("no replica")?;
    println!("--- client: crashing {victim} at {addr}");
    let _ = ask(addr, "crash").await;

    let attempts = Arc::new(AtomicUsize::new(0));
    let client = resilient_client(ready.values().copied().collect(), attempts.clone())?;
    let pings = 6;
    for _ in 0..pings {
        client.clone().oneshot("ping".to_owned()).await?;
    }
    println!(
        "--- client (retry + breaker + timeouts, stale address list): {pings}/{pings} pings answered \
         with {} attempts",
        attempts.load(Ordering::Relaxed)
    );
    let back = wait_rotation(&mut rotation, |r| r.get(&victim).is_some_and(|a| *a != addr)).await;
    let new_addr = back[&victim];
    println!(
        "--- {victim} is back on {new_addr}: {}",
        ask(new_addr, "ping").await?
    );

    println!("--- scaling api to 5");
    handle.resize("api", 5).await?;
    wait_rotation(&mut rotation, |r| r.len() == 5).await;
    println!("--- scaling api to 2");
    handle.resize("api", 2).await?;
    let left = wait_rotation(&mut rotation, |r| r.len() == 2).await;
    println!("--- rotation now: {:?}", left.keys().collect::<Vec<_>>());

    println!("--- waiting for the reporter process to be back after its failed first run");
    let reporter_back = async {
        while !handle
            .instances()
            .iter()
            .any(|i| &*i.child == "reporter" && i.generation == 1 && i.state.is_ready())
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(20), reporter_back).await?;

    for child in handle.children().await? {
        println!(
            "--- child {:<9} kind {:<10} desired {} instances {} ready {}",
            child.id, child.kind, child.desired, child.instances, child.ready
        );
    }

    if !bounded {
        println!("--- serving; press Ctrl-C to shut down");
        tokio::signal::ctrl_c().await?;
    }
    println!("--- shutting down (reverse start order)");
    handle.shutdown().await?;
    printer.await?;
    let _ = std::fs::remove_file(&marker);
    println!("--- done");
    Ok(())
}

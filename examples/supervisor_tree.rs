//! The supervisor tree, focused: process supervision, crash and restart,
//! scaling a replica group, draining, and shutdown in reverse start order,
//! over a plain line protocol on raw TCP so that nothing but the supervisor
//! and its client path is in view.
//!
//! - A tree of three children: `api`, a replica group of TCP servers on
//!   127.0.0.1 with TCP readiness and liveness probes; `reporter`, an OS
//!   process that fails its first run and is restarted (transient); `jobs`,
//!   a nested one-for-all supervisor.
//! - The supervisor's lifecycle events feed a registry (`SupervisorSource`),
//!   the registry a P2C peak-EWMA balancer, and calls go through the
//!   resilience stack (retry with a budget, circuit breaker, timeouts).
//! - One replica crashes: it leaves the balancer before it restarts, comes
//!   back on a new port, and is routed to again once ready. The group is
//!   scaled to 5 and then to 2: the replicas scaled away drain out of the
//!   balancer before they stop. Every event is printed as it happens.
//!
//! The whole loop with HTTP and gRPC services, the autoscaler, versioning,
//! idempotency and chaos is the `orchestration` example.
//!
//! ```text
//! cargo run --example supervisor_tree            # the scenario, a summary, then exit
//! cargo run --example supervisor_tree -- --serve # the scenario, then serve until Ctrl-C or SIGTERM
//! ```

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use orch::core::{
    BackoffPolicy, ChildSpec, EventKind, ProbeSpec, ProcessSpec, RestartType, Strategy, Supervisor,
    SupervisorHandle, SupervisorSpec, TcpProbe, Update, shutdown_signal,
};
use orch::discovery::{
    Endpoint, EndpointId, Registry, SupervisorSource,
    balance::{Algorithm, Balancer, BalancerConfig, connect_fn},
};
use orch::resilience::{AlwaysSafe, CircuitBreakerConfig, ResilienceLayer, RetryConfig};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
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
    // Scaled-away replicas keep serving this long after `Stopping`, which
    // takes them out of the registry and the balancer first.
    .drain_delay(Duration::from_millis(300))
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

/// The client of the API replicas: a balancer over the registry's endpoints
/// (one line-protocol connection per call), as a shared handle that any
/// task can clone and that no outage leaves failed, wrapped in the resilience stack. `attempts` counts what reached
/// the network.
fn api_client(
    registry: &Registry,
    attempts: Arc<AtomicUsize>,
) -> Result<
    impl tower::Service<String, Response = String, Error = orch::resilience::ResilienceError> + Clone,
    BoxError,
> {
    let connect = connect_fn(move |endpoint: &Endpoint| {
        let addr = endpoint.address();
        let attempts = Arc::clone(&attempts);
        tower::service_fn(move |line: String| {
            attempts.fetch_add(1, Ordering::Relaxed);
            async move { ask(addr, &line).await }
        })
    });
    // P2C over peak-EWMA, with a default RTT for endpoints not yet measured
    // that suits loopback (linkerd's 30 ms assumes a network: against
    // replicas answering in microseconds, a new replica would wait long for
    // its first request).
    let config = BalancerConfig::default()
        .name("api")
        .algorithm(Algorithm::peak_ewma().default_rtt(Duration::from_millis(1)));
    let balancer = Balancer::with_config(&config, registry.changes(), connect)?;
    let shared = balancer.into_shared();
    let stack = ResilienceLayer::builder()
        .overall_timeout(Duration::from_secs(3))
        .retry(RetryConfig::default().max_attempts(3))
        .circuit_breaker(CircuitBreakerConfig::default().name("api"))
        .attempt_timeout(Duration::from_millis(500))
        // `ping` is a read: safe to repeat.
        .safety(AlwaysSafe)
        .build()?;
    Ok(stack.layer(shared))
}

/// The endpoints, by id.
fn by_id(endpoints: &[Endpoint]) -> BTreeMap<EndpointId, SocketAddr> {
    endpoints.iter().map(|e| (e.id().clone(), e.address())).collect()
}

/// Waits (at most 20 s) until the registry's endpoints satisfy `pred`.
async fn wait_endpoints(
    registry: &Registry,
    pred: impl Fn(&BTreeMap<EndpointId, SocketAddr>) -> bool,
) -> BTreeMap<EndpointId, SocketAddr> {
    let wait = registry.wait_until(move |endpoints| pred(&by_id(endpoints)));
    match tokio::time::timeout(Duration::from_secs(20), wait).await {
        Ok(found) => by_id(&found),
        Err(_) => panic!("the registry never reached the expected state"),
    }
}

/// Pings sent and answered over the whole run, for the summary.
static PINGS_SENT: AtomicUsize = AtomicUsize::new(0);
static PINGS_ANSWERED: AtomicUsize = AtomicUsize::new(0);

/// Lifecycle events seen, by kind, for the summary.
#[derive(Debug, Default)]
struct EventTally {
    ready: usize,
    exited: usize,
    restarts: usize,
    stopped: usize,
}

impl EventTally {
    fn count(&mut self, kind: &EventKind) {
        match kind {
            EventKind::Ready { .. } => self.ready += 1,
            EventKind::Exited { .. } => self.exited += 1,
            EventKind::Restarting { .. } => self.restarts += 1,
            EventKind::Stopped { .. } => self.stopped += 1,
            _ => {}
        }
    }
}

/// Sends `n` pings through `client`, ten at a time, and counts which
/// replica answered.
async fn ping_all<S>(client: &S, n: usize) -> Result<BTreeMap<String, usize>, BoxError>
where
    S: tower::Service<String, Response = String, Error = orch::resilience::ResilienceError> + Clone,
{
    let mut answered = BTreeMap::new();
    for batch in (0..n).collect::<Vec<_>>().chunks(10) {
        let calls = batch.iter().map(|_| client.clone().oneshot("ping".to_owned()));
        PINGS_SENT.fetch_add(batch.len(), Ordering::Relaxed);
        for reply in futures_util::future::join_all(calls).await {
            let reply = reply?;
            PINGS_ANSWERED.fetch_add(1, Ordering::Relaxed);
            let replica = reply.split_whitespace().nth(2).unwrap_or("?").to_owned();
            *answered.entry(replica).or_insert(0) += 1;
        }
    }
    Ok(answered)
}

/// The scenario: balance over the replicas, crash one, scale up and down,
/// wait for the reporter process; with `serve`, then serve until stopped.
async fn scenario(handle: &SupervisorHandle, registry: &Registry, serve: bool) -> Result<(), BoxError> {
    println!("--- waiting for 3 API replicas to be in the registry");
    let ready = wait_endpoints(registry, |r| r.len() == 3).await;
    println!("--- registry: {:?}", ready.keys().collect::<Vec<_>>());

    let attempts = Arc::new(AtomicUsize::new(0));
    let client = api_client(registry, attempts.clone())?;
    let pings = 30;
    println!("--- balancer: {:?}", ping_all(&client, pings).await?);

    let (victim, addr) = ready
        .iter()
        .nth(1)
        .map(|(i, a)| (i.clone(), *a))
        .ok_or("no replica")?;
    println!("--- client: crashing {victim} at {addr}");
    let _ = ask(addr, "crash").await;
    attempts.store(0, Ordering::Relaxed);
    let answered = ping_all(&client, pings).await?;
    println!(
        "--- balancer while {victim} restarts: {pings}/{pings} pings answered with {} attempts: {answered:?}",
        attempts.load(Ordering::Relaxed)
    );
    let back = wait_endpoints(registry, |r| r.get(&victim).is_some_and(|a| *a != addr)).await;
    println!("--- {victim} is back on {}", back[&victim]);
    println!("--- balancer: {:?}", ping_all(&client, pings).await?);

    println!("--- scaling api to 5");
    handle.resize("api", 5).await?;
    wait_endpoints(registry, |r| r.len() == 5).await;
    println!("--- balancer over 5: {:?}", ping_all(&client, 50).await?);
    println!("--- scaling api to 2 (the 3 leaving drain out of the balancer first)");
    handle.resize("api", 2).await?;
    let left = wait_endpoints(registry, |r| r.len() == 2).await;
    println!("--- registry now: {:?}", left.keys().collect::<Vec<_>>());
    attempts.store(0, Ordering::Relaxed);
    let answered = ping_all(&client, pings).await?;
    println!(
        "--- balancer over 2: {answered:?} with {} attempts",
        attempts.load(Ordering::Relaxed)
    );

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

    if serve {
        println!("--- serving; Ctrl-C or SIGTERM shuts down");
        std::future::pending::<()>().await;
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let serve = std::env::args().any(|a| a == "--serve");
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

    // The event log: every lifecycle event, as it happens.
    let sub = handle.subscribe();
    let t0 = Instant::now();
    let printer = tokio::spawn(async move {
        let mut tally = EventTally::default();
        let mut events = sub.events;
        while let Some(update) = events.next().await {
            match update {
                Update::Event(e) => {
                    tally.count(&e.kind);
                    println!(
                        "{:>6} ms  {:<22} gen {}  {:?}",
                        t0.elapsed().as_millis(),
                        e.id,
                        e.generation,
                        e.kind
                    )
                }
                Update::Resync(snapshot) => println!("--- resynchronised: {} instances", snapshot.len()),
            }
        }
        tally
    });

    // The registry of the API replicas, fed by the supervisor's events:
    // ready replicas are in it, anything else is not.
    let registry = Registry::new("api");
    let _source = SupervisorSource::new("api").start(&handle, &registry).await?;

    // Ctrl-C and SIGTERM stop the scenario (or the serving) the same way:
    // a graceful shutdown of the whole tree, then the summary.
    tokio::select! {
        outcome = scenario(&handle, &registry, serve) => outcome?,
        signal = shutdown_signal() => println!("--- {} received", signal?),
    }
    println!("--- shutting down (reverse start order)");
    handle.shutdown().await?;
    let tally = printer.await?;
    let _ = std::fs::remove_file(&marker);
    let sent = PINGS_SENT.load(Ordering::Relaxed);
    let answered = PINGS_ANSWERED.load(Ordering::Relaxed);
    println!("--- summary after {:.1} s", t0.elapsed().as_secs_f64());
    println!("    pings answered   {answered}/{sent}");
    println!(
        "    instances ready  {} times, exited {} times, restarted {} times",
        tally.ready, tally.exited, tally.restarts
    );
    println!(
        "    instances stopped {} (scaled away, then the whole tree in reverse start order)",
        tally.stopped
    );
    if answered != sent {
        return Err(format!("{} pings were not answered", sent - answered).into());
    }
    Ok(())
}

//! An HTTP service under supervision, called through orch's client, with
//! axum on the server side and hyper on the client side.
//!
//! - **Server:** a supervisor runs `orders` as a replica group of axum
//!   servers on 127.0.0.1 ports (`ChildSpec::serve_http`), each with an
//!   HTTP readiness probe (`/ready`) and liveness probe (`/healthz`).
//! - **Client:** the supervisor's lifecycle events feed a registry
//!   (`SupervisorSource`), the registry feeds a P2C peak-EWMA balancer that
//!   connects each replica with the hyper connector, shared by every task
//!   through one `Clone` handle, and calls go through the resilience stack's
//!   HTTP preset (overall and attempt timeouts, retry with its budget,
//!   circuit breaker). POSTs carry an `Idempotency-Key` the stack adds, so
//!   they may be retried like GETs.
//! - **Fault:** a third of the way through the load, one replica hangs: it
//!   stops answering and its liveness probe fails. Calls stuck on it hit the
//!   attempt timeout and are retried on another replica; the supervisor
//!   restarts the hung one, which comes back on a new port and takes traffic
//!   again once ready.
//!
//! It ends by itself with a summary, and exits non-zero if any request
//! failed. Configuration comes from the environment (12-factor), with the
//! prefix `HTTP_SERVICE`: for example `HTTP_SERVICE__REPLICAS=5`,
//! `HTTP_SERVICE__REQUESTS=2000`,
//! `HTTP_SERVICE__RESILIENCE__RETRY__MAX_ATTEMPTS=2`,
//! `HTTP_SERVICE__BALANCER__FAILFAST_TIMEOUT=1s`. A bad or unknown key
//! stops it with an error naming the key.
//!
//! ```text
//! cargo run --example http_service            # load, a hung replica, a summary
//! cargo run --example http_service -- --serve # then serve until Ctrl-C or SIGTERM
//! ```

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};

use axum::{
    Json, Router,
    extract::{Path, State},
    http::StatusCode,
    routing::{get, post},
};
use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use orch::core::{
    ChildContext, ChildSpec, EventKind, HttpProbe, ProbeSpec, Supervisor, SupervisorHandle, SupervisorSpec,
    Update, config::ConfigLoader, shutdown_signal,
};
use orch::discovery::{
    Registry, SupervisorSource,
    balance::{Algorithm, Balancer, BalancerConfig},
    connect::HyperConnector,
};
use orch::resilience::{CircuitBreakerConfig, HttpSafety, ResilienceLayer, RetryConfig, StackConfig};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;
use tower::{Layer, ServiceExt};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Everything the example reads from its environment.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExampleConfig {
    /// Replicas of `orders`.
    replicas: usize,
    /// Requests the load generator sends.
    requests: usize,
    /// Tasks sending them, all through one shared client.
    concurrency: usize,
    /// The client's balancer.
    balancer: BalancerConfig,
    /// The client's resilience stack.
    resilience: StackConfig,
}

impl Default for ExampleConfig {
    fn default() -> Self {
        Self {
            replicas: 3,
            requests: 1_500,
            concurrency: 8,
            // A default RTT for replicas not yet measured that suits
            // loopback (linkerd's 30 ms assumes a network), and a short
            // fail-fast so that an outage is reported quickly.
            balancer: BalancerConfig::default()
                .name("orders")
                .algorithm(Algorithm::peak_ewma().default_rtt(Duration::from_millis(1)))
                .failfast_timeout(Duration::from_secs(1)),
            resilience: StackConfig {
                overall_timeout: Some(Duration::from_secs(3)),
                attempt_timeout: Some(Duration::from_millis(300)),
                retry: Some(RetryConfig::default().max_attempts(3)),
                breaker: Some(CircuitBreakerConfig::default().name("orders")),
                ..StackConfig::default()
            },
        }
    }
}

// ===== the service =====

/// What reached the replicas, for the summary: every request to `/orders`,
/// retries included, and who served it.
#[derive(Debug, Default)]
struct Served {
    attempts: AtomicUsize,
    by_replica: Mutex<BTreeMap<String, usize>>,
}

static SERVED: std::sync::LazyLock<Served> = std::sync::LazyLock::new(Served::default);

/// One replica's state: a fresh one per start, so a restart heals the hang.
struct Replica {
    id: String,
    hung: AtomicBool,
}

#[derive(Serialize, Deserialize)]
struct Order {
    id: u64,
    served_by: String,
}

/// The router of one replica of `orders`.
fn orders_router(ctx: &ChildContext) -> Router {
    let replica = Arc::new(Replica {
        id: ctx.id().to_string(),
        hung: AtomicBool::new(false),
    });
    Router::new()
        .route("/ready", get(|| async { StatusCode::OK }))
        .route("/healthz", get(healthz))
        .route("/orders", post(create_order))
        .route("/orders/{id}", get(read_order))
        .route("/admin/hang", post(hang))
        .with_state(replica)
}

async fn healthz(State(replica): State<Arc<Replica>>) -> StatusCode {
    if replica.hung.load(Ordering::Relaxed) {
        StatusCode::INTERNAL_SERVER_ERROR
    } else {
        StatusCode::OK
    }
}

/// Serves an order, or never answers once the replica hangs.
async fn serve_order(replica: &Replica, id: u64) -> Json<Order> {
    SERVED.attempts.fetch_add(1, Ordering::Relaxed);
    if replica.hung.load(Ordering::Relaxed) {
        std::future::pending::<()>().await;
    }
    if let Ok(mut by_replica) = SERVED.by_replica.lock() {
        *by_replica.entry(replica.id.clone()).or_default() += 1;
    }
    Json(Order {
        id,
        served_by: replica.id.clone(),
    })
}

async fn create_order(State(replica): State<Arc<Replica>>, body: Bytes) -> (StatusCode, Json<Order>) {
    (
        StatusCode::CREATED,
        serve_order(&replica, body.len() as u64).await,
    )
}

async fn read_order(State(replica): State<Arc<Replica>>, Path(id): Path<u64>) -> Json<Order> {
    serve_order(&replica, id).await
}

async fn hang(State(replica): State<Arc<Replica>>) -> StatusCode {
    replica.hung.store(true, Ordering::Relaxed);
    StatusCode::ACCEPTED
}

fn orders(replicas: usize) -> Result<ChildSpec, BoxError> {
    let fast = |probe: HttpProbe| {
        ProbeSpec::new(probe)
            .period(Duration::from_millis(100))
            .timeout(Duration::from_millis(200))
    };
    Ok(ChildSpec::serve_http("orders", orders_router)
        .replicas(replicas)
        .readiness(fast(HttpProbe::get("/ready")?))
        .liveness(fast(HttpProbe::get("/healthz")?).failure_threshold(2))
        // A hung replica's requests never finish: do not wait long for them.
        .shutdown_grace(Duration::from_millis(500)))
}

// ===== the client =====

/// Latencies and outcomes of the load, for the summary.
#[derive(Debug, Default)]
struct Load {
    latencies: Vec<Duration>,
    failures: Vec<String>,
}

/// Sends `config.requests` requests from `config.concurrency` tasks through
/// one shared client, and hangs one replica a third of the way through.
async fn run_load(config: &ExampleConfig, registry: &Registry) -> Result<Load, BoxError> {
    let connector = HyperConnector::<Full<Bytes>>::new();
    // Over the hyper connector the balancer counts a 5xx as the replica's
    // failure by default, so a sick replica loses its share of traffic.
    let balancer = Balancer::with_config(&config.balancer, registry.changes(), connector)?.into_shared();
    // The HTTP preset, with the layers the configuration enables, adding
    // an Idempotency-Key to every POST so that it may be retried.
    let stack = ResilienceLayer::http()
        .safety(HttpSafety::default().add_idempotency_key(true))
        .build_from_config(&config.resilience, "resilience")?;
    let client = stack.layer(balancer);

    let next = Arc::new(AtomicUsize::new(0));
    let load = Arc::new(Mutex::new(Load::default()));
    let hang_at = config.requests / 3;
    let victim = registry
        .snapshot()
        .into_iter()
        .next()
        .map(|endpoint| endpoint.address());
    let workers = (0..config.concurrency).map(|_| {
        let (client, next, load, total) = (
            client.clone(),
            Arc::clone(&next),
            Arc::clone(&load),
            config.requests,
        );
        tokio::spawn(async move {
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= total {
                    return;
                }
                if let Some(addr) = victim.filter(|_| n == hang_at) {
                    println!("--- request {n}: the replica at {addr} hangs");
                    if let Err(error) = hang_replica(addr).await {
                        println!("--- could not hang {addr}: {error}");
                    }
                }
                let request = if n % 2 == 0 {
                    Request::get(format!("/orders/{n}")).body(Full::default())
                } else {
                    Request::post("/orders").body(Full::new(Bytes::from(vec![b'x'; n % 64])))
                };
                let started = Instant::now();
                let outcome = match request {
                    Ok(request) => client.clone().oneshot(request).await.map_err(|e| e.to_string()),
                    Err(e) => Err(e.to_string()),
                };
                let outcome = match outcome {
                    Ok(response) if response.status().is_success() => response
                        .into_body()
                        .collect()
                        .await
                        .map(drop)
                        .map_err(|e| e.to_string()),
                    Ok(response) => Err(format!("status {}", response.status())),
                    Err(error) => Err(error),
                };
                if let Ok(mut load) = load.lock() {
                    match outcome {
                        Ok(()) => load.latencies.push(started.elapsed()),
                        Err(error) => load.failures.push(format!("request {n}: {error}")),
                    }
                }
            }
        })
    });
    for worker in workers.collect::<Vec<_>>() {
        worker.await?;
    }
    let load = std::mem::take(&mut *load.lock().map_err(|_| "a load task panicked")?);
    Ok(load)
}

/// Tells the replica at `addr` to hang, directly (not through the balancer).
async fn hang_replica(addr: SocketAddr) -> Result<(), BoxError> {
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Full<Bytes>>();
    client
        .request(Request::post(format!("http://{addr}/admin/hang")).body(Full::default())?)
        .await?;
    Ok(())
}

// ===== the run =====

/// Waits (at most 20 s) until the registry holds `n` endpoints.
async fn wait_for_replicas(registry: &Registry, n: usize) -> Result<(), BoxError> {
    let wait = registry.wait_until(move |endpoints| endpoints.len() == n);
    tokio::time::timeout(Duration::from_secs(20), wait)
        .await
        .map_err(|_| "replicas never became ready")?;
    Ok(())
}

/// Lifecycle events by kind, for the summary.
#[derive(Debug, Default)]
struct Events {
    restarts: usize,
    liveness_failures: usize,
}

fn watch_events(handle: &SupervisorHandle) -> tokio::task::JoinHandle<Events> {
    let mut events = handle.subscribe().events;
    tokio::spawn(async move {
        let mut seen = Events::default();
        while let Some(update) = events.next().await {
            if let Update::Event(event) = update {
                match &event.kind {
                    EventKind::Restarting { .. } => seen.restarts += 1,
                    EventKind::Exited { reason } if reason.to_string().contains("liveness") => {
                        seen.liveness_failures += 1;
                        println!("--- {} failed its liveness probe; restarting it", event.id);
                    }
                    EventKind::Ready { .. } if event.generation > 0 => {
                        println!(
                            "--- {} is ready again (generation {})",
                            event.id, event.generation
                        );
                    }
                    _ => {}
                }
            }
        }
        seen
    })
}

fn percentile(sorted: &[Duration], q: f64) -> Duration {
    let index = ((sorted.len() as f64 * q) as usize).min(sorted.len().saturating_sub(1));
    sorted.get(index).copied().unwrap_or_default()
}

fn print_summary(config: &ExampleConfig, load: &mut Load, events: &Events, elapsed: Duration) {
    load.latencies.sort_unstable();
    let answered = load.latencies.len();
    let attempts = SERVED.attempts.load(Ordering::Relaxed);
    println!("--- summary after {:.1} s", elapsed.as_secs_f64());
    println!("    requests answered  {answered}/{}", config.requests);
    println!(
        "    attempts at the replicas {attempts} ({} beyond one per request)",
        attempts.saturating_sub(config.requests)
    );
    println!(
        "    latency            p50 {:.1} ms, p99 {:.1} ms",
        percentile(&load.latencies, 0.50).as_secs_f64() * 1e3,
        percentile(&load.latencies, 0.99).as_secs_f64() * 1e3,
    );
    println!(
        "    liveness failures  {}, restarts {}",
        events.liveness_failures, events.restarts
    );
    if let Ok(by_replica) = SERVED.by_replica.lock() {
        println!("    answered by        {by_replica:?}");
    }
    for failure in load.failures.iter().take(5) {
        println!("    failed: {failure}");
    }
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let serve = std::env::args().any(|a| a == "--serve");
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .init();
    let config: ExampleConfig = ConfigLoader::new("HTTP_SERVICE")
        .defaults(&ExampleConfig::default())
        .load()?;

    let spec = SupervisorSpec::builder("app")
        .child(orders(config.replicas)?)
        .build()?;
    let handle = Supervisor::start(spec)?;
    let events = watch_events(&handle);
    let registry = Registry::new("orders");
    let _source = SupervisorSource::new("orders").start(&handle, &registry).await?;

    let started = Instant::now();
    let run = async {
        wait_for_replicas(&registry, config.replicas).await?;
        println!(
            "--- {} replicas of orders are ready; sending {} requests",
            config.replicas, config.requests
        );
        let load = run_load(&config, &registry).await?;
        if serve {
            println!("--- serving; Ctrl-C or SIGTERM shuts down");
            std::future::pending::<()>().await;
        }
        Ok::<_, BoxError>(load)
    };
    let outcome = tokio::select! {
        outcome = run => Some(outcome?),
        signal = shutdown_signal() => {
            println!("--- {} received", signal?);
            None
        }
    };
    handle.shutdown().await?;
    let events = events.await?;
    let Some(mut load) = outcome else { return Ok(()) };
    print_summary(&config, &mut load, &events, started.elapsed());
    if !load.failures.is_empty() {
        return Err(format!("{} requests failed", load.failures.len()).into());
    }
    Ok(())
}

//! A gRPC service under supervision, called through orch's client, with
//! tonic on both sides.
//!
//! - **Server:** a supervisor runs `payments` as a replica group of tonic
//!   servers on 127.0.0.1 ports (`ChildSpec::serve_grpc`). Each serves the
//!   `Payments` service of `examples/proto/payments.proto` and
//!   `grpc.health.v1` (tonic-health), which its probes ask
//!   (`GrpcHealthProbe`): readiness checks the `Payments` service, liveness
//!   the server as a whole.
//! - **Client:** the supervisor's lifecycle events feed a registry
//!   (`SupervisorSource`), the registry feeds a P2C peak-EWMA balancer that
//!   connects each replica with a tonic `Channel`, shared by every task
//!   through one `Clone` handle; calls go through the resilience stack's
//!   gRPC preset (overall and attempt timeouts, retry of `UNAVAILABLE` with
//!   its budget, circuit breaker) and the generated `PaymentsClient`. Every
//!   gRPC call is a POST, so the preset asks which ones may run twice: here
//!   the stack adds an `idempotency-key` to every `Charge`, and the replicas
//!   record charges in a ledger keyed by it, so that a retried charge is
//!   made once.
//! - **Fault:** a third of the way through the load, one replica crashes:
//!   its calls in flight fail with `UNAVAILABLE` (what a client sees of
//!   calls cut by a dead server) and its incarnation ends. The calls are
//!   retried on other replicas; the supervisor restarts the replica, which
//!   comes back on a new port and takes traffic again once ready.
//!
//! It ends by itself with a summary, and exits non-zero if any call failed.
//! Configuration comes from the environment (12-factor), with the prefix
//! `GRPC_SERVICE`: for example `GRPC_SERVICE__REPLICAS=5`,
//! `GRPC_SERVICE__REQUESTS=2000`,
//! `GRPC_SERVICE__RESILIENCE__RETRY__MAX_ATTEMPTS=2`,
//! `GRPC_SERVICE__BALANCER__FAILFAST_TIMEOUT=1s`. A bad or unknown key
//! stops it with an error naming the key.
//!
//! ```text
//! cargo run --example grpc_service            # load, a crashed replica, a summary
//! cargo run --example grpc_service -- --serve # then serve until Ctrl-C or SIGTERM
//! ```

use std::{
    collections::{BTreeMap, HashMap},
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use orch::core::{
    ChildContext, ChildSpec, EventKind, GrpcHealthProbe, ProbeSpec, Supervisor, SupervisorHandle,
    SupervisorSpec, Update, config::ConfigLoader, shutdown_signal,
};
use orch::discovery::{
    Registry, SupervisorSource,
    balance::{Algorithm, Balancer, BalancerConfig, HttpFailures},
    connect::TonicConnector,
};
use orch::resilience::{
    CircuitBreakerConfig, HttpSafety, IDEMPOTENCY_KEY, ResilienceLayer, RetryConfig, StackConfig,
};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, service::Routes};
use tower::Layer;

/// The code generated from `examples/proto/payments.proto`, checked in.
#[allow(missing_docs, clippy::all)]
pub mod payments {
    include!("proto/orch.examples.payments.v1.rs");
}

use payments::{
    ChargeReply, ChargeRequest,
    payments_client::PaymentsClient,
    payments_server::{self, PaymentsServer},
};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Everything the example reads from its environment.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExampleConfig {
    /// Replicas of `payments`.
    replicas: usize,
    /// Calls the load generator makes.
    requests: usize,
    /// Tasks making them, all through one shared client.
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
                .name("payments")
                .algorithm(Algorithm::peak_ewma().default_rtt(Duration::from_millis(1)))
                .failfast_timeout(Duration::from_secs(1)),
            resilience: StackConfig {
                overall_timeout: Some(Duration::from_secs(3)),
                attempt_timeout: Some(Duration::from_millis(300)),
                retry: Some(RetryConfig::default().max_attempts(3)),
                breaker: Some(CircuitBreakerConfig::default().name("payments")),
                ..StackConfig::default()
            },
        }
    }
}

// ===== the service =====

/// How long a charge takes to write to the ledger: long enough that calls
/// are in flight when a replica crashes.
const LEDGER_WRITE: Duration = Duration::from_millis(1);

/// What the replicas share, as they would share a database: the charges
/// made, by idempotency key; and what reached them, for the summary.
#[derive(Debug, Default)]
struct Backend {
    ledger: Mutex<HashMap<String, ChargeReply>>,
    /// Charges made without a key (each call without one makes one).
    unkeyed: AtomicUsize,
    /// Every `Charge` that reached a replica, retries included.
    attempts: AtomicUsize,
    /// The latest incarnation of each replica, by instance id, so that the
    /// fault can find its victim.
    replicas: Mutex<BTreeMap<String, Arc<Replica>>>,
}

/// One incarnation of a replica: a fresh one per start, so a restart heals
/// the crash.
#[derive(Debug)]
struct Replica {
    /// `app/payments-0 (generation 1)`: what `served_by` says.
    name: String,
    /// The incarnation's context, through which it fails itself.
    ctx: ChildContext,
    crashed: CancellationToken,
}

impl Backend {
    /// The services of a new incarnation of a replica.
    fn routes(self: &Arc<Self>, ctx: &ChildContext) -> Routes {
        let replica = Arc::new(Replica {
            name: format!("{} (generation {})", ctx.id(), ctx.generation()),
            ctx: ctx.clone(),
            crashed: CancellationToken::new(),
        });
        if let Ok(mut replicas) = self.replicas.lock() {
            replicas.insert(ctx.id().to_string(), Arc::clone(&replica));
        }
        // The whole server is SERVING from the start (liveness); Payments
        // once it is set up (readiness), as a service with a warm-up would.
        let (reporter, health) = tonic_health::server::health_reporter();
        tokio::spawn(async move {
            reporter.set_serving::<PaymentsServer<Charger>>().await;
        });
        Routes::new(health).add_service(PaymentsServer::new(Charger {
            backend: Arc::clone(self),
            replica,
        }))
    }

    /// Crashes the latest incarnation of the replica `id`; false if there
    /// is none.
    fn crash(&self, id: &str) -> bool {
        let replica = self.replicas.lock().ok().and_then(|r| r.get(id).cloned());
        let Some(replica) = replica else { return false };
        // A crashed process's calls in flight are cut and its listener is
        // gone. In one process the replica does both itself: its handlers
        // fail their calls, and `fail` ends the incarnation as a crash,
        // which closes the listener at once.
        replica.crashed.cancel();
        replica.ctx.fail("the replica crashed");
        true
    }

    /// Makes the charge for `key`, or answers the one already made under
    /// it (a retry whose first attempt went through but whose answer was
    /// lost).
    fn record(&self, key: Option<String>, reply: ChargeReply) -> ChargeReply {
        match (key, self.ledger.lock()) {
            (Some(key), Ok(mut ledger)) => ledger.entry(key).or_insert(reply).clone(),
            _ => {
                self.unkeyed.fetch_add(1, Ordering::Relaxed);
                reply
            }
        }
    }
}

/// The `Payments` service of one incarnation.
struct Charger {
    backend: Arc<Backend>,
    replica: Arc<Replica>,
}

#[tonic::async_trait]
impl payments_server::Payments for Charger {
    async fn charge(&self, request: Request<ChargeRequest>) -> Result<Response<ChargeReply>, Status> {
        self.backend.attempts.fetch_add(1, Ordering::Relaxed);
        let key = request
            .metadata()
            .get(IDEMPOTENCY_KEY.as_str())
            .and_then(|key| key.to_str().ok())
            .map(str::to_owned);
        let request = request.into_inner();
        if request.amount_cents == 0 {
            return Err(Status::invalid_argument("amount_cents must not be zero"));
        }
        let reply = ChargeReply {
            charge_id: format!("charge-{}", request.order_id),
            served_by: self.replica.name.clone(),
        };
        tokio::select! {
            // Biased, so that a crashed replica makes no charge.
            biased;
            () = self.replica.crashed.cancelled() => Err(Status::unavailable("the replica crashed")),
            () = tokio::time::sleep(LEDGER_WRITE) => Ok(Response::new(self.backend.record(key, reply))),
        }
    }
}

fn payments(backend: &Arc<Backend>, replicas: usize) -> ChildSpec {
    let fast = |probe: GrpcHealthProbe| {
        ProbeSpec::new(probe)
            .period(Duration::from_millis(100))
            .timeout(Duration::from_millis(200))
    };
    let backend = Arc::clone(backend);
    ChildSpec::serve_grpc("payments", move |ctx| backend.routes(ctx))
        .replicas(replicas)
        .readiness(fast(GrpcHealthProbe::service(payments_server::SERVICE_NAME)))
        .liveness(fast(GrpcHealthProbe::new()).failure_threshold(2))
}

// ===== the client =====

/// Latencies, outcomes and answering replicas of the load, for the summary.
#[derive(Debug, Default)]
struct Load {
    latencies: Vec<Duration>,
    failures: Vec<String>,
    answered_by: BTreeMap<String, usize>,
}

/// Makes `config.requests` calls from `config.concurrency` tasks through
/// one shared client, and crashes one replica a third of the way through.
async fn run_load(
    config: &ExampleConfig,
    registry: &Registry,
    backend: &Arc<Backend>,
) -> Result<Load, BoxError> {
    let template =
        tonic::transport::Endpoint::from_static("http://payments").connect_timeout(Duration::from_secs(1));
    // HttpFailures makes a gRPC UNAVAILABLE (and a 5xx) count as the
    // replica's failure, so that a sick replica loses its share of traffic
    // rather than drawing more.
    let balancer = Balancer::with_config(
        &config.balancer,
        registry.changes(),
        TonicConnector::new(template)?,
    )?
    .classify_with(HttpFailures)
    .into_shared();
    // The gRPC preset, with the layers the configuration enables. Its
    // safety rules are the caller's: HttpSafety adds an idempotency-key to
    // every call (all are POSTs), which makes them safe to retry here
    // because the replicas deduplicate charges by it.
    let stack = ResilienceLayer::grpc(HttpSafety::default().add_idempotency_key(true))
        .build_from_config(&config.resilience, "resilience")?;
    let client = PaymentsClient::new(stack.layer(balancer));

    let next = Arc::new(AtomicUsize::new(0));
    let load = Arc::new(Mutex::new(Load::default()));
    let crash_at = config.requests / 3;
    let victim = registry
        .snapshot()
        .into_iter()
        .next()
        .map(|endpoint| endpoint.id().as_str().to_owned());
    let workers = (0..config.concurrency).map(|_| {
        let (mut client, next, load, backend, victim, total) = (
            client.clone(),
            Arc::clone(&next),
            Arc::clone(&load),
            Arc::clone(backend),
            victim.clone(),
            config.requests,
        );
        tokio::spawn(async move {
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= total {
                    return;
                }
                if let Some(id) = victim.as_deref().filter(|_| n == crash_at) {
                    println!("--- call {n}: {id} crashes");
                    if !backend.crash(id) {
                        println!("--- could not crash {id}");
                    }
                }
                let request = ChargeRequest {
                    order_id: format!("order-{n}"),
                    amount_cents: 100 + (n as u64 % 900),
                };
                let started = Instant::now();
                let outcome = client.charge(request).await;
                if let Ok(mut load) = load.lock() {
                    match outcome {
                        Ok(reply) => {
                            load.latencies.push(started.elapsed());
                            *load.answered_by.entry(reply.into_inner().served_by).or_default() += 1;
                        }
                        Err(status) => load.failures.push(format!("call {n}: {status}")),
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
    exits: usize,
    restarts: usize,
}

fn watch_events(handle: &SupervisorHandle) -> tokio::task::JoinHandle<Events> {
    let mut events = handle.subscribe().events;
    tokio::spawn(async move {
        let mut seen = Events::default();
        while let Some(update) = events.next().await {
            if let Update::Event(event) = update {
                match &event.kind {
                    EventKind::Restarting { .. } => seen.restarts += 1,
                    // A shutdown or scale-down ends in `Stopped` events;
                    // `Exited` is an instance that ended by itself, or was
                    // killed for a failed probe.
                    EventKind::Exited { reason } => {
                        seen.exits += 1;
                        println!("--- {} exited ({reason}); the supervisor restarts it", event.id);
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

fn print_summary(
    config: &ExampleConfig,
    backend: &Backend,
    load: &mut Load,
    events: &Events,
    elapsed: Duration,
) {
    load.latencies.sort_unstable();
    let answered = load.latencies.len();
    let attempts = backend.attempts.load(Ordering::Relaxed);
    println!("--- summary after {:.1} s", elapsed.as_secs_f64());
    println!("    calls answered     {answered}/{}", config.requests);
    println!(
        "    attempts at the replicas {attempts} ({} beyond one per call)",
        attempts.saturating_sub(config.requests)
    );
    let keyed = backend
        .ledger
        .lock()
        .map(|ledger| ledger.len())
        .unwrap_or_default();
    let unkeyed = backend.unkeyed.load(Ordering::Relaxed);
    println!(
        "    charges made       {} ({keyed} under an idempotency key)",
        keyed + unkeyed
    );
    println!(
        "    latency            p50 {:.1} ms, p99 {:.1} ms",
        percentile(&load.latencies, 0.50).as_secs_f64() * 1e3,
        percentile(&load.latencies, 0.99).as_secs_f64() * 1e3,
    );
    println!(
        "    exits              {}, restarts {}",
        events.exits, events.restarts
    );
    println!("    answered by        {:?}", load.answered_by);
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
    let config: ExampleConfig = ConfigLoader::new("GRPC_SERVICE")
        .defaults(&ExampleConfig::default())
        .load()?;

    let backend = Arc::new(Backend::default());
    let spec = SupervisorSpec::builder("app")
        .child(payments(&backend, config.replicas))
        .build()?;
    let handle = Supervisor::start(spec)?;
    let events = watch_events(&handle);
    let registry = Registry::new("payments");
    let _source = SupervisorSource::new("payments")
        .start(&handle, &registry)
        .await?;

    let started = Instant::now();
    let run = async {
        wait_for_replicas(&registry, config.replicas).await?;
        println!(
            "--- {} replicas of payments are ready; making {} calls",
            config.replicas, config.requests
        );
        let load = run_load(&config, &registry, &backend).await?;
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
    print_summary(&config, &backend, &mut load, &events, started.elapsed());
    if !load.failures.is_empty() {
        return Err(format!("{} calls failed", load.failures.len()).into());
    }
    Ok(())
}

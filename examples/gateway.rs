//! A reverse-proxy gateway: one HTTP front door on 127.0.0.1 that forwards
//! every request to a supervised replica group, through the balancer and
//! the resilience stack, and keeps answering while a replica crashes.
//!
//! - **Backends:** a supervisor runs `backends` as a replica group of axum
//!   servers (`ChildSpec::serve_http`) with readiness and liveness probes.
//!   Each echoes what it received (method, path, query, headers, body
//!   length), streams `/stream` in chunks, and crashes on
//!   `POST /admin/crash` (`ChildContext::fail`); the supervisor restarts it.
//! - **Gateway:** an axum server whose only route is a fallback that
//!   forwards the request as it came (method, path and query, headers less
//!   the hop-by-hop ones, body) to the replicas through one shared client:
//!   registry (`SupervisorSource`) → P2C peak-EWMA balancer over the hyper
//!   connector → the HTTP preset of `ResilienceLayer` (timeouts, retry with
//!   its budget, circuit breaker). Bodies of requests that may be retried
//!   (idempotent methods, or a client's `Idempotency-Key`) are buffered up
//!   to 1 MiB to be replayed; the answer streams back as it arrives. An
//!   error of the stack becomes `502`, `503` or `504`.
//! - **Load:** 16 tasks send 600 requests through the gateway (GETs, PUTs,
//!   keyed POSTs, streams), checking each echo; a third of the way through
//!   one backend crashes.
//!
//! It ends by itself with a summary and exits non-zero if a request failed
//! or came back other than it was sent.
//!
//! ```text
//! cargo run --example gateway            # load, a crash, a summary
//! cargo run --example gateway -- --serve # then keep the gateway up until Ctrl-C or SIGTERM
//! curl -s http://127.0.0.1:PORT/any/path?x=1   # while serving
//! ```

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use axum::{
    Json, Router,
    body::Body,
    extract::{Path, State},
    http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use bytes::Bytes;
use futures_util::stream;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::{client::legacy::Client, rt::TokioExecutor};
use orch::core::{
    ChildContext, ChildSpec, EventKind, HttpProbe, ProbeSpec, Supervisor, SupervisorHandle, SupervisorSpec,
    Update, shutdown_signal,
};
use orch::discovery::{
    Registry, SupervisorSource,
    balance::{Algorithm, Balancer, BalancerConfig},
    connect::HyperConnector,
};
use orch::resilience::{CircuitBreakerConfig, ReplayBody, ResilienceError, ResilienceLayer, RetryConfig};
use serde_json::{Value, json};
use tokio::{net::TcpListener, time::Instant};
use tokio_util::sync::CancellationToken;
use tower::{Layer, ServiceExt, util::BoxCloneSyncService};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

const REPLICAS: usize = 3;
const REQUESTS: usize = 600;
const CONCURRENCY: usize = 16;
/// Chunks of a `/stream` answer, and the pause between them.
const CHUNKS: usize = 5;
const CHUNK_PAUSE: Duration = Duration::from_millis(10);

// ===== the backends =====

/// Every request that reached a backend, retries included, by replica.
static SERVED: std::sync::LazyLock<Mutex<BTreeMap<String, usize>>> = std::sync::LazyLock::new(Mutex::default);

/// Echoes in flight on the backend when it crashed, failed with `503`.
static CUT: AtomicUsize = AtomicUsize::new(0);

/// How long an echo takes: long enough that some are in flight when their
/// backend crashes.
const WORK: Duration = Duration::from_millis(20);

#[derive(Clone)]
struct Backend {
    name: String,
    ctx: ChildContext,
    crashed: CancellationToken,
}

fn backend_router(ctx: &ChildContext) -> Router {
    let backend = Backend {
        name: format!("{} (generation {})", ctx.id(), ctx.generation()),
        ctx: ctx.clone(),
        crashed: CancellationToken::new(),
    };
    Router::new()
        .route("/ready", get(|| async { StatusCode::OK }))
        .route("/healthz", get(|| async { StatusCode::OK }))
        .route("/stream/{id}", get(stream_chunks))
        .route("/admin/crash", post(crash))
        .fallback(echo)
        .with_state(backend)
}

fn count(backend: &Backend) {
    if let Ok(mut served) = SERVED.lock() {
        *served.entry(backend.name.clone()).or_default() += 1;
    }
}

/// Answers with what the request carried, for the client to check.
async fn echo(
    State(backend): State<Backend>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, (StatusCode, &'static str)> {
    count(&backend);
    // A crashed process's requests in flight are lost; here they fail.
    tokio::select! {
        () = backend.crashed.cancelled() => {
            CUT.fetch_add(1, Ordering::Relaxed);
            return Err((StatusCode::SERVICE_UNAVAILABLE, "the backend crashed"));
        }
        () = tokio::time::sleep(WORK) => {}
    }
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let (path, query, len) = (uri.path(), uri.query(), body.len());
    Ok(Json(
        json!({ "method": method.as_str(), "path": path, "query": query, "body_len": len,
        "request_id": header("x-request-id"), "via": header("via"), "served_by": backend.name }),
    ))
}

/// `CHUNKS` lines, one every `CHUNK_PAUSE`: the gateway must pass each on.
async fn stream_chunks(State(backend): State<Backend>, Path(id): Path<usize>) -> Body {
    count(&backend);
    let chunks = stream::unfold(0, move |i| async move {
        if i == CHUNKS {
            return None;
        }
        tokio::time::sleep(CHUNK_PAUSE).await;
        Some((
            Ok::<_, std::io::Error>(Bytes::from(format!("stream {id} chunk {i}\n"))),
            i + 1,
        ))
    });
    Body::from_stream(chunks)
}

async fn crash(State(backend): State<Backend>) -> StatusCode {
    println!("--- {} crashes", backend.name);
    backend.crashed.cancel();
    backend.ctx.fail("crashed on request");
    StatusCode::ACCEPTED
}

fn backends() -> Result<ChildSpec, BoxError> {
    let fast = |probe: HttpProbe| {
        ProbeSpec::new(probe)
            .period(Duration::from_millis(100))
            .timeout(Duration::from_millis(200))
    };
    Ok(ChildSpec::serve_http("backends", backend_router)
        .replicas(REPLICAS)
        .readiness(fast(HttpProbe::get("/ready")?))
        .liveness(fast(HttpProbe::get("/healthz")?).failure_threshold(2))
        .shutdown_grace(Duration::from_secs(1)))
}

// ===== the gateway =====

/// The client every gateway request goes through.
type Upstream = BoxCloneSyncService<Request<Body>, Response<Body>, BoxError>;

fn upstream(registry: &Registry) -> Result<Upstream, BoxError> {
    let config = BalancerConfig::default()
        .name("backends")
        .algorithm(Algorithm::peak_ewma().default_rtt(Duration::from_millis(1)))
        .failfast_timeout(Duration::from_secs(1));
    let connector = HyperConnector::<ReplayBody<Body>>::new();
    let balancer = Balancer::with_config(&config, registry.changes(), connector)?.into_shared();
    let stack = ResilienceLayer::http()
        .overall_timeout(Duration::from_secs(3))
        .attempt_timeout(Duration::from_millis(500))
        .retry(RetryConfig::default().max_attempts(3))
        .circuit_breaker(CircuitBreakerConfig::default().name("backends"))
        // Client bodies are streams: keep up to 1 MiB to replay a retry.
        .buffer_bodies_raw(1 << 20)
        .build()?;
    let client = stack
        .layer(balancer)
        .map_response(|response| response.map(Body::new))
        .map_err(BoxError::from);
    Ok(BoxCloneSyncService::new(client))
}

/// What the gateway adds to each request it forwards.
const VIA: &str = "1.1 orch-gateway";

/// Headers that describe one connection, not the message (RFC 9110 §7.6.1).
const HOP_BY_HOP: &str =
    "connection keep-alive proxy-authenticate proxy-authorization te trailer transfer-encoding upgrade";

fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::try_from(name.trim()).ok())
        .collect();
    for name in named.iter().map(HeaderName::as_str).chain(HOP_BY_HOP.split(' ')) {
        headers.remove(name);
    }
}

/// Forwards one request and streams the answer back.
async fn proxy(State(upstream): State<Upstream>, request: Request<Body>) -> Response {
    let (mut parts, body) = request.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    parts.headers.append(header::VIA, HeaderValue::from_static(VIA));
    // The balancer picks the authority; keep the path and query.
    let path = parts.uri.path_and_query().cloned();
    parts.uri = path.map(Uri::from).unwrap_or_default();
    match upstream.oneshot(Request::from_parts(parts, body)).await {
        Ok(mut response) => {
            strip_hop_by_hop(response.headers_mut());
            response
        }
        Err(error) => upstream_error(&error),
    }
}

/// The status a failed forward gets: the replicas' fault is not the client's.
fn upstream_error(error: &BoxError) -> Response {
    let status = match error.downcast_ref::<ResilienceError>() {
        Some(ResilienceError::Timeout { .. }) => StatusCode::GATEWAY_TIMEOUT,
        // The stack has no bulkhead or rate limiter: only the breaker refuses.
        Some(ResilienceError::CircuitOpen { .. }) => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::BAD_GATEWAY,
    };
    let problem = json!({ "type": "about:blank", "title": status.canonical_reason(), "status": status.as_u16(), "detail": error.to_string() });
    let content_type = [(header::CONTENT_TYPE, "application/problem+json")];
    (status, content_type, problem.to_string()).into_response()
}

async fn serve_gateway(upstream: Upstream) -> Result<SocketAddr, BoxError> {
    let app = Router::new().fallback(proxy).with_state(upstream);
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    // Its result is not awaited: axum's server only ends with the process.
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(addr)
}

// ===== the load =====

/// Latencies and failures of the load, for the summary.
#[derive(Default)]
struct Load {
    latencies: Vec<Duration>,
    streams: usize,
    failures: Vec<String>,
}

type HttpClient = Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>;

/// Request `n` of the load (to `gateway`), and the echo fields that must
/// come back (`None` for a stream, checked line by line).
fn request(n: usize, gateway: SocketAddr) -> Result<(Request<Full<Bytes>>, Option<Value>), BoxError> {
    let body = Bytes::from(vec![b'x'; n % 50 + 1]);
    let id = n.to_string();
    let echo = |method: &str, path: &str, query: Option<String>, len: usize| {
        Some(
            json!({ "method": method, "path": path, "query": query, "body_len": len, "request_id": id, "via": VIA }),
        )
    };
    let url = |path: &str| format!("http://{gateway}{path}");
    let (request, expect) = match n % 4 {
        0 => (
            Request::get(url(&format!("/items/{n}?q={n}"))).body(Full::default()),
            echo("GET", &format!("/items/{n}"), Some(format!("q={n}")), 0),
        ),
        1 => (
            Request::put(url(&format!("/items/{n}"))).body(Full::new(body.clone())),
            echo("PUT", &format!("/items/{n}"), None, body.len()),
        ),
        // A keyed POST may be retried: the stack buffers its body.
        2 => (
            Request::post(url("/orders"))
                .header("idempotency-key", format!("\"gateway-order-{n}\""))
                .body(Full::new(body.clone())),
            echo("POST", "/orders", None, body.len()),
        ),
        _ => (
            Request::get(url(&format!("/stream/{n}"))).body(Full::default()),
            None,
        ),
    };
    let mut request = request?;
    request.headers_mut().insert("x-request-id", HeaderValue::from(n));
    Ok((request, expect))
}

/// Sends request `n` through the gateway and checks what comes back;
/// `Ok(true)` for a whole stream.
async fn one(client: &HttpClient, gateway: SocketAddr, n: usize) -> Result<bool, BoxError> {
    let (request, expect) = request(n, gateway)?;
    let response = client.request(request).await?;
    let status = response.status();
    let body = response.into_body().collect().await?.to_bytes();
    if !status.is_success() {
        return Err(format!("status {status}: {}", String::from_utf8_lossy(&body)).into());
    }
    let Some(expect) = expect else {
        let want: String = (0..CHUNKS).map(|i| format!("stream {n} chunk {i}\n")).collect();
        return if body == want {
            Ok(true)
        } else {
            Err("stream cut short".into())
        };
    };
    let echo: Value = serde_json::from_slice(&body)?;
    match expect.as_object() {
        Some(fields) if fields.iter().all(|(k, v)| echo[k] == *v) => Ok(false),
        _ => Err(format!("echo differs: {echo}").into()),
    }
}

/// Sends `REQUESTS` requests from `CONCURRENCY` tasks; crashes one backend
/// a third of the way through.
async fn run_load(gateway: SocketAddr, registry: &Registry) -> Result<Load, BoxError> {
    let client: HttpClient = Client::builder(TokioExecutor::new()).build_http();
    let next = Arc::new(AtomicUsize::new(0));
    let load = Arc::new(Mutex::new(Load::default()));
    let victim = registry.snapshot().first().map(|endpoint| endpoint.address());
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..CONCURRENCY {
        let (client, next, load) = (client.clone(), Arc::clone(&next), Arc::clone(&load));
        tasks.spawn(async move {
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= REQUESTS {
                    return;
                }
                if let Some(addr) = victim.filter(|_| n == REQUESTS / 3)
                    && let Err(error) = crash_backend(&client, addr).await
                {
                    println!("--- could not crash the backend at {addr}: {error}");
                }
                let started = Instant::now();
                let outcome = one(&client, gateway, n).await;
                if let Ok(mut load) = load.lock() {
                    match outcome {
                        Ok(stream) => {
                            load.latencies.push(started.elapsed());
                            load.streams += usize::from(stream);
                        }
                        Err(error) => load.failures.push(format!("request {n}: {error}")),
                    }
                }
            }
        });
    }
    while let Some(task) = tasks.join_next().await {
        task?;
    }
    Ok(std::mem::take(
        &mut *load.lock().map_err(|_| "a load task panicked")?,
    ))
}

/// Tells the backend at `addr` to crash, directly (not through the gateway).
async fn crash_backend(client: &HttpClient, addr: SocketAddr) -> Result<(), BoxError> {
    let crash = Request::post(format!("http://{addr}/admin/crash")).body(Full::default())?;
    client.request(crash).await?;
    Ok(())
}

// ===== the run =====

fn print_summary(load: &mut Load, restarts: usize, elapsed: Duration) {
    load.latencies.sort_unstable();
    let served = SERVED.lock().map(|s| s.clone()).unwrap_or_default();
    let attempts: usize = served.values().sum();
    println!("--- summary after {:.1} s", elapsed.as_secs_f64());
    println!(
        "    requests answered  {}/{REQUESTS} through the gateway ({} streams of {CHUNKS} chunks)",
        load.latencies.len(),
        load.streams
    );
    println!(
        "    attempts at the backends {attempts} ({} beyond one per request)",
        attempts.saturating_sub(REQUESTS)
    );
    let last = load.latencies.len().saturating_sub(1);
    let ms = |q: f64| {
        let at = ((load.latencies.len() as f64 * q) as usize).min(last);
        load.latencies.get(at).map_or(0.0, |d| d.as_secs_f64() * 1e3)
    };
    println!(
        "    latency            p50 {:.1} ms, p99 {:.1} ms",
        ms(0.50),
        ms(0.99)
    );
    println!(
        "    backend restarts   {restarts}; echoes cut by the crash {} (retried elsewhere)",
        CUT.load(Ordering::Relaxed)
    );
    println!("    answered by        {served:?}");
    for failure in load.failures.iter().take(5) {
        println!("    failed: {failure}");
    }
}

/// Counts the supervisor's restarts as they happen.
fn count_restarts(handle: &SupervisorHandle) -> Arc<AtomicUsize> {
    let (mut events, restarts) = (handle.subscribe().events, Arc::new(AtomicUsize::new(0)));
    let counter = Arc::clone(&restarts);
    tokio::spawn(async move {
        while let Some(update) = events.next().await {
            let restarting = |kind: &EventKind| matches!(kind, EventKind::Restarting { .. });
            if matches!(update, Update::Event(event) if restarting(&event.kind)) {
                counter.fetch_add(1, Ordering::Relaxed);
            }
        }
    });
    restarts
}

/// Waits for Ctrl-C or SIGTERM, and says which came.
async fn until_signal() {
    match shutdown_signal().await {
        Ok(signal) => println!("--- {signal} received"),
        Err(error) => println!("--- cannot wait for signals: {error}"),
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
    let handle = Supervisor::start(SupervisorSpec::builder("app").child(backends()?).build()?)?;
    let restarts = count_restarts(&handle);
    let registry = Registry::new("backends");
    let source = SupervisorSource::new("backends");
    let _source = source.start(&handle, &registry).await?;

    let started = Instant::now();
    let work = async {
        let ready = registry.wait_until(|endpoints| endpoints.len() == REPLICAS);
        tokio::time::timeout(Duration::from_secs(20), ready)
            .await
            .map_err(|_| "the backends never became ready")?;
        let gateway = serve_gateway(upstream(&registry)?).await?;
        println!("--- gateway on http://{gateway}, {REPLICAS} backends behind it; {REQUESTS} requests");
        let load = run_load(gateway, &registry).await?;
        Ok::<_, BoxError>((gateway, load))
    };
    let outcome = tokio::select! {
        outcome = work => Some(outcome),
        () = until_signal() => None,
    };
    // The tree is shut down on every path, an error's included.
    let failed = match outcome {
        Some(Ok((gateway, mut load))) => {
            print_summary(&mut load, restarts.load(Ordering::Relaxed), started.elapsed());
            if serve {
                println!("--- serving the gateway on http://{gateway}; Ctrl-C or SIGTERM shuts down");
                until_signal().await;
            }
            Ok(load.failures.len())
        }
        Some(Err(error)) => Err(error),
        None => Ok(0),
    };
    handle.shutdown().await?;
    let failed = failed?;
    match failed {
        0 => Ok(()),
        n => Err(format!("{n} requests failed").into()),
    }
}

//! Retry with a budget and a circuit breaker, focused: one flaky axum
//! service, one client, and what each layer of the client does about it.
//!
//! - **Server:** an axum service on 127.0.0.1 with two seeded
//!   `FaultLayer`s answering `503`: 10 % of requests all the time, and
//!   every request in an outage from 3 s to 6.5 s.
//! - **Client:** hyper under the resilience stack's HTTP preset: retry (3
//!   attempts, a retry budget of 20 % of recent requests plus 2 a second),
//!   a circuit breaker (opens at 50 % failures over 2 s, waits 1 s, then
//!   lets 3 trial calls through) and an attempt timeout. 4 tasks send
//!   100 GETs a second for 9 s.
//!
//! What to look for: before the outage retries absorb the sporadic errors
//! (about one attempt in ten is a retry, no request fails); in the outage
//! the budget caps retries (about 1.2 attempts per request, not 3) until
//! the breaker opens, then calls fail fast without reaching the server;
//! each 1 s later the breaker goes half-open, its trials fail and it opens
//! again, until the first trials after the outage succeed and it closes
//! (the requests between the end of the outage and those trials still fail
//! fast). Breaker transitions are printed as they happen (from
//! `CircuitBreaker::subscribe`, with the time since start and the verdict
//! that made each), then a table per phase:
//! requests, answered, failed after reaching the server, failed fast, and
//! the attempts that reached the server.
//!
//! ```text
//! cargo run --example retry_breaker            # the run and its table, then exit
//! cargo run --example retry_breaker -- --serve # then keep serving until Ctrl-C or SIGTERM
//! ```

use std::{
    net::SocketAddr,
    sync::{
        Arc, LazyLock, Mutex,
        atomic::{AtomicU32, Ordering},
    },
    time::Duration,
};

use axum::{
    Router,
    error_handling::HandleErrorLayer,
    extract::Path,
    http::{Request as AxumRequest, StatusCode},
    response::{IntoResponse, Response},
    routing::get,
};
use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::{client::legacy::Client, rt::TokioExecutor};
use orch::core::shutdown_signal;
use orch::resilience::{
    BoxError, BreakerState, CircuitBreaker, CircuitBreakerConfig, ResilienceLayer, RetryBudgetConfig,
    RetryConfig,
    chaos::{ErrorFault, FaultConfig, FaultLayer, FaultSchedule, InjectResponse},
    retry::BackoffConfig,
};
use tokio::time::{Instant, MissedTickBehavior};
use tower::{Layer, ServiceBuilder, ServiceExt};

const TASKS: usize = 4;
const PER_TASK: usize = 225;
const EVERY: Duration = Duration::from_millis(40);
const OUTAGE: (Duration, Duration) = (Duration::from_millis(3_000), Duration::from_millis(6_500));

/// Attempts that reached the server, by request number (the path's id).
static ATTEMPTS: LazyLock<Vec<AtomicU32>> =
    LazyLock::new(|| (0..TASKS * PER_TASK).map(|_| AtomicU32::new(0)).collect());

// ===== the server =====

type Faults = FaultLayer<InjectResponse<fn() -> Response>>;

fn unavailable() -> Response {
    (StatusCode::SERVICE_UNAVAILABLE, "injected fault").into_response()
}

/// The sporadic errors and the outage window, timed from now.
fn faults(seed: u64) -> Result<(Faults, Faults), BoxError> {
    let sporadic = FaultConfig {
        name: "sporadic".to_owned(),
        seed,
        error: Some(ErrorFault { probability: 0.1 }),
        ..FaultConfig::default()
    };
    let outage = FaultConfig {
        name: "outage".to_owned(),
        seed,
        error: Some(ErrorFault { probability: 1.0 }),
        schedule: FaultSchedule::Window {
            from: OUTAGE.0,
            until: OUTAGE.1,
        },
        ..FaultConfig::default()
    };
    Ok((
        sporadic.build()?.respond_with(unavailable as _),
        outage.build()?.respond_with(unavailable as _),
    ))
}

/// Counts the attempt before the faults decide its fate.
fn count_attempt<B>(request: AxumRequest<B>) -> AxumRequest<B> {
    let id = request
        .uri()
        .path()
        .rsplit('/')
        .next()
        .and_then(|n| n.parse::<usize>().ok());
    if let Some(attempts) = id.and_then(|id| ATTEMPTS.get(id)) {
        attempts.fetch_add(1, Ordering::Relaxed);
    }
    request
}

async fn absorb(error: BoxError) -> Response {
    (StatusCode::INTERNAL_SERVER_ERROR, error.to_string()).into_response()
}

async fn serve(seed: u64) -> Result<SocketAddr, BoxError> {
    let (sporadic, outage) = faults(seed)?;
    let app = Router::new()
        .route(
            "/items/{id}",
            get(|Path(id): Path<u64>| async move { format!("item {id}") }),
        )
        .layer(
            ServiceBuilder::new()
                .map_request(count_attempt)
                .layer(HandleErrorLayer::new(absorb))
                .layer(sporadic)
                .layer(outage),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, app).await {
            eprintln!("--- the server stopped: {error}");
        }
    });
    Ok(addr)
}

// ===== the client =====

/// What became of one request.
#[derive(Debug, Clone, Copy)]
struct Sent {
    phase: usize,
    ok: bool,
}

const PHASES: [&str; 4] = [
    "sporadic errors",
    "outage, breaker closed",
    "outage, breaker not closed",
    "after the outage",
];

fn phase(elapsed: Duration, breaker: &CircuitBreaker) -> usize {
    if elapsed < OUTAGE.0 {
        0
    } else if elapsed < OUTAGE.1 {
        if breaker.state() == BreakerState::Closed {
            1
        } else {
            2
        }
    } else {
        3
    }
}

async fn run_load(addr: SocketAddr, breaker: &CircuitBreaker) -> Result<Vec<Sent>, BoxError> {
    let stack = ResilienceLayer::http()
        .overall_timeout(Duration::from_secs(2))
        .retry(
            RetryConfig::default()
                .max_attempts(3)
                .backoff(BackoffConfig::constant(Duration::from_millis(10)))
                .budget(
                    RetryBudgetConfig::default()
                        .ttl(Duration::from_secs(1))
                        .min_retries_per_sec(2)
                        .percent_can_retry(0.2),
                ),
        )
        .shared_breaker(breaker.clone())
        .attempt_timeout(Duration::from_millis(300))
        .build()?;
    let client = stack.layer(Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>());
    let started = Instant::now();
    let sent = Arc::new(Mutex::new(vec![None; TASKS * PER_TASK]));
    let tasks: Vec<_> = (0..TASKS)
        .map(|task| {
            let (client, sent, breaker) = (client.clone(), Arc::clone(&sent), breaker.clone());
            tokio::spawn(async move {
                let mut ticks = tokio::time::interval(EVERY);
                ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
                for i in 0..PER_TASK {
                    ticks.tick().await;
                    let n = i * TASKS + task;
                    let phase = phase(started.elapsed(), &breaker);
                    let request = Request::get(format!("http://{addr}/items/{n}")).body(Full::default());
                    let ok = match request {
                        Ok(request) => match client.clone().oneshot(request).await {
                            Ok(response) if response.status().is_success() => {
                                response.into_body().collect().await.is_ok()
                            }
                            _ => false,
                        },
                        Err(_) => false,
                    };
                    if let Ok(mut sent) = sent.lock() {
                        sent[n] = Some(Sent { phase, ok });
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        task.await?;
    }
    let sent = sent.lock().map_err(|_| "a load task panicked")?;
    Ok(sent.iter().flatten().copied().collect())
}

// ===== the run =====

fn print_summary(sent: &[Sent], breaker: &CircuitBreaker, elapsed: Duration) {
    println!("--- summary after {:.1} s", elapsed.as_secs_f64());
    println!(
        "    {:<28} {:>8} {:>5} {:>7} {:>11} {:>9} {:>9}",
        "phase", "requests", "ok", "failed", "failed fast", "attempts", "per req"
    );
    for (index, name) in PHASES.iter().enumerate() {
        let (mut requests, mut ok, mut failed, mut fast, mut attempts) = (0, 0, 0, 0, 0);
        for (n, s) in sent.iter().enumerate().filter(|(_, s)| s.phase == index) {
            let reached = ATTEMPTS.get(n).map_or(0, |a| a.load(Ordering::Relaxed));
            requests += 1;
            attempts += reached;
            match (s.ok, reached) {
                (true, _) => ok += 1,
                (false, 0) => fast += 1,
                (false, _) => failed += 1,
            }
        }
        let per = f64::from(attempts) / f64::from(requests.max(1));
        println!("    {name:<28} {requests:>8} {ok:>5} {failed:>7} {fast:>11} {attempts:>9} {per:>9.2}");
    }
    let metrics = breaker.metrics();
    println!(
        "    breaker: opened {} times, rejected {} calls, {} now",
        metrics.openings,
        metrics.rejections,
        metrics.state.as_str()
    );
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let serve_on = std::env::args().any(|a| a == "--serve");
    // The breaker's transitions are printed from its subscription below,
    // so its own `tracing` warnings would say the same twice.
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "warn,orch_resilience::breaker=error".into()),
        )
        .with_target(false)
        .with_ansi(false)
        .init();
    let breaker = CircuitBreakerConfig::default()
        .name("items")
        .time_window(Duration::from_secs(2))
        .minimum_calls(20)
        .failure_rate_threshold(0.5)
        .open_wait(Duration::from_secs(1))
        .half_open_permits(3)
        .build()?;
    // The breaker's own story: every transition as it happens, with the
    // time since start and the verdict that made it.
    let started_at = Instant::now();
    let mut transitions = breaker.subscribe();
    tokio::spawn(async move {
        while let Ok(change) = transitions.recv().await {
            let verdict = match (change.calls, change.failure_rate) {
                (Some(calls), Some(rate)) => format!(", {:.0} % of {calls} calls failed", rate * 100.0),
                _ => String::new(),
            };
            println!(
                "{:>6.2} s  breaker {}: {} -> {} ({}{verdict})",
                started_at.elapsed().as_secs_f64(),
                change.name,
                change.from.as_str(),
                change.to.as_str(),
                change.reason.as_str(),
            );
        }
    });

    let run = async {
        let addr = serve(7).await?;
        println!(
            "--- serving on {addr}: 10 % errors, an outage from {:?} to {:?}; {} requests over {:.0} s",
            OUTAGE.0,
            OUTAGE.1,
            TASKS * PER_TASK,
            (EVERY * PER_TASK as u32).as_secs_f64()
        );
        let started = Instant::now();
        let sent = run_load(addr, &breaker).await?;
        print_summary(&sent, &breaker, started.elapsed());
        if serve_on {
            println!("--- serving on {addr}; Ctrl-C or SIGTERM shuts down");
            std::future::pending::<()>().await;
        }
        Ok::<_, BoxError>(())
    };
    tokio::select! {
        outcome = run => outcome?,
        signal = shutdown_signal() => println!("--- {} received", signal?),
    }
    Ok(())
}

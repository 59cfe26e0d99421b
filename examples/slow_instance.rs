//! The balancer under one slow instance, focused: the same load through
//! each of the balancer's algorithms, and how much of it the slow replica
//! gets.
//!
//! - **Server:** a supervisor runs `api`, four axum replicas on 127.0.0.1
//!   ports (`ChildSpec::serve_http`) with an HTTP readiness probe. Replica
//!   `api-0` is slow: a `FaultLayer` adds 20 to 30 ms to each of its
//!   answers; the others answer at once. Every answer names its replica.
//! - **Client:** the supervisor's events feed a registry
//!   (`SupervisorSource`); for each algorithm a fresh balancer over that
//!   registry (hyper connector), shared by 16 tasks that send 2,000 GETs
//!   in all, one after another each (a closed loop).
//! - **Algorithms:** P2C over peak-EWMA (response time, jumping to any
//!   slower answer, times requests in flight), P2C over requests in flight,
//!   and smooth round robin.
//!
//! It prints a table, one row per algorithm: the slow replica's share of
//! the requests, p50 and p99 latency, and the time the 2,000 requests took.
//! Round robin gives the slow replica its quarter whatever it costs; the
//! P2C algorithms notice it. Figures vary from run to run (real sockets,
//! a shared machine): the example asserts nothing about them.
//!
//! ```text
//! cargo run --example slow_instance            # the table, then exit
//! cargo run --example slow_instance -- --serve # then keep serving until Ctrl-C or SIGTERM
//! ```

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use axum::{
    Router,
    error_handling::HandleErrorLayer,
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::get,
};
use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use orch::core::{
    ChildContext, ChildSpec, HttpProbe, ProbeSpec, Supervisor, SupervisorSpec, shutdown_signal,
};
use orch::discovery::{
    Registry, SupervisorSource,
    balance::{Algorithm, Balancer, BalancerConfig},
    connect::HyperConnector,
};
use orch::resilience::{
    BoxError,
    chaos::{FaultConfig, FaultLayer, InjectError, LatencyFault},
};
use tokio::time::Instant;
use tower::{ServiceBuilder, ServiceExt};

const REPLICAS: usize = 4;
const REQUESTS: usize = 2_000;
const CONCURRENCY: usize = 16;
/// The header naming the replica that answered.
const SERVED_BY: &str = "x-served-by";

// ===== the service =====

/// The instance's ordinal in its replica group (`app/api-2` is 2).
fn ordinal(ctx: &ChildContext) -> Option<usize> {
    ctx.id().as_str().rsplit('-').next().and_then(|n| n.parse().ok())
}

async fn absorb(error: BoxError) -> Response {
    (StatusCode::INTERNAL_SERVER_ERROR, error.to_string()).into_response()
}

/// The router of one replica: slowed by `slowness` if it is replica 0.
fn api_router(ctx: &ChildContext, slowness: &FaultLayer<InjectError>) -> Router {
    let id = ctx.id().to_string();
    let router = Router::new()
        .route("/ready", get(|| async { StatusCode::OK }))
        .route("/work", get(move || async move { ([(SERVED_BY, id)], "done") }));
    if ordinal(ctx) == Some(0) {
        router.layer(
            ServiceBuilder::new()
                .layer(HandleErrorLayer::new(absorb))
                .layer(slowness.clone()),
        )
    } else {
        router
    }
}

fn api() -> Result<ChildSpec, BoxError> {
    let slowness = FaultConfig {
        name: "slow_api".to_owned(),
        seed: 11,
        latency: Some(LatencyFault {
            probability: 1.0,
            min: Duration::from_millis(20),
            max: Duration::from_millis(30),
        }),
        ..FaultConfig::default()
    }
    .build()?;
    let ready = ProbeSpec::new(HttpProbe::get("/ready")?)
        .period(Duration::from_millis(100))
        .timeout(Duration::from_millis(500));
    Ok(
        ChildSpec::serve_http("api", move |ctx| api_router(ctx, &slowness))
            .replicas(REPLICAS)
            .readiness(ready),
    )
}

// ===== the load =====

/// One algorithm's run.
struct Run {
    name: &'static str,
    latencies: Vec<Duration>,
    to_slow: usize,
    failures: usize,
    took: Duration,
}

/// Sends `REQUESTS` GETs from `CONCURRENCY` tasks through one fresh
/// balancer running `algorithm`.
async fn run(
    name: &'static str,
    algorithm: Algorithm,
    registry: &Registry,
    slow_id: &str,
) -> Result<Run, BoxError> {
    let config = BalancerConfig::default().name(name).algorithm(algorithm).seed(3);
    let balancer = Balancer::with_config(&config, registry.changes(), HyperConnector::<Full<Bytes>>::new())?
        .into_shared();
    let results = Arc::new(Mutex::new(Vec::with_capacity(REQUESTS)));
    let started = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..CONCURRENCY)
        .map(|_| {
            let (balancer, results, next) = (balancer.clone(), Arc::clone(&results), Arc::clone(&next));
            tokio::spawn(async move {
                while next.fetch_add(1, Ordering::Relaxed) < REQUESTS {
                    let sent = Instant::now();
                    let outcome = match Request::get("/work").body(Full::default()) {
                        Ok(request) => balancer.clone().oneshot(request).await.ok(),
                        Err(_) => None,
                    };
                    let served_by = match outcome {
                        Some(response) if response.status().is_success() => {
                            let by = response
                                .headers()
                                .get(SERVED_BY)
                                .and_then(|v| v.to_str().ok())
                                .map(str::to_owned);
                            response.into_body().collect().await.ok().and(by)
                        }
                        _ => None,
                    };
                    if let Ok(mut results) = results.lock() {
                        results.push((sent.elapsed(), served_by));
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        task.await?;
    }
    let took = started.elapsed();
    let results = std::mem::take(&mut *results.lock().map_err(|_| "a load task panicked")?);
    let mut run = Run {
        name,
        latencies: Vec::with_capacity(results.len()),
        to_slow: 0,
        failures: 0,
        took,
    };
    for (latency, served_by) in results {
        match served_by {
            Some(by) => {
                run.to_slow += usize::from(by == slow_id);
                run.latencies.push(latency);
            }
            None => run.failures += 1,
        }
    }
    run.latencies.sort_unstable();
    Ok(run)
}

fn percentile(sorted: &[Duration], q: f64) -> Duration {
    let index = ((sorted.len() as f64 * q) as usize).min(sorted.len().saturating_sub(1));
    sorted.get(index).copied().unwrap_or_default()
}

fn print_table(runs: &[Run], slow_id: &str) {
    println!("--- {REQUESTS} requests per algorithm, {CONCURRENCY} at a time; {slow_id} is slow");
    println!(
        "    {:<20} {:>13} {:>9} {:>9} {:>8} {:>8}",
        "algorithm", "to slow", "p50 ms", "p99 ms", "took s", "failed"
    );
    for run in runs {
        let share = run.to_slow as f64 * 100.0 / REQUESTS as f64;
        println!(
            "    {:<20} {:>5} {:>5.1} % {:>9.2} {:>9.2} {:>8.2} {:>8}",
            run.name,
            run.to_slow,
            share,
            percentile(&run.latencies, 0.50).as_secs_f64() * 1e3,
            percentile(&run.latencies, 0.99).as_secs_f64() * 1e3,
            run.took.as_secs_f64(),
            run.failures,
        );
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
    let spec = SupervisorSpec::builder("app").child(api()?).build()?;
    let handle = Supervisor::start(spec)?;
    let registry = Registry::new("api");
    let _source = SupervisorSource::new("api").start(&handle, &registry).await?;
    let slow_id = "app/api-0";

    let scenario = async {
        let all_ready = registry.wait_until(|endpoints| endpoints.len() == REPLICAS);
        tokio::time::timeout(Duration::from_secs(20), all_ready)
            .await
            .map_err(|_| "the replicas never became ready")?;
        let algorithms = [
            (
                "p2c peak-ewma",
                Algorithm::peak_ewma()
                    .default_rtt(Duration::from_millis(1))
                    .into(),
            ),
            ("p2c pending requests", Algorithm::pending_requests().into()),
            ("round robin", Algorithm::RoundRobin),
        ];
        let mut runs = Vec::new();
        for (name, algorithm) in algorithms {
            runs.push(run(name, algorithm, &registry, slow_id).await?);
        }
        print_table(&runs, slow_id);
        if serve {
            println!("--- serving; Ctrl-C or SIGTERM shuts down");
            std::future::pending::<()>().await;
        }
        Ok::<_, BoxError>(())
    };
    let outcome = tokio::select! {
        outcome = scenario => outcome,
        signal = shutdown_signal() => {
            println!("--- {} received", signal?);
            Ok(())
        }
    };
    handle.shutdown().await?;
    outcome
}

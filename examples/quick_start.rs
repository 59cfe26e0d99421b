//! The README's quick start, as a program that runs: three supervised axum
//! replicas, discovered through a registry, called with hyper through the
//! balancer and the resilience stack. `tests/readme.rs` checks that the
//! README shows exactly the code between the markers below.
//!
//! ```text
//! cargo run --example quick_start
//! ```

// quick start: begin
use std::time::Duration;

use axum::{Router, routing::get};
use bytes::Bytes;
use http_body_util::Full;
use orch::core::{ChildSpec, HttpProbe, ProbeSpec, Supervisor, SupervisorSpec};
use orch::discovery::{Registry, SupervisorSource, balance::Balancer, connect::HyperConnector};
use orch::resilience::{CircuitBreakerConfig, ResilienceLayer, RetryConfig};
use tower::{Layer, ServiceExt};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    // 1. A supervisor runs three replicas of an axum service on loopback ports.
    let hello = ChildSpec::serve_http("hello", |_ctx| {
        Router::new().route("/", get(|| async { "hello" }))
    })
    .replicas(3)
    .readiness(ProbeSpec::new(HttpProbe::get("/")?));
    let supervisor = Supervisor::start(SupervisorSpec::builder("app").child(hello).build()?)?;
    // 2. Replicas enter a registry when ready and leave it when they stop.
    let registry = Registry::new("hello");
    let _source = SupervisorSource::new("hello")
        .start(&supervisor, &registry)
        .await?;
    // 3. A balancer connects each replica with hyper; clones share it.
    let balancer = Balancer::new(registry.changes(), HyperConnector::<Full<Bytes>>::new()).into_shared();
    // 4. Timeouts, retries with a budget and a circuit breaker around it.
    let client = ResilienceLayer::http()
        .overall_timeout(Duration::from_secs(2))
        .retry(RetryConfig::default())
        .circuit_breaker(CircuitBreakerConfig::default().name("hello"))
        .attempt_timeout(Duration::from_millis(500))
        .build()?
        .layer(balancer);
    for _ in 0..3 {
        let response = client
            .clone()
            .oneshot(http::Request::get("/").body(Full::default())?)
            .await?;
        println!("GET / -> {}", response.status());
    }
    supervisor.shutdown().await?;
    Ok(())
}
// quick start: end

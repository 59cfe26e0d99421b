//! The two client stacks of the loop, each one `Clone` handle that any
//! number of tasks share:
//!
//! - **orders** (the load generator's): version (`ClientVersioningLayer`,
//!   v1 or v2) → resilience stack (`ResilienceLayer::http()`: timeouts,
//!   retry with a budget, circuit breaker, an `Idempotency-Key` on every
//!   `POST` that has none) → P2C peak-EWMA balancer over the `orders`
//!   registry, connecting with hyper;
//! - **payments** (the orders workers'): resilience stack
//!   (`ResilienceLayer::grpc()`, the calls made safe to retry by the
//!   `idempotency-key` they carry) → balancer over the `payments`
//!   registry, connecting with a tonic `Channel` per replica → the
//!   generated `PaymentsClient`.
//!
//! Below the orders stack a counter sees every attempt that reaches the
//! network, so the report can tell retries from requests.

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use orch::discovery::{
    Registry,
    balance::{Balancer, HttpFailures},
    connect::{HyperConnector, TonicConnector},
};
use orch::resilience::{BoxError, CircuitBreaker, HttpSafety, ResilienceError, ResilienceLayer};
use orch::versioning::{ClientVersioningLayer, Deprecations};
use tower::{Layer, ServiceBuilder, ServiceExt, util::BoxCloneSyncService};

use crate::config::ClientConfig;
use crate::stats::Stats;

/// The orders API as the load generator calls it; answers come with their
/// body read.
pub type OrdersClient = BoxCloneSyncService<http::Request<Full<Bytes>>, http::Response<Bytes>, BoxError>;

/// A tonic channel through the payments stack.
pub type PaymentsChannel =
    BoxCloneSyncService<http::Request<tonic::body::Body>, http::Response<tonic::body::Body>, ResilienceError>;

/// The generated client over the payments stack.
pub type PaymentsClient = crate::proto::payments_client::PaymentsClient<PaymentsChannel>;

/// The load generator's clients: one per API version, over one stack.
pub struct OrdersClients {
    /// Written against version 1 (deprecated).
    pub v1: OrdersClient,
    /// Written against version 2.
    pub v2: OrdersClient,
    /// The stack's breaker, for the progress line and the report.
    pub breaker: Option<CircuitBreaker>,
    /// What the version 1 client heard about its deprecation.
    pub deprecations: Deprecations,
}

/// Builds the orders clients over `registry`.
pub fn orders(
    config: &ClientConfig,
    registry: &Registry,
    stats: &Arc<Stats>,
) -> Result<OrdersClients, BoxError> {
    let balancer = Balancer::with_config(
        &config.balancer,
        registry.changes(),
        HyperConnector::<Full<Bytes>>::new(),
    )?
    .into_shared();
    let stats = Arc::clone(stats);
    let counted = ServiceBuilder::new()
        .map_request(move |request: http::Request<Full<Bytes>>| {
            stats.attempts.incr();
            request
        })
        .service(balancer);
    let stack = ResilienceLayer::http()
        .safety(HttpSafety::default().add_idempotency_key(true))
        .build_from_config(&config.resilience, "orders_client.resilience")?;
    let breaker = stack.breaker().cloned();
    let resilient = stack.layer(counted);
    let versioned = |version: &str| -> Result<_, BoxError> {
        let layer = ClientVersioningLayer::builder("orders", version).build()?;
        let deprecations = layer.deprecations();
        let client = layer
            .layer(resilient.clone())
            .map_err(|error| -> BoxError { error.into() })
            .and_then(read_body);
        Ok((BoxCloneSyncService::new(client), deprecations))
    };
    let (v1, deprecations) = versioned("1")?;
    let (v2, _) = versioned("2")?;
    Ok(OrdersClients {
        v1,
        v2,
        breaker,
        deprecations,
    })
}

/// The answer with its whole body read.
async fn read_body<B>(response: http::Response<B>) -> Result<http::Response<Bytes>, BoxError>
where
    B: http_body::Body,
    B::Error: Into<BoxError>,
{
    let (parts, body) = response.into_parts();
    let body = body.collect().await.map_err(Into::into)?.to_bytes();
    Ok(http::Response::from_parts(parts, body))
}

/// Builds the payments client over `registry`, and returns its breaker.
pub fn payments(
    config: &ClientConfig,
    registry: &Registry,
) -> Result<(PaymentsClient, Option<CircuitBreaker>), BoxError> {
    let template = tonic::transport::Endpoint::from_static("http://payments")
        .connect_timeout(std::time::Duration::from_secs(1));
    // HttpFailures: an UNAVAILABLE answer counts against the replica that
    // gave it, so a sick replica loses its share of traffic.
    let balancer = Balancer::with_config(
        &config.balancer,
        registry.changes(),
        TonicConnector::new(template)?,
    )?
    .classify_with(HttpFailures)
    .into_shared();
    let stack = ResilienceLayer::grpc(HttpSafety::default())
        .build_from_config(&config.resilience, "payments_client.resilience")?;
    let breaker = stack.breaker().cloned();
    // The stack's own error type, not a boxed one: rustc cannot prove the
    // generated client's futures `Send` over `Box<dyn Error>` (a
    // higher-ranked lifetime it does not generalise).
    let channel = stack
        .layer(balancer)
        .map_response(|response: http::Response<_>| response.map(tonic::body::Body::new));
    Ok((PaymentsClient::new(BoxCloneSyncService::new(channel)), breaker))
}

//! The `orders` service: a replica group of axum servers whose API takes
//! orders, puts each on a work queue that every replica's workers share,
//! and answers once a worker has charged and fulfilled it.
//!
//! A request goes through, outside in:
//!
//! 1. `VersioningLayer`: version 1 (deprecated, with a sunset) or 2, from
//!    the `api-version` header; the answer says which served it;
//! 2. `ChainLayer`: the handler is written against version 2 only; a
//!    version-change chain upgrades version 1 bodies (`customer` became
//!    `customer_id`, `currency` was added) and downgrades the answers;
//! 3. the chaos faults of this replica (injected `503`s, latency);
//! 4. `IdempotencyLayer` over a `MemoryStore` shared by every replica: an
//!    order runs once per `Idempotency-Key`, every repeat gets the first
//!    answer (`Idempotent-Replayed: true`), a repeat while it runs `409`;
//! 5. the handler, which queues the order and waits for a worker.

use std::{sync::Arc, time::Duration};

use axum::{
    Json, Router,
    error_handling::HandleErrorLayer,
    extract::State,
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use orch::core::{ChildContext, ChildSpec, HttpProbe, ProbeSpec, autoscale::WorkQueue};
use orch::resilience::{
    BoxError,
    idempotency::{
        MemoryStore,
        http::{IdempotencyConfig, IdempotencyLayer},
    },
};
use orch::versioning::{
    ChainLayer, ChangeChain, Lifecycle, Negotiation, VersionChange, VersionSet, VersioningLayer,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::oneshot;
use tower::{Layer, ServiceBuilder};

use crate::chaos::{ChaosPlan, HttpFaults, Incarnation, Incarnations};
use crate::stats::Stats;
use crate::worker::{Job, Workers};

/// An order as version 2 of the API takes it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NewOrder {
    /// Who orders.
    pub customer_id: String,
    /// What it costs, in cents.
    pub amount_cents: u64,
    /// In which currency.
    pub currency: String,
}

/// An order as version 2 of the API answers it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Order {
    /// The order's id, derived from its idempotency key.
    pub order_id: String,
    /// Who ordered.
    pub customer_id: String,
    /// What it cost, in cents.
    pub amount_cents: u64,
    /// In which currency.
    pub currency: String,
    /// The charge that paid it.
    pub charge_id: String,
    /// The replica that took the order.
    pub served_by: String,
}

/// The id of the order placed with idempotency key `key` (quotes of the
/// sf-string removed): one key, one order, however often it is sent.
pub fn order_id(key: &str) -> String {
    format!("ord_{}", key.trim_matches('"'))
}

/// The versions of the API and how they differ.
pub fn versions() -> Result<(VersionSet, ChangeChain), orch::versioning::VersionError> {
    // Deprecated on 2025-01-01, gone on 2027-01-01.
    let day = |secs: u64| std::time::UNIX_EPOCH + Duration::from_secs(secs);
    let set = VersionSet::builder("orders")
        .version(
            "1",
            Lifecycle::deprecated(day(1_735_689_600))
                .sunset(day(1_798_761_600))
                .link("https://example.com/orders/migrate-to-v2"),
        )
        .version("2", Lifecycle::Stable)
        .build()?;
    let chain = ChangeChain::builder(&set)
        .change(
            VersionChange::new(
                "2",
                "Renames `customer` to `customer_id` and adds `currency` (default `usd`).",
            )
            .rename("customer", "customer_id")
            .request(|body| {
                if let Some(order) = body.as_object_mut() {
                    order.entry("currency").or_insert_with(|| Value::from("usd"));
                }
                Ok(())
            })
            .response(|body| {
                if let Some(order) = body.as_object_mut() {
                    order.remove("currency");
                }
                Ok(())
            }),
        )
        .build()?;
    Ok((set, chain))
}

/// What every replica of `orders` shares.
#[derive(Clone)]
pub struct Orders {
    stats: Arc<Stats>,
    incarnations: Arc<Incarnations>,
    queue: WorkQueue<Job>,
    workers: Workers,
    idempotency: IdempotencyLayer,
    versioning: VersioningLayer,
    chain: ChainLayer,
    errors: HttpFaults,
    /// The slow replica's latency, and the calm of the others.
    slowness: (Option<(usize, HttpFaults)>, HttpFaults),
    /// How long a handler waits for a worker before answering `503`.
    wait: Duration,
}

impl Orders {
    /// The service, with its idempotency records in `store` (shared by
    /// every replica) and its orders on `queue`.
    pub fn new(
        stats: Arc<Stats>,
        incarnations: Arc<Incarnations>,
        store: MemoryStore,
        queue: WorkQueue<Job>,
        workers: Workers,
        chaos: &ChaosPlan,
    ) -> Result<Self, BoxError> {
        let config = IdempotencyConfig::default()
            .name("orders".to_owned())
            .key_required(true)
            .lease(Duration::from_secs(10));
        let (set, chain) = versions()?;
        Ok(Self {
            stats,
            incarnations,
            queue,
            workers,
            idempotency: IdempotencyLayer::new(store, config)?,
            versioning: VersioningLayer::new(Negotiation::new(set).build()?),
            chain: ChainLayer::new(chain),
            errors: chaos.order_errors()?,
            slowness: match chaos.slow {
                Some((ordinal, _)) => (
                    Some((ordinal, chaos.slowness(ordinal)?)),
                    chaos.slowness(usize::MAX)?,
                ),
                None => (None, chaos.slowness(usize::MAX)?),
            },
            wait: Duration::from_secs(3),
        })
    }

    /// The replica group: `replicas` axum servers with HTTP probes, each
    /// running its workers; scaled-away replicas leave the balancer first
    /// and finish the orders they took.
    pub fn child(&self, replicas: usize) -> Result<ChildSpec, BoxError> {
        let fast = |probe: HttpProbe| {
            ProbeSpec::new(probe)
                .period(Duration::from_millis(100))
                .timeout(Duration::from_millis(200))
        };
        let orders = self.clone();
        Ok(ChildSpec::serve_http("orders", move |ctx| orders.router(ctx))
            .replicas(replicas)
            .readiness(fast(HttpProbe::get("/ready")?).failure_threshold(2))
            .liveness(fast(HttpProbe::get("/healthz")?).failure_threshold(3))
            .drain_delay(Duration::from_millis(300))
            .shutdown_grace(Duration::from_secs(4)))
    }

    /// The router of one incarnation, which also starts its workers.
    fn router(&self, ctx: &ChildContext) -> Router {
        let incarnation = self.incarnations.register(ctx);
        self.workers.start(ctx, &incarnation, self.queue.clone());
        let replica = Arc::new(Replica {
            orders: self.clone(),
            incarnation,
            name: format!("{} (generation {})", ctx.id(), ctx.generation()),
        });
        // The chaos of this replica, outside the idempotency layer: an
        // injected error never reaches the handler.
        let slow = match &self.slowness {
            (Some((slow, faults)), _) if *slow == Incarnation::ordinal(ctx) => faults.clone(),
            (_, calm) => calm.clone(),
        };
        let api = Router::new()
            .route("/orders", post(create_order))
            .layer(self.idempotency.clone())
            .layer(
                ServiceBuilder::new()
                    .layer(HandleErrorLayer::new(absorb))
                    .layer(self.errors.clone())
                    .layer(slow),
            );
        let app = Router::new()
            .route("/ready", get(ready))
            .route("/healthz", get(|| async { StatusCode::OK }))
            .merge(api)
            .with_state(replica);
        let versioned = self.versioning.layer(self.chain.layer(app));
        Router::new().fallback_service(versioned)
    }
}

/// An error of the chaos layers as the answer a client gets.
async fn absorb(error: BoxError) -> Response {
    (StatusCode::INTERNAL_SERVER_ERROR, error.to_string()).into_response()
}

/// One incarnation of an `orders` replica.
struct Replica {
    orders: Orders,
    incarnation: Arc<Incarnation>,
    name: String,
}

/// Readiness: hangs while chaos stalls it, so that the probe times out.
async fn ready(State(replica): State<Arc<Replica>>) -> StatusCode {
    if let Some(until) = replica.incarnation.stalled_until() {
        tokio::time::sleep_until(until).await;
    }
    StatusCode::OK
}

/// Queues the order and answers once a worker charged and fulfilled it.
async fn create_order(
    State(replica): State<Arc<Replica>>,
    headers: HeaderMap,
    Json(order): Json<NewOrder>,
) -> Response {
    // The idempotency layer refused requests without a key already.
    let Some(key) = headers
        .get(orch::resilience::IDEMPOTENCY_KEY)
        .and_then(|k| k.to_str().ok())
    else {
        return (StatusCode::BAD_REQUEST, "missing Idempotency-Key").into_response();
    };
    let order_id = order_id(key);
    let (reply, answer) = oneshot::channel();
    replica.orders.queue.push(Job {
        order_id: order_id.clone(),
        payment_key: format!("\"pay_{}\"", key.trim_matches('"')),
        amount_cents: order.amount_cents,
        reply,
    });
    let crashed = replica.incarnation.crashed.cancelled();
    let outcome = tokio::select! {
        () = crashed => return unavailable("the replica crashed"),
        outcome = tokio::time::timeout(replica.orders.wait, answer) => outcome,
    };
    match outcome {
        Ok(Ok(Ok(charge_id))) => {
            replica.orders.stats.book.confirm(&order_id, &charge_id);
            let order = Order {
                order_id,
                customer_id: order.customer_id,
                amount_cents: order.amount_cents,
                currency: order.currency,
                charge_id,
                served_by: replica.name.clone(),
            };
            (StatusCode::CREATED, Json(order)).into_response()
        }
        Ok(Ok(Err(error))) => unavailable(&format!("payment failed: {error}")),
        Ok(Err(_)) => unavailable("the worker fulfilling the order crashed"),
        Err(_) => unavailable("no worker took the order in time"),
    }
}

/// `503` with a short `Retry-After`: the order was not made, and the
/// idempotency layer releases its key, so that sending it again runs it.
fn unavailable(detail: &str) -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [("retry-after", "1")],
        detail.to_owned(),
    )
        .into_response()
}

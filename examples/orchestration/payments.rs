//! The `payments` service: a replica group of tonic servers that charge
//! orders, each charge written to a ledger that every replica shares, as
//! they would share a database.
//!
//! A charge must happen once per order however often it is asked for: the
//! orders workers retry, and a worker that crashed after its charge went
//! through leaves the order to be fulfilled again. Each `Charge` call
//! carries an `idempotency-key` derived from the order's, and a
//! `GrpcIdempotencyLayer` over one `MemoryStore` shared by every replica
//! (Redis or PostgreSQL across processes) runs the handler once per key
//! and replays its answer to every repeat. The ledger records every run of
//! the handler, so a double charge would show in it.

use std::{sync::Arc, time::Duration};

use axum::error_handling::HandleErrorLayer;
use orch::core::{ChildContext, ChildSpec, GrpcHealthProbe, ProbeSpec};
use orch::resilience::{
    BoxError,
    idempotency::{MemoryStore, grpc::GrpcIdempotencyLayer, http::IdempotencyConfig},
};
use tonic::{Request, Response, Status, service::Routes};
use tower::ServiceBuilder;

use crate::chaos::{GrpcFaults, GrpcResponse, Incarnation, Incarnations};
use crate::proto::{
    ChargeReply, ChargeRequest,
    payments_server::{self, PaymentsServer},
};
use crate::stats::Stats;

/// How long writing a charge to the ledger takes: long enough that calls
/// are in flight when a replica crashes.
const LEDGER_WRITE: Duration = Duration::from_millis(2);

/// What every replica of `payments` shares.
#[derive(Clone)]
pub struct Payments {
    stats: Arc<Stats>,
    incarnations: Arc<Incarnations>,
    idempotency: GrpcIdempotencyLayer,
    faults: (GrpcFaults, GrpcFaults),
}

impl Payments {
    /// The service over `store` (shared by every replica), with `faults`
    /// (a steady share of errors, an outage) in front of it.
    pub fn new(
        stats: Arc<Stats>,
        incarnations: Arc<Incarnations>,
        store: MemoryStore,
        faults: (GrpcFaults, GrpcFaults),
    ) -> Result<Self, orch::resilience::ConfigError> {
        let config = IdempotencyConfig::default()
            .name("payments".to_owned())
            .grpc_methods(vec![format!("/{}/Charge", payments_server::SERVICE_NAME)])
            .key_required(true)
            // A charge takes milliseconds: a repeat that finds it running
            // should come back soon, not in the default second.
            .lease(Duration::from_secs(5));
        Ok(Self {
            stats,
            incarnations,
            idempotency: GrpcIdempotencyLayer::new(store, config)?,
            faults,
        })
    }

    /// The replica group: `replicas` tonic servers with `grpc.health.v1`
    /// probes (readiness asks for `Payments`, liveness for the server).
    pub fn child(&self, replicas: usize) -> ChildSpec {
        let fast = |probe: GrpcHealthProbe| {
            ProbeSpec::new(probe)
                .period(Duration::from_millis(100))
                .timeout(Duration::from_millis(200))
        };
        let payments = self.clone();
        ChildSpec::serve_grpc("payments", move |ctx| payments.routes(ctx))
            .replicas(replicas)
            .readiness(fast(GrpcHealthProbe::service(payments_server::SERVICE_NAME)))
            .liveness(fast(GrpcHealthProbe::new()).failure_threshold(2))
            .drain_delay(Duration::from_millis(200))
            .shutdown_grace(Duration::from_secs(2))
    }

    /// The services of one incarnation: health, and `Payments` behind the
    /// faults and the idempotency layer (faults outside, so that an
    /// injected error never runs the handler).
    fn routes(&self, ctx: &ChildContext) -> Routes {
        let incarnation = self.incarnations.register(ctx);
        let (reporter, health) = tonic_health::server::health_reporter();
        tokio::spawn(async move {
            reporter.set_serving::<PaymentsServer<Charger>>().await;
        });
        let charger = Charger {
            stats: Arc::clone(&self.stats),
            incarnation,
            served_by: format!("{} (generation {})", ctx.id(), ctx.generation()),
        };
        let (steady, outage) = self.faults.clone();
        let payments = ServiceBuilder::new()
            .map_request(|request: http::Request<axum::body::Body>| request.map(tonic::body::Body::new))
            .layer(HandleErrorLayer::new(internal))
            .layer(outage)
            .layer(steady)
            .layer(self.idempotency.clone())
            .service(PaymentsServer::new(charger));
        let router = Routes::new(health).into_axum_router().route_service(
            &format!("/{}/{{*method}}", payments_server::SERVICE_NAME),
            payments,
        );
        Routes::from(router)
    }
}

/// An error of the layers in front of `Payments` as the status a client
/// gets: `INTERNAL`, which is not retried.
async fn internal(error: BoxError) -> GrpcResponse {
    Status::internal(error.to_string()).into_http()
}

/// The `Payments` service of one incarnation.
struct Charger {
    stats: Arc<Stats>,
    incarnation: Arc<Incarnation>,
    served_by: String,
}

#[tonic::async_trait]
impl payments_server::Payments for Charger {
    async fn charge(&self, request: Request<ChargeRequest>) -> Result<Response<ChargeReply>, Status> {
        let request = request.into_inner();
        if request.amount_cents == 0 {
            return Err(Status::invalid_argument("amount_cents must not be zero"));
        }
        tokio::select! {
            // Biased, so that a crashed replica charges nothing more.
            biased;
            () = self.incarnation.crashed.cancelled() => Err(Status::unavailable("the replica crashed")),
            () = tokio::time::sleep(LEDGER_WRITE) => Ok(Response::new(ChargeReply {
                charge_id: self.stats.ledger.charge(&request.order_id),
                served_by: self.served_by.clone(),
            })),
        }
    }
}

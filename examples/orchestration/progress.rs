//! The live progress line, once a second: the phase of the load, replicas
//! per service, requests per second, errors, the backlog and the breakers.

use std::{sync::Arc, time::Duration};

use orch::core::{SupervisorHandle, autoscale::WorkQueue};
use orch::resilience::CircuitBreaker;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::load::LoadShape;
use crate::stats::Stats;
use crate::worker::Job;

/// What the progress line reads.
pub struct Progress {
    /// The tree.
    pub handle: SupervisorHandle,
    /// The counters.
    pub stats: Arc<Stats>,
    /// The orders waiting for a worker.
    pub queue: WorkQueue<Job>,
    /// The breakers of the orders and payments clients.
    pub breakers: (Option<CircuitBreaker>, Option<CircuitBreaker>),
    /// The shape of the load, for its phase.
    pub shape: LoadShape,
}

impl Progress {
    /// Logs a line every second until `stop`.
    pub async fn run(self, stop: CancellationToken) {
        let started = Instant::now();
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.tick().await;
        let (mut requests, mut errors) = (0, 0);
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            let Ok(children) = self.handle.children().await else {
                return;
            };
            let replicas = |id: &str| {
                children
                    .iter()
                    .find(|c| c.id == id)
                    .map_or_else(|| "-".to_owned(), |c| format!("{}/{}", c.ready, c.desired))
            };
            let state =
                |breaker: &Option<CircuitBreaker>| breaker.as_ref().map_or("none", |b| b.state().as_str());
            let (now_requests, now_errors) = (self.stats.requests.get(), self.stats.errors.get());
            tracing::info!(
                t_s = started.elapsed().as_secs(),
                phase = self.shape.phase_at(started.elapsed()),
                orders = %replicas("orders"),
                payments = %replicas("payments"),
                req_per_s = now_requests - requests,
                errors = now_errors - errors,
                backlog = self.queue.len(),
                charges = self.stats.ledger.len(),
                orders_breaker = state(&self.breakers.0),
                payments_breaker = state(&self.breakers.1),
                "progress"
            );
            (requests, errors) = (now_requests, now_errors);
        }
    }
}

//! The workers of an `orders` replica: each takes the next order off the
//! queue that every replica shares, charges it through the payments
//! client, fulfils it, and hands the answer to the request waiting for it.
//!
//! A replica runs a fixed number of workers, so orders beyond what the
//! replicas can work on wait in the queue: that backlog is what the
//! autoscaler reads. The charge carries an idempotency key derived from
//! the order's, so an order fulfilled twice (its first worker crashed
//! after the charge, or its first request gave up waiting) is charged once.

use std::{sync::Arc, time::Duration};

use orch::core::{ChildContext, autoscale::WorkQueue};
use orch::resilience::{IDEMPOTENCY_KEY, idempotency::http::IDEMPOTENT_REPLAYED};
use tokio::sync::oneshot;
use tonic::metadata::{MetadataKey, MetadataValue};

use crate::chaos::Incarnation;
use crate::clients::PaymentsClient;
use crate::proto::ChargeRequest;
use crate::stats::Stats;

/// One order waiting for a worker.
#[derive(Debug)]
pub struct Job {
    /// The order's id.
    pub order_id: String,
    /// The `idempotency-key` of its charge (an sf-string).
    pub payment_key: String,
    /// What to charge.
    pub amount_cents: u64,
    /// Where the charge's id (or why there is none) goes.
    pub reply: oneshot::Sender<Result<String, String>>,
}

/// How the workers of every replica work.
#[derive(Clone)]
pub struct Workers {
    stats: Arc<Stats>,
    payments: PaymentsClient,
    per_replica: usize,
    job_time: Duration,
}

impl Workers {
    /// `per_replica` workers per replica, charging through `payments`,
    /// each order taking `job_time` to fulfil.
    pub fn new(stats: Arc<Stats>, payments: PaymentsClient, per_replica: usize, job_time: Duration) -> Self {
        Self {
            stats,
            payments,
            per_replica,
            job_time,
        }
    }

    /// Starts the workers of the incarnation `ctx`. They stop taking jobs
    /// when it is asked to stop, finishing the one in hand; when it
    /// crashes, they drop it.
    pub fn start(&self, ctx: &ChildContext, incarnation: &Arc<Incarnation>, queue: WorkQueue<Job>) {
        for _ in 0..self.per_replica {
            let (workers, queue, token, incarnation) = (
                self.clone(),
                queue.clone(),
                ctx.token().clone(),
                Arc::clone(incarnation),
            );
            tokio::spawn(async move {
                loop {
                    let job = tokio::select! {
                        // Biased: a replica asked to stop takes no new job.
                        biased;
                        () = token.cancelled() => return,
                        job = queue.pop() => job,
                    };
                    if job.reply.is_closed() {
                        workers.stats.jobs_skipped.incr();
                        continue;
                    }
                    tokio::select! {
                        biased;
                        () = incarnation.crashed.cancelled() => {
                            workers.stats.jobs_lost.incr();
                            return;
                        }
                        answer = workers.fulfil(&job) => {
                            let _gone = job.reply.send(answer);
                        }
                    }
                }
            });
        }
    }

    /// Charges the order, then fulfils it.
    async fn fulfil(&self, job: &Job) -> Result<String, String> {
        let mut request = tonic::Request::new(ChargeRequest {
            order_id: job.order_id.clone(),
            amount_cents: job.amount_cents,
        });
        let key = MetadataValue::try_from(job.payment_key.as_str()).map_err(|e| e.to_string())?;
        let name = MetadataKey::from_bytes(IDEMPOTENCY_KEY.as_str().as_bytes()).map_err(|e| e.to_string())?;
        request.metadata_mut().insert(name, key);
        self.stats.charges_asked.incr();
        let reply = self
            .payments
            .clone()
            .charge(request)
            .await
            .map_err(|status| status.to_string())?;
        if reply.metadata().get(IDEMPOTENT_REPLAYED.as_str()).is_some() {
            self.stats.charge_replays.incr();
        }
        tokio::time::sleep(self.job_time).await;
        Ok(reply.into_inner().charge_id)
    }
}

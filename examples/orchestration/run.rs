//! The loop, composed: the supervisor tree with `payments` and `orders`,
//! the registries its events feed, the clients over them, the autoscaler,
//! chaos, the load and the progress line; then the report. The example's
//! `main` and the end-to-end tests both call [`run`].

use std::{future::Future, sync::Arc, time::Duration};

use orch::core::{
    Supervisor, SupervisorHandle, SupervisorSpec,
    autoscale::{Autoscaler, WorkQueue},
};
use orch::discovery::{Registry, SupervisorSource};
use orch::resilience::{BoxError, idempotency::MemoryStore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::chaos::{self, ChaosPlan, Crash, Incarnations};
use crate::clients;
use crate::config::{BACKLOG_METRIC, DemoConfig};
use crate::load::{self, LoadShape};
use crate::orders::Orders;
use crate::payments::Payments;
use crate::progress::Progress;
use crate::report::{Evidence, Report};
use crate::stats::Stats;
use crate::timeline::Timeline;
use crate::worker::Workers;

/// How long the replicas may take to be ready at start, and crashed ones
/// to be back at the end.
const SETTLE: Duration = Duration::from_secs(15);

/// How the loop is run besides its configuration.
#[derive(Debug, Clone, Copy, Default)]
pub struct RunOptions {
    /// After the load, keep serving until `shutdown` resolves.
    pub serve: bool,
    /// Log the progress line every second.
    pub progress: bool,
}

/// Runs the loop with `config` until its load is over (or `shutdown`
/// resolves), shuts the tree down, and reports.
pub async fn run(
    config: DemoConfig,
    options: RunOptions,
    shutdown: impl Future<Output = ()>,
) -> Result<Report, BoxError> {
    let started = Instant::now();
    let stats = Arc::new(Stats::default());
    let incarnations = Arc::new(Incarnations::default());
    let plan = Arc::new(ChaosPlan::new(
        config.chaos,
        config.seed,
        config.duration,
        config.replicas,
    ));
    let queue = WorkQueue::new();

    let orders_registry = Registry::new("orders");
    let payments_registry = Registry::new("payments");
    let (payments_client, payments_breaker) = clients::payments(&config.payments_client, &payments_registry)?;
    let workers = Workers::new(
        Arc::clone(&stats),
        payments_client,
        config.workers,
        config.job_time,
    );
    // One idempotency store per service, shared by its replicas as Redis
    // would be.
    let payments = Payments::new(
        Arc::clone(&stats),
        Arc::clone(&incarnations),
        MemoryStore::default(),
        plan.charge_errors()?,
    )?;
    let orders = Orders::new(
        Arc::clone(&stats),
        Arc::clone(&incarnations),
        MemoryStore::default(),
        queue.clone(),
        workers,
        &plan,
    )?;
    // Started in this order, stopped in reverse: orders (and its workers,
    // which charge through payments) stop before payments.
    let spec = SupervisorSpec::builder("app")
        .child(payments.child(config.replicas))
        .child(orders.child(config.replicas)?)
        .build()?;
    let handle = Supervisor::start(spec)?;
    let timeline = Arc::new(Timeline::default());
    let background = CancellationToken::new();
    let scenario = Scenario {
        started,
        config: &config,
        options,
        handle: &handle,
        stats: &stats,
        plan,
        incarnations,
        queue,
        registries: (&orders_registry, &payments_registry),
        payments_breaker,
        timeline: &timeline,
        background: &background,
    };
    // The signal only cancels a token, so that every step after it can see
    // it (the load stops, the serving ends) without polling it twice.
    let stop = CancellationToken::new();
    let signal = async {
        shutdown.await;
        tracing::info!("shutdown signal");
        stop.cancel();
        std::future::pending::<std::convert::Infallible>().await
    };
    let outcome = tokio::select! {
        outcome = scenario.play(&stop) => outcome,
        never = signal => match never {},
    };
    background.cancel();
    handle.shutdown().await?;
    let played = outcome?;
    Ok(Report::new(Evidence {
        chaos: (config.chaos, config.seed),
        elapsed: started.elapsed(),
        records: &played.records,
        stats: &stats,
        events: &timeline.events(),
        cut: played.cut,
        scales: timeline.scales(),
        crashes: played.crashes,
        in_rotation: played.in_rotation,
        openings: played.openings,
        v1_told_deprecated: played.v1_told_deprecated,
    }))
}

/// What the scenario leaves for the report (see [`Evidence`]).
struct Played {
    records: Vec<load::OrderRecord>,
    crashes: Vec<Crash>,
    in_rotation: Vec<String>,
    cut: Instant,
    openings: (u64, u64),
    v1_told_deprecated: bool,
}

/// Everything the scenario drives, once the tree runs.
struct Scenario<'a> {
    started: Instant,
    config: &'a DemoConfig,
    options: RunOptions,
    handle: &'a SupervisorHandle,
    stats: &'a Arc<Stats>,
    plan: Arc<ChaosPlan>,
    incarnations: Arc<Incarnations>,
    queue: WorkQueue<crate::worker::Job>,
    registries: (&'a Registry, &'a Registry),
    payments_breaker: Option<orch::resilience::CircuitBreaker>,
    timeline: &'a Arc<Timeline>,
    background: &'a CancellationToken,
}

impl Scenario<'_> {
    /// Connects the registries and the autoscaler to the tree, waits for
    /// the replicas, runs the load under chaos, waits for the crashed
    /// replicas to be back, and serves on if asked.
    async fn play(self, stop: &CancellationToken) -> Result<Played, BoxError> {
        let (orders_registry, payments_registry) = self.registries;
        let _payments_source = SupervisorSource::new("payments")
            .start(self.handle, payments_registry)
            .await?;
        let _orders_source = SupervisorSource::new("orders")
            .start(self.handle, orders_registry)
            .await?;
        let autoscaler = Autoscaler::builder(self.config.autoscaler.clone())
            .name("orders")
            .source(BACKLOG_METRIC, self.queue.clone())
            .scaler(self.handle.replica_group("orders"))
            .build()?;
        self.timeline
            .follow(self.handle, &autoscaler.handle(), self.started);
        tokio::spawn(autoscaler.run(self.background.clone()));

        let replicas = self.config.replicas;
        for registry in [self.registries.0, self.registries.1] {
            let ready = registry.wait_until(move |endpoints| endpoints.len() >= replicas);
            tokio::time::timeout(SETTLE, ready)
                .await
                .map_err(|_| format!("{} never had {replicas} ready replicas", registry.name()))?;
        }
        tracing::info!(replicas, chaos = ?self.config.chaos, seed = self.config.seed, "replicas ready; load starts");

        let clients = Arc::new(clients::orders(
            &self.config.orders_client,
            self.registries.0,
            self.stats,
        )?);
        let shape = LoadShape {
            duration: self.config.duration,
            peak_users: self.config.peak_users,
            order_attempts: self.config.order_attempts,
            seed: self.config.seed,
        };
        if self.options.progress {
            let progress = Progress {
                handle: self.handle.clone(),
                stats: Arc::clone(self.stats),
                queue: self.queue.clone(),
                breakers: (clients.breaker.clone(), self.payments_breaker.clone()),
                shape,
            };
            tokio::spawn(progress.run(self.background.clone()));
        }
        let stop_chaos = CancellationToken::new();
        let chaos = tokio::spawn(chaos::run(
            (*self.plan).clone(),
            Arc::clone(&self.incarnations),
            stop_chaos.clone(),
        ));

        let records = load::run(shape, Arc::clone(&clients), Arc::clone(self.stats), stop.clone()).await;
        stop_chaos.cancel();
        let crashes = chaos.await.unwrap_or_default();
        self.await_repairs(&crashes, stop).await;
        if self.options.serve && !stop.is_cancelled() {
            tracing::info!("serving; Ctrl-C or SIGTERM shuts down");
            stop.cancelled().await;
        }
        let cut = Instant::now();
        let in_rotation = [self.registries.0, self.registries.1]
            .iter()
            .flat_map(|registry| registry.snapshot())
            .map(|endpoint| endpoint.id().as_str().to_owned())
            .collect();
        let openings = |breaker: &Option<orch::resilience::CircuitBreaker>| {
            breaker.as_ref().map_or(0, |b| b.metrics().openings)
        };
        Ok(Played {
            records,
            crashes,
            in_rotation,
            cut,
            openings: (openings(&clients.breaker), openings(&self.payments_breaker)),
            v1_told_deprecated: !clients.deprecations.is_empty(),
        })
    }

    /// Waits (at most [`SETTLE`], or until `shutdown`) until every crashed
    /// replica is ready in a later generation, or gone.
    async fn await_repairs(&self, crashes: &[Crash], stop: &CancellationToken) {
        let deadline = Instant::now() + SETTLE;
        while Instant::now() < deadline {
            let events = self.timeline.events();
            let repaired = crashes.iter().all(|crash| {
                events.iter().any(|e| {
                    e.id.as_str() == crash.instance
                        && e.generation > crash.generation
                        && matches!(e.kind, orch::core::EventKind::Ready { .. })
                }) || !self
                    .handle
                    .instances()
                    .iter()
                    .any(|i| i.id.as_str() == crash.instance)
            });
            if repaired {
                return;
            }
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(Duration::from_millis(100)) => {}
            }
        }
    }
}

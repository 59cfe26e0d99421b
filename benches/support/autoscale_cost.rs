//! The cost of one evaluation (criterion group `autoscale_evaluate` of
//! `benches/autoscale.rs`): `evaluate()` with target tracking, queue
//! backlog and schedule against a scaler and sources that answer at once,
//! each policy alone, and, as the baseline, the calls every evaluation
//! makes (the scaler's status, the two samples) through the same trait
//! objects. Paused time advances one evaluation period between
//! evaluations, untimed, so the stabilization window holds as many
//! recommendations as in service (20 at 15 s, 300 at 1 s), and a schedule
//! sees its window open and close over simulated weeks.

use std::{
    hint::black_box,
    sync::Arc,
    time::{Duration, SystemTime},
};

use criterion::Criterion;
use orch::core::{
    ScaleError, ScaleStatus, Scaler,
    autoscale::{
        Autoscaler, AutoscalerConfig, MetricSource, QueueBacklog, Schedule, TargetTracking, source_fn,
    },
};
use tokio::runtime::Runtime;

/// Monday 2 March 2026, midnight in Paris: where the schedule's wall
/// clock starts.
const ORIGIN: u64 = 1_772_406_000;

/// A group of ten ready replicas that ignores every request.
struct Fixed;

#[async_trait::async_trait]
impl Scaler for Fixed {
    async fn current(&self) -> Result<usize, ScaleError> {
        Ok(10)
    }

    async fn scale_to(&self, _: usize) -> Result<(), ScaleError> {
        Ok(())
    }

    async fn status(&self) -> Result<ScaleStatus, ScaleError> {
        Ok(ScaleStatus {
            desired: 10,
            ready: 10,
        })
    }
}

/// An autoscaler over [`Fixed`] whose every policy recommends the current
/// ten replicas (the floor is ten too), so every evaluation decides and
/// publishes but leaves the count alone: the steady state.
fn steady(period: Duration, policies: &[&str]) -> Autoscaler {
    let mut config = AutoscalerConfig::default()
        .replicas(10, 100)
        .evaluation_period(period);
    for policy in policies {
        config = match *policy {
            "target" => config.policy(TargetTracking::new("utilisation", 0.7)),
            "backlog" => config.policy(QueueBacklog::new("backlog", 50.0)),
            _ => config.policy(
                Schedule::new("0 9 * * 1-5", "0 17 * * 1-5", "Europe/Paris", 10)
                    .lead(Duration::from_secs(600)),
            ),
        };
    }
    let mut builder = Autoscaler::builder(config)
        .scaler(Fixed)
        .wall_clock_origin(SystemTime::UNIX_EPOCH + Duration::from_secs(ORIGIN));
    if policies.contains(&"target") {
        builder = builder.source("utilisation", source_fn(|| Some(0.7)));
    }
    if policies.contains(&"backlog") {
        builder = builder.source("backlog", source_fn(|| Some(100.0)));
    }
    builder.build().expect("a valid configuration")
}

/// Times `evaluate` once per `period` of paused time, `iters` times; the
/// clock's advance is not timed.
fn timed<F: AsyncFnMut()>(runtime: &Runtime, period: Duration, iters: u64, mut evaluate: F) -> Duration {
    runtime.block_on(async {
        let mut total = Duration::ZERO;
        for _ in 0..iters {
            tokio::time::advance(period).await;
            let start = std::time::Instant::now();
            evaluate().await;
            total += start.elapsed();
        }
        total
    })
}

/// The criterion group `autoscale_evaluate`.
pub fn evaluation_cost(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("a tokio runtime");
    let period = Duration::from_secs(15);
    let mut g = c.benchmark_group("autoscale_evaluate");

    let scaler: Arc<dyn Scaler> = Arc::new(Fixed);
    let utilisation: Arc<dyn MetricSource> = Arc::new(source_fn(|| Some(0.7)));
    let backlog: Arc<dyn MetricSource> = Arc::new(source_fn(|| Some(100.0)));
    g.bench_function("baseline: status + 2 samples", |b| {
        b.iter_custom(|iters| {
            timed(&runtime, period, iters, async || {
                black_box(scaler.status().await.ok());
                black_box(utilisation.sample().await);
                black_box(backlog.sample().await);
            })
        })
    });
    let lines: [(&str, &[&str], Duration); 5] = [
        ("target tracking", &["target"], period),
        ("queue backlog", &["backlog"], period),
        ("schedule", &["schedule"], period),
        ("three policies", &["target", "backlog", "schedule"], period),
        (
            "three policies, 1 s period",
            &["target", "backlog", "schedule"],
            Duration::from_secs(1),
        ),
    ];
    for (name, policies, period) in lines {
        let mut autoscaler = {
            let _time = runtime.enter();
            steady(period, policies)
        };
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                timed(&runtime, period, iters, async || {
                    black_box(autoscaler.evaluate().await);
                })
            })
        });
    }
    g.finish();
}

//! What each policy recommends, end to end through an evaluation.

use std::{sync::Arc, time::Duration};

use orch_core::autoscale::{
    Autoscaler, AutoscalerConfig, MetricSource, MetricState, Outcome, QueueBacklog, Reading, Schedule,
    TargetTracking, WorkQueue,
};
use tokio::time::Instant;

use super::{Gauge, Group, PERIOD, autoscaler, step};

#[tokio::test(start_paused = true)]
async fn a_step_in_load_is_met_within_one_evaluation() {
    let group = Group::with(2);
    let load = Gauge::new(10.0);
    let config = AutoscalerConfig::default().policy(TargetTracking::new("load", 10.0));
    let mut scaler = autoscaler(config, &group, &load);
    assert_eq!(scaler.evaluate().await.outcome, Outcome::Unchanged);

    load.set(30.0);
    let decision = step(&mut scaler, PERIOD).await;
    assert_eq!(decision.outcome, Outcome::Scaled { from: 2, to: 6 }, "{decision}");
    assert_eq!(group.replicas(), 6);
}

#[tokio::test(start_paused = true)]
async fn an_idle_queue_scales_to_zero_after_the_cooldown_and_the_first_job_brings_a_replica() {
    let group = Group::with(2);
    let jobs: WorkQueue<u32> = WorkQueue::new();
    let config = AutoscalerConfig::default()
        .replicas(0, 10)
        .scale_to_zero_cooldown(Duration::from_secs(120))
        .behavior(no_down_window())
        .policy(QueueBacklog::new("jobs", 5.0));
    let mut scaler = on_queue(config, &group, &jobs);

    // Idle: one replica stays until 120 s after the start.
    let mut at_zero = None;
    for n in 1..=12 {
        let decision = step(&mut scaler, PERIOD).await;
        if group.replicas() == 0 {
            at_zero = Some(n);
            break;
        }
        assert_eq!(group.replicas(), 1, "{decision}");
    }
    assert_eq!(at_zero, Some(8), "120 s of cooldown is 8 periods of 15 s");

    jobs.push(1);
    let decision = step(&mut scaler, PERIOD).await;
    assert_eq!(decision.outcome, Outcome::Scaled { from: 0, to: 1 }, "{decision}");
    for n in 0..11 {
        jobs.push(n);
    }
    let decision = step(&mut scaler, PERIOD).await;
    assert_eq!(
        decision.outcome,
        Outcome::Scaled { from: 1, to: 3 },
        "12 jobs at 5 each: {decision}"
    );
}

#[tokio::test(start_paused = true)]
async fn an_idle_queue_above_a_floor_names_the_floor_not_the_scale_to_zero_cooldown() {
    let group = Group::with(3);
    let jobs: WorkQueue<u32> = WorkQueue::new();
    let config = AutoscalerConfig::default()
        .replicas(1, 10)
        .scale_to_zero_cooldown(Duration::from_secs(120))
        .behavior(no_down_window())
        .policy(QueueBacklog::new("jobs", 5.0));
    let mut scaler = on_queue(config, &group, &jobs);

    let decision = step(&mut scaler, PERIOD).await;
    assert_eq!(decision.outcome, Outcome::Scaled { from: 3, to: 1 }, "{decision}");
    assert!(
        !decision.reason.contains("scale-to-zero"),
        "min_replicas 1 never scales to zero: {decision}"
    );
    assert!(decision.reason.contains("min_replicas 1"), "{decision}");
}

/// An autoscaler of `group` reading the backlog of `jobs` as "jobs".
fn on_queue(config: AutoscalerConfig, group: &Arc<Group>, jobs: &WorkQueue<u32>) -> Autoscaler {
    Autoscaler::builder(config)
        .source("jobs", jobs.clone())
        .scaler(Arc::clone(group))
        .build()
        .expect("a valid autoscaler")
}

fn no_down_window() -> orch_core::autoscale::Behavior {
    let mut behavior = orch_core::autoscale::Behavior::default();
    behavior.scale_down.stabilization_window = Duration::ZERO;
    behavior
}

#[tokio::test(start_paused = true)]
async fn a_missing_metric_never_scales_down() {
    let group = Group::with(4);
    let load = Gauge::new(f64::NAN);
    let config = AutoscalerConfig::default()
        .behavior(no_down_window())
        .policy(TargetTracking::new("load", 10.0));
    let mut scaler = autoscaler(config, &group, &load);
    for _ in 0..4 {
        let decision = step(&mut scaler, PERIOD).await;
        assert_eq!(decision.outcome, Outcome::Unchanged);
        assert!(
            matches!(decision.inputs[0].1, MetricState::Missing(_)),
            "{decision}"
        );
        assert!(
            decision.reason.contains("holds the current count"),
            "{}",
            decision.reason
        );
    }
    // A value again: down to what it asks for.
    load.set(5.0);
    assert_eq!(
        step(&mut scaler, PERIOD).await.outcome,
        Outcome::Scaled { from: 4, to: 2 }
    );
}

#[tokio::test(start_paused = true)]
async fn an_outage_of_the_metric_leaves_nothing_in_the_stabilization_window() {
    let group = Group::with(4);
    let load = Gauge::new(10.0);
    let config = AutoscalerConfig::default().policy(TargetTracking::new("load", 10.0));
    let mut scaler = autoscaler(config, &group, &load);
    // On target: recommendations of 4 in the 300 s window.
    for _ in 0..4 {
        assert_eq!(step(&mut scaler, PERIOD).await.outcome, Outcome::Unchanged);
    }
    // Six minutes without a metric: HPA skips those syncs, keeping nothing.
    load.set(f64::NAN);
    for _ in 0..24 {
        let decision = step(&mut scaler, PERIOD).await;
        assert_eq!(decision.outcome, Outcome::Unchanged, "{decision}");
        assert!(decision.reason.contains("holds the current count"), "{decision}");
    }
    // The last recommendation of 4 is older than the window: the metric's
    // return scales down at once, not 300 s after the outage.
    load.set(5.0);
    let decision = step(&mut scaler, PERIOD).await;
    assert_eq!(decision.outcome, Outcome::Scaled { from: 4, to: 2 }, "{decision}");
}

/// A source whose one sample was taken when it was made.
struct Frozen(Instant);

#[async_trait::async_trait]
impl MetricSource for Frozen {
    async fn sample(&self) -> Reading {
        Reading::Sample {
            value: 1.0,
            at: self.0,
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_stale_sample_counts_as_missing() {
    let group = Group::with(4);
    let config = AutoscalerConfig::default()
        .behavior(no_down_window())
        .policy(TargetTracking::new("load", 10.0));
    let mut scaler = Autoscaler::builder(config)
        .source("load", Frozen(Instant::now()))
        .scaler(Arc::clone(&group))
        .build()
        .unwrap();
    // Fresh at first (1 per replica against 10: down to 1).
    assert_eq!(
        scaler.evaluate().await.outcome,
        Outcome::Scaled { from: 4, to: 1 }
    );
    let group = Group::with(4);
    let config = AutoscalerConfig::default()
        .behavior(no_down_window())
        .policy(TargetTracking::new("load", 10.0));
    let frozen = Frozen(Instant::now());
    tokio::time::advance(PERIOD * 4).await;
    let mut scaler = Autoscaler::builder(config)
        .source("load", frozen)
        .scaler(Arc::clone(&group))
        .build()
        .unwrap();
    let decision = scaler.evaluate().await;
    assert!(
        matches!(decision.inputs[0].1, MetricState::Stale { .. }),
        "{decision}"
    );
    assert_eq!(
        decision.outcome,
        Outcome::Unchanged,
        "older than three periods: hold"
    );
}

#[tokio::test(start_paused = true)]
async fn a_schedule_window_raises_the_floor_at_its_start_in_its_time_zone() {
    let group = Group::with(1);
    let load = Gauge::new(0.0);
    let config = AutoscalerConfig::default()
        .evaluation_period(Duration::from_secs(60))
        .policy(TargetTracking::new("load", 10.0))
        .policy(Schedule::new(
            "0 9 * * 1-5",
            "0 17 * * 1-5",
            "America/New_York",
            5,
        ));
    // Monday 2026-12-07 08:55 in New York (UTC-5 in winter).
    let origin: jiff::Timestamp = "2026-12-07T13:55:00Z".parse().unwrap();
    let mut scaler = Autoscaler::builder(config)
        .source("load", load.source())
        .scaler(Arc::clone(&group))
        .wall_clock_origin(origin.into())
        .build()
        .unwrap();
    let minute = Duration::from_secs(60);
    let mut floor_at = None;
    for n in 0..10 {
        let decision = step(&mut scaler, minute).await;
        if group.replicas() == 5 {
            floor_at = Some(n + 1);
            assert!(decision.reason.contains("schedule"), "{decision}");
            break;
        }
    }
    assert_eq!(floor_at, Some(5), "09:00 New York time is 5 minutes after 08:55");
}

#[tokio::test(start_paused = true)]
async fn replicas_still_starting_do_not_push_the_count_further() {
    let group = Group::with(2);
    let load = Gauge::new(30.0);
    let config = AutoscalerConfig::default().policy(TargetTracking::new("load", 10.0));
    let mut scaler = autoscaler(config, &group, &load);
    assert_eq!(
        step(&mut scaler, PERIOD).await.outcome,
        Outcome::Scaled { from: 2, to: 6 }
    );
    // Four new replicas are not ready: the two ready ones still carry 30
    // each, which is 60 over 6 replicas counted as idle: on target.
    group.set_ready(2);
    let decision = step(&mut scaler, PERIOD).await;
    assert_eq!(decision.outcome, Outcome::Unchanged, "{decision}");
    assert_eq!(decision.ready, 2);
}

#[tokio::test(start_paused = true)]
async fn a_scale_down_leaves_out_the_replicas_not_ready() {
    let group = Group::with(6);
    let load = Gauge::new(3.0);
    let config = AutoscalerConfig::default()
        .behavior(no_down_window())
        .policy(TargetTracking::new("load", 10.0));
    let mut scaler = autoscaler(config, &group, &load);
    // Two of six ready, at 3 each against 10: HPA sizes the group on the
    // ready ones, ceil(2 × 0.3) = 1, rather than counting the four still
    // starting at the target, ceil((6 + 40) / 10) = 5.
    group.set_ready(2);
    let decision = step(&mut scaler, PERIOD).await;
    assert_eq!(decision.outcome, Outcome::Scaled { from: 6, to: 1 }, "{decision}");
    assert!(decision.reason.contains("not ready left out"), "{decision}");
}

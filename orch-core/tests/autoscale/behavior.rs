//! Stabilization, rate policies, bounds, dry run and the decision stream.

use std::time::Duration;

use orch_core::autoscale::{AutoscalerConfig, Behavior, Outcome, RatePolicy, SelectPolicy, TargetTracking};
use tokio_util::sync::CancellationToken;

use super::{Gauge, Group, PERIOD, autoscaler, step};

fn tracking() -> AutoscalerConfig {
    AutoscalerConfig::default()
        .replicas(1, 20)
        .policy(TargetTracking::new("load", 10.0))
}

#[tokio::test(start_paused = true)]
async fn after_a_spike_scale_down_waits_for_the_stabilization_window() {
    let group = Group::with(2);
    let load = Gauge::new(10.0);
    let mut scaler = autoscaler(tracking(), &group, &load);
    // The gauge is per replica: a total load spread over the group.
    let per_replica = |total: f64| total / group.replicas() as f64;
    load.set(per_replica(80.0));
    assert_eq!(
        step(&mut scaler, PERIOD).await.outcome,
        Outcome::Scaled { from: 2, to: 6 },
        "rate: +4"
    );
    load.set(per_replica(80.0));
    assert_eq!(
        step(&mut scaler, PERIOD).await.outcome,
        Outcome::Scaled { from: 6, to: 8 }
    );
    load.set(per_replica(80.0));
    assert_eq!(step(&mut scaler, PERIOD).await.outcome, Outcome::Unchanged);

    // The load falls to a quarter: nothing moves for 300 s.
    let mut first_down = None;
    for n in 1..=30 {
        load.set(per_replica(20.0));
        let decision = step(&mut scaler, PERIOD).await;
        if group.replicas() < 8 {
            first_down = Some(n);
            assert_eq!(decision.outcome, Outcome::Scaled { from: 8, to: 2 });
            break;
        }
        assert!(decision.reason.contains("stabilization window"), "{decision}");
    }
    assert_eq!(
        first_down,
        Some(20),
        "300 s after the last high recommendation, at 15 s a period"
    );
}

#[tokio::test(start_paused = true)]
async fn a_sawtooth_load_does_not_flap() {
    let group = Group::with(2);
    let load = Gauge::new(10.0);
    let mut scaler = autoscaler(tracking(), &group, &load);
    // One hour of load alternating every minute between 25 and 5 per replica of 2.
    for n in 0..240 {
        let high = (n / 4) % 2 == 0;
        let replicas = group.replicas() as f64;
        load.set(if high { 50.0 / replicas } else { 10.0 / replicas });
        step(&mut scaler, PERIOD).await;
    }
    assert!(group.events() <= 2, "{:?}", group.scaled.lock().unwrap());
    assert_eq!(group.replicas(), 5, "sized for the peaks");
}

#[tokio::test(start_paused = true)]
async fn min_and_max_clamp_every_recommendation() {
    let group = Group::with(3);
    let load = Gauge::new(1_000.0);
    let mut behavior = Behavior::default();
    behavior.scale_down.stabilization_window = Duration::ZERO;
    let config = tracking().replicas(2, 8).behavior(behavior);
    let mut scaler = autoscaler(config, &group, &load);
    let decision = step(&mut scaler, PERIOD).await;
    assert_eq!(group.replicas(), 7, "rate first: 3 + 4");
    step(&mut scaler, PERIOD).await;
    assert_eq!(group.replicas(), 8, "then max_replicas");
    assert!(decision.steps.recommended > 8);
    load.set(0.0);
    let decision = step(&mut scaler, PERIOD).await;
    assert_eq!(group.replicas(), 2, "{decision}");
    assert!(decision.reason.contains("clamped"), "{decision}");
}

#[tokio::test(start_paused = true)]
async fn rate_policies_cap_the_change_per_period() {
    let group = Group::with(1);
    let load = Gauge::new(100.0);
    let mut behavior = Behavior::default();
    behavior.scale_up.policies = vec![RatePolicy::replicas(1, Duration::from_secs(60))];
    behavior.scale_up.select = SelectPolicy::Max;
    let mut scaler = autoscaler(tracking().behavior(behavior), &group, &load);
    let mut seen = Vec::new();
    for _ in 0..16 {
        let replicas = group.replicas() as f64;
        load.set(100.0 / replicas);
        step(&mut scaler, PERIOD).await;
        seen.push(group.replicas());
    }
    // One more replica per minute, i.e. every fourth period of 15 s.
    assert_eq!(seen, [2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5]);

    let group = Group::with(4);
    let mut behavior = Behavior::default();
    behavior.scale_up.select = SelectPolicy::Disabled;
    let mut scaler = autoscaler(tracking().behavior(behavior), &group, &load);
    load.set(100.0);
    let decision = step(&mut scaler, PERIOD).await;
    assert_eq!(decision.outcome, Outcome::Unchanged);
    assert!(decision.reason.contains("rate policies"), "{decision}");
}

#[tokio::test(start_paused = true)]
async fn a_dry_run_decides_but_does_not_act() {
    let group = Group::with(2);
    let load = Gauge::new(40.0);
    let mut scaler = autoscaler(tracking().dry_run(true), &group, &load);
    let decision = step(&mut scaler, PERIOD).await;
    assert_eq!(decision.outcome, Outcome::DryRun { would: 6 });
    assert_eq!(group.replicas(), 2);
    assert_eq!(group.events(), 0);
}

#[tokio::test(start_paused = true)]
async fn the_running_loop_publishes_every_decision_and_explains_the_last() {
    let group = Group::with(2);
    let load = Gauge::new(40.0);
    let scaler = autoscaler(tracking(), &group, &load);
    let handle = scaler.handle();
    assert_eq!(handle.explain(), "no evaluation yet");
    let mut decisions = handle.subscribe();
    assert!(decisions.last.is_none());
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(scaler.run(shutdown.clone()));

    let first = decisions.next().await.unwrap();
    assert_eq!(
        first.outcome,
        Outcome::Scaled { from: 2, to: 6 },
        "the first evaluation runs at once"
    );
    let second = decisions.next().await.unwrap();
    assert_eq!(second.at - first.at, PERIOD);
    let explained = handle.explain();
    assert!(explained.contains("metric load"), "{explained}");
    assert!(explained.contains("target_tracking(load)"), "{explained}");

    // A late subscriber gets the last decision first.
    let late = handle.subscribe();
    assert_eq!(late.last.as_deref(), Some(&*second));
    shutdown.cancel();
    running.await.unwrap();
}

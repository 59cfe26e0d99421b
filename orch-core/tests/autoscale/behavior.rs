//! Stabilization, rate policies, bounds, dry run and the decision stream.

use std::time::Duration;

use orch_core::autoscale::{
    AutoscalerConfig, Behavior, Outcome, QueueBacklog, RatePolicy, SelectPolicy, TargetTracking,
};
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

#[tokio::test(start_paused = true)]
async fn the_scale_up_rate_counts_a_scale_down_of_the_same_period() {
    let group = Group::with(10);
    let load = Gauge::new(6.0);
    let mut behavior = Behavior::default();
    behavior.scale_down.stabilization_window = Duration::ZERO;
    let config = tracking()
        .replicas(1, 100)
        .evaluation_period(Duration::from_secs(5))
        .behavior(behavior);
    let mut scaler = autoscaler(config, &group, &load);
    let five = Duration::from_secs(5);
    assert_eq!(
        step(&mut scaler, five).await.outcome,
        Outcome::Scaled { from: 10, to: 6 }
    );
    // Five seconds later the load asks for 50. The 15 s period began at 10
    // replicas (6, plus the 4 removed within it): +100 % of 10 is 20, not
    // +100 % of 6.
    load.set(500.0 / 6.0);
    let decision = step(&mut scaler, five).await;
    assert_eq!(
        decision.outcome,
        Outcome::Scaled { from: 6, to: 20 },
        "{decision}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_scale_up_cooldown_turns_a_staircase_into_one_step_per_cooldown() {
    let group = Group::with(1);
    let backlog = Gauge::new(0.0);
    let second = Duration::from_secs(1);
    let config = AutoscalerConfig::default()
        .replicas(1, 100)
        .evaluation_period(second)
        .behavior(Behavior::default().cooldowns(PERIOD, Duration::ZERO))
        .policy(QueueBacklog::new("load", 10.0));
    let mut scaler = autoscaler(config, &group, &backlog);
    // A backlog growing by one replica's worth a second, for a minute.
    let mut moved_at = Vec::new();
    for t in 1..=60 {
        backlog.set(10.0 * t as f64);
        let decision = step(&mut scaler, second).await;
        if matches!(decision.outcome, Outcome::Scaled { .. }) {
            moved_at.push(t);
        } else if t > 2 && decision.steps.stabilized > decision.current {
            assert!(decision.reason.contains("scale-up cooldown"), "{decision}");
        }
    }
    // Each step takes what the rate policies allow for the 15 s since
    // the last: +4 or +100 % of the period's start.
    assert_eq!(moved_at, [2, 17, 32, 47]);
    assert_eq!(*group.scaled.lock().unwrap(), [2, 6, 12, 24]);
}

#[tokio::test(start_paused = true)]
async fn a_scale_down_cooldown_holds_scale_downs_but_not_a_scale_up() {
    let group = Group::with(20);
    let load = Gauge::new(0.0);
    let second = Duration::from_secs(1);
    let mut behavior = Behavior::default().cooldowns(Duration::ZERO, Duration::from_secs(60));
    behavior.scale_down.stabilization_window = Duration::ZERO;
    let config = tracking()
        .replicas(1, 100)
        .evaluation_period(second)
        .behavior(behavior);
    let mut scaler = autoscaler(config, &group, &load);
    let mut moved_at = Vec::new();
    for t in 1..=70 {
        // A total of 100, then 50 but for a burst of 120 at 30 s.
        let total = match t {
            1 => 100.0,
            30 => 120.0,
            _ => 50.0,
        };
        load.set(total / group.replicas() as f64);
        if let Outcome::Scaled { to, .. } = step(&mut scaler, second).await.outcome {
            moved_at.push((t, to));
        }
    }
    // Down to 10 at once; the burst scales up at once; the next
    // scale-down waits 60 s from the first.
    assert_eq!(moved_at, [(1, 10), (30, 12), (61, 5)]);
}

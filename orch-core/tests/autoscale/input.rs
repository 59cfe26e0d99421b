//! Bad input is a typed error at build time naming the field.

use std::time::Duration;

use orch_core::autoscale::{
    AutoscaleError, Autoscaler, AutoscalerConfig, QueueBacklog, RatePolicy, Schedule, TargetTracking,
};

use super::{Gauge, Group};

fn field_of(config: AutoscalerConfig) -> String {
    match config.validate() {
        Err(AutoscaleError::InvalidField { field, .. }) => field,
        other => panic!("expected an invalid field, got {other:?}"),
    }
}

#[test]
fn each_bad_setting_names_its_field() {
    let ok = || AutoscalerConfig::default().policy(TargetTracking::new("load", 10.0));
    assert_eq!(field_of(ok().replicas(5, 2)), "min_replicas");
    assert_eq!(field_of(ok().replicas(0, 0)), "max_replicas");
    assert_eq!(
        field_of(ok().evaluation_period(Duration::ZERO)),
        "evaluation_period"
    );
    assert_eq!(field_of(AutoscalerConfig::default()), "policies");
    let target = |t: f64| AutoscalerConfig::default().policy(TargetTracking::new("load", t));
    assert_eq!(field_of(target(0.0)), "policies[0].target");
    assert_eq!(field_of(target(-1.0)), "policies[0].target");
    assert_eq!(field_of(target(f64::NAN)), "policies[0].target");
    let tolerance =
        |t: f64| AutoscalerConfig::default().policy(TargetTracking::new("load", 1.0).tolerance(t));
    assert_eq!(field_of(tolerance(1.5)), "policies[0].tolerance");
    assert_eq!(field_of(tolerance(-0.1)), "policies[0].tolerance");
    assert_eq!(
        field_of(ok().policy(QueueBacklog::new("jobs", 0.0))),
        "policies[1].target_per_replica"
    );
    let schedule = |start: &str, zone: &str| ok().policy(Schedule::new(start, "0 18 * * *", zone, 3));
    assert_eq!(field_of(schedule("not cron", "UTC")), "policies[1].start");
    assert_eq!(
        field_of(schedule("0 8 * * *", "Nowhere/Atlantis")),
        "policies[1].time_zone"
    );
    let mut rate = ok();
    rate.behavior
        .scale_down
        .policies
        .push(RatePolicy::percent(10, Duration::ZERO));
    assert_eq!(field_of(rate), "behavior.scale_down.policies[1].period");
}

#[test]
fn a_policy_naming_no_source_and_a_missing_scaler_are_refused() {
    let config = AutoscalerConfig::default().policy(QueueBacklog::new("jobs", 5.0));
    let err = Autoscaler::builder(config.clone())
        .scaler(Group::with(1))
        .build()
        .unwrap_err();
    assert_eq!(
        err,
        AutoscaleError::UnknownMetric {
            field: "policies[0].metric".into(),
            metric: "jobs".into()
        }
    );
    let err = Autoscaler::builder(config)
        .source("jobs", Gauge::new(0.0).source())
        .build()
        .unwrap_err();
    assert_eq!(err, AutoscaleError::NoScaler);
}

#[test]
fn a_config_file_reads_with_durations_and_rejects_unknown_keys() {
    let config: AutoscalerConfig = serde_json::from_str(
        r#"{
            "min_replicas": 0,
            "max_replicas": 12,
            "evaluation_period": "500ms",
            "policies": [
                { "kind": "target_tracking", "metric": "inflight", "target": 8 },
                { "kind": "queue_backlog", "metric": "jobs", "target_per_replica": 20, "activation_threshold": 2 },
                { "kind": "schedule", "start": "0 8 * * 1-5", "end": "0 18 * * 1-5",
                  "time_zone": "Europe/Paris", "replicas": 4, "lead": "10m" }
            ],
            "behavior": { "scale_down": { "stabilization_window": "1m", "cooldown": "4m",
                "policies": [{ "kind": "replicas", "value": 2, "period": "30s" }] } }
        }"#,
    )
    .unwrap();
    assert_eq!(config.evaluation_period, Duration::from_millis(500));
    assert_eq!(config.policies.len(), 3);
    assert_eq!(
        config.behavior.scale_down.stabilization_window,
        Duration::from_secs(60)
    );
    assert_eq!(config.behavior.scale_down.cooldown, Duration::from_secs(240));
    assert_eq!(
        config.behavior.scale_up.cooldown,
        Duration::ZERO,
        "none by default"
    );
    config.validate().unwrap();

    let err = serde_json::from_str::<AutoscalerConfig>(r#"{ "max_replica": 3 }"#).unwrap_err();
    assert!(err.to_string().contains("max_replica"), "{err}");
}

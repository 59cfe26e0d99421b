//! `RetryConfig` validation (every error names its field) and its JSON form
//! (human-readable durations, unknown keys refused).

use std::time::Duration;

use orch_resilience::{
    RetryBudget, RetryBudgetConfig, RetryConfig, RetryLayer, RetryThrottle, RetryThrottleConfig,
    retry::{BackoffConfig, BackoffKind},
};

use super::config;
use crate::support::ms;

// ===== configuration =====

#[test]
fn config_errors_name_the_field() {
    let cases: Vec<(RetryConfig, &str)> = vec![
        (RetryConfig::default().max_attempts(0), "retry.max_attempts"),
        (RetryConfig::default().name(""), "retry.name"),
        (
            RetryConfig::default().backoff(BackoffConfig::default().multiplier(0.5)),
            "retry.backoff.multiplier",
        ),
        (
            RetryConfig::default().backoff(BackoffConfig::exponential(ms(100), ms(50))),
            "retry.backoff.max_delay",
        ),
        (
            RetryConfig::default().backoff(
                BackoffConfig::default()
                    .kind(BackoffKind::Linear)
                    .initial_delay(ms(0)),
            ),
            "retry.backoff.initial_delay",
        ),
        (
            RetryConfig::default().attempt_timeout(ms(0)),
            "retry.attempt_timeout",
        ),
        (
            RetryConfig::default().overall_timeout(ms(0)),
            "retry.overall_timeout",
        ),
        (
            RetryConfig::default()
                .attempt_timeout(ms(200))
                .overall_timeout(ms(100)),
            "retry.attempt_timeout",
        ),
        (
            RetryConfig::default().budget(RetryBudgetConfig::default().percent_can_retry(-0.1)),
            "retry.budget.percent_can_retry",
        ),
        (
            RetryConfig::default().budget(RetryBudgetConfig::default().percent_can_retry(f64::NAN)),
            "retry.budget.percent_can_retry",
        ),
        (
            RetryConfig::default().budget(RetryBudgetConfig::default().ttl(ms(500))),
            "retry.budget.ttl",
        ),
        (
            RetryConfig::default().throttle(RetryThrottleConfig::default().token_ratio(0.0)),
            "retry.throttle.token_ratio",
        ),
        (
            RetryConfig::default().throttle(RetryThrottleConfig::default().max_tokens(1001)),
            "retry.throttle.max_tokens",
        ),
        (
            RetryConfig::default().throttle(RetryThrottleConfig::default().max_tokens(0)),
            "retry.throttle.max_tokens",
        ),
    ];
    for (config, field) in cases {
        let err = RetryLayer::new(config.clone()).unwrap_err();
        assert_eq!(err.field_name(), field, "{config:?}");
        assert_eq!(config.build().unwrap_err().field_name(), field);
    }
    assert_eq!(
        RetryBudget::new(RetryBudgetConfig::default().ttl(Duration::from_secs(61)))
            .unwrap_err()
            .field_name(),
        "retry.budget.ttl"
    );
    assert_eq!(
        RetryThrottle::new(RetryThrottleConfig::default().token_ratio(-1.0))
            .unwrap_err()
            .field_name(),
        "retry.throttle.token_ratio"
    );
    // A constant schedule may have no delay at all.
    assert!(
        RetryConfig::default()
            .backoff(BackoffConfig::constant(ms(0)))
            .validate()
            .is_ok()
    );
}

#[test]
fn config_round_trips_through_json_with_human_durations() {
    let config = RetryConfig::default()
        .attempt_timeout(ms(100))
        .overall_timeout(Duration::from_secs(2))
        .throttle(RetryThrottleConfig::default());
    let json = serde_json::to_string(&config).unwrap();
    assert!(json.contains(r#""attempt_timeout":"100ms""#), "{json}");
    assert!(json.contains(r#""initial_delay":"100ms""#), "{json}");
    assert!(json.contains(r#""ttl":"10s""#), "{json}");
    let back: RetryConfig = serde_json::from_str(&json).unwrap();
    assert_eq!(back, config);

    let parsed: RetryConfig = serde_json::from_str(
        r#"{
            "name": "payments",
            "max_attempts": 5,
            "backoff": {"kind": "decorrelated_jitter", "initial_delay": "100ms", "max_delay": "2s"},
            "attempt_timeout": "100ms",
            "budget": {"percent_can_retry": 0.1},
            "throttle": {"max_tokens": 100, "token_ratio": 0.2}
        }"#,
    )
    .unwrap();
    assert_eq!(parsed.max_attempts, 5);
    assert_eq!(parsed.backoff.kind, BackoffKind::DecorrelatedJitter);
    assert_eq!(parsed.backoff.max_delay, Duration::from_secs(2));
    assert_eq!(parsed.attempt_timeout, Some(ms(100)));
    assert_eq!(parsed.overall_timeout, None);
    assert_eq!(parsed.budget.unwrap().ttl, Duration::from_secs(10));
    assert_eq!(parsed.throttle.unwrap().max_tokens, 100);
    parsed.validate().unwrap();

    let unknown = serde_json::from_str::<RetryConfig>(r#"{"max_atempts": 5}"#);
    assert!(unknown.is_err());
    let no_budget: RetryConfig = serde_json::from_str(r#"{"budget": null}"#).unwrap();
    assert!(no_budget.budget.is_none());
}

#[test]
fn layer_is_debuggable_and_names_itself() {
    let layer = RetryLayer::new(config().name("inventory")).unwrap();
    assert_eq!(layer.name(), "inventory");
    let text = format!("{layer:?}");
    assert!(text.contains("inventory"), "{text}");
}

//! `CircuitBreakerConfig` validation (every error names its field) and its
//! JSON form (humantime durations, unknown keys refused).

use std::time::Duration;

use orch_resilience::breaker::{CircuitBreakerConfig, CircuitBreakerLayer, SlidingWindow};

use super::SEC;

// ===== config =====

#[test]
fn config_errors_name_the_field() {
    let base = CircuitBreakerConfig::default;
    let cases = [
        (base().count_window(0), "breaker.window.size"),
        (base().count_window(2_000_000), "breaker.window.size"),
        (base().time_window(Duration::ZERO), "breaker.window.length"),
        (
            base().window(SlidingWindow::Time {
                length: SEC,
                buckets: Some(0),
            }),
            "breaker.window.buckets",
        ),
        (
            base().failure_rate_threshold(0.0),
            "breaker.failure_rate_threshold",
        ),
        (
            base().failure_rate_threshold(1.5),
            "breaker.failure_rate_threshold",
        ),
        (
            base().slow_call_rate_threshold(f64::NAN),
            "breaker.slow_call_rate_threshold",
        ),
        (
            base().slow_call_duration(Duration::ZERO),
            "breaker.slow_call_duration",
        ),
        (base().consecutive_failures(0), "breaker.consecutive_failures"),
        (base().minimum_calls(0), "breaker.minimum_calls"),
        (base().open_wait(Duration::ZERO), "breaker.open_wait"),
        (
            base().open_wait_backoff(0.5, 120 * SEC),
            "breaker.open_wait_multiplier",
        ),
        (base().open_wait_backoff(2.0, SEC), "breaker.open_wait_max"),
        (
            CircuitBreakerConfig {
                open_wait_multiplier: 2.0,
                ..base()
            },
            "breaker.open_wait_max",
        ),
        (base().half_open_permits(0), "breaker.half_open_permits"),
        (
            base().max_half_open_wait(Duration::ZERO),
            "breaker.max_half_open_wait",
        ),
        (base().name(""), "breaker.name"),
    ];
    for (config, field) in cases {
        assert_eq!(
            config.clone().build().unwrap_err().field_name(),
            field,
            "{config:?}"
        );
        assert_eq!(CircuitBreakerLayer::new(config).unwrap_err().field_name(), field);
    }
    assert!(base().build().is_ok());
}

#[test]
fn config_round_trips_through_json_with_humantime_durations() {
    let json = r#"{
        "name": "payments",
        "window": { "type": "time", "length": "1m", "buckets": 12 },
        "failure_rate_threshold": 0.25,
        "slow_call_duration": "750ms",
        "consecutive_failures": 5,
        "minimum_calls": 10,
        "open_wait": "30s",
        "open_wait_multiplier": 2.0,
        "open_wait_max": "5m",
        "half_open_permits": 2,
        "max_half_open_wait": "1m 30s"
    }"#;
    let config: CircuitBreakerConfig = serde_json::from_str(json).unwrap();
    let expected = CircuitBreakerConfig::default()
        .name("payments")
        .window(SlidingWindow::Time {
            length: 60 * SEC,
            buckets: Some(12),
        })
        .failure_rate_threshold(0.25)
        .slow_call_duration(Duration::from_millis(750))
        .consecutive_failures(5)
        .minimum_calls(10)
        .open_wait(30 * SEC)
        .open_wait_backoff(2.0, 300 * SEC)
        .half_open_permits(2)
        .max_half_open_wait(90 * SEC);
    assert_eq!(config, expected);
    let back: CircuitBreakerConfig = serde_json::from_str(&serde_json::to_string(&config).unwrap()).unwrap();
    assert_eq!(back, config);
    let count: CircuitBreakerConfig =
        serde_json::from_str(r#"{"window": {"type": "count", "size": 7}}"#).unwrap();
    assert_eq!(count.window, SlidingWindow::Count { size: 7 });
    assert!(serde_json::from_str::<CircuitBreakerConfig>(r#"{"open_wiat": "1s"}"#).is_err());
    assert!(
        serde_json::from_str::<CircuitBreakerConfig>(r#"{"window": {"type": "count", "size": 7, "x": 1}}"#)
            .is_err()
    );
}

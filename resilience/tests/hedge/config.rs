//! `HedgeConfig` validation (every error names its field), its documented
//! defaults, and its JSON form.

use std::time::Duration;

use orch_resilience::{HedgeConfig, HedgeDelay, HedgeLayer};

use super::fixed;
use crate::support::ms;

// ===== configuration =====

#[test]
fn invalid_configs_name_the_field() {
    let percentile = |p: f64| HedgeDelay::Percentile {
        percentile: p,
        min_samples: 10,
        window: ms(1_000),
        fallback: ms(100),
    };
    let cases = [
        (
            HedgeConfig::default().max_hedged_attempts(0),
            "hedge.max_hedged_attempts",
        ),
        (
            HedgeConfig::default().max_hedged_attempts(11),
            "hedge.max_hedged_attempts",
        ),
        (HedgeConfig::default().name(""), "hedge.name"),
        (
            HedgeConfig::default().delay(percentile(0.0)),
            "hedge.delay.percentile",
        ),
        (
            HedgeConfig::default().delay(percentile(1.5)),
            "hedge.delay.percentile",
        ),
        (
            HedgeConfig::default().delay(percentile(f64::NAN)),
            "hedge.delay.percentile",
        ),
        (
            HedgeConfig::default().delay(HedgeDelay::Percentile {
                percentile: 0.9,
                min_samples: 0,
                window: ms(1_000),
                fallback: ms(100),
            }),
            "hedge.delay.min_samples",
        ),
        (
            HedgeConfig::default().delay(HedgeDelay::Percentile {
                percentile: 0.9,
                min_samples: 10,
                window: Duration::ZERO,
                fallback: ms(100),
            }),
            "hedge.delay.window",
        ),
    ];
    for (config, field) in cases {
        assert_eq!(config.validate().unwrap_err().field_name(), field, "{config:?}");
        assert_eq!(HedgeLayer::new(config).unwrap_err().field_name(), field);
    }

    for config in [
        HedgeConfig::default(),
        HedgeConfig::default().max_hedged_attempts(10),
        HedgeConfig::default().delay(percentile(1.0)),
        fixed(0),
    ] {
        assert!(config.clone().build().is_ok(), "{config:?}");
    }
}

#[test]
fn defaults_are_the_documented_values() {
    let config = HedgeConfig::default();
    assert_eq!(config.name, "hedge");
    assert_eq!(config.max_hedged_attempts, 1);
    assert_eq!(
        config.delay,
        HedgeDelay::Percentile {
            percentile: 0.95,
            min_samples: 100,
            window: ms(10_000),
            fallback: ms(2_000),
        }
    );
}

#[test]
fn configs_round_trip_through_json() {
    for config in [
        HedgeConfig::default(),
        fixed(75).name("catalog").max_hedged_attempts(3),
        HedgeConfig::default().delay(HedgeDelay::Percentile {
            percentile: 0.99,
            min_samples: 50,
            window: ms(30_000),
            fallback: ms(250),
        }),
    ] {
        let json = serde_json::to_string(&config).unwrap();
        let back: HedgeConfig = serde_json::from_str(&json).unwrap();
        assert_eq!(back, config, "{json}");
    }

    let json = serde_json::to_value(fixed(75)).unwrap();
    assert_eq!(json["delay"], serde_json::json!({ "fixed": "75ms" }));

    let partial: HedgeConfig =
        serde_json::from_str(r#"{ "delay": { "percentile": { "percentile": 0.9, "window": "1m" } } }"#)
            .unwrap();
    assert_eq!(
        partial.delay,
        HedgeDelay::Percentile {
            percentile: 0.9,
            min_samples: 100,
            window: ms(60_000),
            fallback: ms(2_000),
        }
    );
    assert_eq!(partial.max_hedged_attempts, 1);

    assert!(serde_json::from_str::<HedgeConfig>(r#"{ "max_attempts": 2 }"#).is_err());
    assert!(serde_json::from_str::<HedgeConfig>(r#"{ "delay": { "percentile": { "p": 0.9 } } }"#).is_err());
}

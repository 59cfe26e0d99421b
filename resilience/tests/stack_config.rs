//! A stack built from a `StackConfig` read from JSON: unknown keys and bad
//! values are refused with their paths, and a good config builds a stack
//! whose layers behave as configured.

// Tests may unwrap; clippy.toml allows it inside #[test] functions only, and
// this file also has helpers.
#![allow(clippy::unwrap_used)]

use std::{
    convert::Infallible,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, combinators::UnsyncBoxBody};
use orch_resilience::{
    AlwaysSafe, CircuitBreakerConfig, ConfigError, ErrorClass, ResilienceLayer, stack::StackConfig,
};
use tokio::time::Instant;
use tower::{Layer, ServiceExt, service_fn};

fn parse(json: &str) -> StackConfig {
    serde_json::from_str(json).unwrap()
}

fn field_of<T>(built: Result<T, ConfigError>) -> String {
    match built {
        Ok(_) => panic!("an invalid config was built"),
        Err(e) => e.field_name().to_owned(),
    }
}

#[test]
fn every_field_deserializes_with_human_readable_durations() {
    let config = parse(
        r#"{
            "overall_timeout": "2s",
            "attempt_timeout": "250ms",
            "retry": { "max_attempts": 4, "budget": null },
            "breaker": { "name": "orders", "minimum_calls": 10 },
            "rate_limit": { "permits": 100, "per": "1s" },
            "bulkhead": { "max_concurrent": 8 },
            "body_buffer_limit": 65536
        }"#,
    );
    assert_eq!(config.overall_timeout, Some(Duration::from_secs(2)));
    assert_eq!(config.attempt_timeout, Some(Duration::from_millis(250)));
    assert_eq!(config.retry.as_ref().unwrap().max_attempts, 4);
    assert_eq!(config.breaker.as_ref().unwrap().minimum_calls, 10);
    assert_eq!(config.body_buffer_limit, Some(65536));
    assert!(config.hedge.is_none());
    assert_eq!(parse("{}"), StackConfig::default(), "every field is optional");

    // What a service writes out, it reads back.
    let written = serde_json::to_string(&config).unwrap();
    assert_eq!(parse(&written), config);
}

#[test]
fn unknown_keys_are_rejected_at_every_level() {
    let top = serde_json::from_str::<StackConfig>(r#"{ "retries": {} }"#).unwrap_err();
    assert!(top.to_string().contains("unknown field `retries`"), "{top}");
    let nested = serde_json::from_str::<StackConfig>(r#"{ "retry": { "max_attempt": 2 } }"#).unwrap_err();
    assert!(
        nested.to_string().contains("unknown field `max_attempt`"),
        "{nested}"
    );
    let bad_duration = serde_json::from_str::<StackConfig>(r#"{ "overall_timeout": "soon" }"#).unwrap_err();
    assert!(
        bad_duration.to_string().contains("overall_timeout") || bad_duration.is_data(),
        "{bad_duration}"
    );
}

#[test]
fn bad_values_are_refused_with_their_path() {
    let safe = || ResilienceLayer::builder().safety(AlwaysSafe);
    let build = |json: &str| field_of(safe().build_from_config(&parse(json), "resilience"));

    assert_eq!(
        build(r#"{ "retry": { "max_attempts": 0 } }"#),
        "resilience.retry.max_attempts"
    );
    assert_eq!(
        build(r#"{ "breaker": { "minimum_calls": 0 } }"#),
        "resilience.breaker.minimum_calls"
    );
    assert_eq!(
        build(r#"{ "bulkhead": { "max_concurrent": 0 } }"#),
        "resilience.bulkhead.max_concurrent"
    );
    assert_eq!(
        build(r#"{ "overall_timeout": "0s" }"#),
        "resilience.overall_timeout"
    );
    assert_eq!(
        build(r#"{ "overall_timeout": "1s", "attempt_timeout": "2s" }"#),
        "resilience.attempt_timeout"
    );
    assert_eq!(build(r#"{ "retry": {}, "hedge": {} }"#), "resilience.hedge");
    assert_eq!(
        build(r#"{ "overall_timeout": "1s", "retry": { "overall_timeout": "1s" } }"#),
        "resilience.retry.overall_timeout"
    );
    assert_eq!(
        build(r#"{ "body_buffer_limit": 1024 }"#),
        "resilience.body_buffer_limit"
    );
    // At the root of a configuration tree, paths have no prefix.
    let root = safe().build_from_config(&parse(r#"{ "retry": { "max_attempts": 0 } }"#), "");
    assert_eq!(field_of(root), "retry.max_attempts");

    // Over buffered bodies the limit must be positive; hedging is refused
    // where bodies reach the service as `ReplayBody`s, allowed where rebuilt.
    let grpc = |json: &str| ResilienceLayer::grpc(AlwaysSafe).build_from_config(&parse(json), "svc");
    assert_eq!(
        field_of(grpc(r#"{ "body_buffer_limit": 0 }"#)),
        "svc.body_buffer_limit"
    );
    assert!(grpc(r#"{ "hedge": {} }"#).is_ok());
    let raw = ResilienceLayer::http()
        .buffer_bodies_raw(1024)
        .build_from_config(&parse(r#"{ "hedge": {} }"#), "svc");
    assert_eq!(field_of(raw), "svc.hedge");
}

#[test]
fn a_builder_with_layers_set_is_refused_rather_than_merged() {
    // Every layer comes from the config: one already set on the builder is
    // named, not silently overridden or kept.
    let config = parse(r#"{ "retry": { "max_attempts": 2 } }"#);
    let preset = ResilienceLayer::builder()
        .safety(AlwaysSafe)
        .circuit_breaker(CircuitBreakerConfig::default().name("preset"))
        .build_from_config(&config, "svc");
    assert_eq!(field_of(preset), "svc.breaker");
}

#[tokio::test(start_paused = true)]
async fn a_good_config_builds_a_working_stack() {
    let config = parse(
        r#"{
            "overall_timeout": "1s",
            "attempt_timeout": "100ms",
            "retry": { "max_attempts": 3, "budget": null,
                       "backoff": { "kind": "constant", "initial_delay": "10ms", "jitter": "none" } },
            "breaker": { "name": "configured", "window": { "type": "count", "size": 4 }, "minimum_calls": 4 }
        }"#,
    );
    let stack = ResilienceLayer::builder()
        .safety(AlwaysSafe)
        .build_from_config(&config, "resilience")
        .unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&calls);
    // Hangs on the first call (cut by the attempt timeout), then answers.
    let inner = service_fn(move |n: u32| {
        let first = counter.fetch_add(1, Ordering::SeqCst) == 0;
        async move {
            if first {
                tokio::time::sleep(Duration::from_secs(3600)).await;
            }
            Ok::<_, std::io::Error>(n + 1)
        }
    });
    let start = Instant::now();
    assert_eq!(stack.layer(inner).oneshot(1).await.unwrap(), 2);
    assert_eq!(
        start.elapsed(),
        Duration::from_millis(110),
        "attempt timeout, then one 10 ms delay"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    let breaker = stack.breaker().unwrap();
    assert_eq!(breaker.name(), "configured");
    assert_eq!((breaker.metrics().calls, breaker.metrics().failures), (2, 1));

    // Layers the config leaves out are absent: no breaker, no retry.
    let bare = ResilienceLayer::builder()
        .safety(AlwaysSafe)
        .build_from_config(&StackConfig::default(), "resilience")
        .unwrap();
    assert!(bare.breaker().is_none());
    let failing = service_fn(|_: u32| async { Err::<u32, _>(std::io::Error::other("down")) });
    let err = bare.layer(failing).oneshot(1).await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::Inner, "not retried: {err}");
}

#[tokio::test(start_paused = true)]
async fn a_configured_grpc_style_stack_buffers_with_the_configured_limit() {
    type Body = UnsyncBoxBody<Bytes, Infallible>;
    let config = parse(r#"{ "retry": { "budget": null }, "body_buffer_limit": 4 }"#);
    let stack = ResilienceLayer::http()
        .buffer_bodies(1024)
        .build_from_config(&config, "resilience")
        .unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&calls);
    let inner = service_fn(move |request: Request<Body>| {
        counter.fetch_add(1, Ordering::SeqCst);
        async move {
            let body = request.into_body().collect().await.unwrap().to_bytes();
            Ok::<_, Infallible>(Response::builder().status(503).body(body).unwrap())
        }
    });
    let small = Request::put("/a")
        .body(Full::new(Bytes::from_static(b"abc")).boxed_unsync())
        .unwrap();
    let response = stack.layer(inner.clone()).oneshot(small).await.unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        calls.swap(0, Ordering::SeqCst),
        3,
        "3 bytes fit the configured 4: retried"
    );

    let large = Request::put("/a")
        .body(Full::new(Bytes::from_static(b"abcdef")).boxed_unsync())
        .unwrap();
    let response = stack.layer(inner).oneshot(large).await.unwrap();
    assert_eq!(response.into_body(), "abcdef", "sent whole");
    assert_eq!(calls.load(Ordering::SeqCst), 1, "6 bytes do not fit: sent once");
}

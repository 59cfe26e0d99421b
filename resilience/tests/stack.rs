//! Behaviour of the composed stack built by `ResilienceLayer::builder()`, on
//! paused time: what reaches a scripted inner service, which error the caller
//! gets, what the breaker records, and what `build` refuses.
//!
//! Every test asserts a property that only holds because of the order the
//! builder documents (fallback → overall timeout → retry | hedge → breaker →
//! rate limit → bulkhead → attempt timeout → service).

// Tests may unwrap; clippy.toml allows it inside #[test] functions only, and
// this file also has helpers.
#![allow(clippy::unwrap_used)]

mod support;

use std::{io, time::Duration};

use http::Request;
use orch_resilience::{
    AlwaysSafe, BreakerState, BulkheadConfig, CircuitBreakerConfig, CircuitRejection, ConfigError,
    DefaultClassifier, ErrorClass, ErrorClasses, FallbackValue, HedgeConfig, HedgeDelay, IDEMPOTENCY_KEY,
    NotRetriedReason, Outcome, RateLimitConfig, ResilienceError, ResilienceLayer, RetryConfig, TimeoutKind,
    classify_error, classify_fn, retry::BackoffConfig,
};
use tokio::time::Instant;
use tower::{Layer, Service, ServiceExt};

use support::{Metrics, Step, ms, scripted};

/// Retries with a fixed 10 ms delay and no budget, so attempt instants are exact.
fn retry(max_attempts: u32) -> RetryConfig {
    RetryConfig::default()
        .max_attempts(max_attempts)
        .backoff(BackoffConfig::constant(ms(10)))
        .budget(None)
}

/// Judges the last 4 calls, opens at a 50 % failure rate once 4 are recorded.
fn small_breaker() -> CircuitBreakerConfig {
    CircuitBreakerConfig::default()
        .name("inventory")
        .count_window(4)
        .minimum_calls(4)
        .failure_rate_threshold(0.5)
        .open_wait(Duration::from_secs(30))
}

fn field_of<T>(built: Result<T, ConfigError>) -> String {
    match built {
        Ok(_) => panic!("build() accepted an invalid stack"),
        Err(e) => e.field_name().to_owned(),
    }
}

#[track_caller]
fn assert_not_retried(err: &ResilienceError, want: NotRetriedReason, want_attempts: u32) {
    match err {
        ResilienceError::NotRetried { reason, attempts, .. } => {
            assert_eq!((*reason, *attempts), (want, want_attempts), "{err}");
        }
        other => panic!("expected NotRetried {{ {want:?}, {want_attempts} }}, got {other:?}"),
    }
}

// ===== retry =====

#[tokio::test(start_paused = true)]
async fn a_retryable_failure_is_retried_through_the_breaker_and_succeeds() {
    let layer = ResilienceLayer::builder()
        .retry(retry(3))
        .circuit_breaker(small_breaker())
        .attempt_timeout(ms(100))
        .safety(AlwaysSafe)
        .build()
        .unwrap();
    let (inner, calls) = scripted::<u32>([Step::Fail], Step::Ok(7));
    let start = Instant::now();

    let answer = layer.layer(inner).oneshot(1).await.unwrap();

    assert_eq!(answer, 7);
    assert_eq!(calls.get(), 2, "one failure, one retry");
    assert_eq!(start.elapsed(), ms(10), "the retry waited exactly the backoff");
    // Each attempt went through the breaker below the retry layer.
    let m = layer.breaker().unwrap().metrics();
    assert_eq!((m.calls, m.failures), (2, 1));
}

#[tokio::test(start_paused = true)]
async fn one_classifier_decides_for_retry_and_breaker() {
    // A zero answer is a retryable failure (say, an empty replica); the
    // breaker must count it as a failure too, since they share the classifier.
    let classifier = classify_fn(|result: Result<&u32, &ResilienceError>| match result {
        Ok(0) => Outcome::Retryable,
        Ok(_) => Outcome::Success,
        Err(e) => classify_error(e),
    });
    let layer = ResilienceLayer::builder()
        .retry(retry(3))
        .circuit_breaker(small_breaker())
        .classifier(classifier)
        .safety(AlwaysSafe)
        .build()
        .unwrap();
    let (inner, calls) = scripted::<u32>([Step::Ok(0)], Step::Ok(5));

    assert_eq!(layer.layer(inner).oneshot(1).await.unwrap(), 5);

    assert_eq!(calls.get(), 2);
    let m = layer.breaker().unwrap().metrics();
    assert_eq!((m.calls, m.failures), (2, 1));
}

// ===== attempt timeout → breaker → retry =====

#[tokio::test(start_paused = true)]
async fn attempt_timeouts_open_the_breaker_and_circuit_open_is_not_retried() {
    let layer = ResilienceLayer::builder()
        .retry(retry(3))
        .circuit_breaker(small_breaker())
        .attempt_timeout(ms(100))
        .safety(AlwaysSafe)
        .build()
        .unwrap();
    let (inner, calls) = scripted::<u32>([], Step::Hang);
    let service = layer.layer(inner);
    let breaker = layer.breaker().unwrap();

    // Call 1: three attempts, each cut by the attempt timeout below the
    // breaker, so each is a recorded failure (3 of the 4 needed).
    let start = Instant::now();
    let err = service.clone().oneshot(1).await.unwrap_err();
    assert_not_retried(&err, NotRetriedReason::MaxAttempts, 3);
    assert!(
        matches!(
            err.last_attempt(),
            ResilienceError::Timeout { kind: TimeoutKind::Attempt, after } if *after == ms(100)
        ),
        "{err:?}"
    );
    assert_eq!(
        start.elapsed(),
        ms(320),
        "3 × 100 ms attempts + 2 × 10 ms backoff"
    );
    assert_eq!(calls.get(), 3);
    assert_eq!(breaker.state(), BreakerState::Closed);
    let m = breaker.metrics();
    assert_eq!((m.calls, m.failures), (3, 3));

    // Call 2: its first attempt times out (4th failure: the breaker opens);
    // the retry is then rejected by the open breaker, and that rejection is
    // returned as it is, not retried.
    let start = Instant::now();
    let err = service.clone().oneshot(2).await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::CircuitOpen, "{err:?}");
    assert!(
        matches!(
            &err,
            ResilienceError::CircuitOpen { rejection: CircuitRejection::Open, remaining, .. }
                if *remaining == Some(Duration::from_secs(30) - ms(10))
        ),
        "{err:?}"
    );
    assert_eq!(
        start.elapsed(),
        ms(110),
        "100 ms attempt + 10 ms backoff, nothing after"
    );
    assert_eq!(calls.get(), 4, "the rejected retry never reached the service");
    assert_eq!(breaker.state(), BreakerState::Open);

    // Call 3: rejected at once, not retried, service untouched.
    let start = Instant::now();
    let err = service.clone().oneshot(3).await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::CircuitOpen, "{err:?}");
    assert_eq!(start.elapsed(), Duration::ZERO);
    assert_eq!(calls.get(), 4);
    let m = breaker.metrics();
    assert_eq!((m.calls, m.failures, m.rejections), (4, 4, 2));
}

// ===== overall timeout =====

#[tokio::test(start_paused = true)]
async fn the_overall_timeout_cuts_a_hanging_attempt_at_the_deadline() {
    // With retry enabled, the overall timeout is the retry layer's deadline:
    // the first attempt always starts and is cut at the deadline.
    let layer = ResilienceLayer::builder()
        .overall_timeout(ms(250))
        .retry(retry(5))
        .circuit_breaker(small_breaker())
        .safety(AlwaysSafe)
        .build()
        .unwrap();
    let (inner, calls) = scripted::<u32>([], Step::Hang);
    let start = Instant::now();

    let err = layer.layer(inner).oneshot(1).await.unwrap_err();

    assert!(
        matches!(err, ResilienceError::Timeout { kind: TimeoutKind::Overall, after } if after == ms(250)),
        "{err:?}"
    );
    assert_eq!(start.elapsed(), ms(250));
    assert_eq!(calls.get(), 1);
    // The cut attempt was cancelled, not failed: the breaker records nothing.
    assert_eq!(layer.breaker().unwrap().metrics().calls, 0);

    // Without retry the overall timeout is its own layer, with the same error.
    let layer = ResilienceLayer::builder()
        .overall_timeout(ms(250))
        .safety(AlwaysSafe)
        .build()
        .unwrap();
    let (inner, calls) = scripted::<u32>([], Step::Hang);
    let start = Instant::now();
    let err = layer.layer(inner).oneshot(1).await.unwrap_err();
    assert!(
        matches!(err, ResilienceError::Timeout { kind: TimeoutKind::Overall, after } if after == ms(250)),
        "{err:?}"
    );
    assert_eq!(start.elapsed(), ms(250));
    assert_eq!(calls.get(), 1);
}

#[tokio::test(start_paused = true)]
async fn the_overall_timeout_bounds_all_attempts_and_backoffs() {
    // Attempts fail fast; retries go on until the deadline stops them.
    let layer = ResilienceLayer::builder()
        .overall_timeout(ms(35))
        .retry(retry(10))
        .safety(AlwaysSafe)
        .build()
        .unwrap();
    let (inner, calls) = scripted::<u32>([], Step::Fail);
    let start = Instant::now();

    let err = layer.layer(inner).oneshot(1).await.unwrap_err();

    // Attempts at 0, 10, 20, 30 ms; the next would start at 40 ms, past the
    // deadline, so the retry layer stops at 30 ms without waiting.
    assert_not_retried(&err, NotRetriedReason::DeadlineTooClose, 4);
    assert_eq!(err.last_attempt().class(), ErrorClass::Inner);
    assert_eq!(calls.get(), 4);
    assert_eq!(start.elapsed(), ms(30));
    assert!(start.elapsed() <= ms(35));
}

#[tokio::test(start_paused = true)]
async fn retry_does_not_start_an_attempt_that_cannot_finish_before_the_overall_timeout() {
    // Module doc of `stack`: the overall timeout is the retry layer's deadline
    // "so it never starts an attempt that cannot finish in time". With a
    // 100 ms attempt timeout: attempts at 0-100 and 110-210 time out; a third
    // would start at 220 and could run until 320 > 250, so the retry layer
    // must stop at 210 with DeadlineTooClose after 2 attempts.
    let layer = ResilienceLayer::builder()
        .overall_timeout(ms(250))
        .retry(retry(5))
        .attempt_timeout(ms(100))
        .safety(AlwaysSafe)
        .build()
        .unwrap();
    let (inner, calls) = scripted::<u32>([], Step::Hang);
    let start = Instant::now();

    let err = layer.layer(inner).oneshot(1).await.unwrap_err();

    assert!(start.elapsed() <= ms(250));
    assert_not_retried(&err, NotRetriedReason::DeadlineTooClose, 2);
    assert!(
        matches!(
            err.last_attempt(),
            ResilienceError::Timeout {
                kind: TimeoutKind::Attempt,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(calls.get(), 2, "no third attempt that could not finish in time");
    assert_eq!(start.elapsed(), ms(210));
}

// ===== fallback =====

#[tokio::test(start_paused = true)]
async fn fallback_answers_circuit_open_but_not_other_classes() {
    let layer = ResilienceLayer::builder()
        .fallback(ErrorClass::CircuitOpen, FallbackValue::new(99_u32))
        .circuit_breaker(small_breaker())
        .safety(AlwaysSafe)
        .build()
        .unwrap();
    let (inner, calls) = scripted::<u32>([], Step::Fail);
    let service = layer.layer(inner);

    // The service's own failures are not a class the fallback answers.
    for _ in 0..4 {
        let err = service.clone().oneshot(1).await.unwrap_err();
        assert_eq!(err.class(), ErrorClass::Inner, "{err:?}");
        assert!(err.downcast_inner_ref::<io::Error>().is_some());
    }
    assert_eq!(layer.breaker().unwrap().state(), BreakerState::Open);

    // The open breaker's rejection is.
    assert_eq!(service.clone().oneshot(1).await.unwrap(), 99);
    assert_eq!(
        calls.get(),
        4,
        "the fallback answered without touching the service"
    );
}

#[tokio::test(start_paused = true)]
async fn fallback_answers_the_overall_timeout_and_ignores_not_retried() {
    let on = ErrorClasses::NONE
        .with(ErrorClass::CircuitOpen)
        .with(ErrorClass::Timeout);

    // The overall timeout is inside the fallback: it is answered.
    let layer = ResilienceLayer::builder()
        .fallback(on, FallbackValue::new(99_u32))
        .overall_timeout(ms(200))
        .retry(retry(3))
        .safety(AlwaysSafe)
        .build()
        .unwrap();
    let (inner, calls) = scripted::<u32>([], Step::Hang);
    let start = Instant::now();
    assert_eq!(layer.layer(inner).oneshot(1).await.unwrap(), 99);
    assert_eq!(start.elapsed(), ms(200));
    assert_eq!(calls.get(), 1);

    // A forced-open breaker's rejection is answered too.
    let layer = ResilienceLayer::builder()
        .fallback(on, FallbackValue::new(98_u32))
        .overall_timeout(ms(200))
        .retry(retry(3))
        .circuit_breaker(small_breaker())
        .safety(AlwaysSafe)
        .build()
        .unwrap();
    layer.breaker().unwrap().force_open();
    let (inner, calls) = scripted::<u32>([], Step::Ok(1));
    assert_eq!(layer.layer(inner).oneshot(1).await.unwrap(), 98);
    assert_eq!(calls.get(), 0);

    // Retries that gave up are NotRetried, not in the set: passed through.
    let layer = ResilienceLayer::builder()
        .fallback(on, FallbackValue::new(97_u32))
        .overall_timeout(ms(200))
        .retry(retry(2))
        .safety(AlwaysSafe)
        .build()
        .unwrap();
    let (inner, calls) = scripted::<u32>([], Step::Fail);
    let err = layer.layer(inner).oneshot(1).await.unwrap_err();
    assert_not_retried(&err, NotRetriedReason::MaxAttempts, 2);
    assert_eq!(calls.get(), 2);
}

// ===== rate limit and bulkhead inside the breaker =====

#[tokio::test(start_paused = true)]
async fn rate_limited_calls_are_neither_recorded_by_the_breaker_nor_retried() {
    let layer = ResilienceLayer::builder()
        .retry(retry(3))
        .circuit_breaker(small_breaker())
        .rate_limit(RateLimitConfig::new(1, Duration::from_secs(60)))
        .safety(AlwaysSafe)
        .build()
        .unwrap();
    let (inner, calls) = scripted::<u32>([], Step::Ok(1));
    let service = layer.layer(inner);
    let breaker = layer.breaker().unwrap();

    assert_eq!(service.clone().oneshot(1).await.unwrap(), 1);
    assert_eq!(breaker.metrics().calls, 1);

    // More rejections than the breaker's minimum: were they recorded as
    // failures, the breaker would open.
    let start = Instant::now();
    for _ in 0..6 {
        let err = service.clone().oneshot(1).await.unwrap_err();
        assert!(
            matches!(&err, ResilienceError::RateLimited { name, .. } if &**name == "rate_limit"),
            "{err:?}"
        );
        assert_eq!(err.retry_after(), Some(Duration::from_secs(60)));
    }
    assert_eq!(start.elapsed(), Duration::ZERO, "no backoff: not retried");
    assert_eq!(calls.get(), 1);
    let m = breaker.metrics();
    assert_eq!((m.state, m.calls, m.failures), (BreakerState::Closed, 1, 0));
}

#[tokio::test(start_paused = true)]
async fn the_rate_limiter_spends_no_permit_on_calls_the_breaker_rejects() {
    let layer = ResilienceLayer::builder()
        .circuit_breaker(small_breaker())
        .rate_limit(RateLimitConfig::new(1, Duration::from_secs(60)))
        .safety(AlwaysSafe)
        .build()
        .unwrap();
    let (inner, calls) = scripted::<u32>([], Step::Ok(1));
    let service = layer.layer(inner);
    let breaker = layer.breaker().unwrap();

    breaker.force_open();
    for _ in 0..3 {
        let err = service.clone().oneshot(1).await.unwrap_err();
        assert!(
            matches!(
                err,
                ResilienceError::CircuitOpen {
                    rejection: CircuitRejection::ForcedOpen,
                    ..
                }
            ),
            "{err:?}"
        );
    }
    breaker.reset();

    // The one permit is still there.
    assert_eq!(service.clone().oneshot(1).await.unwrap(), 1);
    let err = service.clone().oneshot(1).await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::RateLimited, "{err:?}");
    assert_eq!(calls.get(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_full_bulkhead_rejects_without_retry_or_breaker_record() {
    let layer = ResilienceLayer::builder()
        .retry(retry(3))
        .circuit_breaker(small_breaker())
        .bulkhead(BulkheadConfig::default().name("db").max_concurrent(1))
        .safety(AlwaysSafe)
        .build()
        .unwrap();
    let (inner, calls) = scripted::<u32>([Step::After(ms(100), 1)], Step::Ok(2));
    let service = layer.layer(inner);

    // The first call takes the only slot and holds it for 100 ms.
    let first = tokio::spawn(service.clone().oneshot(1));
    tokio::task::yield_now().await;
    assert_eq!(calls.get(), 1);

    let start = Instant::now();
    for _ in 0..5 {
        let err = service.clone().oneshot(2).await.unwrap_err();
        assert!(
            matches!(
                &err,
                ResilienceError::BulkheadFull { name, max_concurrent: 1, waited }
                    if &**name == "db" && waited.is_zero()
            ),
            "{err:?}"
        );
    }
    assert_eq!(start.elapsed(), Duration::ZERO, "not retried");
    assert_eq!(calls.get(), 1);

    assert_eq!(first.await.unwrap().unwrap(), 1);
    let m = layer.breaker().unwrap().metrics();
    assert_eq!(
        (m.state, m.calls, m.failures),
        (BreakerState::Closed, 1, 0),
        "only the admitted call is recorded"
    );
    // The slot is free again.
    assert_eq!(service.oneshot(3).await.unwrap(), 2);
}

// ===== hedging =====

#[tokio::test(start_paused = true)]
async fn a_slow_primary_is_hedged_and_the_hedge_wins() {
    let layer = ResilienceLayer::builder()
        .overall_timeout(Duration::from_secs(2))
        .hedge(
            HedgeConfig::default()
                .delay(HedgeDelay::fixed(ms(50)))
                .max_hedged_attempts(1),
        )
        .circuit_breaker(small_breaker())
        .attempt_timeout(ms(500))
        .safety(AlwaysSafe)
        .build()
        .unwrap();
    let (inner, calls) = scripted::<u32>([Step::Hang, Step::After(ms(10), 2)], Step::Ok(3));
    let start = Instant::now();

    let answer = layer.layer(inner).oneshot(1).await.unwrap();

    assert_eq!(answer, 2, "the hedge answered");
    assert_eq!(
        start.elapsed(),
        ms(60),
        "hedge sent at 50 ms, answered 10 ms later"
    );
    assert_eq!(calls.get(), 2);
    // The cancelled primary records nothing; the hedge's success is recorded.
    let m = layer.breaker().unwrap().metrics();
    assert_eq!((m.calls, m.failures), (1, 0));
}

#[tokio::test(start_paused = true)]
async fn the_overall_timeout_bounds_a_call_without_retry_and_a_hedged_call() {
    // Without retry the overall timeout is a layer of its own in the
    // repeat slot; with hedging it wraps the hedge and all its attempts.
    let once = ResilienceLayer::builder()
        .overall_timeout(ms(100))
        .circuit_breaker(small_breaker())
        .safety(AlwaysSafe)
        .build()
        .unwrap();
    let hedged = ResilienceLayer::builder()
        .overall_timeout(ms(100))
        .hedge(
            HedgeConfig::default()
                .delay(HedgeDelay::fixed(ms(30)))
                .max_hedged_attempts(1),
        )
        .safety(AlwaysSafe)
        .build()
        .unwrap();
    // Two stack types (one sends once, one may repeat): the same checks on each.
    macro_rules! times_out_overall {
        ($layer:expr, $want_calls:expr) => {{
            let (inner, calls) = scripted::<u32>([], Step::Hang);
            let start = Instant::now();
            let err = $layer.layer(inner).oneshot(1).await.unwrap_err();
            assert!(
                matches!(
                    err,
                    ResilienceError::Timeout {
                        kind: TimeoutKind::Overall,
                        ..
                    }
                ),
                "{err:?}"
            );
            assert_eq!(start.elapsed(), ms(100));
            assert_eq!(calls.get(), $want_calls, "the primary, and the hedge at 30 ms");
        }};
    }
    times_out_overall!(once, 1);
    times_out_overall!(hedged, 2);
}

// ===== configuration errors =====

#[tokio::test(start_paused = true)]
async fn config_errors_name_the_field() {
    let hedge = HedgeConfig::default().delay(HedgeDelay::fixed(ms(50)));

    let both = ResilienceLayer::builder().retry(retry(3)).hedge(hedge.clone());
    assert_eq!(field_of(both.build()), "stack.hedge");

    let longer = ResilienceLayer::builder()
        .overall_timeout(ms(100))
        .attempt_timeout(ms(200));
    assert_eq!(field_of(longer.build()), "stack.attempt_timeout");

    let zero = ResilienceLayer::builder().overall_timeout(Duration::ZERO);
    assert_eq!(field_of(zero.build()), "stack.overall_timeout");
    let zero = ResilienceLayer::builder().attempt_timeout(Duration::ZERO);
    assert_eq!(field_of(zero.build()), "stack.attempt_timeout");

    let bad_retry = ResilienceLayer::builder().retry(retry(0));
    assert_eq!(field_of(bad_retry.build()), "retry.max_attempts");

    let twice = ResilienceLayer::builder()
        .overall_timeout(ms(100))
        .retry(retry(3).overall_timeout(ms(100)));
    assert_eq!(field_of(twice.build()), "retry.overall_timeout");

    let bad_hedge = ResilienceLayer::builder().hedge(hedge.max_hedged_attempts(0));
    assert_eq!(field_of(bad_hedge.build()), "hedge.max_hedged_attempts");

    let bad_breaker = ResilienceLayer::builder().circuit_breaker(small_breaker().minimum_calls(0));
    assert_eq!(field_of(bad_breaker.build()), "breaker.minimum_calls");

    let bad_rate = ResilienceLayer::builder().rate_limit(RateLimitConfig::new(0, Duration::from_secs(1)));
    assert_eq!(field_of(bad_rate.build()), "rate_limit.permits");

    let bad_bulkhead = ResilienceLayer::builder().bulkhead(BulkheadConfig::default().max_concurrent(0));
    assert_eq!(field_of(bad_bulkhead.build()), "bulkhead.max_concurrent");

    // The first bad field in stack order (breaker before bulkhead) is reported.
    let two_bad = ResilienceLayer::builder()
        .bulkhead(BulkheadConfig::default().max_concurrent(0))
        .circuit_breaker(small_breaker().minimum_calls(0));
    assert_eq!(field_of(two_bad.build()), "breaker.minimum_calls");
}

#[tokio::test(start_paused = true)]
async fn a_stack_rule_violation_builds_no_layer() {
    // Layers with side effects at construction (the breaker sets its state
    // gauge, the bulkhead and rate limiter register metric handles): none of
    // them may appear when the stack itself is invalid.
    let metrics = Metrics::default();
    let built = metrics.during(|| {
        ResilienceLayer::builder()
            .retry(retry(3))
            .hedge(HedgeConfig::default())
            .circuit_breaker(small_breaker())
            .rate_limit(RateLimitConfig::default())
            .bulkhead(BulkheadConfig::default())
            .build()
    });
    assert_eq!(field_of(built), "stack.hedge");
    let snapshot = metrics.snapshot();
    assert!(snapshot.is_empty(), "{snapshot:?}");
}

#[tokio::test(start_paused = true)]
async fn a_bad_inner_layer_config_builds_no_outer_layer() {
    // Module doc: "the first bad field is returned, with its path, and no
    // layer is built". A valid breaker and rate limiter above a bad bulkhead
    // must leave no trace.
    let metrics = Metrics::default();
    let built = metrics.during(|| {
        ResilienceLayer::builder()
            .circuit_breaker(small_breaker())
            .rate_limit(RateLimitConfig::default())
            .bulkhead(BulkheadConfig::default().max_concurrent(0))
            .build()
    });
    assert_eq!(field_of(built), "bulkhead.max_concurrent");
    let names: Vec<String> = metrics
        .snapshot()
        .samples()
        .iter()
        .map(|sample| sample.name.clone())
        .collect();
    assert!(
        names.is_empty(),
        "metrics of layers that were not built: {names:?}"
    );
}

// ===== request safety =====

#[tokio::test(start_paused = true)]
async fn http_safety_retries_get_but_not_a_post_without_idempotency_key() {
    // The scripted service answers `u32`, not `http::Response`s: the default
    // classifier under `HttpSafety` (`ProtocolClassifier`) cannot read those.
    let layer = ResilienceLayer::builder()
        .retry(retry(3))
        .classifier(DefaultClassifier)
        .build()
        .unwrap();

    let (inner, calls) = scripted::<Request<()>>([Step::Fail], Step::Ok(1));
    let post = Request::post("/orders").body(()).unwrap();
    let err = layer.layer(inner).oneshot(post).await.unwrap_err();
    assert_not_retried(&err, NotRetriedReason::UnsafeRequest, 1);
    assert!(err.downcast_inner_ref::<io::Error>().is_some());
    assert_eq!(calls.get(), 1);

    let (inner, calls) = scripted::<Request<()>>([Step::Fail], Step::Ok(1));
    let get = Request::get("/orders").body(()).unwrap();
    assert_eq!(layer.layer(inner).oneshot(get).await.unwrap(), 1);
    assert_eq!(calls.get(), 2);

    let (inner, calls) = scripted::<Request<()>>([Step::Fail], Step::Ok(1));
    let keyed = Request::post("/orders")
        .header(IDEMPOTENCY_KEY, "order-17")
        .body(())
        .unwrap();
    assert_eq!(layer.layer(inner).oneshot(keyed).await.unwrap(), 1);
    assert_eq!(calls.get(), 2);
}

// ===== the shared breaker =====

#[tokio::test(start_paused = true)]
async fn the_layer_breaker_is_shared_by_every_service_and_clone() {
    let none = ResilienceLayer::builder().safety(AlwaysSafe).build().unwrap();
    assert!(none.breaker().is_none());

    let layer = ResilienceLayer::builder()
        .circuit_breaker(small_breaker())
        .safety(AlwaysSafe)
        .build()
        .unwrap();
    let breaker = layer.breaker().unwrap();
    assert_eq!(breaker.name(), "inventory");

    // Two services from the layer, each called through clones.
    let (inner, calls) = scripted::<u32>([], Step::Fail);
    let a = layer.layer(inner.clone());
    let b = layer.layer(inner);
    for service in [&a, &b, &a, &b] {
        let mut clone = service.clone();
        let err = clone.ready().await.unwrap().call(1).await.unwrap_err();
        assert_eq!(err.class(), ErrorClass::Inner);
    }
    let m = breaker.metrics();
    assert_eq!((m.state, m.calls, m.failures), (BreakerState::Open, 4, 4));

    let err = b.clone().oneshot(1).await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::CircuitOpen);
    assert_eq!(calls.get(), 4);

    // Operator controls on the handle act on every service.
    breaker.reset();
    assert_eq!(breaker.state(), BreakerState::Closed);
    assert_eq!(a.clone().oneshot(1).await.unwrap_err().class(), ErrorClass::Inner);
    assert_eq!(calls.get(), 5);

    // A shared breaker given to the builder is the one the stack uses.
    let shared = small_breaker().name("shared").build().unwrap();
    let layer = ResilienceLayer::builder()
        .shared_breaker(shared.clone())
        .safety(AlwaysSafe)
        .build()
        .unwrap();
    assert_eq!(layer.breaker().unwrap().name(), "shared");
    shared.force_open();
    let (inner, calls) = scripted::<u32>([], Step::Ok(1));
    let err = layer.layer(inner).oneshot(1).await.unwrap_err();
    assert!(
        matches!(
            err,
            ResilienceError::CircuitOpen {
                rejection: CircuitRejection::ForcedOpen,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(calls.get(), 0);
}

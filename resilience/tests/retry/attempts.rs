//! How many attempts a call gets and what the caller sees when they end:
//! retries stop at `max_attempts` with the inner error, only retryable
//! outcomes and safe (or keyed) requests are retried, rejections of layers
//! below pass through, and each retry and give-up is counted.

use std::{
    io,
    sync::{Arc, Mutex},
    time::Duration,
};

use http::{Request, Response, StatusCode};
use orch_resilience::{
    AlwaysSafe, ErrorClass, HttpSafety, IDEMPOTENCY_KEY, NotRetriedReason, Outcome, ResilienceError,
    RetryLayer, classify_fn,
};
use tower::{Layer, Service, ServiceExt, service_fn};

use super::{Log, config, flaky, get, http_service, not_retried, post, reset, response};
use crate::support::Metrics;

// ===== attempts and classification =====

#[tokio::test(start_paused = true)]
async fn retries_until_success_within_max_attempts() {
    let log = Log::default();
    let retry = RetryLayer::new(config())
        .unwrap()
        .safety(AlwaysSafe)
        .layer(flaky(&log, 2));
    assert_eq!(retry.oneshot(1).await.unwrap(), 2);
    assert_eq!(log.count(), 3);
}

#[tokio::test(start_paused = true)]
async fn an_overall_timeout_too_large_for_the_clock_means_no_deadline() {
    // `Duration::MAX` is a valid config value; the deadline it gives cannot
    // be represented, and the call must run as if there were none.
    let log = Log::default();
    let retry = RetryLayer::new(config().overall_timeout(Duration::MAX))
        .unwrap()
        .safety(AlwaysSafe)
        .layer(flaky(&log, 2));
    assert_eq!(retry.oneshot(1).await.unwrap(), 2);
    assert_eq!(log.count(), 3);
}

#[tokio::test(start_paused = true)]
async fn stops_at_max_attempts_with_the_inner_error() {
    let log = Log::default();
    let retry = RetryLayer::new(config())
        .unwrap()
        .safety(AlwaysSafe)
        .layer(flaky(&log, 10));
    let err = retry.oneshot(1).await.unwrap_err();
    assert_eq!(not_retried(&err), (NotRetriedReason::MaxAttempts, 3));
    assert_eq!(log.count(), 3);
    let inner = err
        .downcast_inner_ref::<io::Error>()
        .expect("the service's own error");
    assert_eq!(inner.kind(), io::ErrorKind::ConnectionReset);
}

#[tokio::test(start_paused = true)]
async fn one_attempt_means_no_retry() {
    let log = Log::default();
    let retry = RetryLayer::new(config().max_attempts(1))
        .unwrap()
        .safety(AlwaysSafe)
        .layer(flaky(&log, 10));
    let err = retry.oneshot(1).await.unwrap_err();
    assert_eq!(not_retried(&err), (NotRetriedReason::MaxAttempts, 1));
    assert_eq!(log.count(), 1);
}

#[tokio::test(start_paused = true)]
async fn http_503_is_retried_500_and_404_are_not() {
    for (status, calls) in [(503, 3), (500, 1), (404, 1), (200, 1)] {
        let log = Log::default();
        let retry = RetryLayer::http(config())
            .unwrap()
            .layer(http_service(&log, move |_| Ok(response(status, &[]))));
        let res = retry.oneshot(get()).await.unwrap();
        // After the last attempt the caller sees the 503 itself.
        assert_eq!(res.status(), status, "status {status}");
        assert_eq!(log.count(), calls, "status {status}");
    }
}

#[tokio::test(start_paused = true)]
async fn retryable_response_then_success() {
    let log = Log::default();
    let retry = RetryLayer::http(config()).unwrap().layer(http_service(&log, |n| {
        Ok(response(if n == 0 { 503 } else { 200 }, &[]))
    }));
    assert_eq!(retry.oneshot(get()).await.unwrap().status(), StatusCode::OK);
    assert_eq!(log.count(), 2);
}

#[tokio::test(start_paused = true)]
async fn non_retryable_errors_and_rejections_are_returned_as_they_are() {
    // A classifier that calls every error a plain failure.
    let log = Log::default();
    let retry = RetryLayer::new(config())
        .unwrap()
        .safety(AlwaysSafe)
        .classifier(classify_fn(|r: Result<&usize, &ResilienceError>| {
            if r.is_ok() {
                Outcome::Success
            } else {
                Outcome::Failure
            }
        }))
        .layer(flaky(&log, 10));
    let err = retry.oneshot(1).await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::Inner);
    assert_eq!(log.count(), 1);

    // An inner breaker's rejection passes through, unwrapped, after one call.
    let log = Log::default();
    let open = {
        let log = log.clone();
        service_fn(move |_: u32| {
            log.record();
            async move {
                Err::<(), _>(ResilienceError::CircuitOpen {
                    name: "db".into(),
                    rejection: orch_resilience::CircuitRejection::Open,
                    remaining: None,
                })
            }
        })
    };
    let retry = RetryLayer::new(config()).unwrap().safety(AlwaysSafe).layer(open);
    let err = retry.oneshot(1).await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::CircuitOpen);
    assert_eq!(log.count(), 1);
}

// ===== request safety =====

fn failing_http(
    log: &Log,
) -> impl Service<Request<String>, Response = Response<()>, Error = io::Error> + Clone {
    http_service(log, |_| Err(reset()))
}

#[tokio::test(start_paused = true)]
async fn unsafe_post_is_not_retried() {
    let log = Log::default();
    let retry = RetryLayer::http(config()).unwrap().layer(failing_http(&log));
    let err = retry.oneshot(post()).await.unwrap_err();
    assert_eq!(not_retried(&err), (NotRetriedReason::UnsafeRequest, 1));
    assert_eq!(log.count(), 1);

    // The 503 of an unsafe request is returned after one attempt.
    let log = Log::default();
    let retry = RetryLayer::http(config())
        .unwrap()
        .layer(http_service(&log, |_| Ok(response(503, &[]))));
    assert_eq!(retry.oneshot(post()).await.unwrap().status(), 503);
    assert_eq!(log.count(), 1);
}

#[tokio::test(start_paused = true)]
async fn post_with_an_idempotency_key_is_retried() {
    let log = Log::default();
    let retry = RetryLayer::http(config()).unwrap().layer(failing_http(&log));
    let mut request = post();
    request
        .headers_mut()
        .insert(IDEMPOTENCY_KEY, "order-17".parse().unwrap());
    let err = retry.oneshot(request).await.unwrap_err();
    assert_eq!(not_retried(&err), (NotRetriedReason::MaxAttempts, 3));
    assert_eq!(log.count(), 3);
}

#[tokio::test(start_paused = true)]
async fn an_added_idempotency_key_is_the_same_on_every_attempt() {
    let keys = Arc::new(Mutex::new(Vec::new()));
    let inner = {
        let keys = keys.clone();
        service_fn(move |req: Request<String>| {
            let key = req.headers().get(IDEMPOTENCY_KEY).cloned();
            let mut keys = keys.lock().unwrap();
            keys.push(key);
            let n = keys.len();
            async move { Ok::<_, io::Error>(response(if n < 3 { 503 } else { 201 }, &[])) }
        })
    };
    let retry = RetryLayer::http(config())
        .unwrap()
        .safety(HttpSafety::default().add_idempotency_key(true))
        .layer(inner);
    assert_eq!(retry.oneshot(post()).await.unwrap().status(), 201);
    let keys = keys.lock().unwrap();
    assert_eq!(keys.len(), 3);
    let first = keys[0].clone().expect("a key was added");
    assert!(keys.iter().all(|k| k.as_ref() == Some(&first)));
    // An sf-string (`"…"`), as the IETF draft makes the field.
    let quoted = first.to_str().unwrap();
    let uuid = uuid::Uuid::parse_str(quoted.trim_matches('"')).unwrap();
    assert_eq!(uuid.get_version_num(), 7);
}

// ===== metrics =====

#[tokio::test(start_paused = true)]
async fn metrics_count_retries_and_give_ups() {
    let metrics = Metrics::default();
    let _guard = metrics.install();

    let log = Log::default();
    let retry = RetryLayer::new(config().name("m"))
        .unwrap()
        .safety(AlwaysSafe)
        .layer(flaky(&log, 10));
    retry.oneshot(1).await.unwrap_err();
    let counters = metrics.snapshot();
    assert_eq!(counters.counter("orch_retry_attempts_total", &[("name", "m")]), 2);
    assert_eq!(
        counters.counter(
            "orch_retry_gave_up_total",
            &[("name", "m"), ("reason", "max_attempts")]
        ),
        1
    );
    assert_eq!(
        counters.counter("orch_retry_budget_exhausted_total", &[("name", "m")]),
        0
    );
}

//! What holds retries back beyond the schedule: the server's pushback
//! (`Retry-After`, `grpc-retry-pushback-ms`, a classifier's `Pushback`), and
//! the client's own limits, the retry budget and the gRPC retry throttle.

use std::{
    io,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

use http::{Request, Response};
use orch_resilience::{
    AlwaysSafe, NotRetriedReason, Outcome, ResilienceError, RetryBudget, RetryBudgetConfig, RetryLayer,
    RetryThrottle, RetryThrottleConfig,
    retry::{BackoffConfig, Jitter},
};
use tokio::time::Instant;
use tower::{Layer, ServiceExt, service_fn};

use super::{Log, config, flaky, get, http_service, not_retried, reset, response};
use crate::support::{Metrics, ms};

// ===== server pushback =====

#[tokio::test(start_paused = true)]
async fn retry_after_replaces_the_backoff_and_restarts_it() {
    let log = Log::default();
    let config = config()
        .max_attempts(5)
        .backoff(BackoffConfig::exponential(ms(100), ms(10_000)).jitter(Jitter::None));
    let retry = RetryLayer::http(config).unwrap().layer(http_service(&log, |n| {
        Ok(match n {
            2 => response(503, &[("retry-after", "1")]),
            4 => response(200, &[]),
            _ => response(503, &[]),
        })
    }));
    assert_eq!(retry.oneshot(get()).await.unwrap().status(), 200);
    // 100, 200, then the server's 1 s, then the schedule starts over at 100.
    assert_eq!(log.gaps(), [ms(100), ms(200), ms(1000), ms(100)]);
}

fn grpc(status: &str, pushback: Option<&str>) -> Response<()> {
    let mut headers = vec![("grpc-status", status)];
    if let Some(p) = pushback {
        headers.push(("grpc-retry-pushback-ms", p));
    }
    response(200, &headers)
}

#[tokio::test(start_paused = true)]
async fn grpc_pushback_sets_the_delay_and_a_negative_one_stops() {
    let log = Log::default();
    let retry = RetryLayer::grpc(config(), AlwaysSafe)
        .unwrap()
        .layer(http_service(&log, |n| {
            Ok(if n == 0 {
                grpc("14", Some("250"))
            } else {
                grpc("0", None)
            })
        }));
    let res = retry.oneshot(get()).await.unwrap();
    assert_eq!(res.headers()["grpc-status"], "0");
    assert_eq!(log.gaps(), [ms(250)]);

    let metrics = Metrics::default();
    let _guard = metrics.install();
    let log = Log::default();
    let retry = RetryLayer::grpc(config(), AlwaysSafe)
        .unwrap()
        .layer(http_service(&log, |_| Ok(grpc("14", Some("-1")))));
    let res = retry.oneshot(get()).await.unwrap();
    assert_eq!(res.headers()["grpc-status"], "14");
    assert_eq!(log.count(), 1);
    assert_eq!(
        metrics.snapshot().counter(
            "orch_retry_gave_up_total",
            &[("name", "test"), ("reason", "pushback")]
        ),
        1
    );
}

#[tokio::test(start_paused = true)]
async fn pushback_stop_on_an_error_is_not_retried_pushback() {
    #[derive(Clone)]
    struct StopOnError;
    impl orch_resilience::Classify<usize, ResilienceError> for StopOnError {
        fn classify(&self, r: Result<&usize, &ResilienceError>) -> Outcome {
            if r.is_ok() {
                Outcome::Success
            } else {
                Outcome::Retryable
            }
        }
        fn pushback(&self, _: Result<&usize, &ResilienceError>) -> orch_resilience::Pushback {
            orch_resilience::Pushback::Stop
        }
    }
    let log = Log::default();
    let retry = RetryLayer::new(config())
        .unwrap()
        .safety(AlwaysSafe)
        .classifier(StopOnError)
        .layer(flaky(&log, 10));
    let err = retry.oneshot(1).await.unwrap_err();
    assert_eq!(not_retried(&err), (NotRetriedReason::Pushback, 1));
    assert_eq!(log.count(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_pushback_past_the_deadline_is_not_waited_for() {
    let metrics = Metrics::default();
    let _guard = metrics.install();

    let log = Log::default();
    let retry = RetryLayer::http(config().overall_timeout(ms(1000)))
        .unwrap()
        .layer(http_service(&log, |_| Ok(response(503, &[("retry-after", "2")]))));
    let start = Instant::now();
    assert_eq!(retry.oneshot(get()).await.unwrap().status(), 503);
    assert_eq!(log.count(), 1);
    assert_eq!(Instant::now(), start);
    assert_eq!(
        metrics.snapshot().counter(
            "orch_retry_gave_up_total",
            &[("name", "test"), ("reason", "deadline_too_close")]
        ),
        1
    );
}

// ===== budget and throttle =====

#[tokio::test(start_paused = true)]
async fn the_budget_is_shared_by_clones_and_refuses_retries_beyond_its_percent() {
    let metrics = Metrics::default();
    let _guard = metrics.install();

    let log = Log::default();
    // No floor; each request earns half a retry.
    let budget = RetryBudgetConfig::default()
        .min_retries_per_sec(0)
        .percent_can_retry(0.5);
    let retry = RetryLayer::new(config().budget(budget))
        .unwrap()
        .safety(AlwaysSafe)
        .layer(flaky(&log, 1000));
    let mut attempts = Vec::new();
    for n in 0..4 {
        match retry.clone().oneshot(n).await.unwrap_err() {
            ResilienceError::BudgetExhausted { attempts: a, last } => {
                assert!(last.downcast_inner_ref::<io::Error>().is_some());
                attempts.push(a);
            }
            other => panic!("expected BudgetExhausted, got {other:?}"),
        }
    }
    // Requests 1..=4 earn 0.5, 1, 1.5, 2 retries: one retry after the 2nd,
    // a second one after the 4th.
    assert_eq!(attempts, [1, 2, 1, 2]);
    assert_eq!(log.count(), 6);
    let counters = metrics.snapshot();
    assert_eq!(
        counters.counter("orch_retry_budget_exhausted_total", &[("name", "test")]),
        4
    );
    assert_eq!(
        counters.counter("orch_retry_attempts_total", &[("name", "test")]),
        2
    );
    assert_eq!(
        counters.counter(
            "orch_retry_gave_up_total",
            &[("name", "test"), ("reason", "budget_exhausted")]
        ),
        4
    );
}

#[tokio::test(start_paused = true)]
async fn one_budget_can_be_shared_by_several_layers() {
    let budget = Arc::new(
        RetryBudget::new(
            RetryBudgetConfig::default()
                .min_retries_per_sec(0)
                .percent_can_retry(0.5),
        )
        .unwrap(),
    );
    let (log_a, log_b) = (Log::default(), Log::default());
    let a = RetryLayer::new(config())
        .unwrap()
        .safety(AlwaysSafe)
        .shared_budget(budget.clone())
        .layer(flaky(&log_a, 1000));
    let b = RetryLayer::new(config().name("other"))
        .unwrap()
        .safety(AlwaysSafe)
        .shared_budget(budget.clone())
        .layer(flaky(&log_b, 1000));
    assert!(Arc::ptr_eq(a.budget().unwrap(), &budget));
    a.oneshot(1).await.unwrap_err();
    assert_eq!(log_a.count(), 1);
    // The call through `a` earned half a retry; with this call's half, `b` may retry once.
    b.oneshot(1).await.unwrap_err();
    assert_eq!(log_b.count(), 2);
    assert_eq!(budget.available(), 0);
}

#[tokio::test(start_paused = true)]
async fn the_default_budget_allows_retries_to_a_client_that_just_started() {
    // Finagle's floor: 10 retries per second over 10 s.
    let log = Log::default();
    let retry = RetryLayer::new(config().budget(RetryBudgetConfig::default()))
        .unwrap()
        .safety(AlwaysSafe)
        .layer(flaky(&log, 2));
    assert_eq!(retry.oneshot(1).await.unwrap(), 2);
}

#[tokio::test(start_paused = true)]
async fn grpc_throttle_stops_retries_at_half_the_tokens_and_recovers_with_successes() {
    let failing = Arc::new(AtomicBool::new(true));
    let log = Log::default();
    let inner = {
        let (log, failing) = (log.clone(), failing.clone());
        service_fn(move |_: Request<String>| {
            log.record();
            let fail = failing.load(Ordering::SeqCst);
            async move { if fail { Err(reset()) } else { Ok(grpc("0", None)) } }
        })
    };
    let config = config()
        .max_attempts(5)
        .throttle(RetryThrottleConfig::default().max_tokens(4).token_ratio(0.5));
    let retry = RetryLayer::grpc(config, AlwaysSafe).unwrap().layer(inner);
    let throttle: Arc<RetryThrottle> = retry.throttle().unwrap().clone();

    // 4 tokens; a failure leaves 3 (> 2: retry), the next 2 (not > 2: stop).
    let err = retry.clone().oneshot(get()).await.unwrap_err();
    assert!(
        matches!(err, ResilienceError::BudgetExhausted { attempts: 2, .. }),
        "{err:?}"
    );
    assert_eq!(log.count(), 2);
    // 1 token left after the next failure: no retry at all.
    let err = retry.clone().oneshot(get()).await.unwrap_err();
    assert!(
        matches!(err, ResilienceError::BudgetExhausted { attempts: 1, .. }),
        "{err:?}"
    );
    assert_eq!(throttle.tokens(), 1.0);

    // Six successes refill the bucket (+0.5 each, capped at 4).
    failing.store(false, Ordering::SeqCst);
    for _ in 0..6 {
        retry.clone().oneshot(get()).await.unwrap();
    }
    assert_eq!(throttle.tokens(), 4.0);
    failing.store(true, Ordering::SeqCst);
    let before = log.count();
    let err = retry.oneshot(get()).await.unwrap_err();
    assert!(
        matches!(err, ResilienceError::BudgetExhausted { attempts: 2, .. }),
        "{err:?}"
    );
    assert_eq!(log.count() - before, 2);
}

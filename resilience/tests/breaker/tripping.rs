//! When a closed breaker opens: the failure rate and slow-call rate once
//! `minimum_calls` are in (a rate equal to the threshold trips), consecutive
//! failures regardless of the minimum, the count and time windows that let
//! old outcomes go, and rejections from below that record nothing.

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use orch_resilience::{
    ErrorClass, Outcome, ResilienceError,
    breaker::{BreakerState, SlidingWindow},
};
use tokio::time::advance;
use tower::{Layer, Service, ServiceExt, service_fn};

use super::{SEC, config, record};

// ===== closed: tripping =====

#[tokio::test(start_paused = true)]
async fn trips_on_failure_rate_once_minimum_calls_are_in() {
    let breaker = config().build().unwrap();
    record(
        &breaker,
        &[Outcome::Failure, Outcome::Retryable, Outcome::Failure],
    );
    // 100% failures, but only 3 calls: not judged yet.
    assert_eq!(breaker.state(), BreakerState::Closed);
    record(&breaker, &[Outcome::Success]);
    // 3 of 4 failed: 75% >= 50%.
    assert_eq!(breaker.state(), BreakerState::Open);
    let m = breaker.metrics();
    assert_eq!((m.calls, m.failures), (4, 3));
    assert_eq!(m.failure_rate, 0.75);
}

#[tokio::test(start_paused = true)]
async fn does_not_trip_below_minimum_or_below_the_rate() {
    let breaker = config().minimum_calls(5).build().unwrap();
    record(&breaker, &[Outcome::Failure; 4]);
    assert_eq!(breaker.state(), BreakerState::Closed);

    let breaker = config().build().unwrap();
    record(
        &breaker,
        &[
            Outcome::Failure,
            Outcome::Success,
            Outcome::Success,
            Outcome::Success,
        ],
    );
    record(&breaker, &[Outcome::Success, Outcome::Failure, Outcome::Success]);
    // 2 of 7: below 50%.
    assert_eq!(breaker.state(), BreakerState::Closed);
}

#[tokio::test(start_paused = true)]
async fn rate_equal_to_the_threshold_trips() {
    let breaker = config().build().unwrap();
    record(
        &breaker,
        &[
            Outcome::Success,
            Outcome::Failure,
            Outcome::Success,
            Outcome::Failure,
        ],
    );
    assert_eq!(breaker.state(), BreakerState::Open);
}

#[tokio::test(start_paused = true)]
async fn slow_call_rate_trips_through_the_service() {
    let breaker = config()
        .slow_call_duration(Duration::from_millis(100))
        .slow_call_rate_threshold(0.5)
        .build()
        .unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let slow = service_fn(move |delay: Duration| {
        counter.fetch_add(1, Ordering::SeqCst);
        async move {
            tokio::time::sleep(delay).await;
            Ok::<_, std::io::Error>(())
        }
    });
    let mut svc = breaker.layer().layer(slow);
    // Exactly the threshold is not slow (Resilience4j: strictly longer).
    for delay in [100, 20, 250, 10] {
        svc.ready()
            .await
            .unwrap()
            .call(Duration::from_millis(delay))
            .await
            .unwrap();
    }
    assert_eq!(breaker.state(), BreakerState::Closed);
    let m = breaker.metrics();
    assert_eq!((m.calls, m.failures, m.slow_calls), (4, 0, 1));
    svc.ready()
        .await
        .unwrap()
        .call(Duration::from_millis(300))
        .await
        .unwrap();
    // 2 slow of 5 calls: 40%. One more slow call: 3 of 6 = 50%.
    assert_eq!(breaker.state(), BreakerState::Closed);
    svc.ready()
        .await
        .unwrap()
        .call(Duration::from_millis(101))
        .await
        .unwrap();
    assert_eq!(breaker.state(), BreakerState::Open);
    let err = svc.ready().await.unwrap().call(Duration::ZERO).await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::CircuitOpen);
    assert_eq!(calls.load(Ordering::SeqCst), 6);
}

#[tokio::test(start_paused = true)]
async fn slow_calls_measured_by_the_caller() {
    let breaker = config()
        .slow_call_duration(Duration::from_millis(100))
        .slow_call_rate_threshold(1.0)
        .build()
        .unwrap();
    for _ in 0..4 {
        breaker
            .try_acquire()
            .unwrap()
            .record_with_duration(Outcome::Success, Duration::from_secs(1));
    }
    assert_eq!(breaker.state(), BreakerState::Open);
}

#[tokio::test(start_paused = true)]
async fn consecutive_failures_trip_regardless_of_minimum() {
    let breaker = config()
        .minimum_calls(100)
        .consecutive_failures(3)
        .build()
        .unwrap();
    record(&breaker, &[Outcome::Failure, Outcome::Failure, Outcome::Success]);
    record(&breaker, &[Outcome::Failure, Outcome::Failure]);
    assert_eq!(breaker.state(), BreakerState::Closed);
    assert_eq!(breaker.metrics().consecutive_failures, 2);
    record(&breaker, &[Outcome::Retryable]);
    assert_eq!(breaker.state(), BreakerState::Open);
}

#[tokio::test(start_paused = true)]
async fn count_window_slides_old_failures_out() {
    let breaker = config()
        .count_window(4)
        .failure_rate_threshold(0.75)
        .build()
        .unwrap();
    record(
        &breaker,
        &[
            Outcome::Failure,
            Outcome::Failure,
            Outcome::Success,
            Outcome::Success,
        ],
    );
    assert_eq!(breaker.state(), BreakerState::Closed);
    record(&breaker, &[Outcome::Success, Outcome::Success]);
    let m = breaker.metrics();
    assert_eq!((m.calls, m.failures), (4, 0), "the two failures left the window");
    record(&breaker, &[Outcome::Failure, Outcome::Failure]);
    assert_eq!(breaker.state(), BreakerState::Closed); // S S F F: 50%
    record(&breaker, &[Outcome::Failure]); // S F F F: 75%
    assert_eq!(breaker.state(), BreakerState::Open);
}

#[tokio::test(start_paused = true)]
async fn time_window_forgets_expired_buckets() {
    let breaker = config()
        .window(SlidingWindow::Time {
            length: 10 * SEC,
            buckets: Some(10),
        })
        .minimum_calls(3)
        .build()
        .unwrap();
    record(&breaker, &[Outcome::Failure, Outcome::Failure]);
    advance(5 * SEC).await;
    assert_eq!(breaker.metrics().calls, 2);
    advance(6 * SEC).await;
    assert_eq!(breaker.metrics().calls, 0, "the first bucket left the window");
    // Counting the expired failures this would be 3 of 5; it is 1 of 3.
    record(&breaker, &[Outcome::Success, Outcome::Success, Outcome::Failure]);
    assert_eq!(breaker.state(), BreakerState::Closed);
    record(&breaker, &[Outcome::Failure]);
    assert_eq!(breaker.state(), BreakerState::Open);
}

#[tokio::test(start_paused = true)]
async fn rejected_outcomes_record_nothing() {
    let breaker = config().build().unwrap();
    record(&breaker, &[Outcome::Rejected; 10]);
    assert_eq!(breaker.metrics().calls, 0);
    let inner = service_fn(|()| async {
        Err::<(), _>(ResilienceError::RateLimited {
            name: "api".into(),
            wait: SEC,
        })
    });
    let mut svc = breaker.layer().layer(inner);
    for _ in 0..10 {
        let err = svc.ready().await.unwrap().call(()).await.unwrap_err();
        assert_eq!(err.class(), ErrorClass::RateLimited, "passed through unwrapped");
    }
    assert_eq!(breaker.metrics().calls, 0);
    assert_eq!(breaker.state(), BreakerState::Closed);
}

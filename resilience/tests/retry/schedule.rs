//! When each attempt starts and how long it may run: the backoff schedule
//! (constant, linear, exponential, jittered, or any `backon` builder),
//! attempt timeouts that cancel and retry, and the overall deadline that no
//! attempt, delay or wait for readiness may pass.

use std::{
    future::Future,
    io,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use orch_resilience::{
    AlwaysSafe, NotRetriedReason, ResilienceError, RetryConfig, RetryLayer, TimeoutKind,
    retry::{BackoffConfig, Jitter},
};
use tokio::time::Instant;
use tower::{Layer, Service, ServiceExt, service_fn};

use super::{Log, config, flaky, not_retried, reset};
use crate::support::ms;

// ===== backoff =====

async fn gaps_with(backoff: BackoffConfig, attempts: u32) -> Vec<Duration> {
    let log = Log::default();
    let retry = RetryLayer::new(config().backoff(backoff).max_attempts(attempts))
        .unwrap()
        .safety(AlwaysSafe)
        .layer(flaky(&log, 100));
    retry.oneshot(1).await.unwrap_err();
    log.gaps()
}

#[tokio::test(start_paused = true)]
async fn constant_linear_and_exponential_delays() {
    assert_eq!(gaps_with(BackoffConfig::constant(ms(50)), 4).await, [ms(50); 3]);
    assert_eq!(
        gaps_with(BackoffConfig::linear(ms(20), ms(50)).jitter(Jitter::None), 5).await,
        [ms(20), ms(40), ms(50), ms(50)]
    );
    assert_eq!(
        gaps_with(
            BackoffConfig::exponential(ms(100), ms(1000)).jitter(Jitter::None),
            6
        )
        .await,
        [ms(100), ms(200), ms(400), ms(800), ms(1000)]
    );
    assert_eq!(
        gaps_with(
            BackoffConfig::exponential(ms(100), ms(1000))
                .multiplier(3.0)
                .jitter(Jitter::None),
            4
        )
        .await,
        [ms(100), ms(300), ms(900)]
    );
}

#[tokio::test(start_paused = true)]
async fn jittered_delays_stay_within_their_bounds() {
    // Full jitter: each delay in [0, d] (the paused clock rounds up to 1 ms).
    let gaps = gaps_with(BackoffConfig::exponential(ms(100), ms(1000)), 5).await;
    for (gap, cap) in gaps.iter().zip([100, 200, 400, 800]) {
        assert!(*gap <= ms(cap + 1), "{gap:?} > {cap} ms");
    }
    // Decorrelated jitter: base <= d <= min(max, 3 × previous).
    let base = ms(10);
    let gaps = gaps_with(BackoffConfig::decorrelated_jitter(base, ms(500)), 10).await;
    let mut previous = base;
    for gap in gaps {
        assert!(gap >= base, "{gap:?}");
        assert!(
            gap <= (previous * 3).min(ms(500)) + ms(1),
            "{gap:?} after {previous:?}"
        );
        previous = gap;
    }
}

#[tokio::test(start_paused = true)]
async fn any_backon_builder_can_drive_the_delays() {
    let log = Log::default();
    let schedule = backon::ConstantBuilder::default()
        .with_delay(ms(30))
        .with_max_times(2);
    let retry = RetryLayer::new(config().max_attempts(10))
        .unwrap()
        .safety(AlwaysSafe)
        .backoff(schedule)
        .layer(flaky(&log, 100));
    let err = retry.oneshot(1).await.unwrap_err();
    // The schedule's two delays are the limit.
    assert_eq!(not_retried(&err), (NotRetriedReason::MaxAttempts, 3));
    assert_eq!(log.gaps(), [ms(30), ms(30)]);
}

// ===== timeouts and the deadline =====

#[tokio::test(start_paused = true)]
async fn an_attempt_that_times_out_is_cancelled_and_retried() {
    let log = Log::default();
    let dropped = Arc::new(AtomicBool::new(false));
    struct SetOnDrop(Arc<AtomicBool>);
    impl Drop for SetOnDrop {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }
    let inner = {
        let (log, dropped) = (log.clone(), dropped.clone());
        service_fn(move |_: u32| {
            let n = log.record();
            let guard = SetOnDrop(dropped.clone());
            async move {
                let _guard = guard;
                if n == 0 {
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                }
                Ok::<_, io::Error>(n)
            }
        })
    };
    let start = Instant::now();
    let retry = RetryLayer::new(config().attempt_timeout(ms(100)))
        .unwrap()
        .safety(AlwaysSafe)
        .layer(inner);
    assert_eq!(retry.oneshot(1).await.unwrap(), 1);
    assert_eq!(log.count(), 2);
    assert!(dropped.load(Ordering::SeqCst));
    assert_eq!(log.times()[1] - start, ms(110));
}

#[tokio::test(start_paused = true)]
async fn without_timeouts_the_backoff_timer_does_not_cut_a_later_attempt() {
    let log = Log::default();
    let inner = {
        let log = log.clone();
        service_fn(move |_: u32| {
            let n = log.record();
            async move {
                if n == 0 {
                    return Err(reset());
                }
                // Long after the 10 ms backoff's timer has fired.
                tokio::time::sleep(Duration::from_secs(60)).await;
                Ok::<_, io::Error>(n)
            }
        })
    };
    let start = Instant::now();
    let retry = RetryLayer::new(config()).unwrap().safety(AlwaysSafe).layer(inner);
    assert_eq!(retry.oneshot(1).await.unwrap(), 1);
    assert_eq!(log.count(), 2);
    assert_eq!(Instant::now() - start, ms(10) + Duration::from_secs(60));
}

fn hanging(log: &Log) -> impl Service<u32, Response = (), Error = io::Error, Future: Send> + Clone {
    let log = log.clone();
    service_fn(move |_: u32| {
        log.record();
        async {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            Ok(())
        }
    })
}

#[tokio::test(start_paused = true)]
async fn attempts_that_all_time_out_end_with_the_attempt_timeout() {
    let log = Log::default();
    let retry = RetryLayer::new(config().attempt_timeout(ms(100)))
        .unwrap()
        .safety(AlwaysSafe)
        .layer(hanging(&log));
    let err = retry.oneshot(1).await.unwrap_err();
    assert_eq!(not_retried(&err), (NotRetriedReason::MaxAttempts, 3));
    assert!(matches!(
        err.last_attempt(),
        ResilienceError::Timeout { kind: TimeoutKind::Attempt, after } if *after == ms(100)
    ));
}

#[tokio::test(start_paused = true)]
async fn no_attempt_starts_that_cannot_finish_before_the_deadline() {
    let log = Log::default();
    let config = config()
        .max_attempts(10)
        .backoff(BackoffConfig::constant(ms(50)))
        .attempt_timeout(ms(100))
        .overall_timeout(ms(350));
    let retry = RetryLayer::new(config)
        .unwrap()
        .safety(AlwaysSafe)
        .layer(hanging(&log));
    let start = Instant::now();
    let err = retry.oneshot(1).await.unwrap_err();
    // 0..100 timed out; 150..250 timed out; 300..400 would pass 350.
    assert_eq!(not_retried(&err), (NotRetriedReason::DeadlineTooClose, 2));
    assert!(matches!(
        err.last_attempt(),
        ResilienceError::Timeout {
            kind: TimeoutKind::Attempt,
            ..
        }
    ));
    assert_eq!(Instant::now() - start, ms(250));
    for t in log.times() {
        assert!(t + ms(100) <= start + ms(350));
    }
}

#[tokio::test(start_paused = true)]
async fn without_an_attempt_timeout_the_last_attempt_is_cut_at_the_deadline() {
    let log = Log::default();
    let slow_failure = {
        let log = log.clone();
        service_fn(move |_: u32| {
            log.record();
            async {
                tokio::time::sleep(ms(100)).await;
                Err::<(), _>(reset())
            }
        })
    };
    let config = config()
        .max_attempts(10)
        .backoff(BackoffConfig::constant(ms(100)))
        .overall_timeout(ms(250));
    let retry = RetryLayer::new(config)
        .unwrap()
        .safety(AlwaysSafe)
        .layer(slow_failure);
    let start = Instant::now();
    let err = retry.oneshot(1).await.unwrap_err();
    assert!(matches!(
        err,
        ResilienceError::Timeout { kind: TimeoutKind::Overall, after } if after == ms(250)
    ));
    assert_eq!(Instant::now() - start, ms(250));
    assert_eq!(log.count(), 2);

    // A delay that ends at or after the deadline is not waited for.
    let log = Log::default();
    let config = RetryConfig::default()
        .budget(None)
        .backoff(BackoffConfig::constant(ms(300)))
        .overall_timeout(ms(250));
    let retry = RetryLayer::new(config)
        .unwrap()
        .safety(AlwaysSafe)
        .layer(flaky(&log, 10));
    let start = Instant::now();
    let err = retry.oneshot(1).await.unwrap_err();
    assert_eq!(not_retried(&err), (NotRetriedReason::DeadlineTooClose, 1));
    assert_eq!(Instant::now(), start);
}

/// A service that takes `delay` to become ready for every call after the first.
struct SlowReady {
    log: Log,
    delay: Duration,
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
    ready: bool,
}

impl Clone for SlowReady {
    fn clone(&self) -> Self {
        Self {
            log: self.log.clone(),
            delay: self.delay,
            sleep: None,
            ready: false,
        }
    }
}

impl Service<u32> for SlowReady {
    type Response = ();
    type Error = io::Error;
    type Future = std::future::Ready<Result<(), io::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), io::Error>> {
        if self.ready {
            return Poll::Ready(Ok(()));
        }
        let delay = self.delay;
        let sleep = self
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(delay)));
        std::task::ready!(sleep.as_mut().poll(cx));
        self.sleep = None;
        self.ready = true;
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: u32) -> Self::Future {
        self.ready = false;
        self.log.record();
        std::future::ready(Err(reset()))
    }
}

#[tokio::test(start_paused = true)]
async fn waiting_for_readiness_counts_against_the_deadline() {
    let log = Log::default();
    let inner = SlowReady {
        log: log.clone(),
        delay: ms(200),
        sleep: None,
        ready: true,
    };
    let config = config()
        .max_attempts(10)
        .attempt_timeout(ms(100))
        .overall_timeout(ms(500));
    let mut retry = RetryLayer::new(config).unwrap().safety(AlwaysSafe).layer(inner);
    let start = Instant::now();
    retry.ready().await.unwrap();
    let err = retry.call(1).await.unwrap_err();
    // Attempt 1 at 0; ready again at 210; attempt 2 at 210; ready again at
    // 420, when 100 ms no longer fit before 500.
    assert_eq!(not_retried(&err), (NotRetriedReason::DeadlineTooClose, 2));
    assert_eq!(
        log.times().iter().map(|t| *t - start).collect::<Vec<_>>(),
        [ms(0), ms(210)]
    );
    assert_eq!(Instant::now() - start, ms(420));
}

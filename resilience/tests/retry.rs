//! Behaviour of the retry layer, on paused time: every delay and timeout is
//! observed as the instants at which the inner service is called.

// Tests may unwrap; clippy.toml allows it inside #[test] functions only, and
// these files also have helpers and proptest bodies.
#![allow(clippy::unwrap_used)]

use std::{
    convert::Infallible,
    future::Future,
    io,
    pin::Pin,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body::Frame;
use http_body_util::{BodyExt, Full, StreamBody};
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use orch_resilience::{
    AlwaysSafe, ErrorClass, HttpSafety, IDEMPOTENCY_KEY, NotRetriedReason, Outcome, ReplayBody,
    ResilienceError, RetryBudget, RetryBudgetConfig, RetryConfig, RetryLayer, RetryThrottle,
    RetryThrottleConfig, TimeoutKind, classify_fn,
    retry::{BackoffConfig, BackoffKind, Jitter},
};
use tokio::time::Instant;
use tower::{Layer, Service, ServiceExt, service_fn};

fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}

/// The instants at which the inner service was called.
#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<Instant>>>);

impl Log {
    /// Records a call; returns its index (0 for the first).
    fn record(&self) -> usize {
        let mut calls = self.0.lock().unwrap();
        calls.push(Instant::now());
        calls.len() - 1
    }

    fn count(&self) -> usize {
        self.0.lock().unwrap().len()
    }

    fn times(&self) -> Vec<Instant> {
        self.0.lock().unwrap().clone()
    }

    fn gaps(&self) -> Vec<Duration> {
        self.times().windows(2).map(|w| w[1] - w[0]).collect()
    }
}

/// No budget, constant 10 ms delays: the plain retry loop.
fn config() -> RetryConfig {
    RetryConfig::default()
        .name("test")
        .backoff(BackoffConfig::constant(ms(10)))
        .budget(None)
}

fn reset() -> io::Error {
    io::Error::new(io::ErrorKind::ConnectionReset, "reset")
}

/// A service that fails its first `failures` calls with a connection reset.
fn flaky(
    log: &Log,
    failures: usize,
) -> impl Service<u32, Response = usize, Error = io::Error, Future: Send> + Clone {
    let log = log.clone();
    service_fn(move |_: u32| {
        let n = log.record();
        async move { if n < failures { Err(reset()) } else { Ok(n) } }
    })
}

fn response(status: u16, headers: &[(&str, &str)]) -> Response<()> {
    let mut builder = Response::builder().status(status);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(()).unwrap()
}

/// An HTTP service answering call n with `answers(n)`.
fn http_service<B: Send + 'static>(
    log: &Log,
    answers: impl Fn(usize) -> Result<Response<()>, io::Error> + Clone + Send + 'static,
) -> impl Service<Request<B>, Response = Response<()>, Error = io::Error, Future: Send> + Clone {
    let log = log.clone();
    service_fn(move |_: Request<B>| {
        let n = log.record();
        let answer = answers(n);
        async move { answer }
    })
}

fn get() -> Request<String> {
    Request::get("/items").body(String::new()).unwrap()
}

fn post() -> Request<String> {
    Request::post("/orders").body("{}".to_owned()).unwrap()
}

fn not_retried(err: &ResilienceError) -> (NotRetriedReason, u32) {
    match err {
        ResilienceError::NotRetried { reason, attempts, .. } => (*reason, *attempts),
        other => panic!("expected NotRetried, got {other:?}"),
    }
}

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

    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _guard = metrics::set_default_local_recorder(&recorder);
    let log = Log::default();
    let retry = RetryLayer::grpc(config(), AlwaysSafe)
        .unwrap()
        .layer(http_service(&log, |_| Ok(grpc("14", Some("-1")))));
    let res = retry.oneshot(get()).await.unwrap();
    assert_eq!(res.headers()["grpc-status"], "14");
    assert_eq!(log.count(), 1);
    assert_eq!(
        Counters::read(&snapshotter).get(
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
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _guard = metrics::set_default_local_recorder(&recorder);

    let log = Log::default();
    let retry = RetryLayer::http(config().overall_timeout(ms(1000)))
        .unwrap()
        .layer(http_service(&log, |_| Ok(response(503, &[("retry-after", "2")]))));
    let start = Instant::now();
    assert_eq!(retry.oneshot(get()).await.unwrap().status(), 503);
    assert_eq!(log.count(), 1);
    assert_eq!(Instant::now(), start);
    assert_eq!(
        Counters::read(&snapshotter).get(
            "orch_retry_gave_up_total",
            &[("name", "test"), ("reason", "deadline_too_close")]
        ),
        1
    );
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
    let uuid = uuid::Uuid::parse_str(first.to_str().unwrap()).unwrap();
    assert_eq!(uuid.get_version_num(), 7);
}

// ===== budget and throttle =====

/// Counter values, read once (a snapshot of the debugging recorder resets them).
struct Counters(Vec<Counter>);

struct Counter {
    name: String,
    labels: Vec<(String, String)>,
    value: u64,
}

impl Counters {
    fn read(snapshotter: &Snapshotter) -> Self {
        Self(
            snapshotter
                .snapshot()
                .into_vec()
                .into_iter()
                .filter_map(|(key, _, _, value)| match value {
                    DebugValue::Counter(c) => {
                        let key = key.key();
                        let labels = key
                            .labels()
                            .map(|l| (l.key().to_owned(), l.value().to_owned()))
                            .collect();
                        Some(Counter {
                            name: key.name().to_owned(),
                            labels,
                            value: c,
                        })
                    }
                    _ => None,
                })
                .collect(),
        )
    }

    fn get(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
        self.0
            .iter()
            .filter(|c| {
                c.name == name
                    && labels
                        .iter()
                        .all(|(k, v)| c.labels.iter().any(|(lk, lv)| lk == k && lv == v))
            })
            .map(|c| c.value)
            .sum()
    }
}

#[tokio::test(start_paused = true)]
async fn the_budget_is_shared_by_clones_and_refuses_retries_beyond_its_percent() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _guard = metrics::set_default_local_recorder(&recorder);

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
    let counters = Counters::read(&snapshotter);
    assert_eq!(
        counters.get("orch_retry_budget_exhausted_total", &[("name", "test")]),
        4
    );
    assert_eq!(counters.get("orch_retry_attempts_total", &[("name", "test")]), 2);
    assert_eq!(
        counters.get(
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

// ===== streaming bodies =====

type Frames = Result<Frame<Bytes>, io::Error>;

/// The frames of a channel, as a stream.
struct ChannelFrames(tokio::sync::mpsc::Receiver<Frames>);

impl futures_util::Stream for ChannelFrames {
    type Item = Frames;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Frames>> {
        self.get_mut().0.poll_recv(cx)
    }
}

type Channel = StreamBody<ChannelFrames>;

/// A streaming body fed by a task, one chunk every 5 ms, then the trailers:
/// not `Clone`, readable once.
fn channel_body(chunks: &[&'static str], trailers: Option<http::HeaderMap>) -> Channel {
    let (tx, rx) = tokio::sync::mpsc::channel::<Frames>(1);
    let chunks: Vec<&'static str> = chunks.to_vec();
    tokio::spawn(async move {
        for chunk in chunks {
            tokio::time::sleep(ms(5)).await;
            if tx
                .send(Ok(Frame::data(Bytes::from_static(chunk.as_bytes()))))
                .await
                .is_err()
            {
                return;
            }
        }
        if let Some(t) = trailers {
            let _ = tx.send(Ok(Frame::trailers(t))).await;
        }
    });
    StreamBody::new(ChannelFrames(rx))
}

/// What the inner service read from one attempt's body.
struct Read {
    bytes: Bytes,
    trailers: Option<http::HeaderMap>,
    buffered: bool,
}

/// What the inner service read from each attempt's body.
#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Vec<Read>>>);

fn body_reader<B>(
    seen: Seen,
    answer: impl Fn(usize) -> Result<Response<()>, io::Error> + Clone + Send + 'static,
) -> impl Service<Request<ReplayBody<B>>, Response = Response<()>, Error = io::Error, Future: Send> + Clone
where
    B: http_body::Body<Error = io::Error> + Send + 'static,
    B::Data: Send,
{
    service_fn(move |req: Request<ReplayBody<B>>| {
        let (seen, answer) = (seen.clone(), answer.clone());
        async move {
            let buffered = req.body().is_buffered();
            let collected = req.into_body().collect().await?;
            let trailers = collected.trailers().cloned();
            let n = {
                let mut seen = seen.0.lock().unwrap();
                seen.push(Read {
                    bytes: collected.to_bytes(),
                    trailers,
                    buffered,
                });
                seen.len() - 1
            };
            answer(n)
        }
    })
}

#[tokio::test(start_paused = true)]
async fn a_streaming_body_is_replayed_byte_identical_on_every_attempt() {
    let seen = Seen::default();
    let retry = RetryLayer::http(config())
        .unwrap()
        .buffer_bodies(1024)
        .layer(body_reader(seen.clone(), |n| {
            Ok(response(if n < 2 { 503 } else { 200 }, &[]))
        }));
    let mut trailers = http::HeaderMap::new();
    trailers.insert("x-checksum", "abc".parse().unwrap());
    let body = channel_body(&["hello ", "streaming ", "world"], Some(trailers.clone()));
    let request = Request::put("/blob").body(body).unwrap();
    // Spawned: the retry future of a streaming request is `Send`.
    let response = tokio::spawn(retry.oneshot(request)).await.unwrap();
    assert_eq!(response.unwrap().status(), 200);

    let seen = seen.0.lock().unwrap();
    assert_eq!(seen.len(), 3);
    for read in seen.iter() {
        assert_eq!(read.bytes, "hello streaming world");
        assert_eq!(read.trailers.as_ref(), Some(&trailers));
        assert!(read.buffered);
    }
}

#[tokio::test(start_paused = true)]
async fn a_body_over_the_limit_is_sent_once_intact() {
    let seen = Seen::default();
    let retry = RetryLayer::http(config())
        .unwrap()
        .buffer_bodies(10)
        .layer(body_reader(seen.clone(), |_| Err(reset())));
    let body = channel_body(&["0123456789", "abcdefghij", "KLMNOPQRST"], None);
    let err = retry
        .oneshot(Request::put("/blob").body(body).unwrap())
        .await
        .unwrap_err();
    assert_eq!(not_retried(&err), (NotRetriedReason::BodyTooLarge, 1));
    {
        let seen = seen.0.lock().unwrap();
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].bytes, "0123456789abcdefghijKLMNOPQRST");
        assert!(!seen[0].buffered);
    }

    // A body whose size is known to exceed the limit is not read ahead.
    let seen = Seen::default();
    let retry = RetryLayer::http(config())
        .unwrap()
        .buffer_bodies(10)
        .layer(body_reader(seen.clone(), |_| Ok(response(503, &[]))));
    let body = Full::new(Bytes::from(vec![7_u8; 100])).map_err(|e: Infallible| match e {});
    let request = Request::put("/blob").body(body).unwrap();
    assert_eq!(retry.oneshot(request).await.unwrap().status(), 503);
    let seen = seen.0.lock().unwrap();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].bytes, vec![7_u8; 100]);
}

#[tokio::test(start_paused = true)]
async fn an_unsafe_request_body_streams_through_unbuffered() {
    let seen = Seen::default();
    let retry = RetryLayer::http(config())
        .unwrap()
        .buffer_bodies(1024)
        .layer(body_reader(seen.clone(), |_| Err(reset())));
    let body = channel_body(&["pay ", "now"], None);
    let err = retry
        .oneshot(Request::post("/pay").body(body).unwrap())
        .await
        .unwrap_err();
    assert_eq!(not_retried(&err), (NotRetriedReason::UnsafeRequest, 1));
    let seen = seen.0.lock().unwrap();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].bytes, "pay now");
    assert!(!seen[0].buffered);
}

#[tokio::test(start_paused = true)]
async fn a_body_error_while_buffering_fails_the_call_before_any_attempt() {
    let seen = Seen::default();
    let retry = RetryLayer::http(config())
        .unwrap()
        .buffer_bodies(1024)
        .layer(body_reader(seen.clone(), |_| Ok(response(200, &[]))));
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, io::Error>>(2);
    tx.send(Ok(Frame::data(Bytes::from_static(b"part"))))
        .await
        .unwrap();
    tx.send(Err(io::Error::other("client went away"))).await.unwrap();
    let body = StreamBody::new(futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx)));
    let err = retry
        .oneshot(Request::put("/blob").body(body).unwrap())
        .await
        .unwrap_err();
    assert_eq!(err.class(), ErrorClass::Inner);
    assert_eq!(
        err.downcast_inner_ref::<io::Error>().unwrap().to_string(),
        "client went away"
    );
    assert!(seen.0.lock().unwrap().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_body_still_arriving_at_the_overall_deadline_ends_the_call_before_any_attempt() {
    let seen = Seen::default();
    let retry = RetryLayer::http(config().overall_timeout(ms(250)))
        .unwrap()
        .buffer_bodies(1024)
        .layer(body_reader(seen.clone(), |_| Ok(response(200, &[]))));
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, io::Error>>(2);
    tx.send(Ok(Frame::data(Bytes::from_static(b"part"))))
        .await
        .unwrap();
    let body = StreamBody::new(futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx)));
    let start = Instant::now();
    let call = retry.oneshot(Request::put("/blob").body(body).unwrap());
    let err = tokio::time::timeout(Duration::from_secs(3600), call)
        .await
        .expect("the deadline ends the call")
        .unwrap_err();
    assert!(
        matches!(err, ResilienceError::Timeout { kind: TimeoutKind::Overall, after } if after == ms(250)),
        "{err:?}"
    );
    assert_eq!(Instant::now() - start, ms(250));
    assert!(seen.0.lock().unwrap().is_empty());
    // The sender stayed open to the end: the body never finished.
    drop(tx);
}

#[test]
fn a_buffered_call_with_a_deadline_can_be_made_outside_the_runtime_that_polls_it() {
    let seen = Seen::default();
    let mut retry = RetryLayer::http(config().overall_timeout(ms(250)))
        .unwrap()
        .buffer_bodies(1024)
        .layer(body_reader(seen.clone(), |_| Ok(response(200, &[]))));
    let body = Full::new(Bytes::from_static(b"late")).map_err(|e: Infallible| match e {});
    // No runtime here: the timer is armed when the future is first polled.
    let call = retry.call(Request::put("/blob").body(body).unwrap());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    assert_eq!(runtime.block_on(call).unwrap().status(), 200);
    assert_eq!(seen.0.lock().unwrap()[0].bytes, "late");
}

// ===== metrics =====

#[tokio::test(start_paused = true)]
async fn metrics_count_retries_and_give_ups() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _guard = metrics::set_default_local_recorder(&recorder);

    let log = Log::default();
    let retry = RetryLayer::new(config().name("m"))
        .unwrap()
        .safety(AlwaysSafe)
        .layer(flaky(&log, 10));
    retry.oneshot(1).await.unwrap_err();
    let counters = Counters::read(&snapshotter);
    assert_eq!(counters.get("orch_retry_attempts_total", &[("name", "m")]), 2);
    assert_eq!(
        counters.get(
            "orch_retry_gave_up_total",
            &[("name", "m"), ("reason", "max_attempts")]
        ),
        1
    );
    assert_eq!(
        counters.get("orch_retry_budget_exhausted_total", &[("name", "m")]),
        0
    );
}

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

//! Behaviour of the circuit breaker, on paused time.
#![allow(clippy::unwrap_used, reason = "test helpers unwrap like the tests they serve")]

use std::{
    collections::VecDeque,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use orch_resilience::{
    CircuitRejection, ErrorClass, HttpClassifier, Outcome, ResilienceError,
    breaker::{
        BreakerRegistry, BreakerState, CircuitBreaker, CircuitBreakerConfig, CircuitBreakerLayer,
        SlidingWindow,
    },
};
use tokio::time::advance;
use tower::{Layer, Service, ServiceExt, service_fn};

const SEC: Duration = Duration::from_secs(1);

/// A small breaker: the last 10 calls, judged from 4, open for 10 s, 3 trials.
fn config() -> CircuitBreakerConfig {
    CircuitBreakerConfig::default()
        .name("test")
        .count_window(10)
        .minimum_calls(4)
        .open_wait(10 * SEC)
        .half_open_permits(3)
}

fn record(breaker: &CircuitBreaker, outcomes: &[Outcome]) {
    for &outcome in outcomes {
        breaker.try_acquire().unwrap().record(outcome);
    }
}

fn rejection(err: &ResilienceError) -> (CircuitRejection, Option<Duration>) {
    match err {
        ResilienceError::CircuitOpen {
            rejection, remaining, ..
        } => (*rejection, *remaining),
        other => panic!("expected a circuit rejection, got {other:?}"),
    }
}

fn rejected_with(breaker: &CircuitBreaker) -> (CircuitRejection, Option<Duration>) {
    rejection(&breaker.try_acquire().unwrap_err())
}

/// Trips `breaker` (built from `config()`) with four failures.
fn trip(breaker: &CircuitBreaker) {
    record(breaker, &[Outcome::Failure; 4]);
    assert_eq!(breaker.state(), BreakerState::Open);
}

/// An inner service answering from a script (`Ok(())` when it runs out),
/// counting its calls.
#[derive(Clone)]
struct Script {
    calls: Arc<AtomicUsize>,
    results: Arc<Mutex<VecDeque<Result<u16, &'static str>>>>,
}

impl Script {
    fn new(results: impl IntoIterator<Item = Result<u16, &'static str>>) -> Self {
        Self {
            calls: Arc::default(),
            results: Arc::new(Mutex::new(results.into_iter().collect())),
        }
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    fn service(
        &self,
    ) -> impl Service<(), Response = u16, Error = std::io::Error, Future: Send> + Clone + use<> {
        let script = self.clone();
        service_fn(move |()| {
            script.calls.fetch_add(1, Ordering::SeqCst);
            let next = script.results.lock().unwrap().pop_front().unwrap_or(Ok(200));
            async move { next.map_err(std::io::Error::other) }
        })
    }
}

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

// ===== open =====

#[tokio::test(start_paused = true)]
async fn open_rejects_without_touching_the_inner_service() {
    let breaker = config().build().unwrap();
    let script = Script::new([Err("down"); 4]);
    let mut svc = breaker.layer().layer(script.service());
    for _ in 0..4 {
        let err = svc.ready().await.unwrap().call(()).await.unwrap_err();
        assert_eq!(err.class(), ErrorClass::Inner);
    }
    assert_eq!(breaker.state(), BreakerState::Open);
    advance(3 * SEC).await;
    for _ in 0..5 {
        let err = svc.ready().await.unwrap().call(()).await.unwrap_err();
        assert_eq!(rejection(&err), (CircuitRejection::Open, Some(7 * SEC)));
        assert_eq!(err.retry_after(), Some(7 * SEC));
    }
    assert_eq!(script.calls(), 4, "rejected calls never reached the service");
    assert_eq!(breaker.metrics().rejections, 5);
}

#[tokio::test(start_paused = true)]
async fn poll_ready_does_not_poll_the_inner_service_when_rejecting() {
    use std::task::{Context, Poll};

    /// A service whose poll_ready panics: it must never be asked.
    #[derive(Clone)]
    struct MustNotBePolled;
    impl Service<()> for MustNotBePolled {
        type Response = ();
        type Error = std::io::Error;
        type Future = std::future::Ready<Result<(), std::io::Error>>;
        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            panic!("the inner service was polled")
        }
        fn call(&mut self, (): ()) -> Self::Future {
            panic!("the inner service was called")
        }
    }

    let breaker = config().build().unwrap();
    breaker.force_open();
    let mut svc = breaker.layer().layer(MustNotBePolled);
    let err = svc.ready().await.unwrap().call(()).await.unwrap_err();
    assert_eq!(rejection(&err), (CircuitRejection::ForcedOpen, None));
}

#[tokio::test(start_paused = true)]
async fn inner_poll_ready_errors_are_recorded() {
    use std::task::{Context, Poll};

    /// A service whose readiness check fails (a dead connection).
    #[derive(Clone, Debug)]
    struct Broken;
    impl Service<()> for Broken {
        type Response = ();
        type Error = std::io::Error;
        type Future = std::future::Ready<Result<(), std::io::Error>>;
        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Ready(Err(std::io::Error::other("connection closed")))
        }
        fn call(&mut self, (): ()) -> Self::Future {
            std::future::ready(Ok(()))
        }
    }

    let breaker = config().build().unwrap();
    let mut svc = breaker.layer().layer(Broken);
    for _ in 0..4 {
        let err = svc.ready().await.unwrap_err();
        assert!(err.downcast_inner_ref::<std::io::Error>().is_some());
    }
    assert_eq!(breaker.state(), BreakerState::Open);
    let err = svc.ready().await.unwrap().call(()).await.unwrap_err();
    assert_eq!(rejection(&err).0, CircuitRejection::Open);
}

#[tokio::test(start_paused = true)]
async fn call_without_poll_ready_still_asks_the_breaker() {
    let breaker = config().build().unwrap();
    let script = Script::new([Err("down"); 4]);
    let mut svc = breaker.layer().layer(script.service());
    for _ in 0..4 {
        svc.call(()).await.unwrap_err();
    }
    let err = svc.call(()).await.unwrap_err();
    assert_eq!(rejection(&err).0, CircuitRejection::Open);
    assert_eq!(script.calls(), 4);
}

#[tokio::test(start_paused = true)]
async fn a_breaker_that_opens_between_poll_ready_and_call_rejects_in_call() {
    let breaker = config().build().unwrap();
    let script = Script::new([]);
    let mut svc = breaker.layer().layer(script.service());
    std::future::poll_fn(|cx| svc.poll_ready(cx)).await.unwrap();
    breaker.force_open();
    let err = svc.call(()).await.unwrap_err();
    assert_eq!(rejection(&err).0, CircuitRejection::ForcedOpen);
    assert_eq!(script.calls(), 0);
}

// ===== half-open =====

#[tokio::test(start_paused = true)]
async fn half_open_admits_exactly_the_trials_and_closes_on_success() {
    let breaker = config().build().unwrap();
    trip(&breaker);
    advance(10 * SEC).await;
    let trials: Vec<_> = (0..3).map(|_| breaker.try_acquire().unwrap()).collect();
    assert_eq!(breaker.state(), BreakerState::HalfOpen);
    assert_eq!(trials[0].admitted_in(), Some(BreakerState::HalfOpen));
    for _ in 0..3 {
        assert_eq!(rejected_with(&breaker), (CircuitRejection::HalfOpenFull, None));
    }
    let mut trials = trials.into_iter();
    trials.next().unwrap().record(Outcome::Success);
    trials.next().unwrap().record(Outcome::Success);
    assert_eq!(
        breaker.state(),
        BreakerState::HalfOpen,
        "undecided until every trial reports"
    );
    assert_eq!(breaker.metrics().calls, 2);
    trials.next().unwrap().record(Outcome::Success);
    assert_eq!(breaker.state(), BreakerState::Closed);
    assert_eq!(breaker.metrics().calls, 0, "closed again with an empty window");
}

#[tokio::test(start_paused = true)]
async fn half_open_reopens_when_the_trials_fail() {
    let breaker = config().build().unwrap();
    trip(&breaker);
    advance(10 * SEC).await;
    let trials: Vec<_> = (0..3).map(|_| breaker.try_acquire().unwrap()).collect();
    let mut trials = trials.into_iter();
    trials.next().unwrap().record(Outcome::Failure);
    assert_eq!(breaker.state(), BreakerState::HalfOpen, "1 of 3 is below 50%");
    trials.next().unwrap().record(Outcome::Success);
    assert_eq!(
        rejected_with(&breaker).0,
        CircuitRejection::HalfOpenFull,
        "recorded trials keep their slot"
    );
    trials.next().unwrap().record(Outcome::Failure);
    assert_eq!(breaker.state(), BreakerState::Open, "2 of 3 failed");
    assert_eq!(rejected_with(&breaker), (CircuitRejection::Open, Some(10 * SEC)));
}

#[tokio::test(start_paused = true)]
async fn half_open_reopens_as_soon_as_the_failures_are_certain() {
    let breaker = config().build().unwrap();
    trip(&breaker);
    advance(10 * SEC).await;
    let x = breaker.try_acquire().unwrap();
    let y = breaker.try_acquire().unwrap();
    let z = breaker.try_acquire().unwrap();
    x.record(Outcome::Failure);
    y.record(Outcome::Failure);
    // 2 of 3 trials failed: whatever the third does, the rate is at least 67%.
    assert_eq!(
        breaker.state(),
        BreakerState::Open,
        "decided without the third trial"
    );
    z.record(Outcome::Success); // a trial of a half-open state that is over: ignored
    assert_eq!(breaker.state(), BreakerState::Open);
}

#[tokio::test(start_paused = true)]
async fn dropped_trial_permits_give_their_slot_back() {
    let breaker = config().half_open_permits(1).build().unwrap();
    trip(&breaker);
    advance(10 * SEC).await;
    let trial = breaker.try_acquire().unwrap();
    assert_eq!(rejected_with(&breaker).0, CircuitRejection::HalfOpenFull);
    drop(trial);
    let trial = breaker.try_acquire().unwrap();
    trial.record(Outcome::Rejected); // records nothing, frees the slot too
    let trial = breaker.try_acquire().unwrap();
    trial.record(Outcome::Success);
    assert_eq!(breaker.state(), BreakerState::Closed);
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_service_call_frees_its_trial() {
    let breaker = config().half_open_permits(1).build().unwrap();
    trip(&breaker);
    advance(10 * SEC).await;
    let hang = service_fn(|()| std::future::pending::<Result<(), std::io::Error>>());
    let mut svc = breaker.layer().layer(hang);
    let future = svc.ready().await.unwrap().call(());
    assert_eq!(rejected_with(&breaker).0, CircuitRejection::HalfOpenFull);
    drop(future);
    assert!(breaker.try_acquire().is_ok());
    // A service dropped between poll_ready and call gives its permit back too.
    svc.ready().await.unwrap();
    assert!(breaker.try_acquire().is_err());
    drop(svc);
    assert!(breaker.try_acquire().is_ok());
}

#[tokio::test(start_paused = true)]
async fn service_trials_taken_in_call_give_back_their_slot_and_record() {
    let breaker = config().half_open_permits(2).build().unwrap();
    trip(&breaker);
    advance(10 * SEC).await;
    let hang = service_fn(|()| std::future::pending::<Result<(), std::io::Error>>());
    let mut hanging = breaker.layer().layer(hang);
    // Without `poll_ready`, `call` takes the trial itself.
    let first = hanging.call(());
    let second = hanging.call(());
    assert_eq!(breaker.state(), BreakerState::HalfOpen);
    assert_eq!(rejected_with(&breaker).0, CircuitRejection::HalfOpenFull);
    drop(first);
    // A trial future dropped on another thread gives its slot back there.
    std::thread::spawn(move || drop(second)).join().unwrap();
    let script = Script::new([]);
    let mut svc = breaker.layer().layer(script.service());
    let (a, b) = (svc.call(()), svc.call(()));
    assert_eq!(rejected_with(&breaker).0, CircuitRejection::HalfOpenFull);
    a.await.unwrap();
    assert_eq!(
        breaker.state(),
        BreakerState::HalfOpen,
        "one trial of two recorded"
    );
    // A trial completed on another thread is recorded there.
    std::thread::spawn(move || poll_once(b)).join().unwrap().unwrap();
    assert_eq!(breaker.state(), BreakerState::Closed);
}

/// Polls a future that is ready at once (no runtime on a plain thread).
fn poll_once<F: std::future::Future>(future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match future.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(output) => output,
        std::task::Poll::Pending => panic!("the future was not ready at once"),
    }
}

#[tokio::test(start_paused = true)]
async fn stale_outcomes_do_not_count_in_a_new_state() {
    let breaker = config().half_open_permits(1).build().unwrap();
    let slow_closed_call = breaker.try_acquire().unwrap();
    trip(&breaker);
    advance(10 * SEC).await;
    let trial = breaker.try_acquire().unwrap();
    // Admitted while closed, finishing while half-open: not the trial.
    slow_closed_call.record(Outcome::Failure);
    assert_eq!(breaker.state(), BreakerState::HalfOpen);
    trial.record(Outcome::Success);
    assert_eq!(breaker.state(), BreakerState::Closed);
    assert_eq!(breaker.metrics().calls, 0);
}

#[tokio::test(start_paused = true)]
async fn open_wait_grows_with_backoff_and_resets_once_closed() {
    let breaker = config()
        .open_wait(SEC)
        .open_wait_backoff(2.0, 3 * SEC)
        .half_open_permits(1)
        .build()
        .unwrap();
    trip(&breaker);
    assert_eq!(rejected_with(&breaker), (CircuitRejection::Open, Some(SEC)));
    let mut expected = vec![];
    let mut seen = vec![];
    for wait in [2, 3, 3] {
        let (_, remaining) = rejected_with(&breaker);
        advance(remaining.unwrap()).await;
        breaker.try_acquire().unwrap().record(Outcome::Failure);
        seen.push(rejected_with(&breaker).1.unwrap());
        expected.push(wait * SEC);
    }
    assert_eq!(seen, expected);
    advance(3 * SEC).await;
    breaker.try_acquire().unwrap().record(Outcome::Success);
    assert_eq!(breaker.state(), BreakerState::Closed);
    trip(&breaker);
    assert_eq!(
        rejected_with(&breaker).1,
        Some(SEC),
        "the backoff reset when the breaker closed"
    );
}

#[tokio::test(start_paused = true)]
async fn max_half_open_wait_reopens_an_undecided_breaker() {
    let breaker = config().max_half_open_wait(5 * SEC).build().unwrap();
    trip(&breaker);
    advance(10 * SEC).await;
    let trial = breaker.try_acquire().unwrap();
    advance(4 * SEC).await;
    assert!(breaker.try_acquire().is_ok(), "still within the half-open wait");
    advance(SEC).await;
    assert_eq!(rejected_with(&breaker), (CircuitRejection::Open, Some(10 * SEC)));
    assert_eq!(breaker.state(), BreakerState::Open);
    trial.record(Outcome::Success); // too late: ignored
    assert_eq!(breaker.state(), BreakerState::Open);

    // A trial outcome arriving after the deadline re-opens the breaker itself.
    let breaker = config().max_half_open_wait(5 * SEC).build().unwrap();
    trip(&breaker);
    advance(10 * SEC).await;
    let trial = breaker.try_acquire().unwrap();
    advance(6 * SEC).await;
    trial.record(Outcome::Success);
    assert_eq!(breaker.state(), BreakerState::Open);
}

// ===== modes =====

#[tokio::test(start_paused = true)]
async fn forced_open_rejects_until_normal() {
    let breaker = config().build().unwrap();
    breaker.force_open();
    assert_eq!(breaker.state(), BreakerState::ForcedOpen);
    assert_eq!(rejected_with(&breaker), (CircuitRejection::ForcedOpen, None));
    advance(3600 * SEC).await;
    assert_eq!(rejected_with(&breaker).0, CircuitRejection::ForcedOpen);
    breaker.normal();
    assert_eq!(breaker.state(), BreakerState::Closed);
    assert!(breaker.try_acquire().is_ok());
}

#[tokio::test(start_paused = true)]
async fn disabled_admits_everything_and_records_nothing() {
    let breaker = config().build().unwrap();
    breaker.disable();
    record(&breaker, &[Outcome::Failure; 50]);
    assert_eq!(breaker.state(), BreakerState::Disabled);
    assert_eq!(breaker.metrics().calls, 0);
    breaker.normal();
    record(&breaker, &[Outcome::Failure; 3]);
    assert_eq!(breaker.state(), BreakerState::Closed, "the window starts empty");
}

#[tokio::test(start_paused = true)]
async fn metrics_only_records_and_reports_but_never_rejects() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let breaker = metrics::with_local_recorder(&recorder, || {
        let breaker = config().build().unwrap();
        breaker.metrics_only();
        record(&breaker, &[Outcome::Failure; 20]);
        breaker
    });
    assert_eq!(breaker.state(), BreakerState::MetricsOnly);
    let m = breaker.metrics();
    assert_eq!((m.calls, m.failures), (10, 10));
    let snapshot = counters(&values(&snapshotter));
    assert_eq!(
        snapshot.get("orch_breaker_threshold_exceeded_total{name=test,reason=failure_rate}"),
        Some(&1),
        "reported once per crossing: {snapshot:?}"
    );
    breaker.normal();
    assert_eq!(breaker.state(), BreakerState::Closed);
    assert_eq!(breaker.metrics().calls, 0);
}

#[tokio::test(start_paused = true)]
async fn reset_closes_and_forgets_from_any_state() {
    let breaker = config().build().unwrap();
    record(&breaker, &[Outcome::Failure; 3]);
    breaker.reset();
    record(&breaker, &[Outcome::Failure; 3]);
    assert_eq!(breaker.state(), BreakerState::Closed, "the window was emptied");
    record(&breaker, &[Outcome::Failure]);
    assert_eq!(breaker.state(), BreakerState::Open);
    breaker.reset();
    assert_eq!(breaker.state(), BreakerState::Closed);
    breaker.force_open();
    breaker.reset();
    assert!(breaker.try_acquire().is_ok());
    // normal() leaves the ordinary states alone.
    trip(&breaker);
    breaker.normal();
    assert_eq!(breaker.state(), BreakerState::Open);
}

// ===== sharing =====

#[tokio::test(start_paused = true)]
async fn registry_shares_one_breaker_per_name() {
    let registry = BreakerRegistry::new(config())
        .unwrap()
        .with_override("payments", config().minimum_calls(2))
        .unwrap();
    let payments = Script::new([Err("down"); 2]);
    let mut a = registry.layer("payments").layer(payments.service());
    let mut b = registry.layer("payments").layer(payments.service());
    let mut other = registry.layer("search").layer(Script::new([]).service());
    a.ready().await.unwrap().call(()).await.unwrap_err();
    b.ready().await.unwrap().call(()).await.unwrap_err();
    assert_eq!(registry.get("payments").unwrap().state(), BreakerState::Open);
    assert!(b.ready().await.unwrap().call(()).await.is_err());
    assert!(a.ready().await.unwrap().call(()).await.is_err());
    assert_eq!(payments.calls(), 2);
    assert_eq!(other.ready().await.unwrap().call(()).await.unwrap(), 200);
    assert_eq!(registry.get_or_create("payments").name(), "payments");
    assert!(registry.get("missing").is_none());
    let states: Vec<_> = registry
        .states()
        .into_iter()
        .map(|(n, s)| (n.to_string(), s))
        .collect();
    assert_eq!(
        states,
        [
            ("payments".to_string(), BreakerState::Open),
            ("search".to_string(), BreakerState::Closed)
        ]
    );
    let err = BreakerRegistry::new(config())
        .unwrap()
        .with_override("payments", config().failure_rate_threshold(2.0))
        .unwrap_err();
    assert_eq!(err.field_name(), "breakers.payments.failure_rate_threshold");
}

#[tokio::test(start_paused = true)]
async fn service_clones_share_the_breaker() {
    let script = Script::new([Err("down"); 4]);
    let svc = CircuitBreakerLayer::new(config())
        .unwrap()
        .layer(script.service());
    for _ in 0..4 {
        svc.clone().oneshot(()).await.unwrap_err();
    }
    let err = svc.clone().oneshot(()).await.unwrap_err();
    assert_eq!(rejection(&err).0, CircuitRejection::Open);
    assert_eq!(svc.breaker().state(), BreakerState::Open);
    assert_eq!(script.calls(), 4);
}

#[tokio::test(start_paused = true)]
async fn http_classifier_counts_server_errors() {
    let breaker = config().build().unwrap();
    let inner = service_fn(|status: u16| async move {
        Ok::<_, std::io::Error>(http::Response::builder().status(status).body(()).unwrap())
    });
    let mut svc = breaker.layer().classifier(HttpClassifier::default()).layer(inner);
    for status in [200, 404, 503, 500] {
        let response = svc.ready().await.unwrap().call(status).await.unwrap();
        assert_eq!(response.status(), status);
    }
    let m = breaker.metrics();
    assert_eq!((m.calls, m.failures), (4, 2));
    assert_eq!(breaker.state(), BreakerState::Open);
}

#[test]
fn threads_recording_into_one_breaker_trip_it_together() {
    let breaker = CircuitBreakerConfig::default()
        .count_window(50)
        .minimum_calls(20)
        .build()
        .unwrap();
    let threads = 4;
    let healthy = std::sync::Barrier::new(threads + 1);
    let failing = std::sync::Barrier::new(threads + 1);
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                for _ in 0..10_000 {
                    breaker.try_acquire().unwrap().record(Outcome::Success);
                }
                healthy.wait();
                failing.wait();
                for _ in 0..200 {
                    if let Ok(permit) = breaker.try_acquire() {
                        permit.record(Outcome::Failure);
                    }
                }
            });
        }
        healthy.wait();
        assert_eq!(breaker.state(), BreakerState::Closed, "successes never trip");
        failing.wait();
    });
    // Every shard the threads use ends full of failures.
    assert_eq!(breaker.state(), BreakerState::Open);
}

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

// ===== metrics =====

/// Counters of a snapshot. (A snapshot resets what it reads: take one per check.)
fn counters(values: &[(String, DebugValue)]) -> std::collections::BTreeMap<String, u64> {
    values
        .iter()
        .filter_map(|(k, v)| match v {
            DebugValue::Counter(c) => Some((k.clone(), *c)),
            _ => None,
        })
        .collect()
}

fn values(snapshotter: &metrics_util::debugging::Snapshotter) -> Vec<(String, DebugValue)> {
    snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, _, _, value)| {
            let key = key.key();
            let mut labels: Vec<_> = key
                .labels()
                .map(|l| format!("{}={}", l.key(), l.value()))
                .collect();
            labels.sort();
            (format!("{}{{{}}}", key.name(), labels.join(",")), value)
        })
        .collect()
}

#[tokio::test(start_paused = true)]
async fn transitions_and_rejections_are_counted() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let breaker = metrics::with_local_recorder(&recorder, || {
        let breaker = config().half_open_permits(1).build().unwrap();
        trip(&breaker);
        for _ in 0..3 {
            breaker.try_acquire().unwrap_err();
        }
        breaker
    });
    advance(10 * SEC).await;
    metrics::with_local_recorder(&recorder, || {
        let trial = breaker.try_acquire().unwrap();
        breaker.try_acquire().unwrap_err();
        trial.record(Outcome::Success);
        breaker.force_open();
        breaker.try_acquire().unwrap_err();
    });
    let values = values(&snapshotter);
    let counters = counters(&values);
    let expect = [
        ("orch_breaker_transitions_total{from=closed,name=test,to=open}", 1),
        (
            "orch_breaker_transitions_total{from=open,name=test,to=half_open}",
            1,
        ),
        (
            "orch_breaker_transitions_total{from=half_open,name=test,to=closed}",
            1,
        ),
        (
            "orch_breaker_transitions_total{from=closed,name=test,to=forced_open}",
            1,
        ),
        ("orch_breaker_rejections_total{name=test,reason=open}", 3),
        (
            "orch_breaker_rejections_total{name=test,reason=half_open_full}",
            1,
        ),
        ("orch_breaker_rejections_total{name=test,reason=forced_open}", 1),
    ];
    for (key, value) in expect {
        assert_eq!(counters.get(key), Some(&value), "{key} in {counters:?}");
    }
    let gauge = values.iter().find(|(k, _)| k == "orch_breaker_state{name=test}");
    assert_eq!(
        gauge.map(|(_, v)| v),
        Some(&DebugValue::Gauge(3.0.into())),
        "forced open"
    );
    assert_eq!(breaker.metrics().rejections, 5);
}

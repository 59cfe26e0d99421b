//! Hedging: who wins, what is cancelled, when hedges are sent, what is
//! returned when everything fails, and how the percentile delay moves. All on
//! paused tokio time: the inner service sleeps a scripted latency per attempt.
// The helpers below are test code too: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::{
    future::{Future, poll_fn},
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    task::{Context, Poll, Waker},
    time::Duration,
};

use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use orch_resilience::{
    AlwaysSafe, BoxError, Classify, DefaultClassifier, ErrorClass, Hedge, HedgeConfig, HedgeDelay,
    HedgeLayer, HttpSafety, IDEMPOTENCY_KEY, LatencyTracker, Outcome, Pushback, ResilienceError, TimeoutKind,
    classify_fn,
};
use tokio::time::{Instant, sleep};
use tower::{Layer, Service, ServiceExt, service_fn};

// ===== scripted inner service =====

/// What one attempt of the inner service does once its latency has passed.
#[derive(Debug, Clone, Copy)]
enum Then {
    /// `Ok((attempt, 200))`.
    Ok,
    /// `Ok((attempt, status))`, for classifiers that read the status.
    Status(u16),
    /// An `io::Error` "attempt N failed".
    Fail,
    /// A local rejection from a layer below (`RateLimited`).
    Reject,
    /// An attempt timeout from a layer below.
    Timeout,
}

/// The inner service's response: which attempt answered, and a status.
type Reply = (usize, u16);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Event {
    Completed(usize),
    /// The attempt's future was dropped before its latency had passed.
    Cancelled(usize),
}

/// Attempt `i` (in call order across the whole test) follows `steps[i]`.
#[derive(Clone)]
struct Script {
    steps: Arc<Vec<(Duration, Then)>>,
    calls: Arc<AtomicUsize>,
    events: Arc<Mutex<Vec<Event>>>,
    tags: Arc<Mutex<Vec<Option<String>>>>,
}

/// Something the script can note about each request it receives.
trait Probe: Send + 'static {
    fn tag(&self) -> Option<String> {
        None
    }
}

impl Probe for u32 {}

impl Probe for http::Request<()> {
    fn tag(&self) -> Option<String> {
        self.headers()
            .get(IDEMPOTENCY_KEY)
            .map(|key| key.to_str().unwrap().to_owned())
    }
}

struct Guard {
    index: usize,
    done: bool,
    events: Arc<Mutex<Vec<Event>>>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        let event = if self.done {
            Event::Completed(self.index)
        } else {
            Event::Cancelled(self.index)
        };
        self.events.lock().unwrap().push(event);
    }
}

impl Script {
    fn new(steps: &[(u64, Then)]) -> Self {
        Self {
            steps: Arc::new(
                steps
                    .iter()
                    .map(|&(ms, then)| (Duration::from_millis(ms), then))
                    .collect(),
            ),
            calls: Arc::default(),
            events: Arc::default(),
            tags: Arc::default(),
        }
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    fn events(&self) -> Vec<Event> {
        self.events.lock().unwrap().clone()
    }

    fn tags(&self) -> Vec<Option<String>> {
        self.tags.lock().unwrap().clone()
    }

    fn service<R: Probe>(
        &self,
    ) -> impl Service<R, Response = Reply, Error = BoxError, Future: Send> + Clone + Send + 'static {
        let script = self.clone();
        service_fn(move |request: R| {
            let index = script.calls.fetch_add(1, Ordering::SeqCst);
            script.tags.lock().unwrap().push(request.tag());
            let (after, then) = *script
                .steps
                .get(index)
                .unwrap_or_else(|| panic!("unexpected attempt {index}"));
            let mut guard = Guard {
                index,
                done: false,
                events: Arc::clone(&script.events),
            };
            async move {
                sleep(after).await;
                guard.done = true;
                drop(guard);
                match then {
                    Then::Ok => Ok((index, 200)),
                    Then::Status(status) => Ok((index, status)),
                    Then::Fail => Err(std::io::Error::other(format!("attempt {index} failed")).into()),
                    Then::Reject => Err(Box::new(ResilienceError::RateLimited {
                        name: "below".into(),
                        wait: Duration::from_millis(1),
                    }) as BoxError),
                    Then::Timeout => Err(Box::new(ResilienceError::Timeout {
                        kind: TimeoutKind::Attempt,
                        after: Duration::from_secs(1),
                    }) as BoxError),
                }
            }
        })
    }
}

fn ms(ms: u64) -> Duration {
    Duration::from_millis(ms)
}

fn fixed(delay_ms: u64) -> HedgeConfig {
    HedgeConfig::default().delay(HedgeDelay::fixed(ms(delay_ms)))
}

fn layer(config: HedgeConfig) -> HedgeLayer<DefaultClassifier, AlwaysSafe> {
    HedgeLayer::new(config).unwrap().safety(AlwaysSafe)
}

fn message(error: &ResilienceError) -> String {
    error.downcast_inner_ref::<std::io::Error>().unwrap().to_string()
}

// ===== who wins =====

#[tokio::test(start_paused = true)]
async fn slow_primary_fast_hedge_the_hedge_wins_and_the_primary_is_cancelled() {
    let script = Script::new(&[(1_000, Then::Ok), (10, Then::Ok)]);
    let mut service = layer(fixed(100)).layer(script.service::<u32>());
    let start = Instant::now();

    service.ready().await.unwrap();
    let mut future = Box::pin(service.call(7));
    let reply = poll_fn(|cx| future.as_mut().poll(cx)).await.unwrap();

    assert_eq!(reply, (1, 200));
    assert_eq!(start.elapsed(), ms(110), "delay + hedge latency");
    assert_eq!(script.calls(), 2);
    // The primary was dropped when the hedge won, before the response future
    // itself was dropped and long before the primary would have completed.
    assert_eq!(script.events(), vec![Event::Completed(1), Event::Cancelled(0)]);
    drop(future);
}

#[tokio::test(start_paused = true)]
async fn fast_primary_sends_no_hedge() {
    let script = Script::new(&[(10, Then::Ok)]);
    let service = layer(fixed(100)).layer(script.service::<u32>());
    let start = Instant::now();

    assert_eq!(service.oneshot(7).await.unwrap(), (0, 200));
    assert_eq!(start.elapsed(), ms(10));
    sleep(ms(1_000)).await;
    assert_eq!(script.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_failed_primary_sends_the_hedge_at_once() {
    let script = Script::new(&[(5, Then::Fail), (10, Then::Ok)]);
    let service = layer(fixed(100)).layer(script.service::<u32>());
    let start = Instant::now();

    assert_eq!(service.oneshot(7).await.unwrap(), (1, 200));
    assert_eq!(
        start.elapsed(),
        ms(15),
        "the hedge did not wait for the 100ms delay"
    );
    assert_eq!(script.calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn zero_delay_sends_every_attempt_at_once() {
    let script = Script::new(&[(50, Then::Ok), (30, Then::Ok), (10, Then::Ok)]);
    let service = layer(fixed(0).max_hedged_attempts(2)).layer(script.service::<u32>());
    let start = Instant::now();

    assert_eq!(service.oneshot(7).await.unwrap(), (2, 200));
    assert_eq!(start.elapsed(), ms(10));
    assert_eq!(script.calls(), 3);
    let mut events = script.events();
    events.sort_by_key(|e| match e {
        Event::Completed(i) | Event::Cancelled(i) => *i,
    });
    assert_eq!(
        events,
        vec![Event::Cancelled(0), Event::Cancelled(1), Event::Completed(2)]
    );
}

#[tokio::test(start_paused = true)]
async fn dropping_the_call_cancels_every_attempt() {
    let script = Script::new(&[(1_000, Then::Ok), (1_000, Then::Ok)]);
    let service = layer(fixed(10)).layer(script.service::<u32>());

    let outcome = tokio::time::timeout(ms(50), service.oneshot(7)).await;

    assert!(outcome.is_err(), "the caller gave up first");
    assert_eq!(script.calls(), 2);
    let mut events = script.events();
    events.sort_by_key(|e| format!("{e:?}"));
    assert_eq!(events, vec![Event::Cancelled(0), Event::Cancelled(1)]);
}

// ===== failures =====

#[tokio::test(start_paused = true)]
async fn when_every_attempt_fails_the_last_failure_is_returned() {
    // delay 10ms, 3 hedges:
    //   t=0   attempt 0 sent (fails at 30)
    //   t=10  attempt 1 sent by the delay (fails at 15)
    //   t=15  attempt 2 sent at once after the failure (fails at 115)
    //   t=25  attempt 3 sent by the delay (fails at 26); no attempts left
    //   t=115 attempt 2, the last to finish, is the result
    let script = Script::new(&[
        (30, Then::Fail),
        (5, Then::Fail),
        (100, Then::Fail),
        (1, Then::Fail),
    ]);
    let service = layer(fixed(10).max_hedged_attempts(3)).layer(script.service::<u32>());
    let start = Instant::now();

    let error = service.oneshot(7).await.unwrap_err();

    assert_eq!(error.class(), ErrorClass::Inner);
    assert_eq!(message(&error), "attempt 2 failed");
    assert_eq!(start.elapsed(), ms(115));
    sleep(ms(1_000)).await;
    assert_eq!(script.calls(), 4, "one primary and max_hedged_attempts hedges");
}

#[tokio::test(start_paused = true)]
async fn inner_resilience_errors_are_returned_unwrapped() {
    let script = Script::new(&[(5, Then::Timeout), (5, Then::Timeout)]);
    let service = layer(fixed(100)).layer(script.service::<u32>());

    let error = service.oneshot(7).await.unwrap_err();

    assert!(
        matches!(
            error,
            ResilienceError::Timeout {
                kind: TimeoutKind::Attempt,
                ..
            }
        ),
        "{error:?}"
    );
    assert_eq!(script.calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn ok_responses_classified_as_failures_do_not_win() {
    let classifier = classify_fn(|result: Result<&Reply, &ResilienceError>| match result {
        Ok((_, status)) if *status >= 500 => Outcome::Retryable,
        Ok(_) => Outcome::Success,
        Err(_) => Outcome::Retryable,
    });

    // A 503 sends the hedge at once; the hedge's 200 wins.
    let script = Script::new(&[(5, Then::Status(503)), (20, Then::Ok)]);
    let service = layer(fixed(50))
        .classifier(classifier)
        .layer(script.service::<u32>());
    let start = Instant::now();
    assert_eq!(service.oneshot(7).await.unwrap(), (1, 200));
    assert_eq!(start.elapsed(), ms(25));

    // Every attempt answers 5xx: the last failing response is returned as `Ok`.
    let script = Script::new(&[
        (5, Then::Status(503)),
        (5, Then::Status(502)),
        (5, Then::Status(500)),
    ]);
    let service = layer(fixed(50).max_hedged_attempts(2))
        .classifier(classifier)
        .layer(script.service::<u32>());
    let start = Instant::now();
    assert_eq!(service.oneshot(7).await.unwrap(), (2, 500));
    assert_eq!(start.elapsed(), ms(15));
    assert_eq!(script.calls(), 3);
}

#[tokio::test(start_paused = true)]
async fn a_local_rejection_stops_further_hedges() {
    // The first hedge is rejected below; the two hedges left are not sent, and
    // the primary, still running, wins.
    let script = Script::new(&[(100, Then::Ok), (1, Then::Reject)]);
    let service = layer(fixed(10).max_hedged_attempts(3)).layer(script.service::<u32>());
    let start = Instant::now();
    assert_eq!(service.oneshot(7).await.unwrap(), (0, 200));
    assert_eq!(start.elapsed(), ms(100));
    assert_eq!(script.calls(), 2);

    // A rejected primary is returned at once, without hedging.
    let script = Script::new(&[(0, Then::Reject)]);
    let service = layer(fixed(10)).layer(script.service::<u32>());
    let error = service.oneshot(7).await.unwrap_err();
    assert_eq!(error.class(), ErrorClass::RateLimited);
    sleep(ms(100)).await;
    assert_eq!(script.calls(), 1);
}

/// 503 asks for 30ms of pushback, 504 for more than the clock can hold,
/// 429 says "do not retry".
#[derive(Clone)]
struct PushbackClassifier;

impl Classify<Reply, ResilienceError> for PushbackClassifier {
    fn classify(&self, result: Result<&Reply, &ResilienceError>) -> Outcome {
        match result {
            Ok((_, 200)) => Outcome::Success,
            _ => Outcome::Retryable,
        }
    }

    fn pushback(&self, result: Result<&Reply, &ResilienceError>) -> Pushback {
        match result {
            Ok((_, 503)) => Pushback::After(ms(30)),
            Ok((_, 504)) => Pushback::After(Duration::MAX),
            Ok((_, 429)) => Pushback::Stop,
            _ => Pushback::None,
        }
    }
}

#[tokio::test(start_paused = true)]
async fn server_pushback_delays_or_stops_the_next_hedge() {
    let script = Script::new(&[(5, Then::Status(503)), (5, Then::Ok)]);
    let service = layer(fixed(100))
        .classifier(PushbackClassifier)
        .layer(script.service::<u32>());
    let start = Instant::now();
    assert_eq!(service.oneshot(7).await.unwrap(), (1, 200));
    assert_eq!(start.elapsed(), ms(40), "failure at 5ms + 30ms pushback + 5ms");

    let script = Script::new(&[(5, Then::Status(429))]);
    let service = layer(fixed(100).max_hedged_attempts(3))
        .classifier(PushbackClassifier)
        .layer(script.service::<u32>());
    let start = Instant::now();
    assert_eq!(service.oneshot(7).await.unwrap(), (0, 429));
    assert_eq!(start.elapsed(), ms(5));
    sleep(ms(1_000)).await;
    assert_eq!(script.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_pushback_too_large_for_the_clock_waits_without_panicking() {
    let script = Script::new(&[(5, Then::Status(504)), (5, Then::Ok)]);
    let service = layer(fixed(100))
        .classifier(PushbackClassifier)
        .layer(script.service::<u32>());
    let call = tokio::spawn(service.oneshot(7));
    sleep(Duration::from_secs(3600)).await;
    assert!(!call.is_finished(), "the next hedge waits for the pushback");
    assert_eq!(script.calls(), 1);
    call.abort();
}

// ===== safety =====

#[tokio::test(start_paused = true)]
async fn unsafe_requests_are_sent_once_and_never_hedged() {
    let post = || http::Request::post("/orders").body(()).unwrap();

    // Slow: no hedge after the delay.
    let script = Script::new(&[(100, Then::Ok)]);
    let service = Hedge::new(script.service::<http::Request<()>>(), fixed(10)).unwrap();
    let start = Instant::now();
    assert_eq!(service.oneshot(post()).await.unwrap(), (0, 200));
    assert_eq!(start.elapsed(), ms(100));
    assert_eq!(script.calls(), 1);

    // Failed: no hedge after the failure; the error passes through.
    let script = Script::new(&[(5, Then::Fail)]);
    let service = Hedge::new(script.service::<http::Request<()>>(), fixed(10)).unwrap();
    let error = service.oneshot(post()).await.unwrap_err();
    assert_eq!(message(&error), "attempt 0 failed");
    sleep(ms(100)).await;
    assert_eq!(script.calls(), 1);

    // Safe methods and keyed requests are hedged.
    let script = Script::new(&[(100, Then::Ok), (5, Then::Ok), (100, Then::Ok), (5, Then::Ok)]);
    let mut service = Hedge::new(script.service::<http::Request<()>>(), fixed(10)).unwrap();
    let get = http::Request::get("/orders").body(()).unwrap();
    assert_eq!(service.ready().await.unwrap().call(get).await.unwrap(), (1, 200));
    let keyed = http::Request::post("/orders")
        .header(IDEMPOTENCY_KEY, "order-42")
        .body(())
        .unwrap();
    assert_eq!(
        service.ready().await.unwrap().call(keyed).await.unwrap(),
        (3, 200)
    );
    assert_eq!(script.calls(), 4);
}

#[tokio::test(start_paused = true)]
async fn an_added_idempotency_key_is_the_same_on_every_attempt() {
    let script = Script::new(&[(100, Then::Ok), (5, Then::Ok)]);
    let service = HedgeLayer::new(fixed(10))
        .unwrap()
        .safety(HttpSafety::default().add_idempotency_key(true))
        .layer(script.service::<http::Request<()>>());

    let post = http::Request::post("/orders").body(()).unwrap();
    assert_eq!(service.oneshot(post).await.unwrap(), (1, 200));

    let tags = script.tags();
    assert_eq!(tags.len(), 2);
    assert!(tags[0].is_some());
    assert_eq!(tags[0], tags[1]);
}

// ===== readiness of hedge clones =====

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum GateState {
    Open,
    Closed,
    Broken,
}

type Gate = Arc<Mutex<(GateState, Vec<Waker>)>>;

/// Readiness shared by every clone: open, closed (pending) or broken (error).
#[derive(Clone)]
struct Gated<S> {
    inner: S,
    gate: Gate,
}

impl<S> Gated<S> {
    fn new(inner: S) -> Self {
        Self {
            inner,
            gate: Arc::new(Mutex::new((GateState::Open, Vec::new()))),
        }
    }
}

fn set_gate(gate: &Gate, state: GateState) {
    let mut gate = gate.lock().unwrap();
    gate.0 = state;
    gate.1.drain(..).for_each(Waker::wake);
}

impl<S: Service<R, Error = BoxError>, R> Service<R> for Gated<S> {
    type Response = S::Response;
    type Error = BoxError;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        let mut gate = self.gate.lock().unwrap();
        match gate.0 {
            GateState::Open => self.inner.poll_ready(cx),
            GateState::Closed => {
                gate.1.push(cx.waker().clone());
                Poll::Pending
            }
            GateState::Broken => Poll::Ready(Err("service is broken".into())),
        }
    }

    fn call(&mut self, request: R) -> S::Future {
        self.inner.call(request)
    }
}

#[tokio::test(start_paused = true)]
async fn a_hedge_waits_for_its_service_clone_to_be_ready() {
    // The clone never gets ready: the primary keeps running and wins.
    let script = Script::new(&[(50, Then::Ok)]);
    let inner = Gated::new(script.service::<u32>());
    let gate = Arc::clone(&inner.gate);
    let mut service = layer(fixed(10)).layer(inner);
    let start = Instant::now();
    service.ready().await.unwrap();
    let future = service.call(7);
    set_gate(&gate, GateState::Closed);
    assert_eq!(future.await.unwrap(), (0, 200));
    assert_eq!(start.elapsed(), ms(50));
    assert_eq!(script.calls(), 1);

    // The clone gets ready at 20ms: the hedge is sent then, and wins.
    let script = Script::new(&[(100, Then::Ok), (5, Then::Ok)]);
    let inner = Gated::new(script.service::<u32>());
    let gate = Arc::clone(&inner.gate);
    let mut service = layer(fixed(10)).layer(inner);
    let start = Instant::now();
    service.ready().await.unwrap();
    let future = service.call(7);
    set_gate(&gate, GateState::Closed);
    tokio::spawn(async move {
        sleep(ms(20)).await;
        set_gate(&gate, GateState::Open);
    });
    assert_eq!(future.await.unwrap(), (1, 200));
    assert_eq!(start.elapsed(), ms(25));
}

#[tokio::test(start_paused = true)]
async fn a_readiness_error_of_a_clone_counts_as_a_failed_attempt() {
    // The hedge's clone fails to get ready at 10ms (attempt 1 fails); the
    // primary fails at 50ms and, finishing last, is the result.
    let script = Script::new(&[(50, Then::Fail)]);
    let inner = Gated::new(script.service::<u32>());
    let gate = Arc::clone(&inner.gate);
    let mut service = layer(fixed(10)).layer(inner);
    service.ready().await.unwrap();
    let future = service.call(7);
    set_gate(&gate, GateState::Broken);
    let error = future.await.unwrap_err();
    assert_eq!(message(&error), "attempt 0 failed");
    assert_eq!(script.calls(), 1);
}

// ===== percentile delay =====

#[tokio::test(start_paused = true)]
async fn the_tracker_answers_percentiles_over_two_windows() {
    let tracker = LatencyTracker::new(ms(1_000));
    assert_eq!(tracker.percentile(0.95), None);
    for latency in 1..=100 {
        tracker.record(ms(latency));
    }
    assert_eq!(tracker.samples(), 100);
    for (p, exact) in [(0.5, 50), (0.9, 90), (0.95, 95), (0.99, 99), (1.0, 100)] {
        let value = tracker.percentile(p).unwrap();
        assert!(
            value >= ms(exact) && value.as_secs_f64() <= ms(exact).as_secs_f64() * 1.0625,
            "p{p}: {value:?}"
        );
    }

    // One window later the samples still count; two windows later they are gone.
    sleep(ms(1_000)).await;
    tracker.record(ms(500));
    assert_eq!(tracker.samples(), 101);
    sleep(ms(1_000)).await;
    assert_eq!(tracker.samples(), 1);
    assert_eq!(tracker.percentile(0.5), tracker.percentile(1.0));
}

#[tokio::test(start_paused = true)]
async fn the_percentile_delay_follows_recent_latencies() {
    let config = HedgeConfig::default().delay(HedgeDelay::Percentile {
        percentile: 0.9,
        min_samples: 10,
        window: ms(10_000),
        fallback: ms(500),
    });
    // Call 1: slow primary, hedged at the fallback delay.
    // Calls 2-21: 20ms primaries.
    // Call 22: slow primary, hedged at the p90 of the samples.
    let mut steps = vec![(1_000, Then::Ok), (10, Then::Ok)];
    steps.extend([(20, Then::Ok); 20]);
    steps.extend([(1_000, Then::Ok), (5, Then::Ok)]);
    let script = Script::new(&steps);
    let mut service = layer(config).layer(script.service::<u32>());
    let samples = |tracker: Option<&LatencyTracker>| tracker.unwrap().samples();

    assert_eq!(service.current_delay(), ms(500), "fallback before min_samples");
    let start = Instant::now();
    assert_eq!(service.ready().await.unwrap().call(7).await.unwrap(), (1, 200));
    assert_eq!(start.elapsed(), ms(510));
    // The cancelled primary was recorded with the time it had run.
    assert_eq!(samples(service.latency()), 1);
    assert!(service.latency().unwrap().percentile(1.0).unwrap() >= ms(510));

    for _ in 0..20 {
        service.ready().await.unwrap().call(7).await.unwrap();
    }
    assert_eq!(samples(service.latency()), 21);
    let delay = service.current_delay();
    assert_eq!(Some(delay), service.latency().unwrap().percentile(0.9));
    assert!(
        delay >= ms(20) && delay <= Duration::from_micros(21_250),
        "{delay:?}"
    );

    let start = Instant::now();
    assert_eq!(service.ready().await.unwrap().call(7).await.unwrap(), (23, 200));
    let elapsed = start.elapsed();
    // Hedged at the percentile delay (on the timer's millisecond grid) + 5ms.
    assert!(
        elapsed >= delay + ms(5) && elapsed <= delay + ms(6),
        "{elapsed:?}"
    );
    assert_eq!(script.calls(), 24);

    // Two windows later the samples have expired: back to the fallback.
    sleep(ms(20_000)).await;
    assert_eq!(service.current_delay(), ms(500));
}

#[tokio::test(start_paused = true)]
async fn failed_primaries_and_unsafe_requests_record_no_latency() {
    let config = HedgeConfig::default().delay(HedgeDelay::percentile(0.95));
    let script = Script::new(&[(5, Then::Fail), (5, Then::Ok), (5, Then::Ok)]);
    let mut service = Hedge::new(script.service::<http::Request<()>>(), config).unwrap();

    let get = http::Request::get("/").body(()).unwrap();
    assert_eq!(service.ready().await.unwrap().call(get).await.unwrap(), (1, 200));
    let post = http::Request::post("/").body(()).unwrap();
    assert_eq!(service.ready().await.unwrap().call(post).await.unwrap(), (2, 200));
    assert_eq!(service.latency().unwrap().samples(), 0);
}

#[tokio::test(start_paused = true)]
async fn clones_and_services_of_one_layer_share_the_tracker() {
    let shared = layer(HedgeConfig::default());
    let script = Script::new(&[(7, Then::Ok), (9, Then::Ok)]);
    let first = shared.layer(script.service::<u32>());
    let clone = first.clone();
    let second = shared.layer(script.service::<u32>());

    first.oneshot(1).await.unwrap();
    second.oneshot(2).await.unwrap();
    assert_eq!(clone.latency().unwrap().samples(), 2);
    assert_eq!(shared.latency().unwrap().samples(), 2);

    assert!(layer(fixed(10)).latency().is_none());
}

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

// ===== metrics =====

type Entry = (
    metrics_util::CompositeKey,
    Option<metrics::Unit>,
    Option<metrics::SharedString>,
    DebugValue,
);

fn counter(snapshot: &[Entry], name: &str, labels: &[(&str, &str)]) -> u64 {
    snapshot
        .iter()
        .filter(|(key, ..)| {
            let key = key.key();
            key.name() == name
                && labels
                    .iter()
                    .all(|(k, v)| key.labels().any(|l| l.key() == *k && l.value() == *v))
        })
        .map(|(.., value)| match value {
            DebugValue::Counter(n) => *n,
            other => panic!("{name} is not a counter: {other:?}"),
        })
        .sum()
}

#[test]
fn metrics_count_hedges_wins_exhaustion_and_unhedged_requests() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();

    metrics::with_local_recorder(&recorder, || {
        runtime.block_on(async {
            let script = Script::new(&[
                (100, Then::Ok), // GET: slow primary, the hedge wins
                (5, Then::Ok),
                (5, Then::Ok),   // GET: fast, no hedge
                (5, Then::Ok),   // POST: unsafe, sent once
                (5, Then::Fail), // GET: every attempt fails
                (5, Then::Fail),
            ]);
            let mut service =
                Hedge::new(script.service::<http::Request<()>>(), fixed(10).name("catalog")).unwrap();
            for method in ["GET", "GET", "POST", "GET"] {
                let request = http::Request::builder().method(method).body(()).unwrap();
                let _ = service.ready().await.unwrap().call(request).await;
            }
            assert_eq!(script.calls(), 6);
        });
    });

    let snapshot = snapshotter.snapshot().into_vec();
    let name = ("name", "catalog");
    assert_eq!(counter(&snapshot, "orch_hedge_attempts_total", &[name]), 2);
    assert_eq!(
        counter(&snapshot, "orch_hedge_wins_total", &[name, ("attempt", "1")]),
        1
    );
    assert_eq!(
        counter(&snapshot, "orch_hedge_wins_total", &[name]),
        1,
        "a call won by its primary before any hedge is not counted"
    );
    assert_eq!(counter(&snapshot, "orch_hedge_exhausted_total", &[name]), 1);
    assert_eq!(
        counter(
            &snapshot,
            "orch_hedge_unhedged_total",
            &[name, ("reason", "unsafe")]
        ),
        1
    );
}

//! What the caller gets when attempts fail, and what stops further hedges:
//! the last failure is returned when every attempt fails, a local rejection
//! or the server's pushback stops or delays the next hedge, and unsafe
//! requests are sent once, never hedged.

use std::time::Duration;

use orch_resilience::{
    Classify, ErrorClass, Hedge, HedgeLayer, HttpSafety, IDEMPOTENCY_KEY, Outcome, Pushback, ResilienceError,
    TimeoutKind, classify_fn,
};
use tokio::time::{Instant, sleep};
use tower::{Layer, Service, ServiceExt};

use super::{Reply, Script, Then, fixed, layer, message};
use crate::support::ms;

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

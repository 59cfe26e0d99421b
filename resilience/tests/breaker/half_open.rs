//! How an open breaker recovers: after `open_wait` exactly
//! `half_open_permits` trials are admitted; their outcomes close or re-open
//! it, as soon as the result is certain; dropped or cancelled trials give
//! their slot back; stale outcomes of an earlier state are ignored; the wait
//! grows with backoff and `max_half_open_wait` bounds an undecided state.

use orch_resilience::{CircuitRejection, Outcome, breaker::BreakerState};
use tokio::time::advance;
use tower::{Layer, Service, ServiceExt, service_fn};

use super::{SEC, config, poll_once, rejected_with, trip};
use crate::support::{Step, scripted};

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
async fn openings_count_every_open_but_not_forced_ones() {
    let breaker = config().half_open_permits(1).build().unwrap();
    assert_eq!(breaker.metrics().openings, 0);
    trip(&breaker);
    assert_eq!(breaker.metrics().openings, 1, "closed -> open");
    advance(10 * SEC).await;
    breaker.try_acquire().unwrap().record(Outcome::Failure);
    assert_eq!(breaker.state(), BreakerState::Open);
    assert_eq!(breaker.metrics().openings, 2, "half-open -> open");
    breaker.force_open();
    breaker.normal();
    assert_eq!(
        breaker.metrics().openings,
        2,
        "a forced open is the operator's, not a trip"
    );
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
    let (inner, _calls) = scripted::<()>([], Step::Ok(200));
    let mut svc = breaker.layer().layer(inner);
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

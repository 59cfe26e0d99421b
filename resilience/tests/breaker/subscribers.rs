//! Subscribers of a breaker's transitions: every change, in order, with
//! the verdict that made it; nothing before the subscription; a slow
//! subscriber told how many it missed.

use orch_resilience::{
    Outcome,
    breaker::{BreakerState, BreakerTransition, TransitionReason},
};
use tokio::{sync::broadcast::error::TryRecvError, time::advance};

use super::{SEC, config, record, trip};

/// The `(from, to, reason)` of each transition waiting in `receiver`.
fn drain(
    receiver: &mut tokio::sync::broadcast::Receiver<BreakerTransition>,
) -> Vec<(BreakerState, BreakerState, TransitionReason)> {
    let mut seen = Vec::new();
    while let Ok(change) = receiver.try_recv() {
        seen.push((change.from, change.to, change.reason));
    }
    seen
}

#[tokio::test(start_paused = true)]
async fn a_subscriber_hears_the_whole_cycle_in_order() {
    let breaker = config().build().unwrap();
    let mut changes = breaker.subscribe();
    record(
        &breaker,
        &[
            Outcome::Failure,
            Outcome::Failure,
            Outcome::Success,
            Outcome::Failure,
        ],
    );

    let opened = changes.try_recv().unwrap();
    assert_eq!(
        (opened.from, opened.to),
        (BreakerState::Closed, BreakerState::Open)
    );
    assert_eq!(opened.reason, TransitionReason::FailureRate);
    assert_eq!(&*opened.name, "test");
    assert_eq!(opened.calls, Some(4));
    assert_eq!(opened.failure_rate, Some(0.75));
    assert_eq!(opened.open_wait, Some(10 * SEC));

    // After the open wait, the next call makes it half-open; three good
    // trials close it.
    advance(10 * SEC).await;
    record(&breaker, &[Outcome::Success; 3]);
    assert_eq!(
        drain(&mut changes),
        [
            (
                BreakerState::Open,
                BreakerState::HalfOpen,
                TransitionReason::OpenWaitElapsed
            ),
            (
                BreakerState::HalfOpen,
                BreakerState::Closed,
                TransitionReason::TrialsPassed
            ),
        ]
    );
    assert_eq!(breaker.state(), BreakerState::Closed);
}

#[tokio::test(start_paused = true)]
async fn operator_switches_are_transitions_too() {
    let breaker = config().build().unwrap();
    let mut changes = breaker.subscribe();
    breaker.force_open();
    breaker.normal();
    breaker.disable();
    breaker.reset();
    let seen = drain(&mut changes);
    assert_eq!(
        seen.iter()
            .map(|(_, to, reason)| (*to, *reason))
            .collect::<Vec<_>>(),
        [
            (BreakerState::ForcedOpen, TransitionReason::ForcedOpen),
            (BreakerState::Closed, TransitionReason::Normal),
            (BreakerState::Disabled, TransitionReason::Disabled),
            (BreakerState::Closed, TransitionReason::Reset),
        ]
    );
    // No verdict decided these.
    breaker.force_open();
    let forced = changes.try_recv().unwrap();
    assert_eq!(
        (forced.calls, forced.failure_rate, forced.open_wait),
        (None, None, None)
    );
}

#[tokio::test(start_paused = true)]
async fn only_transitions_after_the_subscription_are_heard_by_everyone() {
    let breaker = config().build().unwrap();
    trip(&breaker);
    let mut first = breaker.subscribe();
    let mut second = breaker.clone().subscribe();
    assert_eq!(first.try_recv().unwrap_err(), TryRecvError::Empty);
    breaker.reset();
    let expected = [(BreakerState::Open, BreakerState::Closed, TransitionReason::Reset)];
    assert_eq!(drain(&mut first), expected);
    assert_eq!(drain(&mut second), expected);
}

#[tokio::test(start_paused = true)]
async fn a_subscriber_that_falls_behind_hears_how_many_it_missed() {
    let breaker = config().build().unwrap();
    let mut changes = breaker.subscribe();
    // 70 transitions, 64 kept.
    for _ in 0..35 {
        breaker.force_open();
        breaker.normal();
    }
    assert_eq!(changes.try_recv().unwrap_err(), TryRecvError::Lagged(6));
    let seen = drain(&mut changes);
    assert_eq!(seen.len(), 64);
    assert_eq!(seen.last().map(|(_, to, _)| *to), Some(BreakerState::Closed));
}

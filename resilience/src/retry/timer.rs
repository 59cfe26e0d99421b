//! A retry call's one timer, its time limits, its backoff schedule and the
//! result it keeps while the next attempt waits.
//!
//! The timer means the attempt's cutoff while an attempt runs, the delay
//! while backing off, the overall deadline otherwise. Most calls have no
//! timeout and never retry: they need none of this, so it lives in one box
//! made when first needed and such a call carries one null pointer. Kept
//! inline, the optional values were written narrow and copied wide into
//! the future, which stalls store forwarding, and each had its own drop:
//! 14.0 and then 8.2 ns against 4.0 ns a call without a budget (bare
//! 1.0 ns), `retry` group of `benches/resilience.rs`.

use std::{
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep, sleep_until};

use super::{
    backoff::ActiveBackoff,
    decision::{Cutoff, Deadline, cutoff_for},
    policy::TimeLimits,
};
use crate::deadline::deadline_after;

/// The timer of one call whose attempts end in `T` (see the module docs).
pub(super) struct CallTimer<T>(Option<Pin<Box<Parts<T>>>>);

pin_project! {
    struct Parts<T> {
        // `None` until first armed: a call whose body is read first arms
        // it at the first poll, so that `call` needs no runtime.
        #[pin]
        sleep: Option<Sleep>,
        // What the timer means while an attempt runs.
        cutoff: Option<Cutoff>,
        deadline: Option<Deadline>,
        attempt_timeout: Option<Duration>,
        // `TimeLimits::planned_attempt`.
        planned_attempt: Option<Duration>,
        // Started at the first retry.
        backoff: Option<ActiveBackoff>,
        // While the next attempt waits: the call's output if it cannot
        // start in time.
        last: Option<T>,
    }
}

impl<T> Parts<T> {
    /// The parts of a call without time limits, made at its first retry.
    fn empty() -> Self {
        Self {
            sleep: None,
            cutoff: None,
            deadline: None,
            attempt_timeout: None,
            planned_attempt: None,
            backoff: None,
            last: None,
        }
    }
}

impl<T> CallTimer<T> {
    pub(super) const NONE: Self = Self(None);

    /// The timer of a call with a timeout: its deadline and, when its first
    /// attempt `starts` now, that attempt's cutoff. The one clock read of
    /// a call that succeeds at once.
    pub(super) fn start(limits: &TimeLimits, starts: bool) -> Self {
        let now = Instant::now();
        let deadline = limits.overall_timeout.map(|after| Deadline {
            at: deadline_after(now, after),
            after,
        });
        let (sleep, cutoff) = match starts
            .then(|| cutoff_for(now, limits.attempt_timeout, deadline))
            .flatten()
        {
            Some((at, cutoff)) => (Some(sleep_until(at)), Some(cutoff)),
            None => (None, None),
        };
        Self(Some(Box::pin(Parts {
            sleep,
            cutoff,
            deadline,
            attempt_timeout: limits.attempt_timeout,
            planned_attempt: limits.planned_attempt,
            ..Parts::empty()
        })))
    }

    /// The call's overall deadline, if it has one.
    pub(super) fn deadline(&self) -> Option<Deadline> {
        self.0.as_ref()?.deadline
    }

    /// How long an attempt may take when planning against the deadline.
    pub(super) fn planned_attempt(&self) -> Option<Duration> {
        self.0.as_ref()?.planned_attempt
    }

    /// What the timer means for the attempt in flight.
    pub(super) fn cutoff(&self) -> Option<Cutoff> {
        self.0.as_ref()?.cutoff
    }

    pub(super) fn is_armed(&self) -> bool {
        self.0.as_ref().is_some_and(|parts| parts.sleep.is_some())
    }

    /// Keeps `result` as the call's output should the next attempt not
    /// start in time.
    pub(super) fn keep_last(&mut self, result: T) {
        *self.parts().project().last = Some(result);
    }

    /// The result kept by [`keep_last`](Self::keep_last), if any.
    pub(super) fn take_last(&mut self) -> Option<T> {
        self.0.as_mut()?.as_mut().project().last.take()
    }

    /// The call's backoff schedule, `None` until started.
    pub(super) fn backoff(&mut self) -> &mut Option<ActiveBackoff> {
        self.parts().project().backoff
    }

    /// Sets the timer to fire at `at`, meaning `cutoff` if an attempt runs then.
    pub(super) fn arm(&mut self, at: Instant, cutoff: Option<Cutoff>) {
        let mut parts = self.parts().project();
        match parts.sleep.as_mut().as_pin_mut() {
            Some(sleep) => sleep.reset(at),
            None => parts.sleep.set(Some(sleep_until(at))),
        }
        *parts.cutoff = cutoff;
    }

    /// Arms the cutoff of an attempt that starts now: its own timeout or
    /// the deadline, whichever comes first. Without either, the clock is
    /// not read, and a timer left from a backoff means nothing to it.
    pub(super) fn start_attempt(&mut self) {
        let Some(parts) = self.0.as_mut() else {
            return;
        };
        match (parts.attempt_timeout, parts.deadline) {
            (None, None) => *parts.as_mut().project().cutoff = None,
            (attempt_timeout, deadline) => {
                if let Some((at, cutoff)) = cutoff_for(Instant::now(), attempt_timeout, deadline) {
                    self.arm(at, Some(cutoff));
                }
            }
        }
    }

    /// `Ready` when the timer has fired, or was never armed (there is
    /// nothing to wait for).
    pub(super) fn poll(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        match self
            .0
            .as_mut()
            .and_then(|parts| parts.as_mut().project().sleep.as_pin_mut())
        {
            Some(sleep) => sleep.poll(cx),
            None => Poll::Ready(()),
        }
    }
}

// Most calls own no box: the null test is inlined into the future's drop
// and the box's drop is kept out of it. Left to the compiler, the whole
// drop was one outlined function that saved five registers before testing
// the pointer: 13 of the 148 instructions a call adds without a budget
// (callgrind, `retry` group's case of `benches/resilience.rs` in a loop).
impl<T> Drop for CallTimer<T> {
    #[inline]
    fn drop(&mut self) {
        if let Some(parts) = self.0.take() {
            drop_parts(parts);
        }
    }
}

#[inline(never)]
fn drop_parts<T>(parts: Pin<Box<Parts<T>>>) {
    drop(parts);
}

impl<T> CallTimer<T> {
    fn parts(&mut self) -> Pin<&mut Parts<T>> {
        self.0.get_or_insert_with(|| Box::pin(Parts::empty())).as_mut()
    }
}

//! What only some calls of a retry need: the timer, the overall deadline,
//! the last result and the backoff schedule.
//!
//! Most calls have no timeout and end on their first attempt; they need
//! none of this. So it lives in one box, made when first needed: at `call`
//! for a call with a deadline, or with an attempt timeout and a first
//! attempt sent at once; otherwise at the first attempt or retry that needs
//! it. The response future holds one word for it: the future of a call
//! that needs nothing stays small (every call writes and moves it), tests
//! one field to find nothing to free, and never touches the timer wheel. A
//! `Sleep` alone is larger than the rest of the future, and registering it
//! costs more than the box.

use std::{
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep, sleep_until};

use super::{backoff::ActiveBackoff, policy::Plan};
use crate::{deadline::later, error::ResilienceError};

/// The extra state of one call, made when first needed (see the module
/// docs).
pub(super) struct Extra<Res>(Option<Pin<Box<Parts<Res>>>>);

pin_project! {
    struct Parts<Res> {
        // The one timer of the call: the attempt's cut-off while calling,
        // the backoff while sleeping, the overall deadline while waiting
        // for the service or the body. `None` until first armed.
        #[pin]
        sleep: Option<Sleep>,
        // What the timer means while an attempt runs; `None` while no
        // attempt runs or the attempt has no cut-off.
        cut: Option<Cut>,
        deadline: Option<Deadline>,
        // The last result, kept while sleeping in case the next attempt
        // cannot start before the deadline.
        last: Option<Result<Res, ResilienceError>>,
        backoff: Option<ActiveBackoff>,
    }
}

/// What the timer means while an attempt runs.
#[derive(Debug, Clone, Copy)]
pub(super) enum Cut {
    Attempt(Duration),
    Overall(Duration),
}

/// The end of a call with an overall timeout, and that timeout.
#[derive(Debug, Clone, Copy)]
pub(super) struct Deadline {
    pub(super) at: Instant,
    pub(super) after: Duration,
}

impl<Res> Extra<Res> {
    /// The extra state a call starts with: none without a timeout (read
    /// from the route, so such a call never reads the clock); with one, the
    /// overall deadline and, when the first attempt starts now, its cut-off.
    #[inline(always)]
    pub(super) fn for_call(
        timed: bool,
        plan: &Plan,
        overall_timeout: Option<Duration>,
        starts: bool,
    ) -> Self {
        Self(match timed {
            true => Parts::timed(plan, overall_timeout, starts),
            false => None,
        })
    }

    /// Whether the call has no extra state: no timer, no retry so far.
    #[inline(always)]
    pub(super) fn is_none(&self) -> bool {
        self.0.is_none()
    }

    /// Frees the state of a finished call (a test inline; see [`Drop`]).
    #[inline(always)]
    pub(super) fn clear(&mut self) {
        if self.0.is_some() {
            free(self.0.take());
        }
    }

    /// The call's overall deadline, if it has one (then it has a timer).
    pub(super) fn deadline(&self) -> Option<Deadline> {
        self.0.as_ref().and_then(|parts| parts.deadline)
    }

    /// What the timer means for the attempt in flight.
    pub(super) fn cut(&self) -> Option<Cut> {
        self.0.as_ref().and_then(|parts| parts.cut)
    }

    /// Sets the timer to fire at `at`, meaning `cut` if an attempt runs then.
    pub(super) fn arm(&mut self, at: Instant, cut: Option<Cut>) {
        let mut parts = self.parts().project();
        match parts.sleep.as_mut().as_pin_mut() {
            Some(sleep) => sleep.reset(at),
            None => parts.sleep.set(Some(sleep_until(at))),
        }
        *parts.cut = cut;
    }

    /// Whether the timer has been armed.
    pub(super) fn is_armed(&self) -> bool {
        self.0.as_ref().is_some_and(|parts| parts.sleep.is_some())
    }

    /// Starts an attempt with no cut-off: a timer left from a backoff
    /// means nothing to it.
    pub(super) fn uncut(&mut self) {
        if let Some(parts) = self.0.as_mut() {
            *parts.as_mut().project().cut = None;
        }
    }

    /// Polls the timer: `Ready` when it has fired, or when it was never
    /// armed (there is nothing to wait for).
    pub(super) fn poll_timer(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        match self
            .0
            .as_mut()
            .and_then(|parts| parts.as_mut().project().sleep.as_pin_mut())
        {
            Some(sleep) => sleep.poll(cx),
            None => Poll::Ready(()),
        }
    }

    /// Keeps `result` while the next attempt waits.
    pub(super) fn keep_last(&mut self, result: Result<Res, ResilienceError>) {
        *self.parts().project().last = Some(result);
    }

    /// The result kept by [`keep_last`](Self::keep_last), taken.
    pub(super) fn take_last(&mut self) -> Option<Result<Res, ResilienceError>> {
        self.0
            .as_mut()
            .and_then(|parts| parts.as_mut().project().last.take())
    }

    /// The call's backoff schedule, started by `start` on first use.
    pub(super) fn backoff(&mut self, start: impl FnOnce() -> ActiveBackoff) -> &mut ActiveBackoff {
        self.parts().project().backoff.get_or_insert_with(start)
    }

    /// Forgets the backoff schedule, so the next one starts over.
    pub(super) fn restart_backoff(&mut self) {
        if let Some(parts) = self.0.as_mut() {
            *parts.as_mut().project().backoff = None;
        }
    }

    /// The parts, made now if the call has none yet.
    fn parts(&mut self) -> Pin<&mut Parts<Res>> {
        self.0
            .get_or_insert_with(|| Parts::pinned(None, None, None))
            .as_mut()
    }
}

impl<Res> Drop for Extra<Res> {
    // A test inline and the freeing out of line: with the box's own drop
    // glue, the compiler made it (and the future's) an out-of-line call,
    // paid by every call that needed no box.
    #[inline(always)]
    fn drop(&mut self) {
        self.clear();
    }
}

// Tested before it is taken (in `clear`): `take` writes `None` back even
// when there is nothing to take, a store every call would pay.
#[cold]
#[inline(never)]
fn free<T>(value: T) {
    drop(value);
}

impl<Res> Parts<Res> {
    /// The parts of a call with a timeout, from the moment it is made.
    #[inline(never)]
    fn timed(plan: &Plan, overall_timeout: Option<Duration>, starts: bool) -> Option<Pin<Box<Self>>> {
        let now = Instant::now();
        let deadline = overall_timeout.map(|after| Deadline {
            at: later(now, after),
            after,
        });
        match starts {
            true => cut_for(now, plan.attempt_timeout, deadline)
                .map(|(at, cut)| Self::pinned(Some(sleep_until(at)), Some(cut), deadline)),
            // A body is read first: the timer is armed at the first poll,
            // as before the box existed, so `call` needs no runtime.
            false => deadline.map(|deadline| Self::pinned(None, None, Some(deadline))),
        }
    }

    fn pinned(sleep: Option<Sleep>, cut: Option<Cut>, deadline: Option<Deadline>) -> Pin<Box<Self>> {
        Box::pin(Self {
            sleep,
            cut,
            deadline,
            last: None,
            backoff: None,
        })
    }
}

/// When the timer of an attempt starting at `now` fires, and what that
/// means: the attempt's own cut-off, or the overall deadline when that
/// comes first.
pub(super) fn cut_for(
    now: Instant,
    attempt_timeout: Option<Duration>,
    deadline: Option<Deadline>,
) -> Option<(Instant, Cut)> {
    match (attempt_timeout, deadline) {
        (Some(limit), deadline) => match (now.checked_add(limit), deadline) {
            (Some(end), Some(d)) if end <= d.at => Some((end, Cut::Attempt(limit))),
            // Only the first attempt, or one delayed by the service's
            // readiness, can reach here: later attempts start only when
            // they fit.
            (_, Some(d)) => Some((d.at, Cut::Overall(d.after))),
            (Some(end), None) => Some((end, Cut::Attempt(limit))),
            (None, None) => None,
        },
        (None, Some(d)) => Some((d.at, Cut::Overall(d.after))),
        (None, None) => None,
    }
}

/// Whether an attempt started after `delay` from `now` can finish before
/// `deadline`: with an attempt timeout the whole attempt must fit; without
/// one, it must at least start before the deadline.
pub(super) fn fits(
    now: Instant,
    delay: Duration,
    attempt_timeout: Option<Duration>,
    deadline: Instant,
) -> bool {
    let Some(start) = now.checked_add(delay) else {
        return false;
    };
    match attempt_timeout {
        Some(limit) => start.checked_add(limit).is_some_and(|end| end <= deadline),
        None => start < deadline,
    }
}

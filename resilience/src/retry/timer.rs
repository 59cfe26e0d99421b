//! A retry call's one timer, its deadline and its backoff schedule.
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
};

use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep, sleep_until};

use super::{
    backoff::ActiveBackoff,
    decision::{Cutoff, Deadline, cutoff_for},
    policy::Settings,
};
use crate::deadline::deadline_after;

/// The timer of one call (see the module docs).
pub(super) struct CallTimer(Option<Pin<Box<Parts>>>);

pin_project! {
    #[derive(Default)]
    struct Parts {
        // `None` until first armed: a call whose body is read first arms
        // it at the first poll, so that `call` needs no runtime.
        #[pin]
        sleep: Option<Sleep>,
        // What the timer means while an attempt runs.
        cutoff: Option<Cutoff>,
        deadline: Option<Deadline>,
        // Started at the first retry.
        backoff: Option<ActiveBackoff>,
    }
}

impl CallTimer {
    pub(super) const NONE: Self = Self(None);

    /// The timer of a call with a timeout: its deadline and, when its first
    /// attempt `starts` now, that attempt's cutoff. The one clock read of
    /// a call that succeeds at once.
    #[inline(never)]
    pub(super) fn start(settings: &Settings, starts: bool) -> Self {
        let now = Instant::now();
        let deadline = settings.overall_timeout.map(|after| Deadline {
            at: deadline_after(now, after),
            after,
        });
        let (sleep, cutoff) = match starts
            .then(|| cutoff_for(now, settings.attempt_timeout, deadline))
            .flatten()
        {
            Some((at, cutoff)) => (Some(sleep_until(at)), Some(cutoff)),
            None => (None, None),
        };
        Self(Some(Box::pin(Parts {
            sleep,
            cutoff,
            deadline,
            ..Parts::default()
        })))
    }

    /// The call's overall deadline, if it has one.
    pub(super) fn deadline(&self) -> Option<Deadline> {
        self.0.as_ref()?.deadline
    }

    /// What the timer means for the attempt in flight.
    pub(super) fn cutoff(&self) -> Option<Cutoff> {
        self.0.as_ref()?.cutoff
    }

    pub(super) fn is_armed(&self) -> bool {
        self.0.as_ref().is_some_and(|parts| parts.sleep.is_some())
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

    /// Starts an attempt without a cutoff: a timer left from a backoff
    /// means nothing to it.
    pub(super) fn uncut(&mut self) {
        if let Some(parts) = self.0.as_mut() {
            *parts.as_mut().project().cutoff = None;
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
impl Drop for CallTimer {
    #[inline]
    fn drop(&mut self) {
        if let Some(parts) = self.0.take() {
            drop_parts(parts);
        }
    }
}

#[inline(never)]
fn drop_parts(parts: Pin<Box<Parts>>) {
    drop(parts);
}

impl CallTimer {
    fn parts(&mut self) -> Pin<&mut Parts> {
        self.0.get_or_insert_with(|| Box::pin(Parts::default())).as_mut()
    }
}

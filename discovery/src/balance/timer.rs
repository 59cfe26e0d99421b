//! A reusable timer for the balancer's deadlines (fail-fast, reconnect
//! backoff, passive health), so arming one again does not allocate.

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll},
};

use tokio::time::{Instant, Sleep};

/// A timer allocated on first use and reused after: background work and
/// fail-fast arm theirs again and again, and a boxed `Sleep` per arm would
/// allocate each time.
#[derive(Default)]
pub(crate) struct Timer(Option<Pin<Box<Sleep>>>);

impl Timer {
    /// Polls the timer for `deadline`. It is reset only when the deadline
    /// moved: a reset re-registers with the time driver, and polling an
    /// unchanged deadline (one that already passed included) gives the same
    /// answer without it.
    pub(crate) fn poll_until(&mut self, deadline: Instant, cx: &mut Context<'_>) -> Poll<()> {
        let timer = self
            .0
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if timer.deadline() != deadline {
            timer.as_mut().reset(deadline);
        }
        timer.as_mut().poll(cx)
    }
}

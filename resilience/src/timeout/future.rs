//! The response future of [`Timeout`](super::Timeout).

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use pin_project_lite::pin_project;
use tokio::time::Sleep;

use super::limit::Limit;
use crate::error::{BoxError, ResilienceError, TimeoutKind};

pin_project! {
    /// Resolves to the inner response, or to [`ResilienceError::Timeout`] when
    /// the limit passes first.
    ///
    /// Dropping it drops the inner future (cancelling the call) and the timer.
    #[derive(Debug)]
    pub struct ResponseFuture<F> {
        #[pin]
        response: F,
        #[pin]
        sleep: Sleep,
        limit: Limit,
    }
}

impl<F> ResponseFuture<F> {
    #[inline]
    pub(crate) fn new(response: F, after: Duration, limit: Limit) -> Self {
        Self {
            response,
            sleep: tokio::time::sleep(after),
            limit,
        }
    }
}

impl<F, T, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Output = Result<T, ResilienceError>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();

        // The response first: an answer that is ready in the same poll as the
        // deadline is delivered, not thrown away.
        if let Poll::Ready(result) = this.response.poll(cx) {
            return Poll::Ready(result.map_err(ResilienceError::from_inner));
        }
        if this.sleep.poll(cx).is_pending() {
            return Poll::Pending;
        }

        Poll::Ready(Err(timed_out(*this.limit)))
    }
}

/// Reports a timeout.
fn timed_out(limit: Limit) -> ResilienceError {
    let (label, kind, after) = limit.get();
    let name = label.name();
    tracing::debug!(name = %name, %kind, ?after, "call timed out");
    metrics::counter!(
        "orch_timeout_total",
        "name" => name,
        "kind" => kind_label(kind),
    )
    .increment(1);
    ResilienceError::Timeout { kind, after }
}

/// The metric label of a kind.
fn kind_label(kind: TimeoutKind) -> &'static str {
    match kind {
        TimeoutKind::Attempt => "attempt",
        TimeoutKind::Overall => "overall",
    }
}

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll, ready},
};

use pin_project_lite::pin_project;

use super::CallPermit;
use crate::{
    classify::Classify,
    error::{BoxError, ResilienceError},
};

pin_project! {
    /// The response future of [`CircuitBreakerService`](super::CircuitBreakerService):
    /// either the inner call, whose classified outcome it records when it
    /// completes, or an immediate rejection.
    ///
    /// Dropping it before completion records nothing (and gives a half-open
    /// trial slot back).
    ///
    /// # Panics
    ///
    /// When polled again after it completed with a rejection.
    pub struct ResponseFuture<F, C> {
        #[pin]
        kind: Kind<F, C>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F, C> {
        Called {
            #[pin]
            future: F,
            permit: Option<CallPermit>,
            classifier: C,
        },
        // Boxed: dropping an error in place would hand the future's address
        // to the error's drop glue, which keeps every future in memory.
        Rejected {
            error: Option<Box<ResilienceError>>,
        },
    }
}

impl<F, C> ResponseFuture<F, C> {
    #[inline]
    pub(super) fn called(future: F, permit: CallPermit, classifier: C) -> Self {
        Self {
            kind: Kind::Called {
                future,
                permit: Some(permit),
                classifier,
            },
        }
    }

    #[cold]
    pub(super) fn rejected(error: Box<ResilienceError>) -> Self {
        Self {
            kind: Kind::Rejected { error: Some(error) },
        }
    }
}

impl<F, C, T, E> Future for ResponseFuture<F, C>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
    C: Classify<T, ResilienceError>,
{
    type Output = Result<T, ResilienceError>;

    // Inlined, so that the caller's `Poll<Result<T, ResilienceError>>` need
    // not go through memory; what is not the admitted path is out of line.
    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Called {
                future,
                permit,
                classifier,
            } => {
                let result = ready!(future.poll(cx)).map_err(ResilienceError::from_inner);
                if let Some(permit) = permit.take() {
                    permit.record(classifier.classify(result.as_ref()));
                }
                Poll::Ready(result)
            }
            KindProj::Rejected { error } => match error.take() {
                Some(error) => Poll::Ready(Err(*error)),
                None => polled_after_completion(),
            },
        }
    }
}

#[cold]
#[inline(never)]
fn polled_after_completion() -> ! {
    panic!("circuit breaker ResponseFuture polled after completion")
}

impl<F, C> std::fmt::Debug for ResponseFuture<F, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = match &self.kind {
            Kind::Called { .. } => "called",
            Kind::Rejected { .. } => "rejected",
        };
        f.debug_struct("ResponseFuture").field("state", &state).finish()
    }
}

//! The response future of [`CircuitBreakerService`](super::CircuitBreakerService).

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll, ready},
};

use pin_project_lite::pin_project;

use super::OwnedBreakerPermit;
use crate::{
    classify::Classify,
    error::{BoxError, ResilienceError},
};

pin_project! {
    /// The response future of [`CircuitBreakerService`](super::CircuitBreakerService):
    /// either the inner call, whose classified outcome it records on its
    /// permit when it completes, or an immediate rejection.
    ///
    /// Dropping it before completion records nothing (and gives a half-open
    /// trial slot back).
    ///
    /// # Panics
    ///
    /// When polled again after it completed with a rejection.
    pub struct ResponseFuture<F, C> {
        #[pin]
        state: State<F, C>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F, C> {
        /// The inner service was called; the permit holds the breaker.
        Called {
            #[pin]
            future: F,
            permit: OwnedBreakerPermit,
            classifier: C,
        },
        /// The breaker rejected the call, which fails at the first poll.
        Rejected {
            error: Option<ResilienceError>,
        },
    }
}

impl<F, C> ResponseFuture<F, C> {
    pub(super) fn called(future: F, permit: OwnedBreakerPermit, classifier: C) -> Self {
        Self {
            state: State::Called {
                future,
                permit,
                classifier,
            },
        }
    }

    pub(super) fn rejected(error: ResilienceError) -> Self {
        Self {
            state: State::Rejected { error: Some(error) },
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

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Called {
                future,
                permit,
                classifier,
            } => {
                let result = ready!(future.poll(cx)).map_err(ResilienceError::from_inner);
                permit.record_once(classifier.classify(result.as_ref()));
                Poll::Ready(result)
            }
            StateProj::Rejected { error } => match error.take() {
                Some(error) => Poll::Ready(Err(error)),
                None => panic!("circuit breaker ResponseFuture polled after completion"),
            },
        }
    }
}

impl<F, C> std::fmt::Debug for ResponseFuture<F, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = match &self.state {
            State::Called { .. } => "called",
            State::Rejected { .. } => "rejected",
        };
        f.debug_struct("ResponseFuture").field("state", &state).finish()
    }
}

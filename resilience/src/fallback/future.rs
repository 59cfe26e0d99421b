//! The response future of [`Fallback`](super::Fallback).

use std::{
    fmt,
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, ready},
};

use pin_project_lite::pin_project;

use super::{FallbackFn, Policy};
use crate::error::{BoxError, ResilienceError};

pin_project! {
    /// Resolves to the inner response, or, for an error of a chosen class, to
    /// the fallback's result.
    pub struct ResponseFuture<Fut, F, FF> {
        #[pin]
        state: State<Fut, FF>,
        policy: Arc<Policy<F>>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<Fut, FF> {
        /// Waiting for the inner service.
        Primary {
            #[pin]
            response: Fut,
        },
        /// The inner call failed with a chosen class; waiting for the fallback.
        Fallback {
            #[pin]
            fallback: FF,
        },
    }
}

impl<Fut, F, FF> ResponseFuture<Fut, F, FF> {
    pub(crate) fn new(response: Fut, policy: Arc<Policy<F>>) -> Self {
        Self {
            state: State::Primary { response },
            policy,
        }
    }
}

impl<Fut, F, T, E> Future for ResponseFuture<Fut, F, F::Future>
where
    Fut: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
    F: FallbackFn<T>,
{
    type Output = Result<T, ResilienceError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Primary { response } => {
                    let error = match ready!(response.poll(cx)) {
                        Ok(response) => return Poll::Ready(Ok(response)),
                        Err(error) => ResilienceError::from_inner(error),
                    };
                    let class = error.class();
                    if !this.policy.on.contains(class) {
                        return Poll::Ready(Err(error));
                    }
                    this.policy.record(class, &error);
                    let fallback = this.policy.fallback.fallback(error);
                    this.state.set(State::Fallback { fallback });
                }
                StateProj::Fallback { fallback } => return fallback.poll(cx),
            }
        }
    }
}

impl<Fut, F, FF> fmt::Debug for ResponseFuture<Fut, F, FF> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::Primary { .. } => "primary",
            State::Fallback { .. } => "fallback",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .field("name", &self.policy.name)
            .finish()
    }
}

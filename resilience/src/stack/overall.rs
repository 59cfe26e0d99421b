//! The overall-timeout slot, which steps aside when retry enforces the deadline.
//!
//! With retry enabled, the retry layer already holds the overall deadline (it
//! needs it to plan attempts) and arms its own timer for it; a timeout layer
//! above it would arm a second timer for the same instant on every call.
//! The slot's type cannot depend on whether retry is on, so the choice is
//! made when the stack is built.

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll},
};

use tower_layer::Layer;
use tower_service::Service;

use crate::{BoxError, ResilienceError, TimeoutLayer, timeout::Timeout};

/// The overall timeout layer, or nothing when retry holds the deadline.
#[derive(Debug, Clone)]
pub struct OverallTimeoutLayer(pub(super) Option<TimeoutLayer>);

impl<S> Layer<S> for OverallTimeoutLayer {
    type Service = OverallTimeoutService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        match &self.0 {
            Some(timeout) => OverallTimeoutService::Timed(timeout.layer(inner)),
            None => OverallTimeoutService::Untimed(inner),
        }
    }
}

/// The service of [`OverallTimeoutLayer`].
#[derive(Debug, Clone)]
pub enum OverallTimeoutService<S> {
    /// A timeout layer bounds the call.
    Timed(Timeout<S>),
    /// The retry layer below bounds the call.
    Untimed(S),
}

impl<S, Req> Service<Req> for OverallTimeoutService<S>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = ResilienceError;
    type Future = future::OverallTimeoutFuture<<Timeout<S> as Service<Req>>::Future, S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), ResilienceError>> {
        match self {
            Self::Timed(timed) => timed.poll_ready(cx),
            Self::Untimed(inner) => inner.poll_ready(cx).map_err(ResilienceError::from_inner),
        }
    }

    #[inline]
    fn call(&mut self, request: Req) -> Self::Future {
        match self {
            Self::Timed(timed) => future::OverallTimeoutFuture::Timed {
                future: timed.call(request),
            },
            Self::Untimed(inner) => future::OverallTimeoutFuture::Untimed {
                future: inner.call(request),
            },
        }
    }
}

pub mod future {
    //! The response future of [`OverallTimeoutService`](super::OverallTimeoutService).

    // pin-project-lite cannot carry docs on enum variant fields.
    #![allow(missing_docs)]

    pin_project_lite::pin_project! {
        /// The response future of [`OverallTimeoutService`](super::OverallTimeoutService).
        #[project = OverallTimeoutProj]
        pub enum OverallTimeoutFuture<T, U> {
            /// Bounded by the timeout layer.
            Timed { #[pin] future: T },
            /// Bounded by the retry layer below.
            Untimed { #[pin] future: U },
        }
    }

    impl<T, U, R, E> super::Future for OverallTimeoutFuture<T, U>
    where
        T: super::Future<Output = Result<R, super::ResilienceError>>,
        U: super::Future<Output = Result<R, E>>,
        E: Into<super::BoxError>,
    {
        type Output = Result<R, super::ResilienceError>;

        #[inline]
        fn poll(self: super::Pin<&mut Self>, cx: &mut super::Context<'_>) -> super::Poll<Self::Output> {
            match self.project() {
                OverallTimeoutProj::Timed { future } => future.poll(cx),
                OverallTimeoutProj::Untimed { future } => {
                    future.poll(cx).map_err(super::ResilienceError::from_inner)
                }
            }
        }
    }
}

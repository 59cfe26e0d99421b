//! A layer that a stack enables or not at run time.
//!
//! A stack has one shape whatever the builder (or a
//! [`StackConfig`](super::StackConfig), read only when the service starts)
//! enabled. The breaker, rate limit, bulkhead and attempt timeout are each
//! an [`OptionalLayer`]: its service either runs the layer or calls the
//! inner service directly, one branch per call, and the stack's type does
//! not depend on which of them are on. (So is the overall timeout of a
//! stack that sends once, see [`SendOnce`](super::SendOnce).)

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll},
};

use tower_layer::Layer;
use tower_service::Service;

use crate::{BoxError, ResilienceError};

/// A layer present or absent at run time (tower's `option_layer`, with this
/// crate's error type on both branches).
#[derive(Debug, Clone)]
pub struct OptionalLayer<L>(pub(super) Option<L>);

impl<L> OptionalLayer<L> {
    /// The layer, when enabled.
    pub fn get_ref(&self) -> Option<&L> {
        self.0.as_ref()
    }
}

impl<S, L: Layer<S>> Layer<S> for OptionalLayer<L> {
    type Service = Optional<L::Service, S>;

    fn layer(&self, inner: S) -> Self::Service {
        match &self.0 {
            Some(layer) => Optional::On(layer.layer(inner)),
            None => Optional::Off(inner),
        }
    }
}

/// The service of an [`OptionalLayer`].
#[derive(Debug, Clone)]
pub enum Optional<A, S> {
    /// The layer is enabled.
    On(A),
    /// The layer is not: calls go straight to the inner service.
    Off(S),
}

impl<A, S, Req> Service<Req> for Optional<A, S>
where
    A: Service<Req, Response = S::Response>,
    A::Error: Into<BoxError>,
    S: Service<Req>,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = ResilienceError;
    type Future = future::OptionalFuture<A::Future, S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), ResilienceError>> {
        match self {
            Self::On(layer) => layer.poll_ready(cx).map_err(ResilienceError::from_inner),
            Self::Off(inner) => inner.poll_ready(cx).map_err(ResilienceError::from_inner),
        }
    }

    #[inline]
    fn call(&mut self, request: Req) -> Self::Future {
        match self {
            Self::On(layer) => future::OptionalFuture::On {
                future: layer.call(request),
            },
            Self::Off(inner) => future::OptionalFuture::Off {
                future: inner.call(request),
            },
        }
    }
}

pub mod future {
    //! The response future of [`Optional`](super::Optional).

    // pin-project-lite cannot carry docs on enum variant fields.
    #![allow(missing_docs)]

    pin_project_lite::pin_project! {
        /// The response future of [`Optional`](super::Optional).
        #[project = OptionalProj]
        pub enum OptionalFuture<A, S> {
            /// Through the layer.
            On { #[pin] future: A },
            /// Straight to the inner service.
            Off { #[pin] future: S },
        }
    }

    impl<A, S, R, E1, E2> super::Future for OptionalFuture<A, S>
    where
        A: super::Future<Output = Result<R, E1>>,
        S: super::Future<Output = Result<R, E2>>,
        E1: Into<super::BoxError>,
        E2: Into<super::BoxError>,
    {
        type Output = Result<R, super::ResilienceError>;

        #[inline]
        fn poll(self: super::Pin<&mut Self>, cx: &mut super::Context<'_>) -> super::Poll<Self::Output> {
            match self.project() {
                OptionalProj::On { future } => future.poll(cx).map_err(super::ResilienceError::from_inner),
                OptionalProj::Off { future } => future.poll(cx).map_err(super::ResilienceError::from_inner),
            }
        }
    }
}

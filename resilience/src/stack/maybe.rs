//! A layer that may be switched off without changing the stack's shape.
//!
//! The composition builder assembles every layer in one fixed order, but a
//! user enables only some of them. `tower::util::Either` would do, but it
//! turns errors into `BoxError`; this keeps [`ResilienceError`] and costs one
//! branch per call.

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll},
};

use tower_layer::Layer;
use tower_service::Service;

use crate::{BoxError, ResilienceError};

/// A layer that is applied when present and is a pass-through when absent.
#[derive(Debug, Clone)]
pub struct MaybeLayer<L>(pub(crate) Option<L>);

impl<L, S> Layer<S> for MaybeLayer<L>
where
    L: Layer<S>,
{
    type Service = Maybe<L::Service, S>;

    fn layer(&self, inner: S) -> Self::Service {
        match &self.0 {
            Some(layer) => Maybe::On(layer.layer(inner)),
            None => Maybe::Off(inner),
        }
    }
}

/// The service of a [`MaybeLayer`]: the wrapped service, or the inner one as it is.
#[derive(Debug, Clone)]
pub enum Maybe<A, B> {
    /// The layer is enabled.
    On(A),
    /// The layer is disabled; calls go straight to the inner service.
    Off(B),
}

impl<A, B, Req> Service<Req> for Maybe<A, B>
where
    A: Service<Req>,
    A::Error: Into<BoxError>,
    B: Service<Req, Response = A::Response>,
    B::Error: Into<BoxError>,
{
    type Response = A::Response;
    type Error = ResilienceError;
    type Future = MaybeFuture<A::Future, B::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        match self {
            Maybe::On(a) => a.poll_ready(cx).map_err(ResilienceError::from_inner),
            Maybe::Off(b) => b.poll_ready(cx).map_err(ResilienceError::from_inner),
        }
    }

    #[inline]
    fn call(&mut self, req: Req) -> Self::Future {
        match self {
            Maybe::On(a) => MaybeFuture::On { future: a.call(req) },
            Maybe::Off(b) => MaybeFuture::Off { future: b.call(req) },
        }
    }
}

pub use future::MaybeFuture;
use future::MaybeFutureProj;

mod future {
    // The variants are documented; pin-project-lite cannot carry docs on
    // their fields.
    #![allow(missing_docs)]

    pin_project_lite::pin_project! {
        /// The response future of [`Maybe`](super::Maybe).
        #[project = MaybeFutureProj]
        pub enum MaybeFuture<FA, FB> {
            /// The enabled layer's future.
            On { #[pin] future: FA },
            /// The inner service's future.
            Off { #[pin] future: FB },
        }
    }
}

impl<FA, FB, T, EA, EB> Future for MaybeFuture<FA, FB>
where
    FA: Future<Output = Result<T, EA>>,
    FB: Future<Output = Result<T, EB>>,
    EA: Into<BoxError>,
    EB: Into<BoxError>,
{
    type Output = Result<T, ResilienceError>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            MaybeFutureProj::On { future } => future.poll(cx).map_err(ResilienceError::from_inner),
            MaybeFutureProj::Off { future } => future.poll(cx).map_err(ResilienceError::from_inner),
        }
    }
}

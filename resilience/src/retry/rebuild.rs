//! Replaying streaming bodies and handing the service its own body type back.
//!
//! [`BufferBodies`] gives the service below the retry layer
//! `http::Request<ReplayBody<B>>`. A client that takes one body type (tonic's
//! `Channel` takes `http::Request<tonic::body::Body>`, a hyper client built
//! for `BoxBody` takes that) would need a conversion between the two;
//! [`RebuildBodies`] makes it, so the stack's request type and its inner
//! service's are the same.

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll, ready},
};

use bytes::Bytes;
use http_body::Body;

use super::{
    BufferBodies, BufferRequest, ReplayBody, ReplaySource,
    replay::{Prepared, Replay},
};
use crate::error::{BoxError, NotRetriedReason};

/// A request body type that can be made from a [`ReplayBody`] of itself, so
/// that [`RebuildBodies`] can buffer it and hand the same type on.
///
/// Implemented for the boxed bodies of `http-body-util`
/// ([`BoxBody`](http_body_util::combinators::BoxBody) and
/// [`UnsyncBoxBody`](http_body_util::combinators::UnsyncBoxBody)) and, with
/// the `tonic` feature, for `tonic::body::Body`. A body that cannot be made
/// from another (hyper's `Incoming`) is buffered with
/// [`ResilienceBuilder::buffer_bodies_raw`](crate::ResilienceBuilder::buffer_bodies_raw)
/// instead: the inner service then takes `http::Request<ReplayBody<B>>`.
///
/// ```
/// use bytes::Bytes;
/// use http_body_util::{BodyExt, Full, combinators::UnsyncBoxBody};
/// use orch_resilience::{ReplayBody, retry::RebuildBody};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let body: UnsyncBoxBody<Bytes, std::convert::Infallible> = Full::new(Bytes::from("hi")).boxed_unsync();
/// let rebuilt = UnsyncBoxBody::rebuild(ReplayBody::new(body));
/// assert_eq!(rebuilt.collect().await.unwrap().to_bytes(), "hi");
/// # }
/// ```
///
/// A body of another type is named by the compiler, with the way out:
///
/// ```compile_fail,E0277
/// use bytes::Bytes;
/// use http_body_util::Full;
/// use orch_resilience::{ResilienceLayer, RetryConfig};
/// use tower::{Layer, Service, service_fn};
///
/// fn check<S: Service<http::Request<Full<Bytes>>>>(_: S) {}
/// let stack = ResilienceLayer::http().retry(RetryConfig::default()).buffer_bodies(1024).build().unwrap();
/// // error: request bodies of type `Full<Bytes>` cannot be rebuilt after buffering
/// check(stack.layer(service_fn(|_: http::Request<Full<Bytes>>| async {
///     Ok::<_, std::io::Error>(http::Response::new(()))
/// })));
/// ```
#[diagnostic::on_unimplemented(
    message = "request bodies of type `{Self}` cannot be rebuilt after buffering",
    label = "`.buffer_bodies(..)` hands the inner service this body type back, and cannot make one",
    note = "`.buffer_bodies(limit)` supports `tonic::body::Body` (feature `tonic` of orch-resilience), `BoxBody` and `UnsyncBoxBody`",
    note = "for any other body, call `.buffer_bodies_raw(limit)`: the inner service then takes `http::Request<ReplayBody<{Self}>>`"
)]
pub trait RebuildBody: Body + Sized {
    /// The body of one attempt, as this type.
    fn rebuild(body: ReplayBody<Self>) -> Self;
}

impl<E> RebuildBody for http_body_util::combinators::BoxBody<Bytes, E>
where
    E: 'static,
{
    fn rebuild(body: ReplayBody<Self>) -> Self {
        Self::new(body)
    }
}

impl<E> RebuildBody for http_body_util::combinators::UnsyncBoxBody<Bytes, E>
where
    E: 'static,
{
    fn rebuild(body: ReplayBody<Self>) -> Self {
        Self::new(body)
    }
}

#[cfg(feature = "tonic")]
impl RebuildBody for tonic::body::Body {
    fn rebuild(body: ReplayBody<Self>) -> Self {
        // `Body::new` boxes any body; a `ReplayBody` of a tonic body is one.
        tonic::body::Body::new(body)
    }
}

/// Replays requests as [`BufferBodies`] does, then rebuilds each attempt's
/// body into the caller's body type `B` ([`RebuildBody`]): the service below
/// receives `http::Request<B>`, the type the caller sent.
///
/// Set by [`ResilienceBuilder::buffer_bodies`](crate::ResilienceBuilder::buffer_bodies),
/// or on a bare retry layer with `RetryLayer::replay(RebuildBodies::new(limit))`.
/// The limit, the read-ahead and the `BodyTooLarge` outcome are
/// [`BufferBodies`]'.
#[derive(Debug, Clone, Copy)]
pub struct RebuildBodies {
    buffer: BufferBodies,
}

impl RebuildBodies {
    /// Buffers bodies of up to `max_bytes`.
    pub const fn new(max_bytes: u64) -> Self {
        Self {
            buffer: BufferBodies::new(max_bytes),
        }
    }

    /// The largest body that is buffered.
    pub const fn max_bytes(&self) -> u64 {
        self.buffer.max_bytes()
    }
}

impl<B> Replay<http::Request<B>> for RebuildBodies
where
    B: RebuildBody,
    B::Error: Into<BoxError>,
{
    type Request = http::Request<B>;
    type Source = ReplaySource;
    type Prepare = RebuildRequest<B>;

    fn prepare(
        &self,
        request: http::Request<B>,
        replayable: bool,
    ) -> Prepared<http::Request<B>, ReplaySource, RebuildRequest<B>> {
        match self.buffer.prepare(request, replayable) {
            Prepared::Ready(request, source) => Prepared::Ready(request.map(B::rebuild), source),
            Prepared::Reading(reading) => Prepared::Reading(RebuildRequest { reading }),
        }
    }

    fn replay(&self, source: &ReplaySource) -> Result<http::Request<B>, NotRetriedReason> {
        Replay::<http::Request<B>>::replay(&self.buffer, source).map(|request| request.map(B::rebuild))
    }

    // Nothing was wrapped: the caller's body goes on as it is.
    fn once(&self, request: http::Request<B>) -> http::Request<B> {
        request
    }
}

pin_project_lite::pin_project! {
    /// Reads a request body for [`RebuildBodies`]; resolves to the first
    /// attempt's request, its body rebuilt, and the source of later ones.
    #[derive(Debug)]
    pub struct RebuildRequest<B> {
        #[pin]
        reading: BufferRequest<B>,
    }
}

impl<B> Future for RebuildRequest<B>
where
    B: RebuildBody,
    B::Error: Into<BoxError>,
{
    type Output = Result<(http::Request<B>, Option<ReplaySource>), BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let (request, source) = ready!(self.project().reading.poll(cx))?;
        Poll::Ready(Ok((request.map(B::rebuild), source)))
    }
}

//! Hedging requests whose bodies are streams.
//!
//! Hedging sends copies of a request, so it needs `Clone` requests; an
//! `http::Request` with a tonic or boxed body is not one. Above the hedge,
//! [`HedgeBuffer`] decides safety (and adds an idempotency key) on the
//! caller's request, then reads a safe request's body into memory up to the
//! stack's buffer limit, as retry does ([`BufferBodies`]). The hedge sees
//! [`HedgeBody`]s: a buffered one is copied for each hedge; one that was not
//! buffered (an unsafe request, or a body over the limit) is sent once and
//! never hedged. Below the hedge, [`UnwrapBody`] rebuilds each attempt's
//! body into the caller's type ([`RebuildBody`]), so the breaker and the
//! client see the requests they would see without hedging.

use std::{
    fmt,
    future::Future,
    mem,
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll, ready},
};

use tower_layer::Layer;
use tower_service::Service;

use crate::{
    BoxError, HedgeLayer, RequestSafety, ResilienceError,
    hedge::Hedge,
    retry::{BufferBodies, BufferRequest, Prepared, RebuildBody, Replay, ReplayBody},
};

/// The body of a request inside a hedge over buffered bodies: a buffered
/// body (copied for each hedge), or one that can be sent once.
pub struct HedgeBody<B> {
    kind: Kind<B>,
}

enum Kind<B> {
    Buffered(ReplayBody<B>),
    // Shared so that the request stays `Clone`, as the hedge's types ask;
    // `BufferedOnly` keeps the hedge from ever sending such a request twice.
    Once(Arc<Mutex<Option<ReplayBody<B>>>>),
}

impl<B> HedgeBody<B> {
    fn new(body: ReplayBody<B>) -> Self {
        let kind = if body.is_buffered() {
            Kind::Buffered(body)
        } else {
            Kind::Once(Arc::new(Mutex::new(Some(body))))
        };
        Self { kind }
    }

    /// True when the body was buffered and may be sent more than once.
    pub fn is_buffered(&self) -> bool {
        matches!(self.kind, Kind::Buffered(_))
    }

    /// The body to send; `None` when a body that could be sent once already was.
    fn take(self) -> Option<ReplayBody<B>> {
        match self.kind {
            Kind::Buffered(body) => Some(body),
            Kind::Once(shared) => shared.lock().ok().and_then(|mut body| body.take()),
        }
    }
}

impl<B> Clone for HedgeBody<B> {
    fn clone(&self) -> Self {
        let kind = match &self.kind {
            Kind::Buffered(body) => match body.replay_again() {
                Some(copy) => Kind::Buffered(copy),
                None => unreachable!("a buffered HedgeBody holds a buffered ReplayBody"),
            },
            Kind::Once(shared) => Kind::Once(Arc::clone(shared)),
        };
        Self { kind }
    }
}

impl<B> fmt::Debug for HedgeBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HedgeBody")
            .field("buffered", &self.is_buffered())
            .finish()
    }
}

/// The hedge's safety rules over [`HedgeBody`] requests: buffered ones may
/// be repeated (the caller's rules already accepted them), others not.
#[derive(Debug, Clone, Copy, Default)]
pub struct BufferedOnly;

impl<B: 'static> RequestSafety<http::Request<HedgeBody<B>>> for BufferedOnly {
    fn is_safe(&self, request: &http::Request<HedgeBody<B>>) -> bool {
        request.body().is_buffered()
    }
}

// ===== layer =====

/// The hedging layer of a stack over buffered bodies: [`HedgeBuffer`]
/// around a [`Hedge`] around [`UnwrapBody`].
#[derive(Debug, Clone)]
pub struct HedgeBodiesLayer<C, Q> {
    pub(super) hedge: HedgeLayer<C, BufferedOnly>,
    pub(super) safety: Q,
    pub(super) buffer: BufferBodies,
}

impl<S, C: Clone, Q: Clone> Layer<S> for HedgeBodiesLayer<C, Q> {
    type Service = HedgeBuffer<Hedge<UnwrapBody<S>, C, BufferedOnly>, Q>;

    fn layer(&self, inner: S) -> Self::Service {
        HedgeBuffer {
            inner: self.hedge.layer(UnwrapBody { inner }),
            safety: self.safety.clone(),
            buffer: self.buffer,
        }
    }
}

// ===== HedgeBuffer =====

/// Hedging over bodies that are streams: judges the caller's request with
/// the stack's safety rules (adding an idempotency key if they do), reads a
/// safe request's body into memory up to the stack's buffer limit (as retry
/// does, [`BufferBodies`]), then calls the hedge.
///
/// The hedge sees [`HedgeBody`]s: a buffered one is copied for each hedge;
/// one that was not buffered (an unsafe request, or a body over the limit)
/// is sent once and never hedged (counted by `orch_hedge_unhedged_total`
/// with reason `unsafe`). Below the hedge, [`UnwrapBody`] rebuilds each
/// attempt's body into the caller's type ([`RebuildBody`]), so the breaker
/// and the client see the requests they would see without hedging. An error
/// of the body while it is read fails the call (`ResilienceError::Inner`)
/// without calling the service.
#[derive(Debug, Clone)]
pub struct HedgeBuffer<H, Q> {
    inner: H,
    safety: Q,
    buffer: BufferBodies,
}

impl<H, Q, B> Service<http::Request<B>> for HedgeBuffer<H, Q>
where
    H: Service<http::Request<HedgeBody<B>>> + Clone,
    H::Error: Into<BoxError>,
    Q: RequestSafety<http::Request<B>>,
    B: http_body::Body,
    B::Error: Into<BoxError>,
{
    type Response = H::Response;
    type Error = ResilienceError;
    type Future = HedgeBufferFuture<H, B>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), ResilienceError>> {
        self.inner.poll_ready(cx).map_err(ResilienceError::from_inner)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        let safe = self.safety.is_safe(&request) || self.safety.make_safe(&mut request);
        match self.buffer.prepare(request, safe) {
            Prepared::Ready(request, _) => HedgeBufferFuture::Calling {
                future: self.inner.call(request.map(HedgeBody::new)),
            },
            Prepared::Reading(reading) => {
                // The readied service goes with the call; a clone stays.
                let clone = self.inner.clone();
                HedgeBufferFuture::Reading {
                    reading,
                    service: Some(mem::replace(&mut self.inner, clone)),
                }
            }
        }
    }
}

pin_project_lite::pin_project! {
    /// The response future of [`HedgeBuffer`]: reads the body, then runs the
    /// hedged call.
    #[project = HedgeBufferProj]
    // pin-project-lite cannot carry docs on enum variant fields.
    #[allow(missing_docs)]
    pub enum HedgeBufferFuture<H, B>
    where
        H: Service<http::Request<HedgeBody<B>>>,
    {
        /// Reading the body of a safe request.
        Reading { #[pin] reading: BufferRequest<B>, service: Option<H> },
        /// The hedged call.
        Calling { #[pin] future: H::Future },
    }
}

impl<H, B> Future for HedgeBufferFuture<H, B>
where
    H: Service<http::Request<HedgeBody<B>>>,
    H::Error: Into<BoxError>,
    B: http_body::Body,
    B::Error: Into<BoxError>,
{
    type Output = Result<H::Response, ResilienceError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            let future = match self.as_mut().project() {
                HedgeBufferProj::Reading { reading, service } => {
                    // A body that fails while read fails the call unsent, as under retry.
                    let (request, _) = ready!(reading.poll(cx)).map_err(ResilienceError::Inner)?;
                    let Some(mut service) = service.take() else {
                        return Poll::Ready(Err(ResilienceError::Inner(
                            "HedgeBufferFuture polled after completion".into(),
                        )));
                    };
                    service.call(request.map(HedgeBody::new))
                }
                HedgeBufferProj::Calling { future } => {
                    return future.poll(cx).map_err(ResilienceError::from_inner);
                }
            };
            self.set(HedgeBufferFuture::Calling { future });
        }
    }
}

// ===== UnwrapBody =====

/// Below the hedge: gives the inner service each attempt's request with the
/// caller's body type again.
#[derive(Debug, Clone)]
pub struct UnwrapBody<S> {
    inner: S,
}

impl<S, B> Service<http::Request<HedgeBody<B>>> for UnwrapBody<S>
where
    S: Service<http::Request<B>>,
    S::Error: Into<BoxError>,
    B: RebuildBody,
{
    type Response = S::Response;
    type Error = ResilienceError;
    type Future = UnwrapBodyFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), ResilienceError>> {
        self.inner.poll_ready(cx).map_err(ResilienceError::from_inner)
    }

    fn call(&mut self, request: http::Request<HedgeBody<B>>) -> Self::Future {
        let (parts, body) = request.into_parts();
        match body.take() {
            Some(body) => UnwrapBodyFuture::Called {
                future: self
                    .inner
                    .call(http::Request::from_parts(parts, B::rebuild(body))),
            },
            None => UnwrapBodyFuture::Refused {
                error: Some("a request body that can be sent once was sent again".into()),
            },
        }
    }
}

pin_project_lite::pin_project! {
    /// The response future of [`UnwrapBody`].
    #[project = UnwrapBodyProj]
    #[allow(missing_docs)]
    pub enum UnwrapBodyFuture<F> {
        /// The inner service's call.
        Called { #[pin] future: F },
        /// A body that could be sent once was asked for again.
        Refused { error: Option<BoxError> },
    }
}

impl<F, T, E> Future for UnwrapBodyFuture<F>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Output = Result<T, ResilienceError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            UnwrapBodyProj::Called { future } => future.poll(cx).map_err(ResilienceError::from_inner),
            UnwrapBodyProj::Refused { error } => Poll::Ready(Err(ResilienceError::Inner(
                error
                    .take()
                    .unwrap_or_else(|| "UnwrapBodyFuture polled after completion".into()),
            ))),
        }
    }
}

//! The slot of the layers that repeat a request: retry or hedging, with the
//! overall timeout.
//!
//! Retry and hedging share one slot, so a stack holds at most one of them;
//! the slot is chosen when the stack is built, and the service type is the
//! same whichever it is. The overall timeout lives here too: with retry,
//! the retry layer holds it as its deadline (it needs it to plan attempts,
//! and one timer then bounds the call); otherwise a timeout layer wraps the
//! hedge, or the inner service. The slot is in the stacks that may repeat
//! ([`MayRepeat`](super::MayRepeat)); one built from a `StackConfig` that
//! enables none of them sends once through it and pays one branch.

use std::{
    convert::Infallible,
    fmt,
    future::{Future, Pending},
    marker::PhantomData,
    pin::Pin,
    task::{Context, Poll},
};

use tower_layer::Layer;
use tower_service::Service;

use super::BodyReplay;
use crate::{
    BoxError, Classify, RequestSafety, ResilienceError, RetryLayer, Timeout, TimeoutLayer,
    retry::{Replay, ReplayBody, Retry},
};

/// The repeating layer of a built stack: retry or hedging, with the
/// overall timeout (retry holds it as its deadline), or a call sent once.
/// See the [stack's docs](super) for where it sits.
pub struct RepeatLayer<C, Q, R: BodyReplay> {
    kind: RepeatKind<C, Q, R>,
    replay: R,
}

/// What the slot holds. `pub` only so that `RepeatChoice` can name it; the
/// module is private, so no user can.
pub enum RepeatKind<C, Q, R: BodyReplay> {
    /// Neither retry, hedging nor an overall timeout.
    Once,
    /// Only the overall timeout.
    Overall(TimeoutLayer),
    /// Retry, holding the overall timeout (if any) as its deadline.
    Retry(RetryLayer<C, Q, R>),
    /// Hedging, under the overall timeout if there is one.
    Hedge {
        hedge: R::HedgeLayer<C, Q>,
        overall: Option<TimeoutLayer>,
    },
}

impl<C, Q, R: BodyReplay> RepeatLayer<C, Q, R> {
    pub(super) fn new(kind: RepeatKind<C, Q, R>, replay: R) -> Self {
        Self { kind, replay }
    }
}

impl<C: Clone, Q: Clone, R: BodyReplay> Clone for RepeatLayer<C, Q, R>
where
    R::HedgeLayer<C, Q>: Clone,
{
    fn clone(&self) -> Self {
        let kind = match &self.kind {
            RepeatKind::Once => RepeatKind::Once,
            RepeatKind::Overall(timeout) => RepeatKind::Overall(timeout.clone()),
            RepeatKind::Retry(retry) => RepeatKind::Retry(retry.clone()),
            RepeatKind::Hedge { hedge, overall } => RepeatKind::Hedge {
                hedge: hedge.clone(),
                overall: overall.clone(),
            },
        };
        Self {
            kind,
            replay: self.replay.clone(),
        }
    }
}

impl<C, Q, R: BodyReplay> fmt::Debug for RepeatLayer<C, Q, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match &self.kind {
            RepeatKind::Once => "once",
            RepeatKind::Overall(_) => "overall timeout",
            RepeatKind::Retry(_) => "retry",
            RepeatKind::Hedge { overall: None, .. } => "hedge",
            RepeatKind::Hedge { overall: Some(_), .. } => "hedge under an overall timeout",
        };
        f.debug_struct("RepeatLayer").field("kind", &kind).finish()
    }
}

impl<S, C: Clone, Q: Clone, R: BodyReplay> Layer<S> for RepeatLayer<C, Q, R> {
    type Service = Repeat<S, C, Q, R>;

    fn layer(&self, inner: S) -> Self::Service {
        let replay = self.replay.clone();
        match &self.kind {
            RepeatKind::Once => Repeat::Once(Once { inner, replay }),
            RepeatKind::Overall(timeout) => Repeat::Overall(timeout.layer(Once { inner, replay })),
            RepeatKind::Retry(retry) => Repeat::Retry(retry.layer(inner)),
            RepeatKind::Hedge { hedge, overall: None } => Repeat::Hedge(R::hedged(hedge, inner)),
            RepeatKind::Hedge {
                hedge,
                overall: Some(timeout),
            } => Repeat::OverallHedge(timeout.layer(R::hedged(hedge, inner))),
        }
    }
}

/// The service of a [`RepeatLayer`].
pub enum Repeat<S, C, Q, R: BodyReplay> {
    /// Calls go to the inner service once.
    Once(Once<S, R>),
    /// Under the overall timeout, once.
    Overall(Timeout<Once<S, R>>),
    /// Retried.
    Retry(Retry<S, C, Q, R>),
    /// Hedged.
    Hedge(R::Hedged<S, C, Q>),
    /// Hedged, under the overall timeout.
    OverallHedge(Timeout<R::Hedged<S, C, Q>>),
}

impl<S: Clone, C: Clone, Q: Clone, R: BodyReplay> Clone for Repeat<S, C, Q, R>
where
    R::Hedged<S, C, Q>: Clone,
{
    fn clone(&self) -> Self {
        match self {
            Self::Once(once) => Self::Once(once.clone()),
            Self::Overall(timeout) => Self::Overall(timeout.clone()),
            Self::Retry(retry) => Self::Retry(retry.clone()),
            Self::Hedge(hedge) => Self::Hedge(hedge.clone()),
            Self::OverallHedge(hedge) => Self::OverallHedge(hedge.clone()),
        }
    }
}

impl<S, C, Q, R: BodyReplay> fmt::Debug for Repeat<S, C, Q, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self {
            Self::Once(_) => "Once",
            Self::Overall(_) => "Overall",
            Self::Retry(_) => "Retry",
            Self::Hedge(_) => "Hedge",
            Self::OverallHedge(_) => "OverallHedge",
        };
        f.debug_tuple("Repeat").field(&kind).finish()
    }
}

impl<S, C, Q, R, Req> Service<Req> for Repeat<S, C, Q, R>
where
    R: BodyReplay + Replay<Req>,
    S: Service<<R as Replay<Req>>::Request> + Clone,
    S::Error: Into<BoxError>,
    C: Classify<S::Response, ResilienceError> + Clone,
    Q: RequestSafety<Req>,
    R::Hedged<S, C, Q>: Service<Req, Response = S::Response, Error = ResilienceError>,
{
    type Response = S::Response;
    type Error = ResilienceError;
    type Future = RepeatFuture<
        S::Future,
        <Timeout<Once<S, R>> as Service<Req>>::Future,
        <Retry<S, C, Q, R> as Service<Req>>::Future,
        Pin<Box<<R::Hedged<S, C, Q> as Service<Req>>::Future>>,
        Pin<Box<<Timeout<R::Hedged<S, C, Q>> as Service<Req>>::Future>>,
    >;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), ResilienceError>> {
        match self {
            Self::Once(once) => once.inner.poll_ready(cx).map_err(ResilienceError::from_inner),
            Self::Overall(timeout) => timeout.poll_ready(cx),
            Self::Retry(retry) => retry.poll_ready(cx),
            Self::Hedge(hedge) => hedge.poll_ready(cx),
            Self::OverallHedge(hedge) => hedge.poll_ready(cx),
        }
    }

    #[inline]
    fn call(&mut self, request: Req) -> Self::Future {
        match self {
            Self::Once(once) => RepeatFuture::Once {
                future: once.call(request),
            },
            Self::Overall(timeout) => RepeatFuture::Overall {
                future: timeout.call(request),
            },
            Self::Retry(retry) => RepeatFuture::Retry {
                future: retry.call(request),
            },
            Self::Hedge(hedge) => RepeatFuture::Hedge {
                future: Box::pin(hedge.call(request)),
            },
            Self::OverallHedge(hedge) => RepeatFuture::OverallHedge {
                future: Box::pin(hedge.call(request)),
            },
        }
    }
}

pin_project_lite::pin_project! {
    /// The response future of [`Repeat`].
    ///
    /// A hedge's future is boxed (`H` and `TH` are `Pin<Box<..>>`): it
    /// holds several attempts and is the largest by far, and every call's
    /// future is as large as its largest variant. Unboxed, the stack of the
    /// `client_stack` bench (retry, breaker, attempt timeout) had a
    /// 1,632-byte future against 1,048 before the builder kept one shape.
    #[project = RepeatProj]
    // pin-project-lite cannot carry docs on enum variant fields.
    #[allow(missing_docs)]
    pub enum RepeatFuture<O, T, Rt, H, TH> {
        /// Sent once.
        Once { #[pin] future: O },
        /// Sent once, under the overall timeout.
        Overall { #[pin] future: T },
        /// Retried.
        Retry { #[pin] future: Rt },
        /// Hedged.
        Hedge { #[pin] future: H },
        /// Hedged, under the overall timeout.
        OverallHedge { #[pin] future: TH },
    }
}

impl<O, T, Rt, H, TH, Res, E> Future for RepeatFuture<O, T, Rt, H, TH>
where
    O: Future<Output = Result<Res, E>>,
    E: Into<BoxError>,
    T: Future<Output = Result<Res, ResilienceError>>,
    Rt: Future<Output = Result<Res, ResilienceError>>,
    H: Future<Output = Result<Res, ResilienceError>>,
    TH: Future<Output = Result<Res, ResilienceError>>,
{
    type Output = Result<Res, ResilienceError>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            RepeatProj::Once { future } => future.poll(cx).map_err(ResilienceError::from_inner),
            RepeatProj::Overall { future } => future.poll(cx),
            RepeatProj::Retry { future } => future.poll(cx),
            RepeatProj::Hedge { future } => future.poll(cx),
            RepeatProj::OverallHedge { future } => future.poll(cx),
        }
    }
}

/// A call sent once: the request as the inner service takes it
/// ([`Replay::once`]; a `ReplayBody` under `buffer_bodies_raw`).
#[derive(Debug, Clone)]
pub struct Once<S, R> {
    inner: S,
    replay: R,
}

impl<S, R, Req> Service<Req> for Once<S, R>
where
    R: Replay<Req>,
    S: Service<R::Request>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    #[inline]
    fn call(&mut self, request: Req) -> S::Future {
        self.inner.call(self.replay.once(request))
    }
}

/// The hedging slot of a stack whose bodies reach the service as
/// `ReplayBody`s: it cannot be built (`build` refuses such a stack), so no
/// value of it exists.
pub struct Unhedged<S> {
    never: Infallible,
    _service: PhantomData<fn() -> S>,
}

impl<S> Unhedged<S> {
    pub(super) fn never<T>(&self) -> Unhedged<T> {
        match self.never {}
    }
}

impl<S> Clone for Unhedged<S> {
    fn clone(&self) -> Self {
        self.never()
    }
}

impl<S> fmt::Debug for Unhedged<S> {
    fn fmt(&self, _: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.never {}
    }
}

impl<S, B> Service<http::Request<B>> for Unhedged<S>
where
    S: Service<http::Request<ReplayBody<B>>>,
{
    type Response = S::Response;
    type Error = ResilienceError;
    type Future = Pending<Result<S::Response, ResilienceError>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), ResilienceError>> {
        match self.never {}
    }

    fn call(&mut self, _: http::Request<B>) -> Self::Future {
        match self.never {}
    }
}

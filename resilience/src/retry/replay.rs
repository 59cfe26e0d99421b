//! How the retry layer makes the request of each attempt.

use std::future::{Future, Pending};

use crate::error::{BoxError, NotRetriedReason};

/// How the retry layer turns the caller's request into the request of each
/// attempt.
///
/// A retry sends the same request again, so the layer must keep a copy.
/// [`CloneRequest`] (the default) clones requests that are `Clone`.
/// [`BufferBodies`](super::BufferBodies) handles HTTP requests with streaming
/// bodies, which are not: it buffers the body up to a limit and replays it.
///
/// The contract, as the retry future uses it:
/// 1. [`prepare`](Self::prepare) is called once per call, after the request
///    was made safe. `replayable` is false when no retry can follow (the
///    request is unsafe, or `max_attempts` is 1): nothing needs to be kept,
///    and the source is then `None`. When the request is at hand
///    ([`Prepared::Ready`]) the first attempt is sent from `call`, as the
///    service it wraps would be; otherwise ([`Prepared::Reading`], reading a
///    body) the response future drives the reading first, and an error
///    fails the call with `ResilienceError::Inner` without calling the
///    service.
/// 2. The first attempt sends the request `prepare` returned.
/// 3. Before each retry, [`replay`](Self::replay) makes the next request
///    from the source, or says why it cannot (the call then ends with
///    `NotRetried { reason }`).
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot make the attempts of requests of type `{Req}`",
    label = "this retry or stack cannot repeat a `{Req}`",
    note = "`CloneRequest` (the default) clones each request, so `{Req}` must be `Clone`",
    note = "an `http::Request` whose body is a stream (tonic, hyper `Incoming`, boxed bodies) is not `Clone`: call `.buffer_bodies(limit)` on the builder (or the retry layer), or use the preset `ResilienceLayer::grpc(..)`"
)]
pub trait Replay<Req>: Clone + Send + Sync + 'static {
    /// The request the inner service receives.
    type Request;
    /// What the retry future keeps to make later attempts.
    type Source;
    /// Produces the first attempt's request and the source of later ones
    /// when they are not at hand at once.
    type Prepare: Future<Output = Result<(Self::Request, Option<Self::Source>), BoxError>>;

    /// Prepares `request`; see the trait's contract.
    fn prepare(&self, request: Req, replayable: bool)
    -> Prepared<Self::Request, Self::Source, Self::Prepare>;

    /// The request of a later attempt.
    fn replay(&self, source: &Self::Source) -> Result<Self::Request, NotRetriedReason>;

    /// The request as the inner service receives it when it is sent once,
    /// with nothing kept and nothing read (a stack whose retry is off).
    fn once(&self, request: Req) -> Self::Request;
}

/// The first attempt's request, now or later: what [`Replay::prepare`] returns.
#[derive(Debug)]
pub enum Prepared<Request, Source, Reading> {
    /// The request of the first attempt and, when the call can be retried,
    /// the source of later ones.
    Ready(Request, Option<Source>),
    /// A future that must run first (for example one reading a body).
    Reading(Reading),
}

/// Replays a `Clone` request by cloning it: one clone per attempt, none at
/// all when the request cannot be retried.
#[derive(Debug, Clone, Copy, Default)]
pub struct CloneRequest;

impl<Req: Clone> Replay<Req> for CloneRequest {
    type Request = Req;
    type Source = Req;
    // A clone is at hand at once: nothing is ever read first.
    type Prepare = Pending<Result<(Req, Option<Req>), BoxError>>;

    #[inline]
    fn prepare(&self, request: Req, replayable: bool) -> Prepared<Req, Req, Self::Prepare> {
        if replayable {
            Prepared::Ready(request.clone(), Some(request))
        } else {
            Prepared::Ready(request, None)
        }
    }

    #[inline]
    fn replay(&self, source: &Req) -> Result<Req, NotRetriedReason> {
        Ok(source.clone())
    }

    #[inline]
    fn once(&self, request: Req) -> Req {
        request
    }
}

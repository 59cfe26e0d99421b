//! How the retry layer makes the request of each attempt.

use std::future::{Future, Ready, ready};

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
///    and the source is then `None`. The future may take time (reading a
///    body); an error fails the call with `ResilienceError::Inner` and the
///    service is not called.
/// 2. The first attempt sends the request `prepare` returned.
/// 3. Before each retry, [`replay`](Self::replay) makes the next request
///    from the source, or says why it cannot (the call then ends with
///    `NotRetried { reason }`).
pub trait Replay<Req>: Clone + Send + Sync + 'static {
    /// The request the inner service receives.
    type Request;
    /// What the retry future keeps to make later attempts.
    type Source;
    /// Produces the first attempt's request and the source of later ones.
    type Prepare: Future<Output = Result<(Self::Request, Option<Self::Source>), BoxError>>;

    /// Starts preparing `request`; see the trait's contract.
    fn prepare(&self, request: Req, replayable: bool) -> Self::Prepare;

    /// The request of a later attempt.
    fn replay(&self, source: &Self::Source) -> Result<Self::Request, NotRetriedReason>;
}

/// Replays a `Clone` request by cloning it: one clone per attempt, none at
/// all when the request cannot be retried.
#[derive(Debug, Clone, Copy, Default)]
pub struct CloneRequest;

impl<Req: Clone> Replay<Req> for CloneRequest {
    type Request = Req;
    type Source = Req;
    type Prepare = Ready<Result<(Req, Option<Req>), BoxError>>;

    #[inline]
    fn prepare(&self, request: Req, replayable: bool) -> Self::Prepare {
        if replayable {
            ready(Ok((request.clone(), Some(request))))
        } else {
            ready(Ok((request, None)))
        }
    }

    #[inline]
    fn replay(&self, source: &Req) -> Result<Req, NotRetriedReason> {
        Ok(source.clone())
    }
}

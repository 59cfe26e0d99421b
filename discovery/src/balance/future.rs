//! The balancer's response future: the endpoint's future, plus reporting
//! how the request ended to the endpoint's load.

use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, ready},
};

use pin_project_lite::pin_project;

use super::classify::FailureClassifier;
use super::error::{BalanceError, BoxError};
use super::load::{EndpointLoad, Outcome};

pin_project! {
    /// The response future of a [`Balancer`](super::Balancer).
    ///
    /// When the endpoint answers, the answer is classified and recorded in
    /// the endpoint's load (latency and failure); until then the request
    /// counts as in flight. Dropping the future before it completes
    /// records nothing and ends the request's in-flight count.
    pub struct ResponseFuture<F, K> {
        #[pin]
        inner: Option<F>,
        tracker: Option<Tracker<K>>,
        error: Option<BalanceError>,
    }
}

/// What a request in flight reports when it completes.
#[derive(Debug)]
pub(crate) struct Tracker<K> {
    pub(crate) load: Arc<EndpointLoad>,
    pub(crate) sent_at: u64,
    pub(crate) classifier: K,
}

impl<F, K> ResponseFuture<F, K> {
    /// A future for a request sent to an endpoint.
    #[inline]
    pub(crate) fn new(inner: F, tracker: Tracker<K>) -> Self {
        Self {
            inner: Some(inner),
            tracker: Some(tracker),
            error: None,
        }
    }

    /// A future that fails at once with `error`, having called nothing.
    pub(crate) fn failed(error: BalanceError) -> Self {
        Self {
            inner: None,
            tracker: None,
            error: Some(error),
        }
    }
}

impl<F, K, T, E> Future for ResponseFuture<F, K>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
    K: FailureClassifier<T, E>,
{
    type Output = Result<T, BalanceError>;

    // Always inlined: out of line, its result travels through memory, 34
    // more instructions a request with every algorithm (795 against 761
    // for P2C peak-EWMA at 16 endpoints, `benches/instructions.rs`).
    #[inline(always)]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let Some(inner) = this.inner.as_pin_mut() else {
            return Poll::Ready(Err(this.error.take().unwrap_or(BalanceError::NotReady)));
        };
        let result = ready!(inner.poll(cx));
        if let Some(tracker) = this.tracker.take() {
            let failed = tracker.classifier.is_failure(result.as_ref());
            tracker.load.record(Outcome {
                failed,
                sent_at: tracker.sent_at,
            });
        }
        Poll::Ready(result.map_err(BalanceError::inner))
    }
}

impl<F, K> std::fmt::Debug for ResponseFuture<F, K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("in_flight", &self.tracker.is_some())
            .field("error", &self.error)
            .finish_non_exhaustive()
    }
}

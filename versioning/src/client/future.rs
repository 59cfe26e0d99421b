//! The response future of the client layer: the inner future, then a look
//! at the answer's headers.

use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use http::Response;
use pin_project_lite::pin_project;

use super::{layer::Shared, notice};

pin_project! {
    /// The response future of [`ClientVersioning`](super::ClientVersioning):
    /// the inner service's answer, unchanged, once its deprecation headers
    /// have been read.
    pub struct ResponseFuture<F> {
        #[pin]
        future: F,
        operation: Option<String>,
        shared: Arc<Shared>,
    }
}

impl<F> ResponseFuture<F> {
    pub(crate) fn new(future: F, operation: String, shared: Arc<Shared>) -> Self {
        Self {
            future,
            operation: Some(operation),
            shared,
        }
    }
}

impl<F, ResBody, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<ResBody>, E>>,
{
    type Output = Result<Response<ResBody>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let response = std::task::ready!(this.future.poll(cx))?;
        if let Some(operation) = this.operation.take() {
            notice::observe(this.shared, operation, response.headers());
        }
        Poll::Ready(Ok(response))
    }
}

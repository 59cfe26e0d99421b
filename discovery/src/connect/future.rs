//! The response future of both connectors' endpoint services: the
//! client's own future, its error read as the endpoint's
//! [`ConnectorError`], and the endpoint marked broken when a request could
//! not connect.
//!
//! A named future rather than a boxed `async` block: the balancer boxes
//! the response future of a shared handle already, and a second box per
//! call (its allocation, its free and the copy into it) was an eighth of
//! what the balancer adds to a loopback HTTP/1.1 call
//! (`benches/client_stack.rs` under callgrind).

use std::{
    future::Future,
    net::SocketAddr,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, ready},
};

use pin_project_lite::pin_project;

use super::{
    ConnectorError,
    tcp::{self, Broken},
};
use crate::balance::BoxError;

pin_project! {
    /// The response future of a [`HyperEndpoint`](super::HyperEndpoint)
    /// or a [`TonicEndpoint`](super::TonicEndpoint): the response, or the
    /// endpoint's [`ConnectorError`].
    ///
    /// A request that could not connect fails with
    /// [`ConnectorError::Connect`] and marks the endpoint broken, so the
    /// balancer evicts it; other errors are [`ConnectorError::Request`].
    pub struct EndpointFuture<F> {
        #[pin]
        state: State<F>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F> {
        Sent {
            #[pin]
            response: F,
            address: SocketAddr,
            broken: Arc<Broken>,
        },
        Failed {
            error: Option<ConnectorError>,
        },
    }
}

impl<F> EndpointFuture<F> {
    /// The client's future for a request sent to the endpoint at `address`.
    pub(crate) fn sent(response: F, address: SocketAddr, broken: &Arc<Broken>) -> Self {
        Self {
            state: State::Sent {
                response,
                address,
                broken: Arc::clone(broken),
            },
        }
    }

    /// A request that was not sent.
    pub(crate) fn failed(error: ConnectorError) -> Self {
        Self {
            state: State::Failed { error: Some(error) },
        }
    }

    /// Polls the client's future, `is_connect` saying which of its errors
    /// mean that the request could not connect.
    fn poll_with<T, E>(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        is_connect: fn(&E) -> bool,
    ) -> Poll<Result<T, ConnectorError>>
    where
        F: Future<Output = Result<T, E>>,
        E: Into<BoxError>,
    {
        match self.project().state.project() {
            StateProj::Sent {
                response,
                address,
                broken,
            } => Poll::Ready(ready!(response.poll(cx)).map_err(|error| {
                if is_connect(&error) {
                    broken.set();
                    tcp::connect_error(*address, error)
                } else {
                    ConnectorError::Request {
                        address: *address,
                        source: error.into(),
                    }
                }
            })),
            StateProj::Failed { error } => Poll::Ready(Err(error
                .take()
                .expect("an endpoint's failed future is polled once"))),
        }
    }
}

#[cfg(feature = "hyper")]
impl Future for EndpointFuture<hyper_util::client::legacy::ResponseFuture> {
    type Output = Result<http::Response<hyper::body::Incoming>, ConnectorError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.poll_with(cx, hyper_util::client::legacy::Error::is_connect)
    }
}

#[cfg(feature = "tonic")]
impl Future for EndpointFuture<tonic::transport::channel::ResponseFuture> {
    type Output = Result<http::Response<tonic::body::Body>, ConnectorError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.poll_with(cx, |error: &tonic::transport::Error| is_tonic_connect(error))
    }
}

/// Whether tonic says the request could not connect.
#[cfg(feature = "tonic")]
fn is_tonic_connect(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(error);
    while let Some(error) = next {
        if error.is::<tonic::ConnectError>() {
            return true;
        }
        next = error.source();
    }
    false
}

impl<F> std::fmt::Debug for EndpointFuture<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = match &self.state {
            State::Sent { .. } => "sent",
            State::Failed { .. } => "failed",
        };
        f.debug_struct("EndpointFuture").field("state", &state).finish()
    }
}

//! An HTTP connector for the balancer: one pooled hyper-util client shared
//! by every endpoint, each endpoint's service pointing requests at its own
//! address.

use std::{
    fmt,
    future::poll_fn,
    net::SocketAddr,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use ::hyper::body::{Body, Incoming};
use futures_util::future::BoxFuture;
use http::{
    Request, Response, Uri,
    uri::{Authority, PathAndQuery, Scheme},
};
use hyper_util::{
    client::legacy::{Builder, Client, ResponseFuture, connect::HttpConnector},
    rt::TokioExecutor,
};
use tower_service::Service;

use super::{
    ConnectorError, EndpointFuture,
    tcp::{self, Broken},
};
use crate::{Endpoint, balance::BoxError};

/// The connect timeout of [`HyperConnector::new`]: 1 s, linkerd2-proxy's,
/// far above a connect to a live replica in a cluster and short enough
/// that a dead one costs little.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// A connector that makes each [`Endpoint`] a [`HyperEndpoint`] over one
/// pooled `hyper_util::client::legacy::Client` (HTTP/1.1 by default,
/// HTTP/2 with prior knowledge when the client builder says
/// `http2_only(true)`); plain `http` only.
///
/// Connecting an endpoint checks its address and opens (then closes) one
/// TCP connection, so an endpoint that refuses connections stays out of
/// rotation until it accepts them; the pooled client opens its own.
///
/// A balancer over it needs no classifier to see HTTP failures: its
/// default, [`ErrorsAreFailures`](crate::balance::ErrorsAreFailures),
/// reads this connector's `http::Response<Incoming>` as
/// [`HttpFailures`](crate::balance::HttpFailures) does, so a 5xx or a 429
/// raises the replica's load and counts towards its ejection, while a
/// request the connector refuses unsent
/// ([`ConnectorError::UnsupportedScheme`]) counts against nobody. Map the
/// responses to another type in a layer around the endpoint service and
/// they are no longer recognised: then say
/// `.classify_with(HttpFailures)`.
///
/// ```
/// use http_body_util::Empty;
/// use bytes::Bytes;
/// use futures_util::stream;
/// use orch_discovery::{Balancer, Endpoint, EndpointChange, connect::HyperConnector};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let changes = stream::iter([EndpointChange::Insert(Endpoint::new(
///     "api-1",
///     "127.0.0.1:8081".parse().unwrap(),
/// ))]);
/// // One client for every task: requests carry a path, the balancer
/// // chooses the replica.
/// let client = Balancer::new(changes, HyperConnector::<Empty<Bytes>>::new())
///     .into_shared::<http::Request<Empty<Bytes>>, _>();
/// # drop(client);
/// # }
/// ```
pub struct HyperConnector<B> {
    client: Client<HttpConnector, B>,
    /// The client's TCP settings, for the connect check.
    tcp: HttpConnector,
}

impl<B> HyperConnector<B>
where
    B: Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    /// A connector over a client with hyper-util's defaults (HTTP/1.1,
    /// pooled connections, 90 s idle timeout) on the tokio runtime,
    /// `TCP_NODELAY`, and a [`DEFAULT_CONNECT_TIMEOUT`].
    pub fn new() -> Self {
        Self::from_builder(&Builder::new(TokioExecutor::new()), Some(DEFAULT_CONNECT_TIMEOUT))
    }

    /// A connector over a client built by `builder` (pool size and idle
    /// timeout, `http2_only`, HTTP/2 keep-alive and windows, …), with
    /// `TCP_NODELAY` and `connect_timeout` (`None`: the OS's).
    pub fn from_builder(builder: &Builder, connect_timeout: Option<Duration>) -> Self {
        let tcp = tcp::http_connector(connect_timeout);
        Self {
            client: builder.build(tcp.clone()),
            tcp,
        }
    }

    /// The pooled client every endpoint shares.
    pub fn client(&self) -> &Client<HttpConnector, B> {
        &self.client
    }
}

impl<B> Default for HyperConnector<B>
where
    B: Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    fn default() -> Self {
        Self::new()
    }
}

impl<B> Clone for HyperConnector<B> {
    fn clone(&self) -> Self {
        Self {
            client: self.client.clone(),
            tcp: self.tcp.clone(),
        }
    }
}

impl<B> fmt::Debug for HyperConnector<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HyperConnector").finish_non_exhaustive()
    }
}

impl<B> Service<Endpoint> for HyperConnector<B>
where
    B: Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    type Response = HyperEndpoint<B>;
    type Error = ConnectorError;
    type Future = BoxFuture<'static, Result<HyperEndpoint<B>, ConnectorError>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), ConnectorError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, endpoint: Endpoint) -> Self::Future {
        let client = self.client.clone();
        let mut tcp = self.tcp.clone();
        Box::pin(async move {
            let authority = tcp::authority(&endpoint)?;
            let address = endpoint.address();
            poll_fn(|cx| tcp.poll_ready(cx))
                .await
                .map_err(|error| tcp::connect_error(address, error))?;
            // Eager: only an endpoint that accepts connections enters
            // rotation (the pool reconnects by itself, lazily).
            let probe = tcp
                .call(tcp::uri(&authority))
                .await
                .map_err(|error| tcp::connect_error(address, error))?;
            drop(probe);
            Ok(HyperEndpoint {
                client,
                authority,
                address,
                broken: Arc::new(Broken::default()),
            })
        })
    }
}

/// One endpoint's service, built by [`HyperConnector`]: sends each request
/// to the endpoint through the shared pooled client.
///
/// Each request's URI gets scheme `http` and the endpoint's address as its
/// authority, whatever authority it came with (a path-only URI such as
/// `/orders?id=7` is fine; an empty path becomes `/`); a `Host` header the
/// request carries is kept (hyper sets one from the URI otherwise). A URI
/// with another scheme fails with [`ConnectorError::UnsupportedScheme`]
/// naming `request.uri.scheme`, unsent.
///
/// When a request cannot connect ([`ConnectorError::Connect`], never
/// sent), the endpoint is marked broken: its next `poll_ready` fails, so
/// the balancer evicts it and reconnects after its backoff, and any call
/// made meanwhile fails at once with `Connect` too. Other errors are
/// [`ConnectorError::Request`].
pub struct HyperEndpoint<B> {
    client: Client<HttpConnector, B>,
    authority: Authority,
    address: SocketAddr,
    broken: Arc<Broken>,
}

impl<B> HyperEndpoint<B> {
    /// The endpoint's address.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    fn broken_error(&self) -> ConnectorError {
        tcp::connect_error(self.address, "an earlier request could not connect")
    }

    /// The request's URI pointed at this endpoint, or the bad scheme.
    fn point(&self, uri: Uri) -> Result<Uri, ConnectorError> {
        let mut parts = uri.into_parts();
        if let Some(scheme) = &parts.scheme
            && *scheme != Scheme::HTTP
        {
            return Err(ConnectorError::UnsupportedScheme {
                field: "request.uri.scheme",
                scheme: scheme.to_string(),
            });
        }
        parts.scheme = Some(Scheme::HTTP);
        parts.authority = Some(self.authority.clone());
        if parts.path_and_query.is_none() {
            parts.path_and_query = Some(PathAndQuery::from_static("/"));
        }
        Uri::from_parts(parts).map_err(|error| ConnectorError::Request {
            address: self.address,
            source: error.into(),
        })
    }
}

impl<B> fmt::Debug for HyperEndpoint<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HyperEndpoint")
            .field("address", &self.address)
            .field("broken", &self.broken.get())
            .finish_non_exhaustive()
    }
}

impl<B> Service<Request<B>> for HyperEndpoint<B>
where
    B: Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    type Response = Response<Incoming>;
    type Error = ConnectorError;
    type Future = EndpointFuture<ResponseFuture>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), ConnectorError>> {
        if self.broken.poll(cx.waker()) {
            return Poll::Ready(Err(self.broken_error()));
        }
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        if self.broken.get() {
            return EndpointFuture::failed(self.broken_error());
        }
        let (mut head, body) = request.into_parts();
        head.uri = match self.point(std::mem::take(&mut head.uri)) {
            Ok(uri) => uri,
            Err(error) => return EndpointFuture::failed(error),
        };
        let response = self.client.request(Request::from_parts(head, body));
        EndpointFuture::sent(response, self.address, &self.broken)
    }
}

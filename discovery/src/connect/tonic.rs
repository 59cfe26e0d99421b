//! A tonic `Channel` connector for the balancer: one HTTP/2 connection per
//! endpoint, with the user's endpoint settings, so that a generated client
//! runs over a balanced set of replicas.

use std::{
    fmt,
    net::SocketAddr,
    sync::Arc,
    task::{Context, Poll},
};

use ::tonic::{
    ConnectError,
    body::Body,
    transport::{Channel, Endpoint as ChannelSettings, channel::ResponseFuture},
};
use futures_util::future::BoxFuture;
use http::{Request, Response};
use tower_service::Service;

use super::{
    ConnectorError, EndpointFuture,
    tcp::{self, Broken},
    watched::WatchedConnector,
};
use crate::Endpoint;

/// A connector that makes each [`Endpoint`] a [`TonicEndpoint`]: a tonic
/// `Channel` connected eagerly to the endpoint's address, with the
/// settings of a template `tonic::transport::Endpoint`.
///
/// The template's settings apply to every endpoint: timeouts (`timeout`,
/// `connect_timeout`), HTTP/2 keep-alive, windows, frame and header sizes,
/// concurrency and rate limits, user agent, `TCP_NODELAY` and TCP
/// keep-alive (but not `local_address`, which tonic does not expose). Its
/// URI does not say where to connect: each channel connects to its
/// endpoint's address and sends it as the `:authority`. The template's
/// scheme must be `http` (no TLS).
///
/// With a [`SharedBalancer`](crate::balance::SharedBalancer) over it, any
/// tonic generated client takes the balancer as its channel:
///
/// ```
/// use futures_util::stream;
/// use orch_discovery::{Balancer, Endpoint, EndpointChange, connect::TonicConnector};
/// use tonic_health::pb::health_client::HealthClient;
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let template = tonic::transport::Endpoint::from_static("http://health")
///     .timeout(std::time::Duration::from_secs(2))
///     .http2_keep_alive_interval(std::time::Duration::from_secs(10));
/// let changes = stream::iter([EndpointChange::Insert(Endpoint::new(
///     "api-1",
///     "127.0.0.1:50051".parse().unwrap(),
/// ))]);
/// let balancer = Balancer::new(changes, TonicConnector::new(template).unwrap());
/// let client = HealthClient::new(balancer.into_shared());
/// # drop(client);
/// # }
/// ```
#[derive(Clone)]
pub struct TonicConnector {
    template: ChannelSettings,
}

impl TonicConnector {
    /// A connector with `template`'s settings, or
    /// [`ConnectorError::UnsupportedScheme`] naming `template.uri.scheme`
    /// when its scheme is not `http`.
    pub fn new(template: ChannelSettings) -> Result<Self, ConnectorError> {
        match template.uri().scheme_str() {
            Some("http") => Ok(Self { template }),
            scheme => Err(ConnectorError::UnsupportedScheme {
                field: "template.uri.scheme",
                scheme: scheme.unwrap_or("").to_owned(),
            }),
        }
    }

    /// The settings every endpoint's channel is made with.
    pub fn template(&self) -> &ChannelSettings {
        &self.template
    }
}

impl Default for TonicConnector {
    /// tonic's default settings, with a 1 s connect timeout
    /// (linkerd2-proxy's: far above a connect to a live replica, short
    /// enough that a dead one costs little).
    fn default() -> Self {
        Self {
            template: ChannelSettings::from_static("http://orch.balancer")
                .connect_timeout(std::time::Duration::from_secs(1)),
        }
    }
}

impl fmt::Debug for TonicConnector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TonicConnector")
            .field("template", &self.template)
            .finish()
    }
}

impl Service<Endpoint> for TonicConnector {
    type Response = TonicEndpoint;
    type Error = ConnectorError;
    type Future = BoxFuture<'static, Result<TonicEndpoint, ConnectorError>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), ConnectorError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, endpoint: Endpoint) -> Self::Future {
        let template = self.template.clone();
        Box::pin(async move {
            let authority = tcp::authority(&endpoint)?;
            let address = endpoint.address();
            let uri = tcp::uri(&authority);
            // tonic applies `connect_timeout` around our connector; the TCP
            // options are ours to set.
            let mut tcp = tcp::http_connector(None);
            tcp.set_nodelay(template.get_tcp_nodelay());
            tcp.set_keepalive(template.get_tcp_keepalive());
            tcp.set_keepalive_interval(template.get_tcp_keepalive_interval());
            tcp.set_keepalive_retries(template.get_tcp_keepalive_retries());
            let broken = Arc::new(Broken::default());
            let connector = WatchedConnector {
                tcp,
                uri: uri.clone(),
                broken: Arc::clone(&broken),
            };
            // Eager, not `connect_lazy`: the endpoint enters rotation only
            // with a live HTTP/2 connection.
            let channel = template
                .origin(uri)
                .connect_with_connector(connector)
                .await
                .map_err(|error| tcp::connect_error(address, ConnectError(error.into())))?;
            Ok(TonicEndpoint {
                channel,
                address,
                broken,
            })
        })
    }
}

/// One endpoint's service, built by [`TonicConnector`]: a tonic `Channel`
/// over one watched HTTP/2 connection.
///
/// When the connection closes or fails, the endpoint's next `poll_ready`
/// fails, so the balancer evicts it and connects it again after its
/// backoff, and a call made meanwhile fails at once with
/// [`ConnectorError::Connect`], unsent. Through a tonic client, a connect
/// failure is the status `UNAVAILABLE`, whose
/// [`source`](std::error::Error::source) is the
/// [`BalanceError`](crate::balance::BalanceError) (ask it
/// [`is_connect`](crate::balance::BalanceError::is_connect)), and so is a
/// balancer with no ready endpoint
/// ([`BalanceError::NoEndpoints`](crate::balance::BalanceError::NoEndpoints));
/// other errors keep tonic's own status mapping.
///
/// Its responses count against the endpoint as
/// [`HttpFailures`](crate::balance::HttpFailures) says (a trailers-only
/// `UNAVAILABLE`, an HTTP 5xx or 429) with the balancer's default
/// classifier too.
#[derive(Clone)]
pub struct TonicEndpoint {
    channel: Channel,
    address: SocketAddr,
    broken: Arc<Broken>,
}

impl TonicEndpoint {
    /// The endpoint's address.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    fn broken_error(&self) -> ConnectorError {
        tcp::connect_error(
            self.address,
            ConnectError("the endpoint's connection closed".into()),
        )
    }
}

impl fmt::Debug for TonicEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TonicEndpoint")
            .field("address", &self.address)
            .field("broken", &self.broken.get())
            .finish_non_exhaustive()
    }
}

impl Service<Request<Body>> for TonicEndpoint {
    type Response = Response<Body>;
    type Error = ConnectorError;
    type Future = EndpointFuture<ResponseFuture>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), ConnectorError>> {
        if self.broken.poll(cx.waker()) {
            return Poll::Ready(Err(self.broken_error()));
        }
        let address = self.address;
        self.channel
            .poll_ready(cx)
            .map_err(|error| tcp::connect_error(address, ConnectError(error.into())))
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        if self.broken.get() {
            return EndpointFuture::failed(self.broken_error());
        }
        EndpointFuture::sent(self.channel.call(request), self.address, &self.broken)
    }
}

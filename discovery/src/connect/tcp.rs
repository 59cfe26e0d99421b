//! What both connectors share: checking an endpoint's address, and the TCP
//! connector with its settings.

use std::{
    net::SocketAddr,
    sync::atomic::{AtomicBool, Ordering},
    task::Waker,
    time::Duration,
};

use futures_util::task::AtomicWaker;

use http::{Uri, uri::Authority};
use hyper_util::client::legacy::connect::HttpConnector;

use super::ConnectorError;
use crate::Endpoint;

/// The endpoint's address as a URI authority, or why it cannot be
/// connected to.
pub(crate) fn authority(endpoint: &Endpoint) -> Result<Authority, ConnectorError> {
    let address = endpoint.address();
    let bad = |reason| ConnectorError::BadAddress {
        field: "endpoint.address",
        endpoint: endpoint.id().clone(),
        address,
        reason,
    };
    if address.port() == 0 {
        return Err(bad("port 0 cannot be connected to"));
    }
    let ip = address.ip();
    if ip.is_unspecified() {
        return Err(bad("an unspecified IP (0.0.0.0, ::) cannot be connected to"));
    }
    if ip.is_multicast() {
        return Err(bad("a multicast IP cannot be connected to"));
    }
    if let std::net::IpAddr::V4(v4) = ip
        && v4.is_broadcast()
    {
        return Err(bad("the broadcast IP cannot be connected to"));
    }
    // A socket address always formats as a valid authority.
    Authority::try_from(address.to_string()).map_err(|_| bad("not a valid URI authority"))
}

/// `http://{authority}/`, what the TCP connector is asked to reach.
pub(crate) fn uri(authority: &Authority) -> Uri {
    Uri::builder()
        .scheme(http::uri::Scheme::HTTP)
        .authority(authority.clone())
        .path_and_query("/")
        .build()
        .unwrap_or_default()
}

/// An [`HttpConnector`] with `TCP_NODELAY` (request/response traffic),
/// accepting only `http` and the given connect timeout.
pub(crate) fn http_connector(connect_timeout: Option<Duration>) -> HttpConnector {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(connect_timeout);
    connector
}

/// The address a connect error names.
pub(crate) fn connect_error(
    address: SocketAddr,
    source: impl Into<crate::balance::BoxError>,
) -> ConnectorError {
    ConnectorError::Connect {
        address,
        source: source.into(),
    }
}

/// Set once the endpoint's connection failed (hyper: a request could not
/// connect; tonic: the connection closed); never cleared, the balancer
/// replaces the endpoint's service instead. Setting it wakes the waker of
/// the endpoint's last `poll_ready`, which is the balancer's for that
/// endpoint, so the balancer asks it again before its next pick.
#[derive(Debug, Default)]
pub(crate) struct Broken {
    broken: AtomicBool,
    balancer: AtomicWaker,
}

impl Broken {
    pub(crate) fn set(&self) {
        self.broken.store(true, Ordering::Release);
        self.balancer.wake();
    }

    pub(crate) fn get(&self) -> bool {
        self.broken.load(Ordering::Acquire)
    }

    /// Whether it broke, `waker` to be woken when it does.
    pub(crate) fn poll(&self, waker: &Waker) -> bool {
        self.balancer.register(waker);
        self.get()
    }
}

//! What both connectors share: checking an endpoint's address, and the TCP
//! connector with its settings.

use std::{net::SocketAddr, time::Duration};

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

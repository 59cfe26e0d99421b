//! What a connector or an endpoint service it built can fail with.

use std::net::SocketAddr;

use crate::{EndpointId, balance::BoxError};

/// The error of the [`connect`](super) module's connectors and of the
/// endpoint services they build.
///
/// [`is_connect`](Self::is_connect) tells a request that was never sent
/// (no connection could be made, or the endpoint's connection was already
/// broken) from one that failed on the way or at the server: the first is
/// safe to retry whatever the method (a `POST` included), the second only
/// when the request is idempotent. Through a balancer the error arrives
/// boxed in [`BalanceError::Inner`](crate::balance::BalanceError::Inner);
/// [`BalanceError::is_connect`](crate::balance::BalanceError::is_connect)
/// asks it.
///
/// ```
/// use orch_discovery::connect::ConnectorError;
///
/// let err = ConnectorError::Connect {
///     address: "127.0.0.1:9".parse().unwrap(),
///     source: std::io::Error::from(std::io::ErrorKind::ConnectionRefused).into(),
/// };
/// assert!(err.is_connect());
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectorError {
    /// An endpoint's address cannot be connected to (port 0, an
    /// unspecified, multicast or broadcast IP); `field` names it. Returned
    /// by the connector, so the balancer backs off and tries again, and a
    /// corrected address from discovery replaces it.
    #[error("invalid {field} {address} of endpoint {endpoint}: {reason}")]
    BadAddress {
        /// The rejected field: `endpoint.address`.
        field: &'static str,
        /// The endpoint whose address it is.
        endpoint: EndpointId,
        /// The address.
        address: SocketAddr,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A URL scheme other than `http` (https is not supported: the
    /// connectors speak plain HTTP/1.1 and HTTP/2 to loopback or in-cluster
    /// replicas); `field` names where it came from
    /// (`request.uri.scheme`, `template.uri.scheme`). Never sent.
    #[error("unsupported URL scheme `{scheme}` in {field}: only `http` is supported")]
    UnsupportedScheme {
        /// Where the scheme was found.
        field: &'static str,
        /// The scheme.
        scheme: String,
    },
    /// No connection to the endpoint could be made, or its connection was
    /// already broken: the request was never sent. Safe to retry for any
    /// method. The endpoint reports the failure to the balancer, which
    /// evicts it and reconnects after its backoff.
    #[error("cannot connect to {address}")]
    Connect {
        /// The endpoint's address.
        address: SocketAddr,
        /// Why (an I/O error, a timeout, a closed connection).
        #[source]
        source: BoxError,
    },
    /// The request failed after a connection was made: it may have reached
    /// the server. Retry only an idempotent request.
    #[error("request to {address} failed")]
    Request {
        /// The endpoint's address.
        address: SocketAddr,
        /// The transport's error.
        #[source]
        source: BoxError,
    },
}

impl ConnectorError {
    /// True when the request was never sent because no connection could be
    /// made ([`Connect`](Self::Connect)): safe to retry for any method.
    pub fn is_connect(&self) -> bool {
        matches!(self, Self::Connect { .. })
    }

    /// The field an input error names: `endpoint.address` for
    /// [`BadAddress`](Self::BadAddress), the scheme's place for
    /// [`UnsupportedScheme`](Self::UnsupportedScheme); `None` for transport
    /// errors.
    pub fn field_name(&self) -> Option<&'static str> {
        match self {
            Self::BadAddress { field, .. } | Self::UnsupportedScheme { field, .. } => Some(field),
            Self::Connect { .. } | Self::Request { .. } => None,
        }
    }
}

//! What a connector or an endpoint service it built can fail with.

use std::{error::Error, fmt, io, net::SocketAddr, sync::LazyLock};

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
/// [`is_invalid_input`](Self::is_invalid_input) tells the caller's mistake
/// (a malformed endpoint address or request, [`BadAddress`](Self::BadAddress)
/// and [`UnsupportedScheme`](Self::UnsupportedScheme)) from a replica
/// failing: an input error never counts against the endpoint's health (the
/// balancer's default classifiers skip it, so a healthy replica is not
/// ejected for a caller's bad request), and repeating it cannot help. So
/// that layers which do not know this type can tell too, its
/// [`source`](Error::source) is an [`io::Error`] of kind
/// [`InvalidInput`](io::ErrorKind::InvalidInput), std's word for "a
/// parameter was incorrect".
///
/// ```
/// use orch_discovery::connect::ConnectorError;
///
/// let err = ConnectorError::Connect {
///     address: "127.0.0.1:9".parse().unwrap(),
///     source: std::io::Error::from(std::io::ErrorKind::ConnectionRefused).into(),
/// };
/// assert!(err.is_connect());
/// assert!(!err.is_invalid_input());
///
/// let err = ConnectorError::UnsupportedScheme {
///     field: "request.uri.scheme",
///     scheme: "https".into(),
/// };
/// assert!(err.is_invalid_input());
/// let source = std::error::Error::source(&err).and_then(|e| e.downcast_ref::<std::io::Error>());
/// assert_eq!(source.map(|e| e.kind()), Some(std::io::ErrorKind::InvalidInput));
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum ConnectorError {
    /// An endpoint's address cannot be connected to (port 0, an
    /// unspecified, multicast or broadcast IP); `field` names it. Returned
    /// by the connector, so the endpoint never enters rotation (the
    /// balancer backs off and tries again, and a corrected address from
    /// discovery replaces it). An input error: see
    /// [`is_invalid_input`](Self::is_invalid_input).
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
    /// (`request.uri.scheme`, `template.uri.scheme`). Never sent, and not
    /// the endpoint's failure: an input error, see
    /// [`is_invalid_input`](Self::is_invalid_input).
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
    Connect {
        /// The endpoint's address.
        address: SocketAddr,
        /// Why (an I/O error, a timeout, a closed connection).
        source: BoxError,
    },
    /// The request failed after a connection was made: it may have reached
    /// the server. Retry only an idempotent request.
    Request {
        /// The endpoint's address.
        address: SocketAddr,
        /// The transport's error.
        source: BoxError,
    },
}

impl ConnectorError {
    /// True when the request was never sent because no connection could be
    /// made ([`Connect`](Self::Connect)): safe to retry for any method.
    pub fn is_connect(&self) -> bool {
        matches!(self, Self::Connect { .. })
    }

    /// True for the caller's input errors, [`BadAddress`](Self::BadAddress)
    /// and [`UnsupportedScheme`](Self::UnsupportedScheme): the endpoint or
    /// the request is malformed, the replica did not fail. Not the
    /// endpoint's failure (the balancer's default classifiers, and
    /// [`HttpFailures`](crate::balance::HttpFailures), do not count it),
    /// and not worth retrying: the same input fails the same way.
    pub fn is_invalid_input(&self) -> bool {
        matches!(self, Self::BadAddress { .. } | Self::UnsupportedScheme { .. })
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

// ===== impl Display, Error =====

impl fmt::Display for ConnectorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadAddress {
                field,
                endpoint,
                address,
                reason,
            } => write!(f, "invalid {field} {address} of endpoint {endpoint}: {reason}"),
            Self::UnsupportedScheme { field, scheme } => {
                write!(
                    f,
                    "unsupported URL scheme `{scheme}` in {field}: only `http` is supported"
                )
            }
            Self::Connect { address, .. } => write!(f, "cannot connect to {address}"),
            Self::Request { address, .. } => write!(f, "request to {address} failed"),
        }
    }
}

impl Error for ConnectorError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            Self::BadAddress { .. } | Self::UnsupportedScheme { .. } => Some(invalid_input()),
            Self::Connect { source, .. } | Self::Request { source, .. } => Some(&**source),
        }
    }
}

/// The source of every input error: one shared `io::Error` of kind
/// `InvalidInput`, because the variants carry no error of their own and a
/// layer that cannot name `ConnectorError` (orch-resilience's classifiers,
/// a user's error reporter) still understands std's kinds.
fn invalid_input() -> &'static io::Error {
    static INVALID_INPUT: LazyLock<io::Error> = LazyLock::new(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "the endpoint or request is malformed; repeating it cannot succeed",
        )
    });
    &INVALID_INPUT
}

//! What a [`Balancer`](super::Balancer) can fail with.

use std::{error::Error, fmt, time::Duration};

use crate::connect::ConnectorError;

/// A type-erased error, as used across the `tower` ecosystem.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The error of a [`Balancer`](super::Balancer): its own decisions, or the
/// error of the endpoint service it called (boxed, as `tower` does).
///
/// ```
/// use orch_discovery::balance::BalanceError;
///
/// let err = BalanceError::inner(std::io::Error::other("connection reset"));
/// assert!(err.inner_ref().is_some_and(|e| e.is::<std::io::Error>()));
/// assert!(!err.is_no_endpoints());
/// ```
///
/// # Through a tonic client
///
/// tonic turns a channel's error into a `Status` by walking its
/// [`source`](Error::source) chain for a `tonic::Status` or a
/// `tonic::ConnectError` (anything else is `UNKNOWN`). With the `tonic`
/// feature, [`NoEndpoints`](Self::NoEndpoints)' source is a `Status` with
/// code `UNAVAILABLE`, and a connect failure of a
/// `connect::TonicConnector` endpoint carries a
/// `ConnectError`: both reach the caller as `UNAVAILABLE` ("most likely
/// transient, retry with a backoff", what tonic itself, like the C++ gRPC
/// client, reports when it cannot connect), and the status's own source is
/// this error.
/// [`NotReady`](Self::NotReady) and [`Closed`](Self::Closed) stay
/// `UNKNOWN`: neither goes away by retrying. A generated client turns an
/// error of the channel's `poll_ready` into `UNKNOWN` whatever it is, so
/// give it a [`SharedBalancer`](super::SharedBalancer) (whose `poll_ready`
/// only fails with `Closed`), not a bare `Balancer`.
#[derive(Debug)]
#[non_exhaustive]
pub enum BalanceError {
    /// No endpoint became ready within the fail-fast timeout: there were
    /// none, or every one was connecting, not ready, or broken. Returned
    /// from a [`Balancer`](super::Balancer)'s `poll_ready` (the balancer
    /// stays usable), and by a [`SharedBalancer`](super::SharedBalancer)
    /// as the error of each call made meanwhile.
    NoEndpoints {
        /// The fail-fast timeout that ran out.
        waited: Duration,
        /// How many endpoints the balancer knew (connecting, not ready or
        /// backing off after a failure).
        known: usize,
    },
    /// `call` came without a successful `poll_ready` before it (a broken
    /// `Service` contract); no endpoint was called.
    NotReady,
    /// The driver task of a [`SharedBalancer`](super::SharedBalancer) is
    /// gone (its runtime shut down, or it panicked): no request through
    /// this handle can succeed again. The only error a `SharedBalancer`'s
    /// `poll_ready` returns, because it is final.
    Closed,
    /// The endpoint's service returned this error. Displayed as it, and
    /// its [`source`](Error::source) is the inner error's source, as
    /// `#[error(transparent)]` would do.
    Inner(BoxError),
}

impl BalanceError {
    /// Wraps an endpoint service's error.
    pub fn inner(error: impl Into<BoxError>) -> Self {
        Self::Inner(error.into())
    }

    /// True for [`NoEndpoints`](Self::NoEndpoints).
    pub fn is_no_endpoints(&self) -> bool {
        matches!(self, Self::NoEndpoints { .. })
    }

    /// True for [`Closed`](Self::Closed).
    pub fn is_closed(&self) -> bool {
        matches!(self, Self::Closed)
    }

    /// True when the endpoint's service is one of this crate's connectors'
    /// and the request was never sent because no connection could be made
    /// ([`ConnectorError::is_connect`](crate::connect::ConnectorError::is_connect)):
    /// safe to retry whatever the request's method.
    pub fn is_connect(&self) -> bool {
        self.connector_error().is_some_and(ConnectorError::is_connect)
    }

    /// True when the endpoint's service is one of this crate's connectors'
    /// and the request or the endpoint is malformed
    /// ([`ConnectorError::is_invalid_input`](crate::connect::ConnectorError::is_invalid_input)):
    /// not the endpoint's failure, and not worth retrying.
    pub fn is_invalid_input(&self) -> bool {
        self.connector_error()
            .is_some_and(ConnectorError::is_invalid_input)
    }

    fn connector_error(&self) -> Option<&ConnectorError> {
        self.inner_ref()?.downcast_ref()
    }

    /// The endpoint service's error, if that is what this is.
    pub fn inner_ref(&self) -> Option<&(dyn std::error::Error + Send + Sync + 'static)> {
        match self {
            Self::Inner(error) => Some(&**error),
            _ => None,
        }
    }
}

// ===== impl Display, Error =====

impl fmt::Display for BalanceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoEndpoints { waited, known } => write!(
                f,
                "no ready endpoint within {waited:?} ({known} endpoint(s) known, none ready)"
            ),
            Self::NotReady => f.write_str("balancer called without a ready endpoint reserved by poll_ready"),
            Self::Closed => f.write_str("the shared balancer's driver task is gone"),
            Self::Inner(error) => fmt::Display::fmt(error, f),
        }
    }
}

impl Error for BalanceError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            #[cfg(feature = "tonic")]
            Self::NoEndpoints { .. } => Some(unavailable()),
            Self::Inner(error) => error.source(),
            _ => None,
        }
    }
}

/// The source of [`BalanceError::NoEndpoints`] under the `tonic` feature:
/// one shared `UNAVAILABLE` status, because the variant carries no error
/// of its own for tonic's `Status::from_error` to find. tonic copies its
/// code and message and keeps the whole `BalanceError` as the new status's
/// source, so the figures of the message above are not lost.
#[cfg(feature = "tonic")]
fn unavailable() -> &'static tonic::Status {
    static UNAVAILABLE: std::sync::LazyLock<tonic::Status> = std::sync::LazyLock::new(|| {
        tonic::Status::unavailable("no ready endpoint within the balancer's fail-fast timeout")
    });
    &UNAVAILABLE
}

//! What can go wrong between orch and etcd.

use crate::{ConfigError, RegistryError};

/// Why an etcd source or registration could not start, or why a call to
/// etcd failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EtcdError {
    /// The [`EtcdConfig`](super::EtcdConfig) was rejected; nothing started.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The endpoint to register was rejected; nothing started.
    #[error(transparent)]
    Endpoint(#[from] RegistryError),
    /// Started outside a tokio runtime.
    #[error("the etcd source and registration must be started from within a tokio runtime")]
    NoRuntime,
    /// No etcd endpoint could be reached, or one did not answer in time;
    /// `endpoint` is the last one tried.
    #[error("etcd at {endpoint} is unreachable: {reason}")]
    Unavailable {
        /// The client URL last tried.
        endpoint: String,
        /// The connection error or timeout.
        reason: String,
    },
    /// etcd answered with an error.
    #[error("etcd at {endpoint} refused the request ({status}): {message}")]
    Refused {
        /// The client URL that answered.
        endpoint: String,
        /// The HTTP status.
        status: u16,
        /// etcd's error message.
        message: String,
    },
    /// etcd's answer could not be decoded (not etcd, or an unsupported version).
    #[error("etcd at {endpoint} sent an answer that is not understood: {reason}")]
    Protocol {
        /// The client URL that answered.
        endpoint: String,
        /// What could not be decoded.
        reason: String,
    },
}

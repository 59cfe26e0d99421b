//! What the registry refuses, and why.

use std::sync::Arc;

use crate::EndpointId;

/// An edit or a configuration that the registry refused; nothing was changed.
///
/// ```
/// use orch_discovery::{Endpoint, Registry, RegistryError};
///
/// let registry = Registry::new("api");
/// let e = Endpoint::new("api-1", "127.0.0.1:8080".parse().unwrap());
/// registry.insert(e.clone()).unwrap();
/// let err = registry.insert(e).unwrap_err();
/// assert!(matches!(err, RegistryError::AlreadyRegistered { .. }));
/// assert_eq!(err.to_string(), "registry api: endpoint api-1 is already registered");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// [`Registry::insert`](crate::Registry::insert) of an id that is
    /// already present (use [`upsert`](crate::Registry::upsert) to replace it).
    #[error("registry {registry}: endpoint {id} is already registered")]
    AlreadyRegistered {
        /// The registry's name.
        registry: Arc<str>,
        /// The id that is taken.
        id: EndpointId,
    },
    /// [`Registry::update`](crate::Registry::update) of an id that is not present.
    #[error("registry {registry}: no endpoint {id} to update")]
    UnknownEndpoint {
        /// The registry's name.
        registry: Arc<str>,
        /// The id that was not found.
        id: EndpointId,
    },
    /// A set of endpoints (initial set, static source,
    /// [`replace_all`](crate::Registry::replace_all)) names one id twice.
    #[error("registry {registry}: endpoint id {id} appears more than once")]
    DuplicateId {
        /// The registry's name.
        registry: Arc<str>,
        /// The repeated id.
        id: EndpointId,
    },
    /// A configuration field has a value that cannot work; `field` names it
    /// (`endpoints[api-1].weight`).
    #[error("invalid {field}: {reason}")]
    InvalidField {
        /// Dotted path of the offending field.
        field: String,
        /// What is wrong with it.
        reason: &'static str,
    },
}

impl RegistryError {
    pub(crate) fn field(field: impl Into<String>, reason: &'static str) -> Self {
        Self::InvalidField {
            field: field.into(),
            reason,
        }
    }
}

//! The `tower::Layer` of the HTTP idempotency service.

use std::{fmt, sync::Arc};

use bytes::Bytes;
use http::{Method, request::Parts};
use tower_layer::Layer;

use super::{
    Idempotency, IdempotencyConfig,
    fingerprint::default_fingerprint,
    shared::{Protocol, Shared},
};
use crate::{
    ConfigError,
    idempotency::{Fingerprint, IdempotencyStore},
};

/// Applies [`Idempotency`] to a service: requests with an
/// `Idempotency-Key` run at most once, repeats get the first response.
///
/// Built from a store and an [`IdempotencyConfig`] (validated here); the
/// scope and fingerprint functions are set on the layer because they are
/// code, not data. Clones share the store.
///
/// ```
/// use orch_resilience::idempotency::{MemoryStore, http::{IdempotencyConfig, IdempotencyLayer}};
///
/// let layer = IdempotencyLayer::new(MemoryStore::default(), IdempotencyConfig::default())
///     .unwrap()
///     // Keys of different tenants never meet.
///     .scope(|parts| {
///         parts.headers.get("x-tenant").and_then(|v| v.to_str().ok()).unwrap_or("anonymous").to_owned()
///     });
/// assert_eq!(layer.config().lease.as_secs(), 30);
/// ```
#[derive(Clone)]
pub struct IdempotencyLayer {
    shared: Arc<Shared>,
}

impl IdempotencyLayer {
    /// A layer over `store` with `config`, validated first.
    pub fn new<St>(store: St, config: IdempotencyConfig) -> Result<Self, ConfigError>
    where
        St: IdempotencyStore + 'static,
    {
        Self::with_shared_store(Arc::new(store), config)
    }

    /// A layer over a store shared as a trait object (one store behind
    /// several layers, an HTTP and a gRPC one).
    pub fn with_shared_store(
        store: Arc<dyn IdempotencyStore>,
        config: IdempotencyConfig,
    ) -> Result<Self, ConfigError> {
        Ok(Self {
            shared: Arc::new(shared(store, config, Protocol::Http)?),
        })
    }

    /// Sets the function naming the scope of a request's key: a tenant,
    /// an API key, an authenticated principal. Keys live per scope, so two
    /// clients that pick the same key never see each other's responses.
    /// Default: one scope for every request (`""`). A scope longer than 64
    /// bytes is stored as its SHA-256 (`sha256:` and 64 hex digits).
    pub fn scope<F>(self, scope: F) -> Self
    where
        F: Fn(&Parts) -> String + Send + Sync + 'static,
    {
        self.with(|shared| shared.scope = Arc::new(scope))
    }

    /// Sets the function fingerprinting a request from its head and whole
    /// body (see [`FingerprintHasher`](super::FingerprintHasher)). Default
    /// [`default_fingerprint`](super::default_fingerprint): method, path
    /// with query, body.
    pub fn fingerprint<F>(self, fingerprint: F) -> Self
    where
        F: Fn(&Parts, &Bytes) -> Fingerprint + Send + Sync + 'static,
    {
        self.with(|shared| shared.fingerprint = Arc::new(fingerprint))
    }

    /// The configuration the layer was built with.
    pub fn config(&self) -> &IdempotencyConfig {
        &self.shared.config
    }

    fn with(self, change: impl FnOnce(&mut Shared)) -> Self {
        let mut shared = Arc::unwrap_or_clone(self.shared);
        change(&mut shared);
        Self {
            shared: Arc::new(shared),
        }
    }

    #[cfg(feature = "tonic")]
    pub(crate) fn into_shared(self) -> Arc<Shared> {
        self.shared
    }

    #[cfg(feature = "tonic")]
    pub(crate) fn from_shared(shared: Arc<Shared>) -> Self {
        Self { shared }
    }
}

/// The state of a layer speaking `protocol`.
pub(crate) fn shared(
    store: Arc<dyn IdempotencyStore>,
    config: IdempotencyConfig,
    protocol: Protocol,
) -> Result<Shared, ConfigError> {
    config.validate()?;
    let methods = config
        .methods
        .iter()
        .map(|m| Method::from_bytes(m.as_bytes()))
        .collect::<Result<Arc<[Method]>, _>>()
        .map_err(|_| ConfigError::field("idempotency.methods", "must be HTTP method names"))?;
    Ok(Shared {
        store,
        methods,
        scope: Arc::new(|_| String::new()),
        fingerprint: Arc::new(default_fingerprint),
        name: config.name.as_str().into(),
        config,
        protocol,
    })
}

impl<S> Layer<S> for IdempotencyLayer {
    type Service = Idempotency<S>;

    fn layer(&self, inner: S) -> Idempotency<S> {
        Idempotency::from_parts(inner, Arc::clone(&self.shared))
    }
}

impl fmt::Debug for IdempotencyLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdempotencyLayer")
            .field("config", &self.shared.config)
            .finish_non_exhaustive()
    }
}

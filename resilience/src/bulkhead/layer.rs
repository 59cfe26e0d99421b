use std::sync::Arc;

use tower_layer::Layer;

use super::{Bulkhead, BulkheadConfig, BulkheadHandle, state::Shared};
use crate::config::ConfigError;

/// Wraps services in a [`Bulkhead`]. One layer is one bulkhead: every service
/// it wraps, and every clone of those, shares its slots and queue.
///
/// ```
/// use orch_resilience::{BulkheadConfig, BulkheadLayer};
///
/// let layer = BulkheadLayer::new(BulkheadConfig::default().name("search").max_concurrent(4)).unwrap();
/// let handle = layer.handle();
/// assert_eq!((handle.available(), handle.in_flight(), handle.queued()), (4, 0, 0));
/// ```
#[derive(Debug, Clone)]
pub struct BulkheadLayer {
    shared: Arc<Shared>,
}

// ===== impl BulkheadLayer =====

impl BulkheadLayer {
    /// Validates `config` and creates the bulkhead.
    ///
    /// The metric handles are registered here, with the `metrics` recorder
    /// installed at this moment (install the recorder first).
    pub fn new(config: BulkheadConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        Ok(Self {
            shared: Arc::new(Shared::new(&config)),
        })
    }

    /// A handle to observe the bulkhead's occupancy.
    pub fn handle(&self) -> BulkheadHandle {
        BulkheadHandle::new(Arc::clone(&self.shared))
    }
}

impl<S> Layer<S> for BulkheadLayer {
    type Service = Bulkhead<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Bulkhead::new(inner, Arc::clone(&self.shared))
    }
}

//! The `Layer` that wraps services in [`Hedge`].

use std::sync::Arc;

use tower_layer::Layer;

use super::{Hedge, HedgeConfig, LatencyTracker, LayerState};
use crate::{classify::DefaultClassifier, config::ConfigError, safety::HttpSafety};

/// Wraps services in [`Hedge`]: slow or failed calls of safe requests are
/// sent again, and the first success wins.
///
/// Built from a validated [`HedgeConfig`]. The classifier (what counts as a
/// success) defaults to [`DefaultClassifier`] and the safety rules (which
/// requests may be sent twice) to [`HttpSafety`]; change them with
/// [`classifier`](Self::classifier) and [`safety`](Self::safety).
///
/// Every service this layer makes shares its name and, for a percentile
/// delay, one [`LatencyTracker`]. Build one layer per backend whose latency
/// should be tracked apart.
///
/// ```
/// use std::time::Duration;
/// use orch_resilience::{AlwaysSafe, HedgeConfig, HedgeDelay, HedgeLayer};
/// use tower::{ServiceBuilder, ServiceExt, service_fn};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
/// let hedge = HedgeLayer::new(HedgeConfig::default().delay(HedgeDelay::fixed(Duration::from_millis(50))))?
///     // Plain `u32` requests: say that all of them may be sent twice.
///     .safety(AlwaysSafe);
/// let service = ServiceBuilder::new()
///     .layer(hedge)
///     .service(service_fn(|n: u32| async move { Ok::<_, std::io::Error>(n * 2) }));
/// assert_eq!(service.oneshot(21).await?, 42);
/// # Ok(())
/// # }
/// ```
///
/// The safety rules are a compile-time choice: with the default
/// [`HttpSafety`], a service whose requests are not `http::Request`s does not
/// compile until [`safety`](Self::safety) says which requests are safe.
///
/// ```compile_fail
/// use orch_resilience::{HedgeConfig, HedgeLayer};
/// use tower::{Layer, ServiceExt, service_fn};
///
/// # async fn run() {
/// let layer = HedgeLayer::new(HedgeConfig::default()).unwrap();
/// let service = layer.layer(service_fn(|n: u32| async move { Ok::<_, std::io::Error>(n) }));
/// // error: `HttpSafety: RequestSafety<u32>` is not satisfied
/// let _ = service.oneshot(1).await;
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct HedgeLayer<C = DefaultClassifier, P = HttpSafety> {
    state: Arc<LayerState>,
    classifier: C,
    safety: P,
}

impl HedgeLayer {
    /// Validates `config` and builds the layer with the default classifier
    /// and HTTP safety rules.
    pub fn new(config: HedgeConfig) -> Result<Self, ConfigError> {
        Ok(Self {
            state: Arc::new(LayerState::new(config)?),
            classifier: DefaultClassifier,
            safety: HttpSafety::default(),
        })
    }
}

impl<C, P> HedgeLayer<C, P> {
    /// Uses `classifier` to decide which results win. It sees inner errors
    /// already converted to [`ResilienceError`](crate::ResilienceError), so it
    /// must implement `Classify<Response, ResilienceError>`.
    pub fn classifier<C2>(self, classifier: C2) -> HedgeLayer<C2, P> {
        HedgeLayer {
            state: self.state,
            classifier,
            safety: self.safety,
        }
    }

    /// Uses `safety` to decide which requests may be hedged.
    pub fn safety<P2>(self, safety: P2) -> HedgeLayer<C, P2> {
        HedgeLayer {
            state: self.state,
            classifier: self.classifier,
            safety,
        }
    }

    /// The validated configuration.
    pub fn config(&self) -> &HedgeConfig {
        &self.state.config
    }

    /// The latency tracker shared by the services of this layer; `None` for
    /// a fixed delay, which tracks nothing.
    pub fn latency(&self) -> Option<&LatencyTracker> {
        self.state.tracker.as_ref()
    }
}

impl<S, C: Clone, P: Clone> Layer<S> for HedgeLayer<C, P> {
    type Service = Hedge<S, C, P>;

    fn layer(&self, inner: S) -> Self::Service {
        Hedge {
            inner,
            layer: Arc::clone(&self.state),
            classifier: self.classifier.clone(),
            safety: self.safety.clone(),
        }
    }
}

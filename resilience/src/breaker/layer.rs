use tower_layer::Layer;

use super::{CircuitBreaker, CircuitBreakerConfig, CircuitBreakerService};
use crate::{classify::DefaultClassifier, config::ConfigError};

/// Wraps services in a [`CircuitBreakerService`]; every service it makes
/// shares the layer's one [`CircuitBreaker`].
///
/// ```
/// use orch_resilience::breaker::{CircuitBreakerConfig, CircuitBreakerLayer};
/// use orch_resilience::HttpClassifier;
///
/// let layer = CircuitBreakerLayer::new(CircuitBreakerConfig::default().name("billing"))
///     .unwrap()
///     .classifier(HttpClassifier::default());
/// assert_eq!(layer.breaker().name(), "billing");
///
/// // A bad config is refused when the layer is built.
/// let err = CircuitBreakerLayer::new(CircuitBreakerConfig::default().half_open_permits(0)).unwrap_err();
/// assert_eq!(err.field_name(), "breaker.half_open_permits");
/// ```
#[derive(Debug, Clone)]
pub struct CircuitBreakerLayer<C = DefaultClassifier> {
    breaker: CircuitBreaker,
    classifier: C,
}

impl CircuitBreakerLayer {
    /// Validates `config` and builds a layer with a new breaker.
    pub fn new(config: CircuitBreakerConfig) -> Result<Self, ConfigError> {
        Ok(Self::shared(CircuitBreaker::new(config)?))
    }

    /// A layer over an existing breaker (from a
    /// [`BreakerRegistry`](super::BreakerRegistry), or shared by several stacks).
    pub fn shared(breaker: CircuitBreaker) -> Self {
        Self {
            breaker,
            classifier: DefaultClassifier,
        }
    }
}

impl<C> CircuitBreakerLayer<C> {
    /// Decides what a result means with `classifier` instead (for example
    /// [`HttpClassifier`](crate::HttpClassifier), so an HTTP 503 counts as a failure).
    pub fn classifier<C2>(self, classifier: C2) -> CircuitBreakerLayer<C2> {
        CircuitBreakerLayer {
            breaker: self.breaker,
            classifier,
        }
    }

    /// The breaker the layer's services share.
    pub fn breaker(&self) -> &CircuitBreaker {
        &self.breaker
    }
}

impl<S, C: Clone> Layer<S> for CircuitBreakerLayer<C> {
    type Service = CircuitBreakerService<S, C>;

    fn layer(&self, inner: S) -> Self::Service {
        CircuitBreakerService::new(inner, self.breaker.clone(), self.classifier.clone())
    }
}

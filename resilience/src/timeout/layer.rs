use std::{sync::Arc, time::Duration};

use tower_layer::Layer;

use super::{DEFAULT_NAME, Timeout, TimeoutConfig, limit::Limit};
use crate::{config::ConfigError, error::TimeoutKind};

/// Applies a [`Timeout`] of one kind to every call.
///
/// ```
/// use std::time::Duration;
/// use orch_resilience::{TimeoutKind, TimeoutLayer};
///
/// // Inside the retry layer: bounds each attempt.
/// let per_attempt = TimeoutLayer::attempt(Duration::from_millis(250));
/// // Outside the retry layer: bounds the whole call.
/// let overall = TimeoutLayer::overall(Duration::from_secs(2)).with_name("checkout");
/// assert_eq!(per_attempt.kind(), TimeoutKind::Attempt);
/// assert_eq!(overall.name(), "checkout");
/// ```
///
/// The direct constructors accept any duration, zero included (a zero limit
/// fails every call whose future does not complete on its first poll, as in
/// `tower::timeout`); [`TimeoutConfig`], whose values come from outside the
/// program, rejects zero.
#[derive(Debug, Clone)]
pub struct TimeoutLayer {
    name: Arc<str>,
    /// The name's label, kind and limit, made once per layer rather than
    /// once per service it makes.
    limit: Limit,
    kind: TimeoutKind,
    after: Duration,
}

// ===== impl TimeoutLayer =====

impl TimeoutLayer {
    /// A timeout of `kind` after `after`, named `"timeout"`.
    pub fn new(kind: TimeoutKind, after: Duration) -> Self {
        Self {
            name: DEFAULT_NAME.into(),
            limit: Limit::intern(DEFAULT_NAME, kind, after),
            kind,
            after,
        }
    }

    /// A per-attempt timeout ([`TimeoutKind::Attempt`]); goes inside the retry layer.
    pub fn attempt(after: Duration) -> Self {
        Self::new(TimeoutKind::Attempt, after)
    }

    /// A whole-call timeout ([`TimeoutKind::Overall`]); goes outside the retry layer.
    pub fn overall(after: Duration) -> Self {
        Self::new(TimeoutKind::Overall, after)
    }

    /// Validates `config` and builds the layer it describes.
    pub fn from_config(config: TimeoutConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        Ok(Self {
            name: config.name.as_str().into(),
            limit: Limit::intern(&config.name, config.kind, config.duration),
            kind: config.kind,
            after: config.duration,
        })
    }

    /// Sets the name used in tracing and metrics.
    pub fn with_name(mut self, name: impl AsRef<str>) -> Self {
        self.name = name.as_ref().into();
        self.limit = Limit::intern(name.as_ref(), self.kind, self.after);
        self
    }

    /// The limit.
    pub fn duration(&self) -> Duration {
        self.after
    }

    /// Which limit this is.
    pub fn kind(&self) -> TimeoutKind {
        self.kind
    }

    /// The name used in tracing and metrics.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl<S> Layer<S> for TimeoutLayer {
    type Service = Timeout<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Timeout::named(inner, Arc::clone(&self.name), self.limit, self.kind, self.after)
    }
}

use std::{fmt, sync::Arc};

use tower_layer::Layer;

use super::{DEFAULT_NAME, ErrorClasses, Fallback, FallbackConfig, FallbackValue, Policy};
use crate::config::ConfigError;

/// Wraps services in a [`Fallback`].
///
/// ```
/// use orch_resilience::{ErrorClass, FallbackLayer, ResilienceError};
///
/// // Async: compute a substitute from the error.
/// let layer = FallbackLayer::new(|err: ResilienceError| async move {
///     Ok::<_, ResilienceError>(format!("degraded: {err}"))
/// })
/// .on(ErrorClass::Timeout)
/// .with_name("search");
/// assert!(layer.classes().contains(ErrorClass::Timeout));
///
/// // Sync: a fixed value.
/// let empty = FallbackLayer::value(Vec::<String>::new());
/// # let _ = empty;
/// ```
pub struct FallbackLayer<F> {
    fallback: Arc<F>,
    on: ErrorClasses,
    name: Arc<str>,
}

// ===== impl FallbackLayer =====

impl<F> FallbackLayer<F> {
    /// A layer answering errors of every class ([`ErrorClasses::ANY`]) with
    /// `fallback`, an `Fn(ResilienceError) -> impl Future<Output =
    /// Result<Res, ResilienceError>>` or any other
    /// [`FallbackFn`](super::FallbackFn).
    pub fn new(fallback: F) -> Self {
        Self {
            fallback: Arc::new(fallback),
            on: ErrorClasses::ANY,
            name: DEFAULT_NAME.into(),
        }
    }

    /// Validates `config` and builds a layer answering its classes with `fallback`.
    pub fn from_config(config: FallbackConfig, fallback: F) -> Result<Self, ConfigError> {
        config.validate()?;
        Ok(Self {
            fallback: Arc::new(fallback),
            on: config.on,
            name: config.name.as_str().into(),
        })
    }

    /// Answers only errors of these classes (one [`ErrorClass`](crate::ErrorClass)
    /// or an [`ErrorClasses`] set).
    pub fn on(mut self, classes: impl Into<ErrorClasses>) -> Self {
        self.on = classes.into();
        self
    }

    /// Sets the name used in tracing and metrics.
    pub fn with_name(mut self, name: impl AsRef<str>) -> Self {
        self.name = name.as_ref().into();
        self
    }

    /// The classes of errors the fallback answers.
    pub fn classes(&self) -> ErrorClasses {
        self.on
    }

    /// The name used in tracing and metrics.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl<T> FallbackLayer<FallbackValue<T>> {
    /// A layer answering errors of every class with clones of `value`.
    pub fn value(value: T) -> Self {
        Self::new(FallbackValue::new(value))
    }
}

impl<F> fmt::Debug for FallbackLayer<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FallbackLayer")
            .field("name", &self.name)
            .field("on", &self.on)
            .finish_non_exhaustive()
    }
}

impl<F> Clone for FallbackLayer<F> {
    fn clone(&self) -> Self {
        Self {
            fallback: Arc::clone(&self.fallback),
            on: self.on,
            name: Arc::clone(&self.name),
        }
    }
}

impl<S, F> Layer<S> for FallbackLayer<F> {
    type Service = Fallback<S, F>;

    fn layer(&self, inner: S) -> Self::Service {
        let policy = Policy {
            fallback: Arc::clone(&self.fallback),
            on: self.on,
            name: Arc::clone(&self.name),
        };
        Fallback::new(inner, Arc::new(policy))
    }
}

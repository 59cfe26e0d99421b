use std::{
    collections::HashMap,
    fmt,
    sync::{Arc, PoisonError, RwLock},
};

use super::{BreakerState, CircuitBreaker, CircuitBreakerConfig, CircuitBreakerLayer};
use crate::config::ConfigError;

/// Named circuit breakers, one per endpoint or dependency, created on first
/// use from a default config or a per-name override.
///
/// A breaker protects one failure domain: share one per downstream
/// dependency (or per endpoint of a balancer) so that all the services and
/// tasks calling it trip together. The registry is a cheap `Clone` (an `Arc`);
/// clones see the same breakers.
///
/// Every config is validated when it is given to the registry, so
/// [`get_or_create`](Self::get_or_create) cannot fail. A breaker's name is
/// the name it is filed under, whatever its config's `name` field says.
///
/// ```
/// use orch_resilience::breaker::{BreakerRegistry, BreakerState, CircuitBreakerConfig};
///
/// let registry = BreakerRegistry::new(CircuitBreakerConfig::default())
///     .unwrap()
///     .with_override("payments", CircuitBreakerConfig::default().minimum_calls(20))
///     .unwrap();
///
/// let a = registry.get_or_create("payments");
/// let b = registry.get_or_create("payments");
/// a.force_open();
/// assert_eq!(b.state(), BreakerState::ForcedOpen); // one breaker per name
/// assert_eq!(a.config().minimum_calls, 20);
/// assert_eq!(registry.get_or_create("search").config().minimum_calls, 100);
/// let names: Vec<String> = registry.names().iter().map(|n| n.to_string()).collect();
/// assert_eq!(names, ["payments", "search"]);
/// ```
#[derive(Clone)]
pub struct BreakerRegistry {
    inner: Arc<RegistryInner>,
}

struct RegistryInner {
    default: CircuitBreakerConfig,
    overrides: HashMap<Arc<str>, CircuitBreakerConfig>,
    breakers: RwLock<HashMap<Arc<str>, CircuitBreaker>>,
}

impl BreakerRegistry {
    /// A registry whose breakers use `default` unless overridden. Errors
    /// name the field as `breakers.default.<field>`.
    pub fn new(default: CircuitBreakerConfig) -> Result<Self, ConfigError> {
        default.validate_at("breakers.default")?;
        Ok(Self {
            inner: Arc::new(RegistryInner {
                default,
                overrides: HashMap::new(),
                breakers: RwLock::new(HashMap::new()),
            }),
        })
    }

    /// Uses `config` for the breaker named `name`. Errors name the field as
    /// `breakers.<name>.<field>`. Meant for building the registry: an
    /// override given after the breaker was created applies to nothing, and
    /// one given to a registry that was already cloned detaches this handle
    /// from the clones.
    pub fn with_override(
        mut self,
        name: impl Into<Arc<str>>,
        config: CircuitBreakerConfig,
    ) -> Result<Self, ConfigError> {
        let name = name.into();
        config.validate_at(&format!("breakers.{name}"))?;
        Arc::make_mut(&mut self.inner).overrides.insert(name, config);
        Ok(self)
    }

    /// The breaker named `name`, created from its config on first use.
    pub fn get_or_create(&self, name: &str) -> CircuitBreaker {
        if let Some(breaker) = self.get(name) {
            return breaker;
        }
        let mut breakers = self
            .inner
            .breakers
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        // Another caller may have created it between the two locks.
        if let Some(breaker) = breakers.get(name) {
            return breaker.clone();
        }
        let name: Arc<str> = Arc::from(name);
        let config = self.inner.overrides.get(&name).unwrap_or(&self.inner.default);
        let breaker = CircuitBreaker::from_valid(config.clone().name(name.clone()));
        breakers.insert(name, breaker.clone());
        breaker
    }

    /// The breaker named `name`, if it was created.
    pub fn get(&self, name: &str) -> Option<CircuitBreaker> {
        let breakers = self.inner.breakers.read().unwrap_or_else(PoisonError::into_inner);
        breakers.get(name).cloned()
    }

    /// A layer over the breaker named `name` (created on first use).
    pub fn layer(&self, name: &str) -> CircuitBreakerLayer {
        CircuitBreakerLayer::shared(self.get_or_create(name))
    }

    /// The names of the created breakers, sorted.
    pub fn names(&self) -> Vec<Arc<str>> {
        self.states().into_iter().map(|(name, _)| name).collect()
    }

    /// Every created breaker's name and state, sorted by name.
    pub fn states(&self) -> Vec<(Arc<str>, BreakerState)> {
        let breakers = self.inner.breakers.read().unwrap_or_else(PoisonError::into_inner);
        let mut states: Vec<_> = (breakers.iter())
            .map(|(name, breaker)| (name.clone(), breaker.state()))
            .collect();
        states.sort_by(|a, b| a.0.cmp(&b.0));
        states
    }
}

/// A copy with the same configs and the same breakers, for a handle that
/// changes its overrides after it was cloned (see `with_override`).
impl Clone for RegistryInner {
    fn clone(&self) -> Self {
        let breakers = self.breakers.read().unwrap_or_else(PoisonError::into_inner);
        Self {
            default: self.default.clone(),
            overrides: self.overrides.clone(),
            breakers: RwLock::new(breakers.clone()),
        }
    }
}

impl fmt::Debug for BreakerRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BreakerRegistry")
            .field("states", &self.states())
            .finish_non_exhaustive()
    }
}

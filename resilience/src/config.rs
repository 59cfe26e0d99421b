//! Rejecting bad configuration before a layer is built.
//!
//! Every layer's config is a plain `serde` struct, so values can come from a
//! file or the environment. A value that cannot work (a rate above 1, a zero
//! window, zero permits) is refused when the layer is built, with the dotted
//! path of the field, so nothing half-configured ever runs.
//!
//! `orch-discovery` keeps a deliberate twin of this module
//! (`discovery/src/config.rs`): DESIGN.md lets this crate depend on no
//! sibling, and orch-core reports its own `SpecError`, so there is no
//! shared home. The twin differs in one way on purpose: it caps every
//! duration at a year, because the balancer turns durations into deadlines.

use std::time::Duration;

/// A layer config that was rejected when the layer was built.
///
/// ```
/// use orch_resilience::ConfigError;
///
/// let err = ConfigError::field("breaker.failure_rate_threshold", "must be in (0, 1]");
/// assert_eq!(err.to_string(), "invalid breaker.failure_rate_threshold: must be in (0, 1]");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A field has a value that cannot work; `field` names it.
    #[error("invalid {field}: {reason}")]
    InvalidField {
        /// Dotted path of the offending field (`retry.budget.percent_can_retry`).
        field: String,
        /// What is wrong with it.
        reason: &'static str,
    },
}

impl ConfigError {
    /// A rejection of `field` because of `reason`.
    pub fn field(field: impl Into<String>, reason: &'static str) -> Self {
        Self::InvalidField {
            field: field.into(),
            reason,
        }
    }

    /// The dotted path of the rejected field.
    pub fn field_name(&self) -> &str {
        match self {
            Self::InvalidField { field, .. } => field,
        }
    }

    /// Prefixes the field path with `prefix.`, so a config nested in another
    /// (the budget inside a retry config) names the whole path.
    pub fn within(self, prefix: &str) -> Self {
        match self {
            Self::InvalidField { field, reason } => Self::InvalidField {
                field: format!("{prefix}.{field}"),
                reason,
            },
        }
    }
}

/// Checks shared by the layer configs. Each returns the error naming `field`.
pub(crate) mod check {
    use super::{ConfigError, Duration};

    /// A rate or ratio in `(0, 1]`.
    pub(crate) fn rate(field: &str, value: f64) -> Result<(), ConfigError> {
        if value > 0.0 && value <= 1.0 {
            Ok(())
        } else {
            Err(ConfigError::field(field, "must be greater than 0 and at most 1"))
        }
    }

    /// A duration that must not be zero.
    pub(crate) fn non_zero_duration(field: &str, value: Duration) -> Result<(), ConfigError> {
        if value.is_zero() {
            Err(ConfigError::field(field, "must be greater than zero"))
        } else {
            Ok(())
        }
    }

    /// A count that must not be zero.
    pub(crate) fn non_zero<T: Default + PartialEq>(field: &str, value: T) -> Result<(), ConfigError> {
        if value == T::default() {
            Err(ConfigError::field(field, "must be greater than zero"))
        } else {
            Ok(())
        }
    }

    /// A finite, non-negative number.
    pub(crate) fn finite_non_negative(field: &str, value: f64) -> Result<(), ConfigError> {
        if value.is_finite() && value >= 0.0 {
            Ok(())
        } else {
            Err(ConfigError::field(field, "must be a finite number, zero or more"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_configs_name_the_whole_path() {
        let err = check::rate("percent_can_retry", 1.5)
            .unwrap_err()
            .within("retry.budget");
        assert_eq!(err.field_name(), "retry.budget.percent_can_retry");
        assert!(check::rate("r", f64::NAN).is_err());
        assert!(check::non_zero("n", 0_u32).is_err());
        assert!(check::non_zero_duration("d", Duration::ZERO).is_err());
        assert!(check::finite_non_negative("f", f64::INFINITY).is_err());
    }
}

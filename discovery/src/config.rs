//! Rejecting bad configuration, in one style for every config of the crate.
//!
//! The balancer's and passive health's configs are plain `serde` structs;
//! each validates its own fields under their names (`max`), and a config
//! that holds another prefixes the path with [`ConfigError::within`]
//! (`balancer.reconnect.max`), so a caller handles one error type that
//! names the whole path, whichever part is wrong.
//!
//! A deliberate copy of `orch-resilience`'s `config.rs` (the same
//! [`ConfigError`], `within` and `check` functions): DESIGN lets
//! `orch-resilience` depend on no sibling, and `orch-core`, the only crate
//! we may depend on, validates its specs into its own `SpecError`, so there
//! is no shared home for it. The difference is deliberate: every duration
//! here is also bounded by a year, because the balancer turns durations
//! into deadlines (`now + backoff`) that must not overflow. Keep the two in
//! step when either changes.

use std::time::Duration;

/// A config that was rejected, naming the field.
///
/// `field` is the dotted path of the offending field from the config that
/// was validated (`balancer.health.outlier_detection.interval` when a
/// [`BalancerConfig`](crate::balance::BalancerConfig) is validated,
/// `health.…` for a [`HealthConfig`](crate::health::HealthConfig) alone).
///
/// ```
/// use orch_discovery::ConfigError;
///
/// let err = ConfigError::field("interval", "must be greater than zero").within("health.outlier_detection");
/// assert_eq!(err.field_name(), "health.outlier_detection.interval");
/// assert_eq!(err.to_string(), "invalid health.outlier_detection.interval: must be greater than zero");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A field has a value that cannot work; `field` names it.
    #[error("invalid {field}: {reason}")]
    InvalidField {
        /// Dotted path of the offending field (`balancer.algorithm.decay`).
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

    /// What is wrong with the field.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::InvalidField { reason, .. } => reason,
        }
    }

    /// Prefixes the field path with `prefix.`, so a config nested in another
    /// (the reconnect backoff inside a balancer config) names the whole path.
    pub fn within(self, prefix: &str) -> Self {
        match self {
            Self::InvalidField { field, reason } => Self::InvalidField {
                field: format!("{prefix}.{field}"),
                reason,
            },
        }
    }
}

/// Checks shared by the configs. Each returns the error naming `field`.
pub(crate) mod check {
    use super::{ConfigError, Duration};

    /// The longest duration any field accepts: a year is far past any
    /// sensible timeout, backoff, ejection or ramp, and keeps every deadline
    /// computed from it finite.
    const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 60 * 60);

    /// A duration greater than zero and at most a year.
    pub(crate) fn non_zero_duration(field: &str, value: Duration) -> Result<(), ConfigError> {
        if value.is_zero() {
            Err(ConfigError::field(field, "must be greater than zero"))
        } else {
            at_most_a_year(field, value)
        }
    }

    /// A duration of at most a year (zero included).
    pub(crate) fn at_most_a_year(field: &str, value: Duration) -> Result<(), ConfigError> {
        if value > MAX_DURATION {
            Err(ConfigError::field(field, "must be at most 365 days"))
        } else {
            Ok(())
        }
    }

    /// A percentage in `[0, 100]`.
    pub(crate) fn percent(field: &str, value: f64) -> Result<(), ConfigError> {
        if (0.0..=100.0).contains(&value) {
            Ok(())
        } else {
            Err(ConfigError::field(field, "must be a percentage from 0 to 100"))
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

    /// `true`, or the error naming `field` with `reason`.
    pub(crate) fn that(holds: bool, field: &str, reason: &'static str) -> Result<(), ConfigError> {
        if holds {
            Ok(())
        } else {
            Err(ConfigError::field(field, reason))
        }
    }
}

/// Builder-style setters of plain config fields, one per field, each
/// documented as "Sets [`field`](Self::field)": the configs have two dozen
/// of them and they differ only in name and type. Setters that do more
/// (wrap in `Some`, take `impl Into`) are written out by hand.
macro_rules! setters {
    ($($field:ident: $ty:ty),* $(,)?) => {
        $(
            #[doc = concat!("Sets [`", stringify!($field), "`](Self::", stringify!($field), ").")]
            pub fn $field(mut self, $field: $ty) -> Self {
                self.$field = $field;
                self
            }
        )*
    };
}
pub(crate) use setters;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_configs_name_the_whole_path() {
        let err = check::percent("healthy_panic_threshold", 101.0)
            .unwrap_err()
            .within("health")
            .within("balancer");
        assert_eq!(err.field_name(), "balancer.health.healthy_panic_threshold");
        assert_eq!(err.reason(), "must be a percentage from 0 to 100");
        assert!(check::non_zero_duration("d", Duration::ZERO).is_err());
        assert!(check::non_zero_duration("d", Duration::MAX).is_err());
        assert!(check::at_most_a_year("d", Duration::ZERO).is_ok());
        assert!(check::finite_non_negative("f", f64::INFINITY).is_err());
        assert!(check::that(false, "n", "must be at least 1").is_err());
    }
}

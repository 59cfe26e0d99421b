//! The one config error of the crate: the balancer's and passive health's
//! configs are validated into it, so a caller handles one type whichever
//! part of a [`BalancerConfig`](crate::balance::BalancerConfig) is wrong.

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
/// let err = ConfigError::field("health.outlier_detection.interval", "must be greater than zero");
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
}

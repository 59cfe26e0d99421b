//! Why an autoscaler could not be built. Nothing runs until every field is
//! right.

/// An autoscaler configuration that was rejected at build time.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AutoscaleError {
    /// A field has a value that cannot work; `field` names it
    /// (`policies[0].target`, `behavior.scale_down.policies[1].period`).
    #[error("invalid {field}: {reason}")]
    InvalidField {
        /// Dotted path of the offending field.
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A policy names a metric no source was given for.
    #[error("{field}: no source named {metric:?} was given to the builder")]
    UnknownMetric {
        /// The policy's metric field (`policies[1].metric`).
        field: String,
        /// The name it asks for.
        metric: String,
    },
    /// The builder was given no scaler to drive.
    #[error("no scaler: call AutoscalerBuilder::scaler")]
    NoScaler,
}

impl AutoscaleError {
    pub(crate) fn field(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::InvalidField {
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// Prefixes the field path with `prefix`, so nested settings name the
    /// whole path.
    pub(crate) fn within(self, prefix: &str) -> Self {
        match self {
            Self::InvalidField { field, reason } => Self::InvalidField {
                field: format!("{prefix}.{field}"),
                reason,
            },
            Self::UnknownMetric { field, metric } => Self::UnknownMetric {
                field: format!("{prefix}.{field}"),
                metric,
            },
            other => other,
        }
    }
}

//! Errors for specs that cannot run.

/// A supervisor or child spec that was rejected at build time. Nothing was
/// started.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    /// A field has a value that cannot work; `field` names it
    /// (`children[web].liveness.period`).
    #[error("invalid {field}: {reason}")]
    InvalidField {
        /// Dotted path of the offending field.
        field: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Two children of one supervisor share an id.
    #[error("duplicate child id {0:?}")]
    DuplicateChildId(String),
}

impl SpecError {
    pub(crate) fn field(field: impl Into<String>, reason: &'static str) -> Self {
        Self::InvalidField {
            field: field.into(),
            reason,
        }
    }

    /// Prefixes the field path with `prefix.`, so nested specs name the whole path.
    pub(crate) fn within(self, prefix: &str) -> Self {
        match self {
            Self::InvalidField { field, reason } => Self::InvalidField {
                field: format!("{prefix}.{field}"),
                reason,
            },
            other => other,
        }
    }
}

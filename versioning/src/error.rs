//! Why a version set or a negotiation config was refused at build time.

/// A version set or layer configuration that cannot work. Nothing is built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VersionError {
    /// A field has a value that cannot work; `field` names it
    /// (`versions["1"].sunset`, `default`).
    #[error("invalid {field}: {reason}")]
    InvalidField {
        /// The offending field.
        field: String,
        /// What is wrong with it.
        reason: String,
    },
}

impl VersionError {
    pub(crate) fn field(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::InvalidField {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

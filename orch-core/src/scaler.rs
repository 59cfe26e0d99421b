//! The seam between autoscaling decisions and whatever runs the instances.

/// Something with a number of instances that can be changed: an in-process
/// [`ReplicaGroup`](crate::ReplicaGroup) today, a remote deployment tomorrow.
#[async_trait::async_trait]
pub trait Scaler: Send + Sync {
    /// The number of instances asked for.
    async fn current(&self) -> Result<usize, ScaleError>;
    /// Asks for `replicas` instances.
    async fn scale_to(&self, replicas: usize) -> Result<(), ScaleError>;
}

/// A scaler could not answer or carry out a request.
#[derive(Debug, thiserror::Error)]
#[error("scaler: {inner}")]
pub struct ScaleError {
    inner: Box<dyn std::error::Error + Send + Sync>,
}

impl ScaleError {
    /// Wraps any error.
    pub fn new(source: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self { inner: source.into() }
    }

    pub(crate) fn from_command(e: crate::CommandError) -> Self {
        Self::new(e)
    }
}

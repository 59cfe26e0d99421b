//! The seam between autoscaling decisions and whatever runs the instances.

/// Something with a number of instances that can be changed: an in-process
/// [`ReplicaGroup`](crate::ReplicaGroup) today, a remote deployment tomorrow.
#[async_trait::async_trait]
pub trait Scaler: Send + Sync {
    /// The number of instances asked for.
    async fn current(&self) -> Result<usize, ScaleError>;
    /// Asks for `replicas` instances.
    async fn scale_to(&self, replicas: usize) -> Result<(), ScaleError>;

    /// The instances asked for and how many of them are ready, for the
    /// autoscaler's rules about replicas that are not ready yet (as
    /// Kubernetes' HPA: on scale-up they count as idle, a scale-down
    /// leaves them out). The provided method asks [`current`](Self::current) and
    /// counts every instance as ready: a scaler that can tell should.
    async fn status(&self) -> Result<ScaleStatus, ScaleError> {
        let desired = self.current().await?;
        Ok(ScaleStatus {
            desired,
            ready: desired,
        })
    }
}

#[async_trait::async_trait]
impl<S: Scaler + ?Sized> Scaler for std::sync::Arc<S> {
    async fn current(&self) -> Result<usize, ScaleError> {
        (**self).current().await
    }

    async fn scale_to(&self, replicas: usize) -> Result<(), ScaleError> {
        (**self).scale_to(replicas).await
    }

    async fn status(&self) -> Result<ScaleStatus, ScaleError> {
        (**self).status().await
    }
}

/// What a [`Scaler`] reports about its instances.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ScaleStatus {
    /// Instances asked for.
    pub desired: usize,
    /// Instances ready to serve (at most `desired` is not guaranteed: a
    /// scale-down in progress may still show ready instances leaving).
    pub ready: usize,
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

//! The running supervisor: one tokio task per supervisor in the tree, which
//! owns the state of its children and makes every restart decision.
//!
//! Instances report to their supervisor over one channel (exits, probe
//! verdicts, announcements); users steer it over another (the
//! [`SupervisorHandle`]). Everything a subscriber sees goes through the
//! tree's event hub.

mod handle;
mod lifecycle;
mod restart;
mod task;

pub use handle::{ChildInfo, CommandError, ReplicaGroup, StartError, SupervisorError, SupervisorHandle};

use crate::SupervisorSpec;
use crate::event::EventHub;

/// Starts supervisor trees.
///
/// ```
/// use orch_core::{ChildSpec, Supervisor, SupervisorSpec};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let spec = SupervisorSpec::builder("app")
///     .child(ChildSpec::task("worker", |ctx| async move {
///         ctx.cancelled().await;
///         Ok::<_, std::io::Error>(())
///     }))
///     .build()?;
/// let handle = Supervisor::start(spec)?;
/// let sub = handle.subscribe();
/// # let _ = sub;
/// handle.shutdown().await?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct Supervisor;

impl Supervisor {
    /// Spawns the root supervisor of a new tree on the current tokio
    /// runtime and starts its children in order.
    ///
    /// The tree runs until [`SupervisorHandle::shutdown`] or until its
    /// restart intensity is exceeded; dropping the handle does not stop it.
    pub fn start(spec: SupervisorSpec) -> Result<SupervisorHandle, StartError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| StartError::NoRuntime)?;
        let hub = EventHub::new();
        let (supervisor, handle) =
            task::SupervisorTask::new(spec, hub, None, tokio_util::sync::CancellationToken::new());
        runtime.spawn(async move {
            // The outcome reaches the handles through `done`.
            let _ = supervisor.run().await;
        });
        Ok(handle)
    }
}

//! The handle a running task child gets: its identity, its stop signal,
//! and a way to announce where it serves.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use tokio_util::sync::{CancellationToken, WaitForCancellationFuture};

use crate::InstanceId;

/// State one incarnation shares with the supervisor and its probes.
#[derive(Debug, Default)]
pub(crate) struct InstanceShared {
    pub(crate) address: OnceLock<SocketAddr>,
    /// Set by [`ChildContext::fail`]: the reason this incarnation ends as a crash.
    pub(crate) failure: OnceLock<Arc<str>>,
}

/// What a running child tells its supervisor, outside its exit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ChildReport {
    /// [`ChildContext::announce`]: where it serves.
    Announced(SocketAddr),
    /// [`ChildContext::fail`]: it is ending as a crash, so it leaves
    /// rotation now rather than when it has drained.
    Failed,
}

/// Given to every task child when it starts.
///
/// The child should finish soon after [`cancelled`](Self::cancelled)
/// resolves: that is the supervisor asking it to drain and stop. If it is
/// still running when its grace period ends, its future is dropped.
#[derive(Clone)]
pub struct ChildContext {
    id: InstanceId,
    generation: u64,
    cancel: CancellationToken,
    shared: Arc<InstanceShared>,
    report: Arc<dyn Fn(ChildReport) + Send + Sync>,
}

impl std::fmt::Debug for ChildContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChildContext")
            .field("id", &self.id)
            .field("generation", &self.generation)
            .field("cancelled", &self.cancel.is_cancelled())
            .finish_non_exhaustive()
    }
}

impl ChildContext {
    pub(crate) fn new(
        id: InstanceId,
        generation: u64,
        cancel: CancellationToken,
        shared: Arc<InstanceShared>,
        report: Arc<dyn Fn(ChildReport) + Send + Sync>,
    ) -> Self {
        Self {
            id,
            generation,
            cancel,
            shared,
            report,
        }
    }

    /// This instance's id, stable across restarts.
    pub fn id(&self) -> &InstanceId {
        &self.id
    }

    /// This incarnation's number: 0 at first start, +1 per restart.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Resolves when the supervisor asks this instance to stop.
    pub fn cancelled(&self) -> WaitForCancellationFuture<'_> {
        self.cancel.cancelled()
    }

    /// Whether the supervisor has asked this instance to stop.
    pub fn is_cancelled(&self) -> bool {
        self.cancel.is_cancelled()
    }

    /// The stop signal itself, to hand to code that takes a token
    /// (for example axum's graceful shutdown).
    pub fn token(&self) -> &CancellationToken {
        &self.cancel
    }

    /// Announces the address this instance serves on.
    ///
    /// The address travels in the [`Ready`](crate::EventKind::Ready) event
    /// (so the registry can route to it) and is what [`TcpProbe`](crate::TcpProbe)
    /// checks. For a child built with
    /// [`ready_on_announce`](crate::ChildSpec::ready_on_announce), this is
    /// also what makes it ready. Only the first call of an incarnation counts.
    pub fn announce(&self, address: SocketAddr) {
        if self.shared.address.set(address).is_ok() {
            (self.report)(ChildReport::Announced(address));
        }
    }

    /// Ends this incarnation as a crash, from anywhere that holds its
    /// context: a request handler of a served child, a helper task.
    ///
    /// A child whose future can return an error does not need it; a child
    /// whose future only ends when asked to (a served axum or tonic child)
    /// does. The child is asked to stop as by the supervisor
    /// ([`cancelled`](Self::cancelled) resolves, a served child drains),
    /// and however its future then ends, short of a panic, the exit is
    /// [`ExitReason::Failed`](crate::ExitReason::Failed) with `reason`:
    /// the restart policy, the restart intensity and the crash counter
    /// treat it as a crash. The instance leaves rotation at once: if it
    /// was ready, [`NotReady`](crate::EventKind::NotReady) is published
    /// before it starts to drain, so a registry stops routing to it while
    /// it finishes the requests it has. Only the first call of an
    /// incarnation counts.
    ///
    /// ```
    /// use orch_core::{ChildContext, ChildSpec};
    ///
    /// // A child that gives up when it finds its state corrupt.
    /// let spec = ChildSpec::task("worker", |ctx: ChildContext| async move {
    ///     let corrupt = true;
    ///     if corrupt {
    ///         ctx.fail("state is corrupt");
    ///     }
    ///     ctx.cancelled().await;
    ///     Ok::<_, std::io::Error>(())
    /// });
    /// # let _ = spec;
    /// ```
    pub fn fail(&self, reason: impl Into<String>) {
        let reason: String = reason.into();
        if self.shared.failure.set(reason.into()).is_ok() {
            // Before the cancellation: the instance is out of rotation
            // before it starts to drain.
            (self.report)(ChildReport::Failed);
        }
        self.cancel.cancel();
    }

    /// The reason given to [`fail`](Self::fail), if it was called.
    pub(crate) fn failure(&self) -> Option<Arc<str>> {
        self.shared.failure.get().cloned()
    }
}

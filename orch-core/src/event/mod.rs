//! Lifecycle events: what happened to which instance, and when.
//!
//! The supervisor reports every step of an instance's life (starting, ready,
//! not ready, exited, restarting, stopping, stopped) as a [`LifecycleEvent`].
//! The registry and the autoscaler consume them through a [`Subscription`],
//! which pairs a consistent snapshot with the stream of later events so a late
//! subscriber starts without a gap.

mod hub;

pub(crate) use hub::EventHub;
pub use hub::{EventStream, Subscription, Update};

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

/// The name of one running instance of a child: the supervisor path, the
/// child id and, for replica groups, the ordinal (`root/api/web-2`).
///
/// The id stays the same across restarts of the instance; the
/// [`generation`](LifecycleEvent::generation) tells the incarnations apart.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InstanceId(Arc<str>);

impl InstanceId {
    pub(crate) fn new(path: &str, child: &str, ordinal: Option<u32>) -> Self {
        let id = match ordinal {
            Some(n) => format!("{path}/{child}-{n}"),
            None => format!("{path}/{child}"),
        };
        Self(id.into())
    }

    /// The full path of the instance, for example `root/web-2`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The path of the supervisor the instance runs under, for example
    /// `root/api` for `root/api/web-2`.
    pub fn supervisor_path(&self) -> &str {
        // The last segment is the child (and ordinal), which `new` joins on.
        self.0.rsplit_once('/').map_or("", |(path, _)| path)
    }
}

impl fmt::Display for InstanceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for InstanceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

/// Where an instance is in its life, as the latest event left it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InstanceState {
    /// Spawned; not yet ready (startup probe, announcement or readiness probe pending).
    Starting,
    /// Running and ready to take traffic.
    Ready,
    /// Running but out of rotation (readiness probe failing).
    NotReady,
    /// Exited and waiting for its restart delay.
    BackingOff,
    /// Being stopped: out of rotation, grace period running; cancelled at
    /// once or, if it was ready, after its child's
    /// [`drain_delay`](crate::ChildPolicy::drain_delay).
    Stopping,
}

impl InstanceState {
    /// Whether the instance should receive traffic.
    pub fn is_ready(self) -> bool {
        matches!(self, Self::Ready)
    }
}

/// Why an instance's run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExitReason {
    /// The task returned `Ok(())` or the process exited with status 0.
    Normal,
    /// The supervisor stopped it (shutdown, scale-down, sibling restart).
    Stopped,
    /// The task returned an error.
    Failed(Arc<str>),
    /// The task panicked; the panic was caught and treated as a crash.
    Panicked(Arc<str>),
    /// The process exited with a non-zero status.
    ExitCode(i32),
    /// The process was killed by a signal it did not ask for.
    Signal(i32),
    /// The process could not be spawned.
    SpawnFailed(Arc<str>),
    /// The liveness probe failed its threshold and the supervisor killed it.
    LivenessFailed,
    /// The startup probe failed its threshold and the supervisor killed it.
    StartupFailed,
    /// A nested supervisor gave up (its restart intensity was exceeded).
    Escalated(Arc<str>),
}

impl ExitReason {
    /// Whether the exit counts as a crash: everything but
    /// [`Normal`](Self::Normal) and [`Stopped`](Self::Stopped).
    ///
    /// Transient children are restarted only after an abnormal exit.
    pub fn is_abnormal(&self) -> bool {
        !matches!(self, Self::Normal | Self::Stopped)
    }
}

impl fmt::Display for ExitReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Normal => f.write_str("normal exit"),
            Self::Stopped => f.write_str("stopped by the supervisor"),
            Self::Failed(e) => write!(f, "failed: {e}"),
            Self::Panicked(p) => write!(f, "panicked: {p}"),
            Self::ExitCode(c) => write!(f, "exited with status {c}"),
            Self::Signal(s) => write!(f, "killed by signal {s}"),
            Self::SpawnFailed(e) => write!(f, "could not be spawned: {e}"),
            Self::LivenessFailed => f.write_str("liveness probe failed"),
            Self::StartupFailed => f.write_str("startup probe failed"),
            Self::Escalated(e) => write!(f, "nested supervisor failed: {e}"),
        }
    }
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventKind {
    /// A new incarnation was spawned.
    Starting,
    /// The instance is ready; `address` is what it announced, if anything.
    Ready {
        /// The address the instance announced through
        /// [`ChildContext::announce`](crate::ChildContext::announce).
        address: Option<SocketAddr>,
    },
    /// The instance left rotation without exiting: its readiness probe
    /// failed, or it called [`ChildContext::fail`](crate::ChildContext::fail)
    /// and is draining before it exits.
    NotReady,
    /// The incarnation ended.
    Exited {
        /// Why it ended.
        reason: ExitReason,
    },
    /// The instance will be started again after `delay`.
    Restarting {
        /// Restarts of this instance since its backoff was last reset (1 = first).
        attempt: u32,
        /// How long the supervisor waits before starting it.
        delay: Duration,
    },
    /// The supervisor is stopping the instance: it leaves rotation now, its
    /// grace period runs, and it is cancelled at once or, if it was ready,
    /// after its child's [`drain_delay`](crate::ChildPolicy::drain_delay).
    /// Published before the cancellation.
    Stopping,
    /// The instance is gone and will not be restarted by this decision.
    Stopped {
        /// True when the grace period ran out and the instance was aborted
        /// (tasks) or killed with SIGKILL (processes).
        forced: bool,
    },
}

/// One step in the life of one instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LifecycleEvent {
    /// Which instance.
    pub id: InstanceId,
    /// The id of the child spec the instance belongs to.
    pub child: Arc<str>,
    /// Incarnation counter: 0 for the first start, +1 on every restart.
    pub generation: u64,
    /// When the supervisor observed it (tokio time, so paused time in tests).
    pub at: Instant,
    /// What happened.
    pub kind: EventKind,
}

/// The current state of one instance, as kept in the snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceInfo {
    /// Which instance.
    pub id: InstanceId,
    /// The id of the child spec the instance belongs to.
    pub child: Arc<str>,
    /// Current incarnation.
    pub generation: u64,
    /// Current state.
    pub state: InstanceState,
    /// The address the instance announced, if any.
    pub address: Option<SocketAddr>,
    /// When the instance entered `state`.
    pub since: Instant,
}

#[cfg(test)]
mod tests {
    use super::InstanceId;

    #[test]
    fn an_instance_id_names_its_supervisor_path() {
        let replica = InstanceId::new("root/api", "web", Some(2));
        assert_eq!(replica.as_str(), "root/api/web-2");
        assert_eq!(replica.supervisor_path(), "root/api");
        assert_eq!(InstanceId::new("root", "db", None).supervisor_path(), "root");
    }
}

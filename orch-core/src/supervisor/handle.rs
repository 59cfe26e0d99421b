//! The user's side of a running supervisor: queries, commands, events.

use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

use crate::event::EventHub;
use crate::{ChildSpec, InstanceInfo, RestartType, ScaleError, ScaleStatus, Scaler, SpecError, Subscription};

/// Why a supervisor stopped on its own.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SupervisorError {
    /// More restarts than the intensity allows; all children were stopped.
    #[error(
        "supervisor {supervisor}: restart intensity exceeded ({max_restarts} restarts within {within:?}), last crash in child {child}"
    )]
    IntensityExceeded {
        /// Path of the supervisor that gave up.
        supervisor: String,
        /// The child whose crash was one too many.
        child: String,
        /// The configured limit.
        max_restarts: u32,
        /// The configured window.
        within: Duration,
    },
    /// The supervisor's task ended without reporting (it was aborted, or
    /// its runtime shut down).
    #[error("supervisor {0} ended without reporting")]
    Vanished(String),
}

/// `Supervisor::start` was called outside a tokio runtime.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StartError {
    /// No tokio runtime on this thread.
    #[error("Supervisor::start must be called from within a tokio runtime")]
    NoRuntime,
}

/// A command that the supervisor refused; nothing was changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    /// No child with that id.
    #[error("no child {0:?}")]
    NoSuchChild(String),
    /// The child is not a replica group.
    #[error("child {0:?} is not a replica group")]
    NotAGroup(String),
    /// A child with that id exists already.
    #[error("a child {0:?} exists already")]
    DuplicateChild(String),
    /// The spec of a new child is invalid.
    #[error(transparent)]
    InvalidSpec(#[from] SpecError),
    /// The supervisor has stopped.
    #[error("the supervisor has stopped")]
    Stopped,
}

/// One child of a supervisor, as [`SupervisorHandle::children`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChildInfo {
    /// The child's id.
    pub id: String,
    /// `"task"`, `"process"` or `"supervisor"`.
    pub kind: &'static str,
    /// Its restart type.
    pub restart: RestartType,
    /// Whether it is a replica group.
    pub group: bool,
    /// Instances it should have (1 for a single child; 0 once terminated).
    pub desired: usize,
    /// Instances that exist (running, stopping or waiting to restart).
    pub instances: usize,
    /// Instances that are ready.
    pub ready: usize,
}

pub(crate) type Reply<T> = oneshot::Sender<Result<T, CommandError>>;

pub(crate) enum Command {
    Children(oneshot::Sender<Vec<ChildInfo>>),
    StartChild(Box<ChildSpec>, Reply<()>),
    TerminateChild(String, Reply<()>),
    RestartChild(String, Reply<()>),
    DeleteChild(String, Reply<()>),
    Resize(String, usize, Reply<()>),
}

/// Queries and steers a running supervisor. Cheap to clone.
///
/// Commands are carried out in order by the supervisor's own task, between
/// its reactions to its children, so they never race with a restart.
#[derive(Debug, Clone)]
pub struct SupervisorHandle {
    pub(crate) path: Arc<str>,
    pub(crate) commands: mpsc::Sender<Command>,
    pub(crate) hub: Weak<EventHub>,
    pub(crate) done: watch::Receiver<Option<Result<(), SupervisorError>>>,
    pub(crate) cancel: CancellationToken,
}

impl SupervisorHandle {
    /// The supervisor's path in its tree (`root`, `root/db`).
    pub fn path(&self) -> &str {
        &self.path
    }

    /// A snapshot of the whole tree's instances plus the stream of every
    /// later event, with no gap between them.
    pub fn subscribe(&self) -> Subscription {
        match self.hub.upgrade() {
            Some(hub) => hub.subscribe(),
            None => EventHub::new().subscribe(),
        }
    }

    /// Every instance in the tree right now.
    pub fn instances(&self) -> Vec<InstanceInfo> {
        self.hub.upgrade().map(|h| h.snapshot()).unwrap_or_default()
    }

    /// The handle of the nested supervisor `child` of this one.
    pub fn nested(&self, child: &str) -> Option<SupervisorHandle> {
        self.hub.upgrade()?.supervisor(&format!("{}/{child}", self.path))
    }

    async fn ask<T>(&self, make: impl FnOnce(Reply<T>) -> Command) -> Result<T, CommandError> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(make(tx))
            .await
            .map_err(|_| CommandError::Stopped)?;
        rx.await.map_err(|_| CommandError::Stopped)?
    }

    /// The supervisor's children in start order.
    pub async fn children(&self) -> Result<Vec<ChildInfo>, CommandError> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(Command::Children(tx))
            .await
            .map_err(|_| CommandError::Stopped)?;
        rx.await.map_err(|_| CommandError::Stopped)
    }

    /// Adds a child after the existing ones and starts it.
    pub async fn start_child(&self, spec: ChildSpec) -> Result<(), CommandError> {
        spec.validate()?;
        self.ask(|r| Command::StartChild(Box::new(spec), r)).await
    }

    /// Stops a child (all its instances, each with its grace period) and
    /// keeps its spec, so [`restart_child`](Self::restart_child) can start it again.
    pub async fn terminate_child(&self, id: &str) -> Result<(), CommandError> {
        self.ask(|r| Command::TerminateChild(id.to_owned(), r)).await
    }

    /// Stops a running child and starts it again, or starts a terminated
    /// one. Does not count against the restart intensity.
    pub async fn restart_child(&self, id: &str) -> Result<(), CommandError> {
        self.ask(|r| Command::RestartChild(id.to_owned(), r)).await
    }

    /// Stops a child if it runs and forgets its spec.
    pub async fn delete_child(&self, id: &str) -> Result<(), CommandError> {
        self.ask(|r| Command::DeleteChild(id.to_owned(), r)).await
    }

    /// Sets the number of instances of a replica group and returns once the
    /// change is under way: new instances are `Starting`, surplus ones
    /// `Stopping`. Scale-down picks not-ready instances first, then the
    /// highest ordinals, and drains them concurrently in the background, each
    /// with its grace period, while the supervisor goes on supervising; their
    /// `Stopped` events follow.
    pub async fn resize(&self, group: &str, replicas: usize) -> Result<(), CommandError> {
        self.ask(|r| Command::Resize(group.to_owned(), replicas, r)).await
    }

    /// A [`Scaler`] for the replica group `group`.
    pub fn replica_group(&self, group: &str) -> ReplicaGroup {
        ReplicaGroup {
            handle: self.clone(),
            group: group.to_owned(),
        }
    }

    /// Stops the whole tree (children in reverse start order, each subtree
    /// the same way) and waits until it is down.
    pub async fn shutdown(&self) -> Result<(), SupervisorError> {
        self.cancel.cancel();
        self.wait().await
    }

    /// Waits until the supervisor has stopped: `Ok` after a shutdown, the
    /// error if it gave up.
    pub async fn wait(&self) -> Result<(), SupervisorError> {
        let mut done = self.done.clone();
        match done.wait_for(Option::is_some).await {
            Ok(outcome) => outcome.clone().unwrap_or(Ok(())),
            Err(_) => Err(SupervisorError::Vanished(self.path.to_string())),
        }
    }
}

/// A replica group of a running supervisor, as a [`Scaler`].
#[derive(Debug, Clone)]
pub struct ReplicaGroup {
    handle: SupervisorHandle,
    group: String,
}

#[async_trait::async_trait]
impl Scaler for ReplicaGroup {
    async fn current(&self) -> Result<usize, ScaleError> {
        let children = self.handle.children().await.map_err(ScaleError::from_command)?;
        children
            .into_iter()
            .find(|c| c.id == self.group)
            .map(|c| c.desired)
            .ok_or_else(|| ScaleError::from_command(CommandError::NoSuchChild(self.group.clone())))
    }

    async fn scale_to(&self, replicas: usize) -> Result<(), ScaleError> {
        self.handle
            .resize(&self.group, replicas)
            .await
            .map_err(ScaleError::from_command)
    }

    async fn status(&self) -> Result<ScaleStatus, ScaleError> {
        let children = self.handle.children().await.map_err(ScaleError::from_command)?;
        children
            .into_iter()
            .find(|c| c.id == self.group)
            .map(|c| ScaleStatus {
                desired: c.desired,
                ready: c.ready,
            })
            .ok_or_else(|| ScaleError::from_command(CommandError::NoSuchChild(self.group.clone())))
    }
}

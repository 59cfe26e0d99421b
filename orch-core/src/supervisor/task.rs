//! The supervisor task: its state, its main loop, and its commands.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::{mpsc, watch};
use tokio::task::{AbortHandle, JoinHandle};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::handle::{ChildInfo, Command, CommandError, SupervisorError, SupervisorHandle};
use crate::child::InstanceShared;
use crate::event::EventHub;
use crate::probe::ProbeTransition;
use crate::spec::{ChildKind, ChildSpec, DelaySchedule, IntensityTracker, RestartBackoff, SupervisorPolicy};
use crate::{ExitReason, InstanceId, SupervisorSpec};

/// Identifies one incarnation of one instance in messages, so that reports
/// from an incarnation that is already gone are recognised and dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct IncarnationKey {
    pub(super) position: u64,
    pub(super) ordinal: u32,
    pub(super) generation: u64,
}

/// What instances (and restart timers) tell their supervisor.
#[derive(Debug)]
pub(super) enum Notice {
    Exited {
        key: IncarnationKey,
        reason: ExitReason,
    },
    Probe {
        key: IncarnationKey,
        transition: ProbeTransition,
    },
    Announced {
        key: IncarnationKey,
        address: SocketAddr,
    },
    /// The child called `ChildContext::fail`.
    Failed {
        key: IncarnationKey,
    },
    RestartDue {
        token: u64,
    },
    /// A stop begun with `begin_stop` has finished.
    StopDone {
        key: IncarnationKey,
        forced: bool,
        cause: StopCause,
    },
}

/// What happens to an instance once a background stop has finished.
#[derive(Debug)]
pub(super) enum StopCause {
    /// Scale-down: once stopped, it is gone.
    ScaleDown,
    /// Killed for this reason (a failed probe): once stopped, handled as a
    /// crash.
    Killed(ExitReason),
}

/// Where an instance is, from the supervisor's point of view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    Running,
    /// Waiting for the restart timer `token`.
    BackingOff(u64),
    /// Stopped as part of a strategy restart, to be started again.
    Down,
    /// Being stopped in the background (scale-down, failed probe); the
    /// supervisor goes on with other work meanwhile.
    Stopping,
}

pub(super) struct Instance {
    pub(super) id: InstanceId,
    pub(super) generation: u64,
    pub(super) phase: Phase,
    pub(super) cancel: CancellationToken,
    pub(super) task: Option<JoinHandle<()>>,
    /// The background stop in progress; yields whether it had to abort.
    pub(super) stopper: Option<JoinHandle<bool>>,
    pub(super) probes: Option<AbortHandle>,
    pub(super) shared: Arc<InstanceShared>,
    /// Created at the first crash; most instances never need one.
    pub(super) schedule: Option<DelaySchedule>,
    pub(super) started_at: Instant,
    pub(super) startup_done: bool,
    pub(super) probe_ready: bool,
    pub(super) announced: bool,
    /// The child called `ChildContext::fail`: never ready again.
    pub(super) failed: bool,
    pub(super) ready: bool,
}

impl Drop for Instance {
    fn drop(&mut self) {
        // If the supervisor itself is dropped (aborted by its parent after a
        // grace period, or its runtime shuts down), its instances must not
        // run on unsupervised.
        if let Some(task) = &self.task {
            task.abort();
        }
        if let Some(stopper) = &self.stopper {
            stopper.abort();
        }
        if let Some(probes) = &self.probes {
            probes.abort();
        }
    }
}

pub(super) struct Position {
    pub(super) uid: u64,
    pub(super) spec: ChildSpec,
    pub(super) backoff: Arc<dyn RestartBackoff>,
    /// Indexed by ordinal; `None` is a free ordinal.
    pub(super) instances: Vec<Option<Instance>>,
    /// Instances it should have; 0 once terminated.
    pub(super) desired: usize,
    pub(super) restarts: metrics::Counter,
    pub(super) crashes: metrics::Counter,
}

impl Position {
    pub(super) fn live(&self) -> impl DoubleEndedIterator<Item = (u32, &Instance)> {
        self.instances
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.as_ref().map(|inst| (i as u32, inst)))
    }

    pub(super) fn instance(&self, key: IncarnationKey) -> Option<&Instance> {
        self.instances
            .get(key.ordinal as usize)?
            .as_ref()
            .filter(|i| i.generation == key.generation)
    }

    fn info(&self) -> ChildInfo {
        ChildInfo {
            id: self.spec.id.to_string(),
            kind: match self.spec.kind {
                ChildKind::Task(_) => "task",
                ChildKind::Process(_) => "process",
                ChildKind::Supervisor(_) => "supervisor",
            },
            restart: self.spec.policy.restart,
            group: self.spec.is_group(),
            desired: self.desired,
            instances: self.live().filter(|(_, i)| i.phase != Phase::Stopping).count(),
            ready: self.live().filter(|(_, i)| i.ready).count(),
        }
    }
}

pub(crate) struct SupervisorTask {
    pub(super) path: Arc<str>,
    pub(super) policy: SupervisorPolicy,
    pub(super) intensity: IntensityTracker,
    pub(super) positions: Vec<Position>,
    pub(super) next_uid: u64,
    pub(super) next_token: u64,
    pub(super) pending: std::collections::HashMap<u64, Vec<(u64, u32)>>,
    pub(super) hub: Arc<EventHub>,
    pub(super) notice_tx: mpsc::UnboundedSender<Notice>,
    notice_rx: mpsc::UnboundedReceiver<Notice>,
    cmd_rx: mpsc::Receiver<Command>,
    cancel: CancellationToken,
    done: watch::Sender<Option<Result<(), SupervisorError>>>,
}

impl SupervisorTask {
    pub(crate) fn new(
        spec: SupervisorSpec,
        hub: Arc<EventHub>,
        parent: Option<&str>,
        cancel: CancellationToken,
    ) -> (Self, SupervisorHandle) {
        let path: Arc<str> = match parent {
            Some(p) => format!("{p}/{}", spec.name).into(),
            None => spec.name.clone().into(),
        };
        let (notice_tx, notice_rx) = mpsc::unbounded_channel();
        let (cmd_tx, cmd_rx) = mpsc::channel(64);
        let (done, done_rx) = watch::channel(None);
        let handle = SupervisorHandle {
            path: path.clone(),
            commands: cmd_tx,
            hub: Arc::downgrade(&hub),
            done: done_rx,
            cancel: cancel.clone(),
        };
        hub.register_supervisor(path.clone(), handle.clone());
        let mut task = Self {
            path,
            policy: spec.policy,
            intensity: IntensityTracker::new(spec.policy.intensity),
            positions: Vec::with_capacity(spec.children.len()),
            next_uid: 0,
            next_token: 0,
            pending: Default::default(),
            hub,
            notice_tx,
            notice_rx,
            cmd_rx,
            cancel,
            done,
        };
        for child in spec.children {
            task.add_position(child);
        }
        (task, handle)
    }

    fn add_position(&mut self, spec: ChildSpec) -> usize {
        let uid = self.next_uid;
        self.next_uid += 1;
        let labels = [
            ("supervisor", self.path.to_string()),
            ("child", spec.id.to_string()),
        ];
        let backoff = spec
            .custom_backoff
            .clone()
            .unwrap_or_else(|| Arc::new(spec.policy.backoff));
        let desired = spec.policy.replicas.unwrap_or(1);
        self.positions.push(Position {
            uid,
            backoff,
            instances: Vec::new(),
            desired,
            restarts: metrics::counter!("orch_supervisor_restarts_total", &labels),
            crashes: metrics::counter!("orch_child_crashes_total", &labels),
            spec,
        });
        self.positions.len() - 1
    }

    pub(super) fn position_index(&self, uid: u64) -> Option<usize> {
        self.positions.iter().position(|p| p.uid == uid)
    }

    fn position_by_id(&self, id: &str) -> Result<usize, CommandError> {
        self.positions
            .iter()
            .position(|p| &*p.spec.id == id)
            .ok_or_else(|| CommandError::NoSuchChild(id.to_owned()))
    }

    /// Runs the supervisor until shutdown or failure, and reports the
    /// outcome to its handles.
    pub(crate) async fn run(self) -> Result<(), SupervisorError> {
        let span = tracing::info_span!("supervisor", path = %self.path);
        let path = self.path.clone();
        let hub = self.hub.clone();
        let done = self.done.clone();
        let outcome = self.run_inner().instrument(span).await;
        hub.unregister_supervisor(&path);
        done.send_replace(Some(outcome.clone()));
        outcome
    }

    async fn run_inner(mut self) -> Result<(), SupervisorError> {
        tracing::debug!(children = self.positions.len(), "starting children in order");
        for index in 0..self.positions.len() {
            self.start_position(index);
        }
        let mut commands_open = true;
        loop {
            tokio::select! {
                biased;
                () = self.cancel.cancelled() => {
                    tracing::info!("shutting down");
                    self.stop_all().await;
                    return Ok(());
                }
                Some(notice) = self.notice_rx.recv() => {
                    self.on_notice(notice).await?;
                }
                cmd = self.cmd_rx.recv(), if commands_open => match cmd {
                    Some(cmd) => self.on_command(cmd).await,
                    // Every handle is gone: keep supervising, nobody steers.
                    None => commands_open = false,
                },
            }
        }
    }

    async fn on_notice(&mut self, notice: Notice) -> Result<(), SupervisorError> {
        match notice {
            Notice::Exited { key, reason } => self.on_exit(key, reason).await,
            Notice::Probe { key, transition } => self.on_probe(key, transition).await,
            Notice::Announced { key, address } => {
                self.on_announce(key, address);
                Ok(())
            }
            Notice::Failed { key } => {
                self.on_failed(key);
                Ok(())
            }
            Notice::RestartDue { token } => {
                self.on_restart_due(token);
                Ok(())
            }
            Notice::StopDone { key, forced, cause } => self.on_stop_done(key, forced, cause).await,
        }
    }

    async fn on_command(&mut self, cmd: Command) {
        match cmd {
            Command::Children(reply) => {
                let _ = reply.send(self.positions.iter().map(Position::info).collect());
            }
            Command::StartChild(spec, reply) => {
                let result = if self.positions.iter().any(|p| p.spec.id == spec.id) {
                    Err(CommandError::DuplicateChild(spec.id.to_string()))
                } else {
                    let index = self.add_position(*spec);
                    self.start_position(index);
                    Ok(())
                };
                let _ = reply.send(result);
            }
            Command::TerminateChild(id, reply) => {
                let result = match self.position_by_id(&id) {
                    Ok(index) => {
                        self.positions[index].desired = 0;
                        self.stop_position(index, true).await;
                        Ok(())
                    }
                    Err(e) => Err(e),
                };
                let _ = reply.send(result);
            }
            Command::RestartChild(id, reply) => {
                let result = match self.position_by_id(&id) {
                    Ok(index) => {
                        self.stop_position(index, true).await;
                        let p = &mut self.positions[index];
                        p.desired = p.spec.policy.replicas.unwrap_or(1).max(p.desired);
                        self.start_position(index);
                        Ok(())
                    }
                    Err(e) => Err(e),
                };
                let _ = reply.send(result);
            }
            Command::DeleteChild(id, reply) => {
                let result = match self.position_by_id(&id) {
                    Ok(index) => {
                        self.stop_position(index, true).await;
                        self.positions.remove(index);
                        Ok(())
                    }
                    Err(e) => Err(e),
                };
                let _ = reply.send(result);
            }
            Command::Resize(id, replicas, reply) => {
                let result = match self.position_by_id(&id) {
                    Ok(index) if !self.positions[index].spec.is_group() => Err(CommandError::NotAGroup(id)),
                    Ok(index) => {
                        self.resize(index, replicas);
                        Ok(())
                    }
                    Err(e) => Err(e),
                };
                let _ = reply.send(result);
            }
        }
    }

    /// Stops every child in reverse start order.
    pub(super) async fn stop_all(&mut self) {
        for index in (0..self.positions.len()).rev() {
            self.stop_position(index, true).await;
        }
    }
}

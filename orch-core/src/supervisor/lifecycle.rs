//! Starting, stopping and readiness of instances.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::task::{IncarnationKey, Instance, Notice, Phase, StopCause, SupervisorTask};
use crate::child::{ChildContext, ChildReport, InstanceShared, run_process, run_task};
use crate::probe::{ProbeTarget, ProbeTransition, run_probes};
use crate::spec::{ChildKind, ReadyGate};
use crate::{EventKind, ExitReason, InstanceId, LifecycleEvent};

/// What a stopping instance leaves to wait for: its task, and the background
/// stop that may already be counting down its grace (yields "forced").
type StopWaits = (Option<JoinHandle<()>>, Option<JoinHandle<bool>>);

impl SupervisorTask {
    pub(super) fn publish(&self, index: usize, ordinal: u32, kind: EventKind) {
        let position = &self.positions[index];
        let Some(inst) = position.instances.get(ordinal as usize).and_then(Option::as_ref) else {
            return;
        };
        self.hub.publish(LifecycleEvent {
            id: inst.id.clone(),
            child: position.spec.id.clone(),
            generation: inst.generation,
            at: Instant::now(),
            kind,
        });
    }

    /// Starts instances up to the position's desired count.
    pub(super) fn start_position(&mut self, index: usize) {
        let desired = self.positions[index].desired;
        let instances = &mut self.positions[index].instances;
        instances.reserve_exact(desired.saturating_sub(instances.len()));
        for ordinal in 0..desired as u32 {
            let free = self.positions[index]
                .instances
                .get(ordinal as usize)
                .is_none_or(|s| s.is_none() || s.as_ref().is_some_and(|i| i.phase == Phase::Down));
            if free {
                self.spawn_instance(index, ordinal);
            }
        }
    }

    /// Spawns a new incarnation at `ordinal` (generation 0 if the slot is free).
    pub(super) fn spawn_instance(&mut self, index: usize, ordinal: u32) {
        let path = self.path.clone();
        let position = &mut self.positions[index];
        let slot = ordinal as usize;
        if position.instances.len() <= slot {
            position.instances.resize_with(slot + 1, || None);
        }
        let probes = position.spec.probes.clone();
        let (id, generation, schedule) = match position.instances[slot].take() {
            Some(mut old) => (old.id.clone(), old.generation + 1, old.schedule.take()),
            None => {
                let ordinal = position.spec.is_group().then_some(ordinal);
                (InstanceId::new(&path, &position.spec.id, ordinal), 0, None)
            }
        };
        let key = IncarnationKey {
            position: position.uid,
            ordinal,
            generation,
        };
        let cancel = CancellationToken::new();
        let shared = Arc::new(InstanceShared::default());
        let tx = self.notice_tx.clone();
        let ctx = ChildContext::new(
            id.clone(),
            generation,
            cancel.clone(),
            shared.clone(),
            Arc::new(move |report| {
                let _ = tx.send(match report {
                    ChildReport::Announced(address) => Notice::Announced { key, address },
                    ChildReport::Failed => Notice::Failed { key },
                });
            }),
        );
        let tx = self.notice_tx.clone();
        let task = match &position.spec.kind {
            ChildKind::Task(factory) => spawn_reporting(run_task(factory.clone(), ctx), tx, key),
            ChildKind::Process(spec) => spawn_reporting(run_process(spec.clone(), ctx), tx, key),
            ChildKind::Supervisor(spec) => {
                let nested = super::restart::run_nested(spec.clone(), self.hub.clone(), path.clone(), ctx);
                spawn_reporting(nested, tx, key)
            }
        };
        let probe_task = (!probes.is_empty()).then(|| {
            let tx = self.notice_tx.clone();
            let (target_id, target_shared) = (id.clone(), shared.clone());
            tokio::spawn(run_probes(
                probes.clone(),
                move || ProbeTarget {
                    id: target_id.clone(),
                    generation,
                    address: target_shared.address.get().copied(),
                },
                move |transition| {
                    let _ = tx.send(Notice::Probe { key, transition });
                },
            ))
            .abort_handle()
        });
        let spec = &position.spec;
        position.instances[slot] = Some(Instance {
            id,
            generation,
            phase: Phase::Running,
            cancel,
            task: Some(task),
            stopper: None,
            probes: probe_task,
            shared,
            schedule,
            started_at: Instant::now(),
            startup_done: probes.startup.is_none(),
            probe_ready: probes.readiness.is_none(),
            announced: spec.ready_gate == ReadyGate::Started,
            failed: false,
            ready: false,
        });
        tracing::debug!(child = %spec.id, ordinal, generation, "starting instance");
        self.publish(index, ordinal, EventKind::Starting);
        self.update_ready(index, ordinal);
    }

    /// Publishes Ready or NotReady when the instance's readiness changed.
    pub(super) fn update_ready(&mut self, index: usize, ordinal: u32) {
        let Some(inst) = self.positions[index].instances[ordinal as usize].as_mut() else {
            return;
        };
        let ready = inst.phase == Phase::Running
            && inst.startup_done
            && inst.probe_ready
            && inst.announced
            && !inst.failed;
        if ready == inst.ready {
            return;
        }
        inst.ready = ready;
        let address = inst.shared.address.get().copied();
        let kind = if ready {
            EventKind::Ready { address }
        } else {
            EventKind::NotReady
        };
        tracing::debug!(instance = %inst.id, ready, "readiness changed");
        self.publish(index, ordinal, kind);
    }

    pub(super) fn find(&self, key: IncarnationKey) -> Option<usize> {
        let index = self.position_index(key.position)?;
        let inst = self.positions[index].instance(key)?;
        (inst.phase == Phase::Running).then_some(index)
    }

    pub(super) fn on_announce(&mut self, key: IncarnationKey, address: SocketAddr) {
        if let Some(index) = self.find(key) {
            tracing::debug!(child = %self.positions[index].spec.id, ordinal = key.ordinal, %address, "instance announced");
            if let Some(inst) = self.positions[index].instances[key.ordinal as usize].as_mut() {
                inst.announced = true;
            }
            self.update_ready(index, key.ordinal);
        }
    }

    /// The child called [`ChildContext::fail`]: out of rotation now; its
    /// exit, once it has drained, is handled as a crash.
    pub(super) fn on_failed(&mut self, key: IncarnationKey) {
        if let Some(index) = self.find(key) {
            if let Some(inst) = self.positions[index].instances[key.ordinal as usize].as_mut() {
                inst.failed = true;
            }
            self.update_ready(index, key.ordinal);
        }
    }

    pub(super) async fn on_probe(
        &mut self,
        key: IncarnationKey,
        transition: ProbeTransition,
    ) -> Result<(), crate::SupervisorError> {
        let Some(index) = self.find(key) else {
            return Ok(());
        };
        let Some(inst) = self.positions[index].instances[key.ordinal as usize].as_mut() else {
            return Ok(());
        };
        match transition {
            ProbeTransition::StartupPassed => inst.startup_done = true,
            ProbeTransition::Ready => inst.probe_ready = true,
            ProbeTransition::NotReady => inst.probe_ready = false,
            ProbeTransition::StartupFailed | ProbeTransition::LivenessFailed => {
                let reason = if transition == ProbeTransition::StartupFailed {
                    ExitReason::StartupFailed
                } else {
                    ExitReason::LivenessFailed
                };
                tracing::warn!(instance = %inst.id, %reason, "killing instance");
                // Kubernetes kills a container that fails its probe with the
                // usual grace period; the exit is then handled as a crash.
                // The grace runs in the background so that the rest of the
                // tree is still supervised meanwhile.
                self.begin_stop(index, key.ordinal, StopCause::Killed(reason));
                return Ok(());
            }
        }
        self.update_ready(index, key.ordinal);
        Ok(())
    }

    /// Stops every instance of a position, concurrently; with `remove` they
    /// are forgotten (Stopped is published), else left `Down` for a restart.
    pub(super) async fn stop_position(&mut self, index: usize, remove: bool) {
        let targets: Vec<(usize, u32)> = self.positions[index]
            .live()
            .rev()
            .map(|(o, _)| (index, o))
            .collect();
        self.stop_instances(&targets, remove).await;
    }

    /// Stops the given instances concurrently: Stopping, cancellation (after
    /// the drain delay for instances in rotation), then each waits for its
    /// grace period and is aborted if still running.
    pub(super) async fn stop_instances(&mut self, targets: &[(usize, u32)], remove: bool) {
        // Every instance is cancelled at `now`, so each deadline counts from
        // there. Awaiting them one after another against those fixed
        // deadlines is linear; a `join_all` over thousands of handles
        // re-polls the finished ones on every wake and goes quadratic.
        let now = Instant::now();
        let mut stopping = Vec::with_capacity(targets.len());
        for &(index, ordinal) in targets {
            let grace = self.positions[index].spec.policy.shutdown_grace;
            if let Some((task, stopper)) = self.signal_stop(index, ordinal, Phase::Down) {
                stopping.push((index, ordinal, task, stopper, now.checked_add(grace)));
            }
        }
        for (index, ordinal, task, stopper, deadline) in stopping {
            let forced = match stopper {
                // A background stop is already counting down its grace.
                Some(stopper) => stopper.await.unwrap_or(true),
                None => wait_or_abort(task, deadline).await,
            };
            if forced {
                tracing::warn!(child = %self.positions[index].spec.id, ordinal, "grace period over; aborted");
            }
            if remove {
                self.publish(index, ordinal, EventKind::Stopped { forced });
                self.positions[index].instances[ordinal as usize] = None;
            }
        }
    }

    /// Asks one instance to stop and moves it to `phase`: takes it out of
    /// rotation, stops its probes, publishes Stopping if it was running and
    /// cancels it, after the drain delay if it was in rotation. Returns what
    /// is left to wait for: its task, or the background stop already under way.
    fn signal_stop(&mut self, index: usize, ordinal: u32, phase: Phase) -> Option<StopWaits> {
        let drain = self.positions[index].spec.policy.drain_delay;
        let inst = self.positions[index].instances[ordinal as usize].as_mut()?;
        let was_running = inst.phase == Phase::Running;
        let in_rotation = inst.ready;
        inst.phase = phase;
        inst.ready = false;
        if let Some(probes) = inst.probes.take() {
            probes.abort();
        }
        let cancel = inst.cancel.clone();
        let waits = (inst.task.take(), inst.stopper.take());
        // Stopping goes out before the cancellation: subscribers learn that
        // the instance leaves rotation first, and with a drain delay they have
        // that long to act on it while the instance still serves.
        if was_running {
            self.publish(index, ordinal, EventKind::Stopping);
        }
        if in_rotation && !drain.is_zero() {
            tracing::debug!(child = %self.positions[index].spec.id, ordinal, ?drain, "draining before cancellation");
            // The grace deadline counts from now (the drain is inside it),
            // and the callers' waits already run against it, so the
            // cancellation is a timer of its own rather than part of a wait.
            tokio::spawn(async move {
                tokio::time::sleep(drain).await;
                cancel.cancel();
            });
        } else {
            cancel.cancel();
        }
        Some(waits)
    }

    /// Starts stopping one instance in the background: Stopping is published
    /// now; when it is down (or aborted after its grace), `StopDone` brings
    /// it back to the supervisor loop with what to do next.
    pub(super) fn begin_stop(&mut self, index: usize, ordinal: u32, cause: StopCause) {
        let position = &self.positions[index];
        let grace = position.spec.policy.shutdown_grace;
        let Some(inst) = position.instances[ordinal as usize].as_ref() else {
            return;
        };
        if inst.phase == Phase::Stopping {
            return;
        }
        let key = IncarnationKey {
            position: position.uid,
            ordinal,
            generation: inst.generation,
        };
        let Some((task, _)) = self.signal_stop(index, ordinal, Phase::Stopping) else {
            return;
        };
        let tx = self.notice_tx.clone();
        let deadline = Instant::now().checked_add(grace);
        let stopper = tokio::spawn(async move {
            let forced = wait_or_abort(task, deadline).await;
            let _ = tx.send(Notice::StopDone { key, forced, cause });
            forced
        });
        if let Some(inst) = self.positions[index].instances[ordinal as usize].as_mut() {
            inst.stopper = Some(stopper);
        }
    }

    pub(super) async fn on_stop_done(
        &mut self,
        key: IncarnationKey,
        forced: bool,
        cause: StopCause,
    ) -> Result<(), crate::SupervisorError> {
        let Some(index) = self.position_index(key.position) else {
            return Ok(());
        };
        let Some(inst) = self.positions[index].instances[key.ordinal as usize]
            .as_mut()
            .filter(|i| i.generation == key.generation && i.phase == Phase::Stopping)
        else {
            return Ok(());
        };
        inst.stopper = None;
        inst.phase = Phase::Down;
        if forced {
            tracing::warn!(instance = %inst.id, "grace period over; aborted");
        }
        match cause {
            StopCause::ScaleDown => {
                self.publish(index, key.ordinal, EventKind::Stopped { forced });
                self.positions[index].instances[key.ordinal as usize] = None;
                Ok(())
            }
            StopCause::Killed(reason) => self.on_crash(index, key.ordinal, reason).await,
        }
    }

    /// Grows or shrinks a replica group to `replicas`.
    pub(super) fn resize(&mut self, index: usize, replicas: usize) {
        let position = &mut self.positions[index];
        tracing::info!(child = %position.spec.id, from = position.desired, to = replicas, "resizing replica group");
        position.desired = replicas;
        let live: Vec<(u32, bool)> = position
            .live()
            .filter(|(_, i)| i.phase != Phase::Stopping)
            .map(|(o, i)| (o, i.ready))
            .collect();
        if live.len() > replicas {
            // Like a ReplicaSet: not-ready instances go first, then the newest ordinals.
            let mut victims = live;
            victims.sort_by_key(|&(ordinal, ready)| (ready, std::cmp::Reverse(ordinal)));
            for &(ordinal, _) in &victims[..victims.len() - replicas] {
                self.begin_stop(index, ordinal, StopCause::ScaleDown);
            }
        } else {
            let instances = &mut self.positions[index].instances;
            instances.reserve_exact(replicas.saturating_sub(instances.len()));
            let mut missing = replicas - live.len();
            let mut ordinal = 0u32;
            while missing > 0 {
                let free = self.positions[index]
                    .instances
                    .get(ordinal as usize)
                    .is_none_or(Option::is_none);
                if free {
                    self.spawn_instance(index, ordinal);
                    missing -= 1;
                }
                ordinal += 1;
            }
        }
    }
}

/// Spawns an instance's future; its exit reason goes back to the supervisor.
fn spawn_reporting<F>(
    run: F,
    tx: tokio::sync::mpsc::UnboundedSender<Notice>,
    key: IncarnationKey,
) -> JoinHandle<()>
where
    F: Future<Output = ExitReason> + Send + 'static,
{
    tokio::spawn(async move {
        let reason = run.await;
        let _ = tx.send(Notice::Exited { key, reason });
    })
}

/// Waits for a stopping task until `deadline` (`None`: no limit); true if
/// the deadline passed and the task was aborted.
async fn wait_or_abort(task: Option<JoinHandle<()>>, deadline: Option<Instant>) -> bool {
    let Some(mut task) = task else {
        return false;
    };
    let Some(deadline) = deadline else {
        let _ = (&mut task).await;
        return false;
    };
    match tokio::time::timeout_at(deadline, &mut task).await {
        Ok(_) => false,
        Err(_) => {
            task.abort();
            // Wait for the abort to land so that a process child's group
            // has been killed before the supervisor moves on.
            let _ = task.await;
            true
        }
    }
}

//! What happens after an instance ends: restart type, intensity, strategy,
//! backoff, and escalation of nested supervisors.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::handle::SupervisorError;
use super::task::{IncarnationKey, Notice, Phase, SupervisorTask};
use crate::child::ChildContext;
use crate::event::EventHub;
use crate::spec::{DelaySchedule, RestartType, SupervisorSpec};
use crate::{EventKind, ExitReason, Strategy};

impl SupervisorTask {
    pub(super) async fn on_exit(
        &mut self,
        key: IncarnationKey,
        reason: ExitReason,
    ) -> Result<(), SupervisorError> {
        // Reports from incarnations that were stopped or replaced are stale.
        let Some(index) = self.find(key) else {
            return Ok(());
        };
        if let Some(inst) = self.positions[index].instances[key.ordinal as usize].as_mut() {
            inst.phase = Phase::Down;
            inst.ready = false;
            inst.task = None;
            if let Some(probes) = inst.probes.take() {
                probes.abort();
            }
        }
        self.on_crash(index, key.ordinal, reason).await
    }

    /// Handles the end of an incarnation (its task already finished or was
    /// stopped): restart type, then intensity, then strategy.
    pub(super) async fn on_crash(
        &mut self,
        index: usize,
        ordinal: u32,
        reason: ExitReason,
    ) -> Result<(), SupervisorError> {
        let position = &self.positions[index];
        let child = position.spec.id.clone();
        if reason.is_abnormal() {
            position.crashes.increment(1);
        }
        tracing::info!(%child, ordinal, %reason, "instance exited");
        self.publish(
            index,
            ordinal,
            EventKind::Exited {
                reason: reason.clone(),
            },
        );

        let restart = match position.spec.policy.restart {
            RestartType::Permanent => true,
            RestartType::Transient => reason.is_abnormal(),
            RestartType::Temporary => false,
        };
        if !restart {
            self.forget(index, ordinal);
            return Ok(());
        }
        if !self.intensity.record(Instant::now()) {
            let limit = self.policy.intensity;
            tracing::error!(%child, max_restarts = limit.max_restarts, within = ?limit.within, "restart intensity exceeded; stopping all children");
            self.stop_all().await;
            return Err(SupervisorError::IntensityExceeded {
                supervisor: self.path.to_string(),
                child: child.to_string(),
                max_restarts: limit.max_restarts,
                within: limit.within,
            });
        }
        self.positions[index].restarts.increment(1);
        let (attempt, delay) = self.next_delay(index, ordinal);

        let mut restart_set = vec![(index, ordinal)];
        let from = match self.policy.strategy {
            Strategy::OneForOne => None,
            Strategy::OneForAll => Some(0),
            Strategy::RestForOne => Some(index + 1),
        };
        if let Some(from) = from {
            // Siblings stop in reverse start order, one child at a time.
            for other in (from..self.positions.len()).rev() {
                let targets: Vec<(usize, u32)> = self.positions[other]
                    .live()
                    .rev()
                    .filter(|&(o, _)| (other, o) != (index, ordinal))
                    .map(|(o, _)| (other, o))
                    .collect();
                let temporary = self.positions[other].spec.policy.restart == RestartType::Temporary;
                self.stop_instances(&targets, temporary).await;
                if temporary {
                    self.positions[other].desired = 0;
                } else {
                    restart_set.extend(targets);
                }
            }
            restart_set.sort_unstable();
        }
        tracing::info!(%child, ordinal, attempt, ?delay, instances = restart_set.len(), strategy = ?self.policy.strategy, "restarting");
        for &(i, o) in &restart_set {
            self.publish(i, o, EventKind::Restarting { attempt, delay });
        }
        if delay.is_zero() {
            for (i, o) in restart_set {
                self.spawn_instance(i, o);
            }
        } else {
            self.schedule_restart(restart_set, delay);
        }
        Ok(())
    }

    /// The crashed instance's next delay, resetting its schedule first if its
    /// last run lasted `reset_after`.
    fn next_delay(&mut self, index: usize, ordinal: u32) -> (u32, Duration) {
        let position = &mut self.positions[index];
        let reset_after = position.spec.policy.backoff.reset_after;
        let source = position.backoff.clone();
        let Some(inst) = position.instances[ordinal as usize].as_mut() else {
            return (1, Duration::ZERO);
        };
        let stable = inst.started_at.elapsed() >= reset_after;
        let schedule = match &mut inst.schedule {
            Some(s) if !stable => s,
            slot => slot.insert(DelaySchedule::new(&*source)),
        };
        let delay = schedule.next_delay();
        (schedule.attempt, delay)
    }

    fn schedule_restart(&mut self, set: Vec<(usize, u32)>, delay: Duration) {
        let token = self.next_token;
        self.next_token += 1;
        let mut entries = Vec::with_capacity(set.len());
        for (i, o) in set {
            if let Some(inst) = self.positions[i].instances[o as usize].as_mut() {
                inst.phase = Phase::BackingOff(token);
                entries.push((self.positions[i].uid, o));
            }
        }
        self.pending.insert(token, entries);
        let tx = self.notice_tx.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let _ = tx.send(Notice::RestartDue { token });
        });
    }

    pub(super) fn on_restart_due(&mut self, token: u64) {
        let Some(entries) = self.pending.remove(&token) else {
            return;
        };
        for (uid, ordinal) in entries {
            let Some(index) = self.position_index(uid) else {
                continue;
            };
            let due = self.positions[index]
                .instances
                .get(ordinal as usize)
                .and_then(Option::as_ref)
                .is_some_and(|i| i.phase == Phase::BackingOff(token));
            if due {
                self.spawn_instance(index, ordinal);
            }
        }
    }

    /// Removes an instance that will not be restarted.
    fn forget(&mut self, index: usize, ordinal: u32) {
        self.publish(index, ordinal, EventKind::Stopped { forced: false });
        let position = &mut self.positions[index];
        position.instances[ordinal as usize] = None;
        position.desired = position.desired.saturating_sub(1);
    }
}

/// Runs a nested supervisor as the body of one child instance.
pub(super) fn run_nested(
    spec: Arc<SupervisorSpec>,
    hub: Arc<EventHub>,
    parent: Arc<str>,
    ctx: ChildContext,
) -> Pin<Box<dyn Future<Output = ExitReason> + Send>> {
    // Boxed: a supervisor's future spawns its children's futures, so an
    // unboxed nested supervisor would have a type that contains itself.
    Box::pin(async move {
        let (supervisor, _handle) =
            SupervisorTask::new((*spec).clone(), hub, Some(&parent), ctx.token().clone());
        match supervisor.run().await {
            Ok(()) if ctx.is_cancelled() => ExitReason::Stopped,
            Ok(()) => ExitReason::Normal,
            Err(e) => ExitReason::Escalated(e.to_string().into()),
        }
    })
}

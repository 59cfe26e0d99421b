//! Applying passive health to the set: telling the outlier detector the
//! members, acting on its ejections and returns, panic mode, and slow-start
//! steps. All of it runs in the balancer's background pass, never per
//! request.

use std::task::Context;

use tokio::time::Instant;

use super::{EndpointSet, Ramp, Stage};
use crate::balance::health::MAX_REARMS;
use crate::health::HealthEvent;

impl<S, F> EndpointSet<S, F> {
    /// Whether the balancer is in panic mode.
    pub(crate) fn in_panic(&self) -> bool {
        self.health.in_panic()
    }

    /// Endpoints ejected now.
    pub(crate) fn ejected_len(&self) -> usize {
        self.health.ejected_count()
    }

    /// A batch of discovery changes was applied; `complete` when the stream
    /// had nothing more. The first complete batch with endpoints is the
    /// initial membership: its endpoints do not slow-start.
    pub(crate) fn end_batch(&mut self, complete: bool) {
        if complete && !self.ids.is_empty() {
            self.initial = false;
        }
    }

    /// Tells the outlier detector the members after membership changed:
    /// new endpoints get its stats, and every entry's ejection follows the
    /// detector's (an endpoint removed and added again keeps its history).
    pub(crate) fn sync_members(&mut self) {
        if !std::mem::take(&mut self.members_dirty) {
            return;
        }
        let now = Instant::now();
        let ids: Vec<_> = self.members.list.iter().map(|m| m.id.clone()).collect();
        let events = self.health.set_members(ids, now);
        for index in 0..self.members.list.len() {
            let key = self.members.list[index].key;
            let ejected = self.health.is_ejected(index);
            if let Some(entry) = self.entries[key as usize].as_ref() {
                if let Some(stats) = self.health.stats(index) {
                    entry.state.attach_health(stats, &self.waker);
                }
                if entry.ejected != ejected {
                    self.set_ejected(key, ejected);
                }
            }
        }
        self.log_events(&events);
    }

    /// Asks the detector for news (ejections, returns, success-rate
    /// verdicts), takes a slow-start step if one is due, and arms the timer
    /// for whichever comes next.
    pub(crate) fn poll_health(&mut self, cx: &mut Context<'_>) {
        for _ in 0..MAX_REARMS {
            let now = Instant::now();
            let events = self.health.poll(now);
            if !events.is_empty() {
                self.apply_events(&events);
            }
            if self.health.step_due(now) {
                self.step_ramps(now);
            }
            if !self.health.arm(cx) {
                return;
            }
        }
        // Deadlines kept passing while we worked: look again next pass.
        self.wake.set();
    }

    fn apply_events(&mut self, events: &[HealthEvent]) {
        for event in events {
            let (index, ejected) = match event {
                HealthEvent::Ejected { index, reason, .. } => {
                    self.metrics.ejection(*reason);
                    (*index, true)
                }
                HealthEvent::Returned { index, .. } => (*index, false),
                _ => continue,
            };
            if let Some(key) = self.members.list.get(index).map(|m| m.key) {
                self.set_ejected(key, ejected);
            }
        }
        // The ejected gauge and panic mode follow in `publish`, which the
        // background pass runs once after all of its work.
        self.log_events(events);
    }

    fn log_events(&self, events: &[HealthEvent]) {
        let balancer = self.metrics.name();
        for event in events {
            match event {
                HealthEvent::Ejected {
                    id,
                    reason,
                    until,
                    times,
                    ..
                } => tracing::info!(
                    balancer,
                    endpoint = %id,
                    %reason,
                    times,
                    ejected_for = ?until.saturating_duration_since(Instant::now()),
                    "endpoint ejected"
                ),
                HealthEvent::Returned { id, .. } => {
                    tracing::info!(balancer, endpoint = %id, "ejected endpoint returned");
                }
                HealthEvent::NotEjected { id, reason, .. } => tracing::debug!(
                    balancer,
                    endpoint = %id,
                    %reason,
                    "outlier not ejected: the ejection cap is reached"
                ),
            }
        }
    }

    /// Ejects or restores an entry: its state (which picks read; in panic
    /// mode every endpoint stays available), and the count of ready
    /// endpoints that are ejected.
    fn set_ejected(&mut self, key: u32, ejected: bool) {
        let panic = self.health.in_panic();
        let Some(entry) = self.entries[key as usize].as_mut() else {
            return;
        };
        if entry.ejected == ejected {
            return;
        }
        entry.ejected = ejected;
        entry.state.set_available(!ejected || panic);
        if let Stage::Ready(_) = entry.stage {
            if ejected {
                self.ready_ejected += 1;
            } else {
                self.ready_ejected -= 1;
            }
        }
    }

    /// Panic mode when fewer than the threshold's share of the ready
    /// endpoints are healthy (not ejected). Panic mode only decides whether
    /// ejected endpoints may be picked, so it weighs ejections among the
    /// endpoints that could be picked: endpoints still connecting (every one
    /// of them, just after start) are not a reason to panic.
    pub(super) fn refresh_panic(&mut self) {
        let total = self.ready.len();
        let healthy = total.saturating_sub(self.ready_ejected);
        if let Some(panic) = self.health.refresh_panic(healthy, total) {
            // Panic mode is availability: picks read one flag either way.
            for entry in self.entries.iter().flatten().filter(|e| e.ejected) {
                entry.state.set_available(panic);
            }
            self.metrics.panic.set(if panic { 1.0 } else { 0.0 });
            if panic {
                tracing::warn!(
                    balancer = self.metrics.name(),
                    healthy,
                    total,
                    "panic mode: too few healthy endpoints; picking among all ready ones"
                );
            } else {
                tracing::info!(balancer = self.metrics.name(), healthy, total, "panic mode over");
            }
        }
    }

    /// Moves every ramping endpoint's weight to its factor at `now`
    /// (tables rebuild once at the next pick), ending finished ramps.
    fn step_ramps(&mut self, now: Instant) {
        let ramping = std::mem::take(&mut self.ramping);
        let mut still = Vec::with_capacity(ramping.len());
        for key in ramping {
            let Some((joined, weight, stage)) =
                self.entries[key as usize].as_ref().and_then(|e| match e.ramp {
                    Ramp::Since(joined) => Some((joined, e.endpoint.weight(), e.stage)),
                    Ramp::Full | Ramp::Waiting => None,
                })
            else {
                continue;
            };
            let (factor, ramping) = self.health.ramp(joined, now);
            self.set_table_weight(key, weight, factor, stage);
            if ramping {
                still.push(key);
            } else if let Some(entry) = self.entries[key as usize].as_mut() {
                entry.ramp = Ramp::Full;
            }
        }
        tracing::trace!(
            balancer = self.metrics.name(),
            ramping = still.len(),
            "slow-start step"
        );
        self.health.schedule_step(now, !still.is_empty());
        self.ramping = still;
    }
}

//! Passive health in the balancer: the [`health`](crate::health) module's
//! outlier detector, panic threshold and slow start, owned by one
//! balancer, and what the endpoint set does with their verdicts.
//!
//! Nothing here runs per request. Response futures record into each
//! endpoint's [`EndpointStats`](crate::health::EndpointStats) through its
//! load state; the balancer asks the detector for news only in its
//! background pass, which runs when the timer here fires (the next
//! ejection return, interval end or slow-start step) or when the response
//! that completes a run of failures wakes it. The timer is polled with the
//! balancer's background waker, so an ejected endpoint comes back at its
//! time even if no request comes meanwhile.

use std::{
    sync::Arc,
    task::{Context, Waker},
    time::Duration,
};

use tokio::time::Instant;

use super::EndpointSet;
use crate::balance::Timer;
use crate::health::{HealthConfig, HealthEvent, OutlierDetector, PanicThreshold, SlowStart};
use crate::{ConfigError, Weight};

/// How many weight updates a slow-start ramp takes over its window: the
/// tables are rebuilt at most this often per window, never per request.
const SLOW_START_STEPS: u32 = 10;

/// The shortest time between two slow-start weight updates.
const MIN_STEP: Duration = Duration::from_millis(10);

/// With slow start on, every table weight is the endpoint's weight times
/// this, so a ramp moves in 1 % steps while proportions between endpoints
/// hold.
const RAMP_RESOLUTION: u32 = 100;

/// How many times the background pass re-polls health when the timer's
/// deadline has already passed, before it leaves the rest to the next pass.
const MAX_REARMS: usize = 4;

/// Where an endpoint is in its slow start.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Ramp {
    /// Full weight: slow start is off, the endpoint was in the first
    /// membership, or its ramp is over.
    Full,
    /// Ramps from when it is first ready.
    Waiting,
    /// Ramping since it was first ready.
    Since(Instant),
}

/// One balancer's passive health. See the module docs.
pub(crate) struct PassiveHealth {
    /// `None` with outlier detection off.
    detector: Option<OutlierDetector>,
    threshold: PanicThreshold,
    /// Whether the balancer is in panic mode (as of the last refresh).
    pub(crate) panic: bool,
    slow_start: Option<SlowStart>,
    /// Between slow-start weight updates.
    pub(super) step: Duration,
    /// The next slow-start weight update, while an endpoint ramps.
    pub(super) next_step: Option<Instant>,
    /// Still applying the first membership (whose endpoints do not ramp).
    initial: bool,
    /// Wakes the balancer for the detector's next deadline or the next
    /// slow-start step.
    timer: Timer,
    /// The balancer's background waker, which a run of failures wakes.
    waker: Waker,
}

impl PassiveHealth {
    /// Passive health from a validated config, starting at `now`.
    pub(crate) fn new(config: &HealthConfig, now: Instant, waker: Waker) -> Result<Self, ConfigError> {
        let detector = config
            .outlier_detection
            .clone()
            .map(|outlier| OutlierDetector::new(outlier, now))
            .transpose()?;
        let slow_start = config.slow_start.as_ref().map(SlowStart::new).transpose()?;
        let step = slow_start
            .as_ref()
            .map_or(MIN_STEP, |s| (s.window() / SLOW_START_STEPS).max(MIN_STEP));
        Ok(Self {
            detector,
            threshold: PanicThreshold::new(config.healthy_panic_threshold)?,
            panic: false,
            slow_start,
            step,
            next_step: None,
            initial: true,
            timer: Timer::default(),
            waker,
        })
    }

    /// How many endpoints are ejected.
    pub(crate) fn ejected_count(&self) -> usize {
        self.detector.as_ref().map_or(0, OutlierDetector::ejected_count)
    }

    /// The ramp a new endpoint starts with: endpoints of the first
    /// membership, and all of them with slow start off, start at full weight.
    pub(crate) fn new_ramp(&self) -> Ramp {
        if self.slow_start.is_some() && !self.initial {
            Ramp::Waiting
        } else {
            Ramp::Full
        }
    }

    /// The weight a table picks with: the endpoint's weight, or with slow
    /// start on, its weight × 100 × its ramp factor (so every endpoint is
    /// scaled alike and a ramp moves in 1 % steps).
    pub(crate) fn table_weight(&self, weight: Weight, factor: f64) -> Weight {
        match self.slow_start {
            Some(_) => SlowStart::scale(weight, factor, RAMP_RESOLUTION),
            None => weight,
        }
    }

    /// `1 / weight` for P2C's cost, from a [`table_weight`](Self::table_weight):
    /// the resolution divides out, so in-flight requests per unit of weight
    /// mean the same with slow start on or off.
    pub(crate) fn inv_weight(&self, table_weight: Weight) -> f64 {
        let resolution = if self.slow_start.is_some() {
            RAMP_RESOLUTION
        } else {
            1
        };
        f64::from(resolution) / f64::from(table_weight.get())
    }

    /// Arms the timer for the earliest of the detector's deadline and the
    /// next slow-start step, and polls it with the balancer's background
    /// waker. True when that deadline has already passed (the caller polls
    /// again); false once the timer will wake the balancer.
    fn arm(&mut self, cx: &mut Context<'_>) -> bool {
        let deadline = [
            self.detector.as_ref().map(OutlierDetector::next_deadline),
            self.next_step,
        ]
        .into_iter()
        .flatten()
        .min();
        deadline.is_some_and(|deadline| self.timer.poll_until(deadline, cx).is_ready())
    }
}

// ===== what the endpoint set does with it =====

impl<S, F> EndpointSet<S, F> {
    /// A batch of discovery changes was applied; `complete` when the stream
    /// had nothing more. The first complete batch with endpoints is the
    /// initial membership: its endpoints do not slow-start.
    pub(crate) fn end_batch(&mut self, complete: bool) {
        if complete && self.slab.len() > 0 {
            self.health.initial = false;
        }
    }

    /// Tells the outlier detector the members after membership changed:
    /// new endpoints get its stats, and every member's ejection follows the
    /// detector's (an endpoint removed and added again keeps its history).
    pub(crate) fn sync_members(&mut self) {
        if !self.ready.take_members_dirty() {
            return;
        }
        let Some(detector) = &mut self.health.detector else {
            return;
        };
        let ids = self.ready.members().iter().map(|m| m.id.clone());
        let events = detector.set_endpoints(ids.collect::<Vec<_>>(), Instant::now());
        let verdicts: Vec<_> = (0..detector.len())
            .map(|index| (Arc::clone(detector.stats(index)), detector.is_ejected(index)))
            .collect();
        for (index, (stats, ejected)) in verdicts.into_iter().enumerate() {
            let Some(key) = self.ready.member(index as u32).map(|m| m.key) else {
                continue;
            };
            if let Some(entry) = self.slab.get(key) {
                entry.load.attach_health(&stats, &self.health.waker);
            }
            self.set_ejected(index as u32, ejected);
        }
        self.apply_events(&events, false);
    }

    /// Asks the detector for news (ejections, returns, success-rate
    /// verdicts), takes a slow-start step if one is due, and arms the timer
    /// for whichever comes next.
    pub(crate) fn poll_health(&mut self, cx: &mut Context<'_>) {
        for _ in 0..MAX_REARMS {
            let now = Instant::now();
            let events = self.health.detector.as_mut().map(|d| d.poll(now));
            if let Some(events) = events.filter(|e| !e.is_empty()) {
                self.apply_events(&events, true);
            }
            if self.health.next_step.is_some_and(|at| at <= now) {
                self.step_ramps(now);
            }
            if !self.health.arm(cx) {
                return;
            }
        }
        // Deadlines kept passing while we worked: look again next pass.
        self.wake.set();
    }

    /// Applies the detector's ejections and returns unless `apply` is false
    /// (`sync_members` has applied every verdict already), and logs every
    /// event.
    fn apply_events(&mut self, events: &[HealthEvent], apply: bool) {
        let name = Arc::clone(&self.metrics.name);
        let balancer = &*name;
        for event in events {
            match event {
                HealthEvent::Ejected {
                    index,
                    id,
                    reason,
                    until,
                    times,
                } => {
                    if apply {
                        self.metrics.ejection(*reason);
                        self.set_ejected(*index as u32, true);
                    }
                    tracing::info!(
                        balancer,
                        endpoint = %id,
                        %reason,
                        times,
                        ejected_for = ?until.saturating_duration_since(Instant::now()),
                        "endpoint ejected"
                    );
                }
                HealthEvent::Returned { index, id } => {
                    if apply {
                        self.set_ejected(*index as u32, false);
                    }
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
        // The ejected gauge and panic mode follow in `publish`, which the
        // background pass runs once after all of its work.
    }

    /// Ejects or restores member `index`: in the ready index, and in its
    /// load, which picks read (in panic mode every endpoint stays available).
    fn set_ejected(&mut self, index: u32, ejected: bool) {
        let Some(member) = self.ready.member(index) else {
            return;
        };
        if member.ejected == ejected {
            return;
        }
        if let Some(entry) = self.slab.get(member.key) {
            entry.load.set_available(!ejected || self.health.panic);
        }
        self.ready.set_ejected(index, ejected);
    }

    /// Panic mode when fewer than the threshold's share of the ready
    /// endpoints are healthy (not ejected). Panic mode only decides whether
    /// ejected endpoints may be picked, so it weighs ejections among the
    /// endpoints that could be picked: endpoints still connecting (every one
    /// of them, just after start) are not a reason to panic.
    pub(super) fn refresh_panic(&mut self) {
        let (healthy, total) = self.ready.healthy_of_ready();
        let panic = self.health.threshold.is_panic(healthy, total);
        if panic == self.health.panic {
            return;
        }
        self.health.panic = panic;
        // Panic mode is availability: picks read one flag either way.
        for member in self.ready.members().iter().filter(|m| m.ejected) {
            if let Some(entry) = self.slab.get(member.key) {
                entry.load.set_available(panic);
            }
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

    /// Sets the table weight of entry `key` from its weight and its ramp
    /// factor at `now`; true while it is still ramping.
    pub(super) fn apply_ramp(&mut self, key: u32, now: Instant) -> bool {
        let Some(entry) = self.slab.get(key) else {
            return false;
        };
        let (factor, ramping) = match (&self.health.slow_start, entry.ramp) {
            (Some(slow), Ramp::Since(joined)) if slow.is_ramping(joined, now) => {
                (slow.factor_at(joined, now), true)
            }
            _ => (1.0, false),
        };
        let table_weight = self.health.table_weight(entry.endpoint.weight(), factor);
        let inv_weight = self.health.inv_weight(table_weight);
        self.ready
            .set_table_weight(entry.member, table_weight, inv_weight);
        ramping
    }

    /// Moves every ramping endpoint's weight to its factor at `now`
    /// (tables rebuild once at the next pick), ending finished ramps.
    fn step_ramps(&mut self, now: Instant) {
        let keys: Vec<u32> = self.ready.members().iter().map(|m| m.key).collect();
        let mut ramping = 0;
        for key in keys {
            if !matches!(self.slab.get(key).map(|e| e.ramp), Some(Ramp::Since(_))) {
                continue;
            }
            if self.apply_ramp(key, now) {
                ramping += 1;
            } else if let Some(entry) = self.slab.get_mut(key) {
                entry.ramp = Ramp::Full;
            }
        }
        tracing::trace!(balancer = self.metrics.name(), ramping, "slow-start step");
        self.health.next_step = (ramping > 0).then(|| now + self.health.step);
    }
}

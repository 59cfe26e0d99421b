//! The balancer's passive health: the [`health`](crate::health) module's
//! outlier detector, panic threshold and slow start, owned by one balancer
//! and driven by its background work.
//!
//! Nothing here runs per request. Response futures record into each
//! endpoint's [`EndpointStats`] through its load state; the balancer asks
//! the detector for news only in its background pass, which runs when its
//! timer fires (the next ejection return, interval end or slow-start step)
//! or when the response that completes a run of failures wakes it. The
//! timer is polled with the balancer's background waker,
//! so an ejected endpoint comes back at its time even if no request comes
//! meanwhile: the timer sets the wake flag (waking a task waiting in
//! `poll_ready`), and the next `poll_ready` applies the return.

use std::{sync::Arc, task::Context, time::Duration};

use tokio::time::Instant;

use super::Timer;
use crate::{
    ConfigError, EndpointId, Weight,
    health::{EndpointStats, HealthConfig, HealthEvent, OutlierDetector, PanicThreshold, SlowStart},
};

/// How many weight updates a slow-start ramp takes over its window: the
/// tables are rebuilt at most this often per window, never per request.
pub(crate) const SLOW_START_STEPS: u32 = 10;

/// The shortest time between two slow-start weight updates.
const MIN_STEP: Duration = Duration::from_millis(10);

/// With slow start on, every table weight is the endpoint's weight times
/// this, so a ramp moves in 1 % steps while proportions between endpoints
/// hold.
const RAMP_RESOLUTION: u32 = 100;

/// How many times the background pass re-polls health when the timer's
/// deadline has already passed, before it leaves the rest to the next pass.
pub(crate) const MAX_REARMS: usize = 4;

/// One balancer's passive health. See the module docs.
pub(crate) struct Health {
    /// `None` with outlier detection off.
    detector: Option<OutlierDetector>,
    threshold: PanicThreshold,
    slow_start: Option<SlowStart>,
    /// Between slow-start weight updates.
    step: Duration,
    /// The next slow-start weight update, while an endpoint ramps.
    next_step: Option<Instant>,
    /// Wakes the balancer for the detector's next deadline or the next
    /// slow-start step.
    timer: Timer,
    /// Whether the balancer is in panic mode (as of the last refresh).
    panic: bool,
}

impl Health {
    /// Passive health from a validated config, starting at `now`.
    pub(crate) fn new(config: &HealthConfig, now: Instant) -> Result<Self, ConfigError> {
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
            slow_start,
            step,
            next_step: None,
            timer: Timer::default(),
            panic: false,
        })
    }

    // ===== outlier detection =====

    /// Tells the detector the members, in member order, after a membership
    /// change; the events are those of [`OutlierDetector::set_endpoints`].
    pub(crate) fn set_members(
        &mut self,
        ids: impl IntoIterator<Item = EndpointId>,
        now: Instant,
    ) -> Vec<HealthEvent> {
        match &mut self.detector {
            Some(detector) => detector.set_endpoints(ids, now),
            None => Vec::new(),
        }
    }

    /// The detector's stats of member `index`, to attach to its state.
    pub(crate) fn stats(&self, index: usize) -> Option<&Arc<EndpointStats>> {
        let detector = self.detector.as_ref()?;
        (index < detector.len()).then(|| detector.stats(index))
    }

    /// Whether member `index` is ejected.
    pub(crate) fn is_ejected(&self, index: usize) -> bool {
        self.detector
            .as_ref()
            .is_some_and(|d| index < d.len() && d.is_ejected(index))
    }

    /// How many members are ejected.
    pub(crate) fn ejected_count(&self) -> usize {
        self.detector.as_ref().map_or(0, OutlierDetector::ejected_count)
    }

    /// The detector's news at `now` (nothing unless something is due).
    pub(crate) fn poll(&mut self, now: Instant) -> Vec<HealthEvent> {
        match &mut self.detector {
            Some(detector) => detector.poll(now),
            None => Vec::new(),
        }
    }

    // ===== panic threshold =====

    /// Whether the balancer is in panic mode.
    #[inline]
    pub(crate) fn in_panic(&self) -> bool {
        self.panic
    }

    /// Re-decides panic mode for `healthy` of `total` endpoints; `Some`
    /// with the new mode when it changed.
    pub(crate) fn refresh_panic(&mut self, healthy: usize, total: usize) -> Option<bool> {
        let panic = self.threshold.is_panic(healthy, total);
        (panic != self.panic).then(|| {
            self.panic = panic;
            panic
        })
    }

    // ===== slow start =====

    /// Whether new endpoints ramp up.
    pub(crate) fn slow_start_enabled(&self) -> bool {
        self.slow_start.is_some()
    }

    /// The ramp factor at `now` of an endpoint that became ready at
    /// `joined`, and whether it is still ramping.
    pub(crate) fn ramp(&self, joined: Instant, now: Instant) -> (f64, bool) {
        match &self.slow_start {
            Some(ramp) if ramp.is_ramping(joined, now) => (ramp.factor_at(joined, now), true),
            _ => (1.0, false),
        }
    }

    /// The weight a table picks with: the endpoint's weight, or with slow
    /// start on, its weight × 100 × its ramp factor (so every endpoint is
    /// scaled alike and a ramp moves in 1 % steps).
    pub(crate) fn table_weight(&self, weight: Weight, factor: f64) -> Weight {
        if self.slow_start.is_some() {
            SlowStart::scale(weight, factor, RAMP_RESOLUTION)
        } else {
            weight
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

    /// Whether a slow-start step is due at `now`.
    pub(crate) fn step_due(&self, now: Instant) -> bool {
        self.next_step.is_some_and(|at| at <= now)
    }

    /// Schedules the next slow-start step after `now` while some endpoint
    /// ramps; none otherwise.
    pub(crate) fn schedule_step(&mut self, now: Instant, ramping: bool) {
        self.next_step = ramping.then(|| now + self.step);
    }

    /// Makes sure a step is scheduled (an endpoint started ramping).
    pub(crate) fn ensure_step(&mut self, now: Instant) {
        if self.next_step.is_none() {
            self.next_step = Some(now + self.step);
        }
    }

    // ===== the timer =====

    /// Arms the timer for the earliest of the detector's deadline and the
    /// next slow-start step, and polls it with the balancer's background
    /// waker. True when that deadline has already passed (the caller polls
    /// again); false once the timer will wake the balancer.
    pub(crate) fn arm(&mut self, cx: &mut Context<'_>) -> bool {
        let deadline = [
            self.detector.as_ref().map(OutlierDetector::next_deadline),
            self.next_step,
        ]
        .into_iter()
        .flatten()
        .min();
        let Some(deadline) = deadline else {
            return false;
        };
        self.timer.poll_until(deadline, cx).is_ready()
    }
}

impl std::fmt::Debug for Health {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Health")
            .field("detector", &self.detector)
            .field("threshold", &self.threshold)
            .field("slow_start", &self.slow_start)
            .field("panic", &self.panic)
            .finish_non_exhaustive()
    }
}

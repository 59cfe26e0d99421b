//! Envoy's outlier detection over the balancer's slots.

use std::{collections::HashMap, fmt, sync::Arc, time::Duration};

use tokio::time::Instant;

use crate::EndpointId;

use super::{
    config::{ConfigError, OutlierConfig},
    stats::{EndpointStats, PoolSignal},
};

/// Why an endpoint was (or would have been) ejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum EjectionReason {
    /// It failed [`consecutive_failures`](super::OutlierConfig::consecutive_failures)
    /// times in a row.
    ConsecutiveFailures,
    /// Its success rate over the last interval was an outlier among its
    /// peers ([`success_rate`](super::OutlierConfig::success_rate)).
    SuccessRate,
}

impl EjectionReason {
    /// The reason as a metric label value: `consecutive_failures` or
    /// `success_rate` (for `orch_balancer_ejections_total{reason}`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ConsecutiveFailures => "consecutive_failures",
            Self::SuccessRate => "success_rate",
        }
    }
}

impl fmt::Display for EjectionReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A change of an endpoint's ejection, returned by
/// [`OutlierDetector::poll`] for the balancer to act on, log and count.
///
/// `index` is the endpoint's slot as of the call that returned the event
/// (slots are renumbered only by
/// [`set_endpoints`](OutlierDetector::set_endpoints)).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum HealthEvent {
    /// The endpoint is out of the rotation until `until`.
    Ejected {
        /// Its slot.
        index: usize,
        /// Its id.
        id: EndpointId,
        /// Which detector ejected it.
        reason: EjectionReason,
        /// When it comes back by itself.
        until: Instant,
        /// How many times it has been ejected recently (decayed by one per
        /// full healthy interval): the multiple of `base_ejection_time` it
        /// is out for.
        times: u32,
    },
    /// The endpoint's ejection is over; it is back in the rotation.
    Returned {
        /// Its slot.
        index: usize,
        /// Its id.
        id: EndpointId,
    },
    /// The endpoint is an outlier but stays in: ejecting it would pass
    /// `max_ejection_percent` or leave no endpoint in the rotation (Envoy
    /// counts these as `ejections_overflow`).
    NotEjected {
        /// Its slot.
        index: usize,
        /// Its id.
        id: EndpointId,
        /// Which detector found it.
        reason: EjectionReason,
    },
}

/// Envoy's outlier detection for one balancer's endpoints: decides which
/// are ejected (out of the rotation) and for how long.
///
/// The balancer owns it (`&mut self`, one task) and hands out each
/// endpoint's [`EndpointStats`] to the response futures, which record every
/// outcome from any thread. The balancer calls [`poll`](Self::poll) with
/// the time before it picks: while nothing is due that is a time comparison
/// and one relaxed load. When a run of failures trips an endpoint, or an
/// interval ends, or an ejection's time is over, `poll` does the work and
/// returns what changed.
///
/// ```
/// use std::time::Duration;
/// use orch_discovery::{EndpointId, health::{HealthEvent, OutlierConfig, OutlierDetector}};
/// use tokio::time::Instant;
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
/// let start = Instant::now();
/// let mut detector = OutlierDetector::new(OutlierConfig::default(), start).unwrap();
/// detector.set_endpoints(["a", "b", "c"].map(EndpointId::from), start);
///
/// for _ in 0..5 {
///     detector.stats(1).record(false); // in a response future, on any thread
/// }
/// let events = detector.poll(Instant::now());
/// assert!(matches!(events[..], [HealthEvent::Ejected { index: 1, times: 1, .. }]));
/// assert!(detector.is_ejected(1));
///
/// tokio::time::advance(Duration::from_secs(30)).await; // base_ejection_time
/// let events = detector.poll(Instant::now());
/// assert!(matches!(events[..], [HealthEvent::Returned { index: 1, .. }]));
/// # }
/// ```
///
/// # Semantics (Envoy's, and where they differ)
///
/// - **Consecutive failures**: the record that completes a run of
///   `consecutive_failures` raises a flag; the next `poll` ejects the
///   endpoint and restarts its run.
/// - **Success rate**: at every `interval`, endpoints in the rotation with
///   at least `request_volume` requests in the interval are judged if there
///   are at least `minimum_hosts` of them; those whose success rate is below
///   `mean − stdev_factor × stdev` are ejected, worst first (Envoy goes in
///   host order; worst first matters when the ejection cap stops the list).
/// - **Duration**: an ejection lasts `base_ejection_time × times`, capped at
///   `max_ejection_time`, where `times` counts the endpoint's ejections and
///   goes down by one for every full `interval` it then spends in the
///   rotation (Envoy decrements at each interval timer while the host is
///   not ejected). `times` stops growing once the cap is reached.
/// - **Return**: an endpoint comes back at the first `poll` at or after its
///   time (Envoy checks at its interval timer, so returns there are late by
///   up to an interval). What it recorded while out is forgotten. Use
///   [`next_deadline`](Self::next_deadline) to wake up for it when no
///   request comes.
/// - **Cap**: an ejection is allowed when the ejected share stays within
///   `max_ejection_percent`, or when nothing is ejected yet (as Envoy, so
///   small pools can eject one); but never when it would leave no endpoint
///   in the rotation (Envoy then relies on the panic threshold alone). The
///   cap is checked when ejecting: endpoints already out stay out when the
///   pool shrinks, except that if every endpoint is out after
///   [`set_endpoints`](Self::set_endpoints), the one due back first
///   returns at once.
/// - Readiness is the balancer's business: the detector counts only
///   ejections. [`PanicThreshold`](super::PanicThreshold) looks at both.
pub struct OutlierDetector {
    config: OutlierConfig,
    max_times: u32,
    pool: Arc<PoolSignal>,
    slots: Vec<Slot>,
    ejected: usize,
    next_sweep: Instant,
    /// The earliest time `poll` has time-based work: the next sweep or the
    /// first return.
    next_due: Instant,
}

/// The detector's view of one endpoint.
struct Slot {
    id: EndpointId,
    stats: Arc<EndpointStats>,
    /// When its ejection ends; `None` while in the rotation.
    until: Option<Instant>,
    times: u32,
    /// The start of its current healthy stretch, moved on by one interval
    /// each time `times` decays.
    healthy_since: Instant,
}

// ===== impl OutlierDetector =====

impl OutlierDetector {
    /// A detector with no endpoints; its first interval starts at `now`.
    ///
    /// Fails if the config does not [validate](OutlierConfig::validate).
    pub fn new(config: OutlierConfig, now: Instant) -> Result<Self, ConfigError> {
        config.validate()?;
        let next_sweep = now + config.interval;
        Ok(Self {
            max_times: config.max_times(),
            config,
            pool: Arc::default(),
            slots: Vec::new(),
            ejected: 0,
            next_sweep,
            next_due: next_sweep,
        })
    }

    /// The config it runs.
    pub fn config(&self) -> &OutlierConfig {
        &self.config
    }

    /// Sets the endpoints, in slot order, after a membership change.
    ///
    /// Endpoints already known (by id) keep their stats, ejection and
    /// history; new ones start healthy with fresh stats; those left out are
    /// forgotten (response futures still holding their stats record into
    /// nothing). Returns the endpoint brought back if all of them would
    /// otherwise be ejected.
    pub fn set_endpoints(
        &mut self,
        ids: impl IntoIterator<Item = EndpointId>,
        now: Instant,
    ) -> Vec<HealthEvent> {
        let mut known: HashMap<EndpointId, Slot> = self.slots.drain(..).map(|s| (s.id.clone(), s)).collect();
        let threshold = self.config.consecutive_failures.unwrap_or(0);
        for id in ids {
            let slot = known.remove(&id).unwrap_or_else(|| Slot {
                stats: Arc::new(EndpointStats::new(threshold, self.pool.clone())),
                id,
                until: None,
                times: 0,
                healthy_since: now,
            });
            self.slots.push(slot);
        }
        self.ejected = self.slots.iter().filter(|s| s.until.is_some()).count();
        let mut events = Vec::new();
        if self.ejected > 0 && self.ejected == self.slots.len() {
            let first = (0..self.slots.len()).min_by_key(|&i| self.slots[i].until);
            if let Some(index) = first {
                self.return_slot(index, now, &mut events);
            }
        }
        self.update_due();
        events
    }

    /// The number of endpoints.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether there are no endpoints.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// An endpoint's id.
    ///
    /// # Panics
    ///
    /// If `index` is not below [`len`](Self::len).
    pub fn id(&self, index: usize) -> &EndpointId {
        &self.slots[index].id
    }

    /// An endpoint's stats, to clone into its response futures.
    ///
    /// # Panics
    ///
    /// If `index` is not below [`len`](Self::len).
    pub fn stats(&self, index: usize) -> &Arc<EndpointStats> {
        &self.slots[index].stats
    }

    /// Whether an endpoint is ejected (as of the last [`poll`](Self::poll)).
    ///
    /// # Panics
    ///
    /// If `index` is not below [`len`](Self::len).
    #[inline]
    pub fn is_ejected(&self, index: usize) -> bool {
        self.slots[index].until.is_some()
    }

    /// When an ejected endpoint comes back; `None` if it is not ejected.
    ///
    /// # Panics
    ///
    /// If `index` is not below [`len`](Self::len).
    pub fn ejected_until(&self, index: usize) -> Option<Instant> {
        self.slots[index].until
    }

    /// How many times an endpoint has been ejected recently (see
    /// [`HealthEvent::Ejected::times`]).
    ///
    /// # Panics
    ///
    /// If `index` is not below [`len`](Self::len).
    pub fn times_ejected(&self, index: usize) -> u32 {
        self.slots[index].times
    }

    /// The number of endpoints ejected now.
    pub fn ejected_count(&self) -> usize {
        self.ejected
    }

    /// When [`poll`](Self::poll) next has work that depends on time (an
    /// interval ending or an ejection running out); trips by consecutive
    /// failures can come earlier. A balancer with no traffic can sleep
    /// until then.
    pub fn next_deadline(&self) -> Instant {
        self.next_due
    }

    /// Brings the ejections up to date at `now`, returning what changed:
    /// returns of endpoints whose time is over, ejections for runs of
    /// failures, and, when an interval has ended, success-rate ejections.
    ///
    /// Call it before picking. When nothing is due it costs a comparison
    /// and a relaxed atomic load, and allocates nothing.
    #[inline]
    pub fn poll(&mut self, now: Instant) -> Vec<HealthEvent> {
        if now < self.next_due && !self.pool.is_raised() {
            return Vec::new();
        }
        self.poll_due(now)
    }

    fn poll_due(&mut self, now: Instant) -> Vec<HealthEvent> {
        let mut events = Vec::new();
        for index in 0..self.slots.len() {
            if self.slots[index].until.is_some_and(|until| until <= now) {
                self.return_slot(index, now, &mut events);
            }
        }
        if self.pool.take() {
            for index in 0..self.slots.len() {
                // Trips of ejected endpoints (late failures of requests sent
                // before the ejection) are cleared and ignored, as in Envoy.
                if self.slots[index].stats.take_trip() && self.slots[index].until.is_none() {
                    self.try_eject(index, EjectionReason::ConsecutiveFailures, now, &mut events);
                }
            }
        }
        if now >= self.next_sweep {
            self.sweep(now, &mut events);
            // The next interval boundary after `now`, on the original grid
            // (intervals missed while nobody polled are skipped).
            let interval = self.config.interval.as_nanos();
            let late = now.duration_since(self.next_sweep).as_nanos() % interval;
            self.next_sweep = now + duration_from_nanos(interval - late);
        }
        self.update_due();
        events
    }

    /// Ends an interval: decays times ejected, judges success rates.
    fn sweep(&mut self, now: Instant, events: &mut Vec<HealthEvent>) {
        let interval = self.config.interval;
        let success_rate = self.config.success_rate.clone();
        let mut rates = Vec::new();
        for (index, slot) in self.slots.iter_mut().enumerate() {
            let (requests, failures) = slot.stats.take_interval();
            slot.decay(now, interval);
            if slot.until.is_some() {
                continue;
            }
            if let Some(config) = &success_rate
                && requests > 0
                && requests >= config.request_volume
            {
                let successes = requests.saturating_sub(failures);
                rates.push((index, f64::from(successes) * 100.0 / f64::from(requests)));
            }
        }
        let Some(config) = success_rate else {
            return;
        };
        if rates.is_empty() || rates.len() < config.minimum_hosts as usize {
            return;
        }
        let count = rates.len() as f64;
        let mean = rates.iter().map(|(_, r)| r).sum::<f64>() / count;
        let variance = rates.iter().map(|(_, r)| (r - mean).powi(2)).sum::<f64>() / count;
        let threshold = mean - config.stdev_factor * variance.sqrt();
        rates.retain(|(_, rate)| *rate < threshold);
        rates.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
        for (index, _) in rates {
            self.try_eject(index, EjectionReason::SuccessRate, now, events);
        }
    }

    /// Ejects an endpoint in the rotation if the cap allows.
    fn try_eject(
        &mut self,
        index: usize,
        reason: EjectionReason,
        now: Instant,
        events: &mut Vec<HealthEvent>,
    ) {
        debug_assert!(self.slots[index].until.is_none(), "ejecting an ejected endpoint");
        let n = self.slots.len();
        let after = self.ejected + 1;
        let within_cap = self.ejected == 0 || after * 100 <= self.config.max_ejection_percent as usize * n;
        let slot = &mut self.slots[index];
        if after >= n || !within_cap {
            events.push(HealthEvent::NotEjected {
                index,
                id: slot.id.clone(),
                reason,
            });
            return;
        }
        slot.decay(now, self.config.interval);
        slot.times = slot.times.saturating_add(1).min(self.max_times);
        let until = now + self.config.ejection_time(slot.times);
        slot.until = Some(until);
        self.ejected += 1;
        events.push(HealthEvent::Ejected {
            index,
            id: slot.id.clone(),
            reason,
            until,
            times: slot.times,
        });
    }

    fn return_slot(&mut self, index: usize, now: Instant, events: &mut Vec<HealthEvent>) {
        let slot = &mut self.slots[index];
        debug_assert!(slot.until.is_some(), "returning an endpoint in the rotation");
        slot.until = None;
        slot.healthy_since = now;
        slot.stats.reset();
        self.ejected -= 1;
        events.push(HealthEvent::Returned {
            index,
            id: slot.id.clone(),
        });
    }

    fn update_due(&mut self) {
        self.next_due = self
            .slots
            .iter()
            .filter_map(|s| s.until)
            .fold(self.next_sweep, Instant::min);
    }
}

impl fmt::Debug for OutlierDetector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OutlierDetector")
            .field("endpoints", &self.slots.len())
            .field("ejected", &self.ejected)
            .field("next_deadline", &self.next_due)
            .finish()
    }
}

// ===== impl Slot =====

impl Slot {
    /// Takes one off `times` per full interval spent in the rotation.
    fn decay(&mut self, now: Instant, interval: Duration) {
        if self.until.is_some() || self.times == 0 {
            return;
        }
        let intervals = now.duration_since(self.healthy_since).as_nanos() / interval.as_nanos();
        let intervals = u32::try_from(intervals).unwrap_or(u32::MAX).min(self.times);
        self.times -= intervals;
        self.healthy_since += interval * intervals;
    }
}

/// A duration of at most one interval, in nanoseconds.
fn duration_from_nanos(nanos: u128) -> Duration {
    Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
}

//! What response futures report about one endpoint, from any thread.

use std::{
    fmt,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering},
    },
};

/// One request in the packed interval counter: the total is the high half.
const ONE_REQUEST: u64 = 1 << 32;
/// The failures are the low half.
const FAILURES: u64 = (1 << 32) - 1;

/// Raised by any endpoint of a pool when its consecutive failures reach
/// the threshold, so the detector checks one flag per pick instead of one
/// per endpoint.
#[derive(Debug, Default)]
#[repr(align(64))]
pub(crate) struct PoolSignal {
    raised: AtomicBool,
}

impl PoolSignal {
    /// Whether an endpoint has tripped since the last [`take`](Self::take).
    #[inline]
    pub(crate) fn is_raised(&self) -> bool {
        self.raised.load(Ordering::Relaxed)
    }

    /// Lowers the flag, answering whether it was raised. Acquire pairs with
    /// the release in [`EndpointStats::record`], so the tripped endpoints'
    /// own flags are visible after it.
    pub(crate) fn take(&self) -> bool {
        self.raised.load(Ordering::Relaxed) && self.raised.swap(false, Ordering::Acquire)
    }
}

/// The outcomes of one endpoint's requests, shared (in an `Arc`) by the
/// balancer and every response future of the endpoint.
///
/// A future calls [`record`](Self::record) once when its response is
/// classified, on whatever thread it completes: a few lock-free atomic
/// operations. The [`OutlierDetector`](super::OutlierDetector) that made the
/// stats reads them when the balancer polls it.
///
/// ```
/// use orch_discovery::{EndpointId, health::{OutlierConfig, OutlierDetector}};
/// use tokio::time::Instant;
///
/// let mut detector = OutlierDetector::new(OutlierConfig::default(), Instant::now()).unwrap();
/// detector.set_endpoints([EndpointId::from("api-1")], Instant::now());
/// let stats = detector.stats(0).clone(); // moved into a response future
/// std::thread::spawn(move || stats.record(false)).join().unwrap();
/// assert_eq!(detector.stats(0).consecutive_failures(), 1);
/// ```
#[repr(align(64))] // one cache line per endpoint: no false sharing between endpoints
pub struct EndpointStats {
    /// Requests (high 32 bits) and failures (low 32 bits) since the last
    /// interval: one add records both.
    interval: AtomicU64,
    consecutive: AtomicU32,
    /// The consecutive-failure threshold; 0 when the detector is off.
    threshold: u32,
    /// Set when `consecutive` reaches `threshold`; cleared by the detector.
    tripped: AtomicBool,
    pool: Arc<PoolSignal>,
}

impl EndpointStats {
    pub(crate) fn new(threshold: u32, pool: Arc<PoolSignal>) -> Self {
        Self {
            interval: AtomicU64::new(0),
            consecutive: AtomicU32::new(0),
            threshold,
            tripped: AtomicBool::new(false),
            pool,
        }
    }

    /// Records one response: a success or a failure (as the classifier
    /// decided: a 5xx, a reset, a timeout…).
    ///
    /// A success costs one atomic add and one load (plus a store when it
    /// ends a run of failures); a failure two atomic adds, plus two stores
    /// on the one that reaches the consecutive-failure threshold. Relaxed
    /// ordering: counts are exact, but records racing on two threads may
    /// land in either order (a success racing a failure may or may not reset
    /// the run), as in Envoy.
    #[inline]
    pub fn record(&self, success: bool) {
        self.record_tripping(success);
    }

    /// [`record`](Self::record), answering whether this record completed a
    /// run of consecutive failures (so the caller can wake whoever polls
    /// the detector instead of having it check the pool flag).
    #[inline]
    pub(crate) fn record_tripping(&self, success: bool) -> bool {
        self.interval
            .fetch_add(ONE_REQUEST | u64::from(!success), Ordering::Relaxed);
        if success {
            // Load first: in the steady state the run is already 0, and a
            // plain load keeps the cache line shared between cores.
            if self.consecutive.load(Ordering::Relaxed) != 0 {
                self.consecutive.store(0, Ordering::Relaxed);
            }
            false
        } else {
            let run = self.consecutive.fetch_add(1, Ordering::Relaxed).wrapping_add(1);
            let trips = run == self.threshold && run != 0;
            if trips {
                self.tripped.store(true, Ordering::Relaxed);
                // Release: whoever sees the pool flag also sees `tripped`.
                self.pool.raised.store(true, Ordering::Release);
            }
            trips
        }
    }

    /// Failures in a row so far (reset by a success, and by the detector
    /// when it handles a trip or returns the endpoint).
    pub fn consecutive_failures(&self) -> u32 {
        self.consecutive.load(Ordering::Relaxed)
    }

    /// Requests and failures recorded since the detector last judged an
    /// interval.
    pub fn interval_counts(&self) -> (u32, u32) {
        split(self.interval.load(Ordering::Relaxed))
    }

    /// Takes the interval's `(requests, failures)`, starting a new interval.
    pub(crate) fn take_interval(&self) -> (u32, u32) {
        split(self.interval.swap(0, Ordering::Relaxed))
    }

    /// Clears a trip, answering whether there was one, and restarts the
    /// run (as Envoy resets its counter when it handles the ejection, so a
    /// new run is needed to trip again).
    pub(crate) fn take_trip(&self) -> bool {
        let tripped = self.tripped.load(Ordering::Relaxed) && self.tripped.swap(false, Ordering::Relaxed);
        if tripped {
            self.consecutive.store(0, Ordering::Relaxed);
        }
        tripped
    }

    /// Forgets everything recorded (when an ejected endpoint comes back:
    /// responses that arrived while it was out do not count against it).
    pub(crate) fn reset(&self) {
        self.interval.store(0, Ordering::Relaxed);
        self.consecutive.store(0, Ordering::Relaxed);
        self.tripped.store(false, Ordering::Relaxed);
    }
}

impl fmt::Debug for EndpointStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (requests, failures) = self.interval_counts();
        f.debug_struct("EndpointStats")
            .field("requests", &requests)
            .field("failures", &failures)
            .field("consecutive_failures", &self.consecutive_failures())
            .field("threshold", &self.threshold)
            .finish()
    }
}

/// `(requests, failures)` from the packed counter. The detector takes the
/// counter every interval, long before 2^32 requests could carry into the
/// next field.
fn split(packed: u64) -> (u32, u32) {
    ((packed >> 32) as u32, (packed & FAILURES) as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_runs_and_trips_once_per_run() {
        let pool = Arc::new(PoolSignal::default());
        let stats = EndpointStats::new(3, pool.clone());
        stats.record(false);
        stats.record(false);
        stats.record(true);
        assert_eq!(stats.consecutive_failures(), 0);
        assert!(!pool.is_raised());
        for _ in 0..4 {
            stats.record(false);
        }
        assert!(pool.take());
        assert!(!pool.take());
        assert!(stats.take_trip());
        assert!(!stats.take_trip());
        assert_eq!(stats.consecutive_failures(), 0);
        assert_eq!(stats.take_interval(), (7, 6));
        assert_eq!(stats.interval_counts(), (0, 0));
    }

    #[test]
    fn threshold_zero_never_trips() {
        let pool = Arc::new(PoolSignal::default());
        let stats = EndpointStats::new(0, pool.clone());
        for _ in 0..100 {
            stats.record(false);
        }
        assert!(!pool.is_raised());
    }
}

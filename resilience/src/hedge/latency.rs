//! The latency tracker behind a percentile hedging delay.
//!
//! A hedging delay taken from a latency percentile has to be read on every
//! call and updated on every response, from many tasks at once. So the
//! tracker is a fixed-size histogram of atomic counters: recording is two
//! relaxed additions, a query walks a few hundred counters, and nothing ever
//! takes a lock or allocates.
//!
//! Buckets are log-linear, as in HdrHistogram: sixteen linear sub-buckets per
//! power of two of microseconds, so any latency from 1µs to about 19 hours is
//! placed with a relative error under 1/16 (6.25%). Longer latencies count in
//! the last bucket.
//!
//! Like `tower::hedge`'s rotating histogram, samples live in time windows: the
//! tracker keeps the current window and the one before it, and a query reads
//! both, so it always covers between one and two windows of history. A window
//! older than that is cleared by the first sample recorded after it expired.

use std::{
    fmt,
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

use tokio::time::Instant;

/// Sub-buckets per power of two, as a number of bits.
const SUB_BUCKET_BITS: u32 = 4;
/// Sub-buckets per power of two.
const SUB_BUCKETS: usize = 1 << SUB_BUCKET_BITS;
/// The most significant bit of the largest tracked value (2^36 µs ≈ 19 h).
const MAX_MSB: u32 = 35;
/// The largest tracked value in microseconds; longer latencies saturate here.
const MAX_MICROS: u64 = (1 << (MAX_MSB + 1)) - 1;
/// Number of buckets: the linear first octaves plus sixteen per power of two.
const BUCKETS: usize = (MAX_MSB - SUB_BUCKET_BITS + 2) as usize * SUB_BUCKETS;
/// Epoch of a window that has never held a sample.
const EMPTY: u64 = u64::MAX;

/// A shared, lock-free record of recent latencies, answering percentile
/// queries.
///
/// [`Hedge`](super::Hedge) keeps one when its delay is
/// [`HedgeDelay::Percentile`](super::HedgeDelay::Percentile) and reads the
/// delay of each call from it. It can also be used on its own:
///
/// ```
/// use std::time::Duration;
/// use orch_resilience::LatencyTracker;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let tracker = LatencyTracker::new(Duration::from_secs(10));
/// for ms in 1..=100 {
///     tracker.record(Duration::from_millis(ms));
/// }
/// assert_eq!(tracker.samples(), 100);
/// let p95 = tracker.percentile(0.95).unwrap();
/// // Within the histogram's precision (under 6.25%, rounded up).
/// assert!(p95 >= Duration::from_millis(95) && p95 <= Duration::from_millis(101));
/// # }
/// ```
///
/// Recording and querying are safe from any number of tasks. Under
/// contention the figures are approximate: a sample recorded at the very
/// moment its window is being cleared may be lost, and a query racing with
/// records may see some of them and not others. A hedging delay does not
/// need more.
pub struct LatencyTracker {
    window: Duration,
    origin: Instant,
    /// The windows with even and odd indexes since `origin`.
    windows: [Window; 2],
}

/// The samples of one time window.
struct Window {
    /// Index of the window these counts belong to, or [`EMPTY`].
    epoch: AtomicU64,
    /// Samples recorded in this window (the sum of `buckets`, kept apart so
    /// a query below the minimum sample count does not walk the buckets).
    count: AtomicU64,
    buckets: [AtomicU64; BUCKETS],
}

// ===== impl LatencyTracker =====

impl LatencyTracker {
    /// A tracker whose windows last `window`; queries cover the current and
    /// the previous window. A zero window, which configuration validation
    /// rejects, is treated as one nanosecond rather than panicking.
    pub fn new(window: Duration) -> Self {
        Self {
            window: window.max(Duration::from_nanos(1)),
            origin: Instant::now(),
            windows: [Window::new(), Window::new()],
        }
    }

    /// The length of one window.
    pub fn window(&self) -> Duration {
        self.window
    }

    /// Records one latency, in the window of the current time.
    pub fn record(&self, latency: Duration) {
        self.record_at(Instant::now(), latency);
    }

    /// Number of samples in the current and the previous window.
    pub fn samples(&self) -> u64 {
        self.samples_at(self.window_index(Instant::now()))
    }

    /// The latency at `percentile` (a fraction: 0.95 is p95) of the samples
    /// in the current and the previous window, or `None` without samples.
    ///
    /// The answer is the upper edge of the bucket holding that rank, so it
    /// is at most 6.25% above the true value and never below it. A
    /// `percentile` outside `[0, 1]` is clamped into it (0 gives the
    /// smallest sample's bucket).
    pub fn percentile(&self, percentile: f64) -> Option<Duration> {
        self.trusted_percentile_at(Instant::now(), percentile, 1)
    }

    /// [`percentile`](Self::percentile) at `now`, or `None` while there are
    /// fewer than `min_samples` samples to trust it. The caller's `now`
    /// saves a call a clock read.
    pub(crate) fn trusted_percentile_at(
        &self,
        now: Instant,
        percentile: f64,
        min_samples: u64,
    ) -> Option<Duration> {
        let now = self.window_index(now);
        let total = self.samples_at(now);
        if total == 0 || total < min_samples {
            return None;
        }
        let fraction = if percentile.is_nan() {
            0.0
        } else {
            percentile.clamp(0.0, 1.0)
        };
        // The rank of the wanted sample, 1-based: p95 of 100 samples is the 95th.
        let rank = ((fraction * total as f64).ceil() as u64).clamp(1, total);
        let mut seen = 0;
        let mut highest = None;
        for index in 0..BUCKETS {
            let count: u64 = self
                .live(now)
                .map(|w| w.buckets[index].load(Ordering::Relaxed))
                .sum();
            if count == 0 {
                continue;
            }
            seen += count;
            highest = Some(index);
            if seen >= rank {
                break;
            }
        }
        // A window cleared between reading the totals and the buckets can leave
        // `seen` short of `rank`; the highest bucket seen is then the best answer.
        highest.map(|index| Duration::from_micros(bucket_bounds(index).1))
    }

    /// Records `latency` in the window of `now`.
    pub(crate) fn record_at(&self, now: Instant, latency: Duration) {
        let index = self.window_index(now);
        let window = &self.windows[(index % 2) as usize];
        let epoch = window.epoch.load(Ordering::Acquire);
        if epoch != index {
            if epoch != EMPTY && epoch > index {
                // A later window already took this slot: the sample arrived late
                // (its task read the clock before the rotation) and is dropped.
                return;
            }
            // The slot holds a window two or more periods old. Exactly one
            // recorder wins the exchange and clears it; the others go on and
            // record into the new window, possibly before the clear finishes
            // (those few samples are lost, as the type's docs say).
            if window
                .epoch
                .compare_exchange(epoch, index, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                window.clear();
            }
        }
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        window.buckets[bucket_of(micros)].fetch_add(1, Ordering::Relaxed);
        window.count.fetch_add(1, Ordering::Relaxed);
    }

    /// Index of the window that contains `now`, counted from the tracker's creation.
    fn window_index(&self, now: Instant) -> u64 {
        let elapsed = now.saturating_duration_since(self.origin).as_nanos();
        u64::try_from(elapsed / self.window.as_nanos()).unwrap_or(u64::MAX - 1)
    }

    /// Number of samples in the windows that count at window index `now`.
    fn samples_at(&self, now: u64) -> u64 {
        self.live(now).map(|w| w.count.load(Ordering::Relaxed)).sum()
    }

    /// The windows whose samples count at window index `now`: the current one
    /// and the one before it.
    fn live(&self, now: u64) -> impl Iterator<Item = &Window> {
        self.windows.iter().filter(move |w| {
            let epoch = w.epoch.load(Ordering::Acquire);
            epoch != EMPTY && (epoch == now || epoch.checked_add(1) == Some(now))
        })
    }
}

impl fmt::Debug for LatencyTracker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LatencyTracker")
            .field("window", &self.window)
            .field("samples", &self.samples())
            .finish()
    }
}

// ===== impl Window =====

impl Window {
    fn new() -> Self {
        Self {
            epoch: AtomicU64::new(EMPTY),
            count: AtomicU64::new(0),
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }

    fn clear(&self) {
        for bucket in &self.buckets {
            bucket.store(0, Ordering::Relaxed);
        }
        self.count.store(0, Ordering::Relaxed);
    }
}

// ===== buckets =====

/// The bucket of a latency in microseconds.
fn bucket_of(micros: u64) -> usize {
    let value = micros.min(MAX_MICROS);
    if value < SUB_BUCKETS as u64 {
        return value as usize;
    }
    let msb = 63 - value.leading_zeros();
    let shift = msb - SUB_BUCKET_BITS;
    let sub = (value >> shift) as usize & (SUB_BUCKETS - 1);
    let index = (msb - SUB_BUCKET_BITS + 1) as usize * SUB_BUCKETS + sub;
    debug_assert!(index < BUCKETS, "bucket {index} out of range for {value}µs");
    index
}

/// The smallest and largest latency, in microseconds, that fall in `index`.
fn bucket_bounds(index: usize) -> (u64, u64) {
    debug_assert!(index < BUCKETS);
    if index < SUB_BUCKETS {
        return (index as u64, index as u64);
    }
    let shift = (index / SUB_BUCKETS - 1) as u32;
    let low = ((SUB_BUCKETS + index % SUB_BUCKETS) as u64) << shift;
    (low, low + (1 << shift) - 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn buckets_are_contiguous_and_cover_the_range() {
        assert_eq!(bucket_of(0), 0);
        assert_eq!(bucket_of(MAX_MICROS), BUCKETS - 1);
        assert_eq!(bucket_of(u64::MAX), BUCKETS - 1);
        assert_eq!(bucket_bounds(BUCKETS - 1).1, MAX_MICROS);
        for index in 1..BUCKETS {
            assert_eq!(
                bucket_bounds(index).0,
                bucket_bounds(index - 1).1 + 1,
                "gap before {index}"
            );
        }
    }

    proptest! {
        #[test]
        fn a_value_lies_in_its_bucket_within_a_sixteenth(micros in 0..=MAX_MICROS) {
            let (low, high) = bucket_bounds(bucket_of(micros));
            prop_assert!(low <= micros && micros <= high);
            prop_assert!((high - low) * 16 <= micros.max(1));
        }
    }

    #[tokio::test(start_paused = true)]
    async fn windows_rotate_and_expire() {
        let tracker = LatencyTracker::new(Duration::from_secs(10));
        tracker.record(Duration::from_millis(5));
        tokio::time::advance(Duration::from_secs(10)).await;
        // Previous window: still counted.
        tracker.record(Duration::from_millis(7));
        assert_eq!(tracker.samples(), 2);
        tokio::time::advance(Duration::from_secs(10)).await;
        // The 5ms sample is two windows old now; the 7ms one is the previous window.
        assert_eq!(tracker.samples(), 1);
        tracker.record(Duration::from_millis(9));
        assert_eq!(tracker.samples(), 2);
        tokio::time::advance(Duration::from_secs(20)).await;
        assert_eq!(tracker.samples(), 0);
        assert_eq!(tracker.percentile(0.5), None);
    }

    #[tokio::test(start_paused = true)]
    async fn late_samples_for_a_rotated_slot_are_dropped() {
        let tracker = LatencyTracker::new(Duration::from_secs(1));
        let before = Instant::now();
        tokio::time::advance(Duration::from_secs(2)).await;
        tracker.record(Duration::from_millis(1));
        // A task that read the clock two windows ago records after the rotation.
        tracker.record_at(before, Duration::from_millis(50));
        assert_eq!(tracker.samples(), 1);
        assert_eq!(tracker.percentile(1.0), Some(Duration::from_micros(1023)));
    }
}

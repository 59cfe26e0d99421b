//! Sliding windows with running totals, sharded per thread.
//!
//! A window shared by every thread would be one cache line written by every
//! call, and would stop scaling at two threads. So the breaker keeps one
//! window per shard (a cache-line aligned slot), a thread records into the
//! shard it was assigned once, round-robin, and the trip decision sums the
//! shards' running totals. With one thread only one shard is used, so the
//! window is then exactly Resilience4j's.
//!
//! The healthy steady state costs one load: a count window that is full and
//! holds no failure and no slow call is marked *clean* in an atomic summary
//! word, and recording a success there changes nothing observable (an
//! all-success window stays all-success), so the success path reads the word
//! and stops.

use std::{
    collections::VecDeque,
    sync::{
        Mutex, MutexGuard, PoisonError,
        atomic::{AtomicU64, Ordering},
    },
};

use super::config::SlidingWindow;

/// A recorded call failed.
pub(crate) const FAILED: u8 = 1;
/// A recorded call was slow.
pub(crate) const SLOW: u8 = 2;

/// What a record left in a shard's window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Recorded {
    /// The shard's totals after the record.
    pub(crate) totals: Totals,
    /// Whether the record may have raised a judged rate: it was a failure or
    /// slow, or the window grew (a count window filling up may just have
    /// reached `minimum_calls`; in a time window, old successes may have
    /// expired). A success pushed into a full count window replaces an older
    /// call and can only lower the rates, so it needs no judgement.
    pub(crate) rates_may_rise: bool,
}

/// Calls, failures and slow calls in a window, or summed over windows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Totals {
    pub(crate) calls: u64,
    pub(crate) failures: u64,
    pub(crate) slow: u64,
}

impl Totals {
    /// One call with `mark`.
    fn of(mark: u8) -> Self {
        Self {
            calls: 1,
            failures: u64::from(mark & FAILED != 0),
            slow: u64::from(mark & SLOW != 0),
        }
    }

    fn merge(&mut self, other: Totals) {
        self.calls += other.calls;
        self.failures += other.failures;
        self.slow += other.slow;
    }

    fn subtract(&mut self, other: Totals) {
        self.calls -= other.calls;
        self.failures -= other.failures;
        self.slow -= other.slow;
    }

    pub(crate) fn has_bad_calls(&self) -> bool {
        self.failures > 0 || self.slow > 0
    }

    /// `failures / calls`, 0 for an empty window.
    pub(crate) fn failure_rate(&self) -> f64 {
        ratio(self.failures, self.calls)
    }

    /// `slow / calls`, 0 for an empty window.
    pub(crate) fn slow_call_rate(&self) -> f64 {
        ratio(self.slow, self.calls)
    }
}

fn ratio(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

/// The last `size` calls, one byte each, oldest first, with running totals.
#[derive(Debug)]
struct CountRing {
    calls: VecDeque<u8>,
    size: usize,
    totals: Totals,
}

impl CountRing {
    fn new(size: u32) -> Self {
        let size = size as usize;
        let (calls, totals) = (VecDeque::with_capacity(size), Totals::default());
        Self { calls, size, totals }
    }

    fn push(&mut self, mark: u8) {
        if self.is_full()
            && let Some(oldest) = self.calls.pop_front()
        {
            self.totals.subtract(Totals::of(oldest));
        }
        self.calls.push_back(mark);
        self.totals.merge(Totals::of(mark));
    }

    fn is_full(&self) -> bool {
        self.calls.len() == self.size
    }

    fn clear(&mut self) {
        self.calls.clear();
        self.totals = Totals::default();
    }
}

/// The calls of the last `buckets` buckets of `width` nanoseconds, with
/// running totals. Bucket `i` (absolute, counted from the breaker's origin)
/// covers `[i * width, (i + 1) * width)` and lives in slot `i % buckets`.
#[derive(Debug)]
struct TimeRing {
    buckets: Box<[Totals]>,
    width: u64,
    /// The newest absolute bucket index the window has moved to.
    newest: u64,
    totals: Totals,
}

impl TimeRing {
    fn new(buckets: u32, width: u64) -> Self {
        Self {
            buckets: vec![Totals::default(); buckets as usize].into_boxed_slice(),
            width: width.max(1),
            newest: 0,
            totals: Totals::default(),
        }
    }

    /// Moves the window to `now`: buckets that fell out are subtracted and
    /// emptied. O(1) amortised: each bucket is emptied once per pass.
    fn advance(&mut self, now: u64) {
        let current = now / self.width;
        if current <= self.newest {
            // A time read a moment before another thread's; the newest bucket takes it.
            return;
        }
        let n = self.buckets.len() as u64;
        if current - self.newest >= n {
            self.clear();
        } else {
            for index in self.newest + 1..=current {
                let expired = std::mem::take(&mut self.buckets[(index % n) as usize]);
                self.totals.subtract(expired);
            }
        }
        self.newest = current;
    }

    fn push(&mut self, mark: u8, now: u64) {
        self.advance(now);
        let n = self.buckets.len() as u64;
        self.buckets[(self.newest % n) as usize].merge(Totals::of(mark));
        self.totals.merge(Totals::of(mark));
    }

    fn clear(&mut self) {
        self.buckets.fill(Totals::default());
        self.totals = Totals::default();
    }
}

#[derive(Debug)]
enum Ring {
    Count(CountRing),
    Time(TimeRing),
}

/// A shard's window and the epoch of the state its calls were admitted in.
/// A window of an older epoch is stale and is emptied when next touched.
#[derive(Debug)]
struct ShardWindow {
    epoch: u32,
    ring: Ring,
}

impl ShardWindow {
    fn reset(&mut self, epoch: u32) {
        self.epoch = epoch;
        match &mut self.ring {
            Ring::Count(ring) => ring.clear(),
            Ring::Time(ring) => ring.clear(),
        }
    }

    fn totals(&mut self, now: u64) -> Totals {
        match &mut self.ring {
            Ring::Count(ring) => ring.totals,
            Ring::Time(ring) => {
                ring.advance(now);
                ring.totals
            }
        }
    }

    /// True when recording a success would change nothing: a full count
    /// window without failures or slow calls.
    fn is_clean(&self) -> bool {
        match &self.ring {
            Ring::Count(ring) => ring.is_full() && !ring.totals.has_bad_calls(),
            Ring::Time(_) => false,
        }
    }
}

/// One thread's share of a breaker: its window, and the word that says the
/// window is clean. Aligned to 128 bytes (two cache lines, the prefetch pair
/// on x86) so that shards never share a line.
#[repr(align(128))]
#[derive(Debug)]
pub(crate) struct Shard {
    /// `clean_tag(epoch)` while the window of `epoch` is clean, 0 otherwise.
    summary: AtomicU64,
    /// Calls this shard's threads saw rejected.
    rejections: AtomicU64,
    window: Mutex<ShardWindow>,
}

/// The summary word of a clean window of `epoch`; never 0.
const fn clean_tag(epoch: u32) -> u64 {
    ((epoch as u64) << 1) | 1
}

impl Shard {
    pub(crate) fn new(window: &SlidingWindow, epoch: u32) -> Self {
        let ring = match *window {
            SlidingWindow::Count { size } => Ring::Count(CountRing::new(size)),
            SlidingWindow::Time { length, .. } => {
                let buckets = window.bucket_count().unwrap_or(1).max(1);
                let width = u64::try_from(length.as_nanos() / u128::from(buckets)).unwrap_or(u64::MAX);
                Ring::Time(TimeRing::new(buckets, width))
            }
        };
        Self {
            summary: AtomicU64::new(0),
            rejections: AtomicU64::new(0),
            window: Mutex::new(ShardWindow { epoch, ring }),
        }
    }

    /// True when the shard's window of `epoch` is full and all-success, so a
    /// success need not be recorded.
    #[inline]
    pub(crate) fn is_clean(&self, epoch: u32) -> bool {
        // Relaxed: nothing else is read on the strength of this load; a
        // success that races a failure being recorded is ordered before it.
        self.summary.load(Ordering::Relaxed) == clean_tag(epoch)
    }

    fn lock(&self) -> MutexGuard<'_, ShardWindow> {
        // The window stays consistent even if a panic unwound through a
        // holder (no code between lock and unlock panics), so poison is ignored.
        self.window.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records a call admitted in `epoch` with `mark` (`FAILED | SLOW` bits)
    /// at `now` (nanoseconds since the breaker's origin; read only by time
    /// windows). `is_current` is asked under the shard's lock whether `epoch`
    /// is still the breaker's epoch; a stale call is dropped and `None`
    /// returned.
    pub(crate) fn record(
        &self,
        epoch: u32,
        mark: u8,
        now: u64,
        is_current: impl FnOnce() -> bool,
    ) -> Option<Recorded> {
        let mut window = self.lock();
        if !is_current() {
            return None;
        }
        if window.epoch != epoch {
            window.reset(epoch);
        }
        let grew = match &mut window.ring {
            Ring::Count(ring) => {
                let was_full = ring.is_full();
                ring.push(mark);
                !was_full
            }
            Ring::Time(ring) => {
                ring.push(mark, now);
                // Expired buckets may have left mostly failures behind.
                true
            }
        };
        let summary = if window.is_clean() { clean_tag(epoch) } else { 0 };
        self.summary.store(summary, Ordering::Relaxed);
        Some(Recorded {
            totals: window.totals(now),
            rates_may_rise: mark != 0 || grew,
        })
    }

    /// This shard's totals for `epoch` at `now` (zero when its window holds
    /// another epoch's calls).
    pub(crate) fn totals(&self, epoch: u32, now: u64) -> Totals {
        let mut window = self.lock();
        if window.epoch == epoch {
            window.totals(now)
        } else {
            Totals::default()
        }
    }

    #[inline]
    pub(crate) fn count_rejection(&self) {
        self.rejections.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn rejections(&self) -> u64 {
        self.rejections.load(Ordering::Relaxed)
    }
}

/// Sums the totals of every shard for `epoch` at `now`.
pub(crate) fn aggregate(shards: &[Shard], epoch: u32, now: u64) -> Totals {
    shards.iter().fold(Totals::default(), |mut sum, shard| {
        sum.merge(shard.totals(epoch, now));
        sum
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn count_ring_slides_with_running_totals() {
        let mut ring = CountRing::new(3);
        for mark in [FAILED, 0, SLOW] {
            ring.push(mark);
        }
        assert!(ring.is_full());
        assert_eq!(
            ring.totals,
            Totals {
                calls: 3,
                failures: 1,
                slow: 1
            }
        );
        ring.push(0);
        assert_eq!(
            ring.totals,
            Totals {
                calls: 3,
                failures: 0,
                slow: 1
            }
        );
        ring.push(FAILED | SLOW);
        ring.push(0);
        assert_eq!(
            ring.totals,
            Totals {
                calls: 3,
                failures: 1,
                slow: 1
            }
        );
    }

    #[test]
    fn time_ring_forgets_old_buckets() {
        let mut ring = TimeRing::new(3, 10);
        ring.push(FAILED, 5); // bucket 0
        ring.push(0, 15); // bucket 1
        ring.push(0, 29); // bucket 2
        assert_eq!(ring.totals.calls, 3);
        ring.advance(30); // bucket 3: bucket 0 leaves
        assert_eq!(
            ring.totals,
            Totals {
                calls: 2,
                failures: 0,
                slow: 0
            }
        );
        ring.advance(1_000);
        assert_eq!(ring.totals, Totals::default());
        ring.push(FAILED, 995); // older read than the newest bucket: counted in it
        assert_eq!(ring.totals.failures, 1);
    }

    #[test]
    fn shard_is_clean_only_when_full_and_all_success() {
        let shard = Shard::new(&SlidingWindow::Count { size: 2 }, 7);
        shard.record(7, 0, 0, || true);
        assert!(!shard.is_clean(7));
        shard.record(7, 0, 0, || true);
        assert!(shard.is_clean(7));
        assert!(!shard.is_clean(8));
        shard.record(7, FAILED, 0, || true);
        assert!(!shard.is_clean(7));
        assert_eq!(shard.record(7, 0, 0, || false), None);
        let full = shard.record(7, 0, 0, || true).unwrap();
        assert!(
            !full.rates_may_rise,
            "a success replacing a call in a full window"
        );
        // A newer epoch empties the window first.
        let fresh = shard.record(9, 0, 0, || true).unwrap();
        assert_eq!(
            fresh.totals,
            Totals {
                calls: 1,
                failures: 0,
                slow: 0
            }
        );
        assert!(fresh.rates_may_rise);
        assert_eq!(shard.totals(7, 0), Totals::default());
    }
}

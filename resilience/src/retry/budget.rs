//! Finagle's retry budget: retries as a share of recent requests.
//!
//! Per-call limits (`max_attempts`) do not stop retries from multiplying an
//! outage: when every call fails, three attempts per call triple the load on
//! a service that is already down. A budget caps retries across all calls:
//! each original request deposits a fraction of a retry, each retry
//! withdraws a whole one, and deposits and withdrawals count only for a
//! window (`ttl`). The design is Finagle's `RetryBudget`
//! (`com.twitter.finagle.service.RetryBudget`), also used by tower's
//! `TpsBudget` and linkerd.

use std::{
    fmt,
    sync::{
        Mutex, PoisonError,
        atomic::{AtomicU64, Ordering},
    },
};

use tokio::time::Instant;

use super::config::RetryBudgetConfig;
use crate::{
    clock,
    config::ConfigError,
    shard::{Padded, Sharded},
};

/// Slices per window: a deposit expires between `ttl × 9/10` and `ttl` after
/// it was made, as in Finagle's and tower's windowed counters.
const SLICES: usize = 10;
/// Fixed point for `percent_can_retry`: credits are counted in millionths of
/// a retry, so a percent is honoured to six decimals with integer arithmetic.
const MICROS_PER_RETRY: u128 = 1_000_000;
/// Request counters pack the slice number (high 40 bits) with the count (low
/// 24 bits), so a deposit that starts a new slice resets the count in the
/// same atomic operation. 40 bits of 100 ms slices last 3 000 years; a count
/// saturates at 16 777 215 requests per slice (no more credit is earned).
const COUNT_BITS: u32 = 24;
const COUNT_MAX: u64 = (1 << COUNT_BITS) - 1;
/// Deposits do not read the clock; every this many deposits credited to one
/// slice, the depositor reads it and moves the budget's slice forward.
const REFRESH_EVERY: u64 = 32;

/// A retry budget shared by every service of a [`RetryLayer`](super::RetryLayer),
/// and by several layers when the same `Arc<RetryBudget>` is given to each
/// (`RetryLayer::shared_budget`).
///
/// # The guarantee
///
/// Time is cut into slices of `ttl / 10` counted from the budget's creation.
/// Let the *window* of slice `k` be the ten slices `k−9 ..= k`. With
/// `R = ⌊min_retries_per_sec × ttl in seconds⌋` and `p = percent_can_retry`
/// rounded to six decimals, a withdrawal in slice `k` succeeds **if and
/// only if**, counting it,
///
/// ```text
/// retries in the window of k  ≤  R + p × requests credited to the window of k
/// ```
///
/// A request is credited to the slice of the budget's latest clock reading
/// when it deposits (see *Cost*): its own slice or an earlier one, never a
/// later one. Credited requests of a window are therefore never more than
/// the requests actually made in it, and at the moment of every retry the
/// retries of the last `ttl` (between `0.9 × ttl` and `ttl` of elapsed time,
/// by slice) never exceed `R + p ×` the requests of that window. The
/// rounding is always towards fewer retries: a deposit can leave the window
/// early, never late. Withdrawals are serialised, so the bound holds under
/// any concurrency; a deposit racing with a withdrawal may be missed by it,
/// which again only makes the budget stricter.
///
/// # Cost
///
/// [`deposit`](Self::deposit), made by every call, is lock-free: one atomic
/// load and one compare-and-swap, and no clock read, on counters sharded by
/// thread, so that threads calling at once do not contend on one cache
/// line. The budget reads the clock on every withdrawal and on every 32nd
/// deposit credited to a slice of a shard, and credits deposits to the
/// slice of that reading. Under steady traffic a deposit is credited at
/// most 32 of its shard's deposits' time early; after a quiet spell, up to
/// 31 deposits per shard may be credited to a slice that already left the
/// window (at the default 20 %, six retries of credit per shard in use,
/// against a floor of 100). [`try_withdraw`](Self::try_withdraw), made only
/// before a retry, reads the clock, takes a short lock and sums ten slices
/// of every shard.
///
/// ```
/// use orch_resilience::{RetryBudget, RetryBudgetConfig};
///
/// // No floor, one retry per two requests.
/// let budget = RetryBudget::new(
///     RetryBudgetConfig::default().min_retries_per_sec(0).percent_can_retry(0.5),
/// ).unwrap();
/// budget.deposit();
/// assert!(!budget.try_withdraw());
/// budget.deposit();
/// assert!(budget.try_withdraw());
/// assert_eq!(budget.available(), 0);
/// ```
pub struct RetryBudget {
    config: RetryBudgetConfig,
    origin: Instant,
    slice_nanos: u64,
    /// Retries always allowed per window, in millionths.
    reserve: u128,
    /// Millionths of a retry earned by one request.
    credit: u128,
    /// Requests per slice, one set of slots per shard of calling threads
    /// (see [`shard`](crate::shard)), summed when a retry asks.
    requests: Sharded<Padded<[AtomicU64; SLICES]>>,
    /// The slice of the latest clock reading; deposits are credited to it.
    clock_slice: AtomicU64,
    retries: Mutex<[Tally; SLICES]>,
}

/// Retries made in one slice.
#[derive(Debug, Clone, Copy, Default)]
struct Tally {
    slice: u64,
    count: u64,
}

impl RetryBudget {
    /// A budget with `config`, its window starting now. Errors name the
    /// field as `retry.budget.<field>`.
    pub fn new(config: RetryBudgetConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        let slice_nanos = u64::try_from(config.ttl.as_nanos() / SLICES as u128).unwrap_or(u64::MAX);
        // Whole retries: the floor is a count, as in Finagle
        // (`minRetriesPerSec × ttl.inSeconds`).
        let reserve = (f64::from(config.min_retries_per_sec) * config.ttl.as_secs_f64()).floor() as u128;
        let credit = (config.percent_can_retry * MICROS_PER_RETRY as f64).round() as u128;
        Ok(Self {
            config,
            origin: Instant::now(),
            slice_nanos: slice_nanos.max(1),
            reserve: reserve * MICROS_PER_RETRY,
            credit,
            requests: Sharded::new(|| Padded(std::array::from_fn(|_| AtomicU64::new(0)))),
            clock_slice: AtomicU64::new(0),
            retries: Mutex::new([Tally::default(); SLICES]),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &RetryBudgetConfig {
        &self.config
    }

    /// Records an original request (not a retry); it earns
    /// `percent_can_retry` retries for the next `ttl`.
    pub fn deposit(&self) {
        let mut slice = self.clock_slice.load(Ordering::Relaxed);
        let slots = self.requests.local();
        let mut slot = &slots[slot_of(slice)];
        let mut current = slot.load(Ordering::Relaxed);
        loop {
            let (seen, count) = unpack(current);
            let next = if seen == slice {
                if count == COUNT_MAX {
                    return;
                }
                pack(slice, count + 1)
            } else if seen < slice {
                // The slot still holds a slice that left the window: start over.
                pack(slice, 1)
            } else {
                // Another thread moved the budget's slice on (and reused this
                // slot) after this one read it: credit the newer slice.
                slice = self.clock_slice.load(Ordering::Relaxed).max(seen);
                slot = &slots[slot_of(slice)];
                current = slot.load(Ordering::Relaxed);
                continue;
            };
            match slot.compare_exchange_weak(current, next, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => {
                    if unpack(next).1.is_multiple_of(REFRESH_EVERY) {
                        self.read_clock();
                    }
                    return;
                }
                Err(actual) => current = actual,
            }
        }
    }

    /// Takes one retry from the budget; false when the budget is spent (the
    /// caller must not retry).
    pub fn try_withdraw(&self) -> bool {
        let mut retries = self.retries.lock().unwrap_or_else(PoisonError::into_inner);
        // Read the clock under the lock so that withdrawals see time in the
        // order they are recorded.
        let slice = self.read_clock();
        let (requests, retried) = self.window(slice, &retries);
        if (u128::from(retried) + 1) * MICROS_PER_RETRY > self.allowance(requests) {
            return false;
        }
        let tally = &mut retries[slot_of(slice)];
        if tally.slice != slice {
            *tally = Tally { slice, count: 0 };
        }
        tally.count += 1;
        true
    }

    /// How many retries the budget would allow now.
    pub fn available(&self) -> u64 {
        let retries = self.retries.lock().unwrap_or_else(PoisonError::into_inner);
        let slice = self.read_clock();
        let (requests, retried) = self.window(slice, &retries);
        let allowed = self.allowance(requests) / MICROS_PER_RETRY;
        u64::try_from(allowed.saturating_sub(u128::from(retried))).unwrap_or(u64::MAX)
    }

    fn allowance(&self, requests: u64) -> u128 {
        self.reserve + self.credit * u128::from(requests)
    }

    /// Requests and retries recorded in the window ending with `slice`.
    fn window(&self, slice: u64, retries: &[Tally; SLICES]) -> (u64, u64) {
        let in_window = |s: u64| s <= slice && s + SLICES as u64 > slice;
        let requests = self
            .requests
            .iter()
            .flat_map(|slots| slots.iter())
            .map(|slot| unpack(slot.load(Ordering::Relaxed)))
            .filter(|(s, _)| in_window(*s))
            .map(|(_, count)| count)
            .sum();
        let retried = retries
            .iter()
            .filter(|t| in_window(t.slice))
            .map(|t| t.count)
            .sum();
        (requests, retried)
    }

    /// The current slice; later deposits are credited to it.
    fn read_clock(&self) -> u64 {
        let slice = clock::nanos_since(self.origin) / self.slice_nanos;
        // Written only when it moves on: every thread reads this word on
        // every deposit.
        if slice > self.clock_slice.load(Ordering::Relaxed) {
            self.clock_slice.fetch_max(slice, Ordering::Relaxed);
        }
        slice
    }
}

fn slot_of(slice: u64) -> usize {
    (slice % SLICES as u64) as usize
}

fn pack(slice: u64, count: u64) -> u64 {
    debug_assert!(count <= COUNT_MAX);
    (slice << COUNT_BITS) | count
}

fn unpack(word: u64) -> (u64, u64) {
    (word >> COUNT_BITS, word & COUNT_MAX)
}

impl fmt::Debug for RetryBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryBudget")
            .field("config", &self.config)
            .field("available", &self.available())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn floor_is_available_without_requests_and_renews_after_ttl() {
        let budget = RetryBudget::new(
            RetryBudgetConfig::default()
                .ttl(Duration::from_secs(1))
                .min_retries_per_sec(3)
                .percent_can_retry(0.0),
        )
        .unwrap();
        assert_eq!(budget.available(), 3);
        assert!((0..3).all(|_| budget.try_withdraw()));
        assert!(!budget.try_withdraw());
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(budget.available(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn deposits_expire_with_their_slice() {
        let budget = RetryBudget::new(
            RetryBudgetConfig::default()
                .ttl(Duration::from_secs(1))
                .min_retries_per_sec(0)
                .percent_can_retry(1.0),
        )
        .unwrap();
        budget.deposit();
        tokio::time::advance(Duration::from_millis(950)).await;
        // The budget reads the clock (slice 9) before crediting the next one.
        assert_eq!(budget.available(), 1);
        budget.deposit();
        assert_eq!(budget.available(), 2);
        // The first deposit's slice (0) leaves the window at slice 10.
        tokio::time::advance(Duration::from_millis(50)).await;
        assert_eq!(budget.available(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn deposits_without_a_clock_reading_are_credited_early_never_late() {
        let budget = RetryBudget::new(
            RetryBudgetConfig::default()
                .ttl(Duration::from_secs(1))
                .min_retries_per_sec(0)
                .percent_can_retry(1.0),
        )
        .unwrap();
        tokio::time::advance(Duration::from_millis(1500)).await;
        // Credited to slice 0, which has left the window: no credit.
        budget.deposit();
        assert_eq!(budget.available(), 0);
        // That reading moved the budget to slice 15.
        budget.deposit();
        assert_eq!(budget.available(), 1);
        // Every 32nd deposit credited to a slice reads the clock.
        tokio::time::advance(Duration::from_millis(1000)).await;
        for _ in 0..30 {
            budget.deposit(); // 2nd to 31st credited to slice 15
        }
        tokio::time::advance(Duration::from_millis(500)).await;
        budget.deposit(); // the 32nd credited to slice 15: reads the clock (slice 30)
        budget.deposit(); // credited to slice 30
        assert_eq!(budget.available(), 1);
    }

    #[test]
    fn packing_round_trips() {
        assert_eq!(unpack(pack(123_456, COUNT_MAX)), (123_456, COUNT_MAX));
    }
}

//! The Generic Cell Rate Algorithm over one atomic word.
//!
//! GCRA (ITU-T I.371, the ATM traffic contract; the algorithm behind
//! `governor` and Redis-cell) is a token bucket stored as a single
//! timestamp, the *theoretical arrival time* (TAT): the time at which the
//! bucket would be full again. With emission interval `T = per / permits` and
//! tolerance `τ = burst × T`, a call at time `now` conforms when
//!
//! ```text
//! new_tat = max(tat, now) + T   and   new_tat ≤ now + τ
//! ```
//!
//! and then `tat` becomes `new_tat`. Otherwise the call conforms again at
//! `new_tat − τ`; that difference is the wait reported to the caller. Storing
//! one `u64` (nanoseconds since the limiter was created, on its
//! [`Clock`]) lets the update be a single compare-exchange, with no lock and
//! no background refill task.

use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

use tokio::time::Instant;

use crate::{
    clock::{Clock, ClockSource},
    deadline::deadline_after,
};

/// The largest tolerance `τ = burst × T` accepted, 100 years in nanoseconds.
/// Keeping `τ` far below `u64::MAX` keeps `now + τ` and the TAT from ever
/// saturating, which would make every call conform.
pub(crate) const MAX_TOLERANCE_NANOS: u64 = 100 * 365 * 86_400 * 1_000_000_000;

/// `T = per / permits` in nanoseconds, rounded up so the limiter never admits
/// more than the configured rate, and at least one.
pub(crate) fn interval_nanos(permits: u32, per: Duration) -> u64 {
    let per_nanos = u64::try_from(per.as_nanos()).unwrap_or(u64::MAX);
    per_nanos.div_ceil(u64::from(permits.max(1))).max(1)
}

/// The GCRA state and its two constants, all in nanoseconds.
#[derive(Debug)]
pub(crate) struct Gcra {
    /// The clock `tat` counts on; it read zero when the limiter was made.
    clock: Clock,
    /// Theoretical arrival time, nanoseconds on `clock`.
    tat: AtomicU64,
    /// `T`: nanoseconds between two permits at the sustained rate.
    interval: u64,
    /// `τ = burst × T`: how far `tat` may run ahead of the clock.
    tolerance: u64,
}

impl Gcra {
    /// A limiter that is full (a whole burst is available) now.
    pub(crate) fn new(permits: u32, per: Duration, burst: u32, clock: ClockSource) -> Self {
        debug_assert!(
            permits > 0 && burst > 0 && !per.is_zero(),
            "validated by the config"
        );
        let interval = interval_nanos(permits, per);
        let tolerance = interval.saturating_mul(u64::from(burst));
        debug_assert!(tolerance <= MAX_TOLERANCE_NANOS, "validated by the config");
        Self {
            clock: Clock::start(clock),
            tat: AtomicU64::new(0),
            interval,
            tolerance,
        }
    }

    /// The emission interval `T`.
    pub(crate) fn interval(&self) -> Duration {
        Duration::from_nanos(self.interval)
    }

    /// Takes one permit if it conforms within `slack` nanoseconds from now.
    ///
    /// `Ok(wait)`: the permit is taken and conforms `wait` ns from now (zero
    /// for an immediate permit). `Err(wait)`: nothing was taken; a permit
    /// conforms `wait` ns from now, if nobody else takes one first.
    #[inline]
    fn take(&self, slack: u64) -> Result<u64, u64> {
        let now = self.clock.nanos();
        let limit = now.saturating_add(self.tolerance);
        // Relaxed is enough: `tat` is the only shared datum and publishes no
        // other memory, and compare-exchange works on the single modification
        // order of that one atomic, so no two callers can take the same slot
        // of the schedule whatever the ordering.
        let mut tat = self.tat.load(Ordering::Relaxed);
        loop {
            let new_tat = tat.max(now).saturating_add(self.interval);
            let wait = new_tat.saturating_sub(limit);
            if wait > slack {
                return Err(wait);
            }
            match self
                .tat
                .compare_exchange_weak(tat, new_tat, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return Ok(wait),
                Err(current) => tat = current,
            }
        }
    }

    /// Takes a permit if one is available now; otherwise returns the time
    /// until one is.
    #[inline]
    pub(crate) fn try_acquire(&self) -> Result<(), Duration> {
        match self.take(0) {
            Ok(_) => Ok(()),
            Err(wait) => Err(Duration::from_nanos(wait)),
        }
    }

    /// Takes a permit that is available now (`Ok(None)`) or within
    /// `max_wait` (`Ok(Some(at))`, reserved for the instant `at`); otherwise
    /// takes nothing and returns the time until a permit is available.
    #[inline]
    pub(crate) fn reserve(&self, max_wait: Duration) -> Result<Option<Instant>, Duration> {
        let slack = u64::try_from(max_wait.as_nanos()).unwrap_or(u64::MAX);
        match self.take(slack) {
            Ok(0) => Ok(None),
            // On tokio's clock, whichever clock the limiter counts on: the
            // caller sleeps on tokio's timer.
            Ok(wait) => Ok(Some(deadline_after(Instant::now(), Duration::from_nanos(wait)))),
            Err(wait) => Err(Duration::from_nanos(wait)),
        }
    }
}

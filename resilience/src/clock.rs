//! Which clock a layer reads on its hot path.
//!
//! orch-discovery's balancer has its own `ClockSource` on purpose: its
//! default (`auto`) follows tokio's paused time, where a rate limiter's
//! default is tokio's clock itself; the two crates share no code (see
//! DESIGN.md's dependency direction).
//!
//! A rate limiter reads the time on every call, and on this budget a clock
//! read is most of the cost: measured in `benches/resilience.rs` on the
//! project's machines (a VM on AMD EPYC, `tsc` clocksource), tokio's clock
//! (a vDSO `clock_gettime`, more with tokio's `test-util` compiled in) costs
//! about 30 ns a read and the CPU's time-stamp counter through `quanta`
//! about 12 ns; `governor` reads the latter.
//!
//! The default is still tokio's clock, as in `tower`: it follows
//! `tokio::time::pause` and `advance`, so a test of a service that limits its
//! callers sees the limiter refill when it advances time. [`ClockSource::Tsc`]
//! is the opt-in for hot paths; it does not follow paused time.

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

/// The clock a layer reads on every call.
///
/// Serialised as `"tokio"` or `"tsc"`. Default [`Tokio`](Self::Tokio).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClockSource {
    /// `tokio::time::Instant`: follows paused and advanced time in tests.
    #[default]
    Tokio,
    /// The CPU's time-stamp counter through `quanta` (the OS clock where the
    /// CPU has no invariant TSC). The first TSC clock of a process calibrates
    /// it against the OS clock, once, for up to 200 ms. Does not follow
    /// tokio's paused time.
    Tsc,
}

/// A started clock: reads are nanoseconds since it started.
#[derive(Debug, Clone)]
pub(crate) enum Clock {
    Tokio { base: Instant },
    Tsc { clock: quanta::Clock, base: u64 },
}

impl Clock {
    /// Starts the clock `source` names; it reads zero now.
    pub(crate) fn start(source: ClockSource) -> Self {
        match source {
            ClockSource::Tokio => Self::Tokio { base: Instant::now() },
            ClockSource::Tsc => {
                let clock = quanta::Clock::new();
                let base = clock.raw();
                Self::Tsc { clock, base }
            }
        }
    }

    /// Nanoseconds since the clock started, saturating after 584 years.
    #[inline]
    pub(crate) fn nanos(&self) -> u64 {
        match self {
            Self::Tokio { base } => nanos_since(*base),
            Self::Tsc { clock, base } => clock.delta_as_nanos(*base, clock.raw()),
        }
    }
}

/// Nanoseconds from `base` to now on tokio's clock, saturating after 584
/// years (and zero for a `base` in the future).
#[inline]
pub(crate) fn nanos_since(base: Instant) -> u64 {
    u64::try_from(Instant::now().saturating_duration_since(base).as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_tokio_clock_follows_paused_time() {
        let clock = Clock::start(ClockSource::Tokio);
        assert_eq!(clock.nanos(), 0);
        tokio::time::advance(Duration::from_millis(30)).await;
        assert_eq!(clock.nanos(), 30_000_000);
    }

    #[test]
    fn the_tsc_clock_counts_nanoseconds_like_the_os_clock() {
        let clock = Clock::start(ClockSource::Tsc);
        let readings: Vec<u64> = (0..1_000).map(|_| clock.nanos()).collect();
        assert!(readings.windows(2).all(|w| w[0] <= w[1]));
        // Nested readings of both clocks over the same busy interval: the
        // TSC's span lies between the OS clock's inner and outer spans
        // (within quanta's calibration error), whatever the machine's speed.
        let outer = std::time::Instant::now();
        let start = clock.nanos();
        let inner = std::time::Instant::now();
        let mut x = 0u64;
        for i in 0..2_000_000u64 {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(i));
        }
        let inner = inner.elapsed().as_nanos() as f64;
        let tsc = (clock.nanos() - start) as f64;
        let outer = outer.elapsed().as_nanos() as f64;
        assert!(
            tsc >= inner * 0.95 && tsc <= outer * 1.05,
            "{inner} <= {tsc} <= {outer}"
        );
    }
}

//! Where the balancer reads the time to measure response latency.
//!
//! Peak-EWMA needs two clock reads per request (when it is sent, when it
//! completes), and on this budget a clock read is not free. Measured in
//! `benches/balance.rs` (group `clock`) on the project's machines (a VM on
//! AMD EPYC, `tsc` clocksource):
//!
//! | clock | one read |
//! |---|---|
//! | [`ClockSource::Tsc`] (`quanta`, the CPU's time-stamp counter) | ≈ 12 ns |
//! | [`ClockSource::Std`] (`std::time::Instant`, vDSO `clock_gettime`) | ≈ 32 ns |
//! | [`ClockSource::Tokio`] (`tokio::time::Instant`, with `test-util` compiled in) | ≈ 32 ns |
//!
//! So the default is the TSC: it saves ~40 ns per request, a large share of
//! the balancer's whole overhead. Where the CPU has no invariant TSC, `quanta`
//! falls back to the OS monotonic clock by itself. The first TSC clock in a
//! process calibrates it against the OS clock (at most 200 ms, once).
//!
//! [`ClockSource::Tokio`] follows tokio's paused time, so tests and
//! simulations that advance time by hand see the latencies they script.
//! Backoff and fail-fast timers always run on tokio's timer, whatever the
//! clock here.

use serde::{Deserialize, Serialize};

/// Which clock measures response latency for load estimates.
///
/// Serialised as `"tsc"`, `"std"` or `"tokio"`. Default [`Tsc`](Self::Tsc).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClockSource {
    /// The CPU's time-stamp counter through `quanta` (≈ 12 ns a read here);
    /// the OS clock where the CPU has no invariant TSC.
    #[default]
    Tsc,
    /// `std::time::Instant` (≈ 32 ns a read here).
    Std,
    /// `tokio::time::Instant`: follows paused and advanced time in tests.
    Tokio,
}

/// A started clock: reads are ticks since it started, in the clock's own unit.
#[derive(Debug, Clone)]
pub(crate) enum Clock {
    /// Raw TSC ticks; converted to nanoseconds only for a difference.
    Tsc(quanta::Clock),
    /// Nanoseconds since `base`.
    Std(std::time::Instant),
    /// Nanoseconds since `base`, on tokio's (possibly paused) clock.
    Tokio(tokio::time::Instant),
}

impl Clock {
    /// Starts the clock `source` names.
    pub(crate) fn start(source: ClockSource) -> Self {
        match source {
            ClockSource::Tsc => Self::Tsc(quanta::Clock::new()),
            ClockSource::Std => Self::Std(std::time::Instant::now()),
            ClockSource::Tokio => Self::Tokio(tokio::time::Instant::now()),
        }
    }

    /// The current reading in ticks.
    #[inline]
    pub(crate) fn now(&self) -> u64 {
        match self {
            Self::Tsc(clock) => clock.raw(),
            Self::Std(base) => duration_nanos(base.elapsed()),
            Self::Tokio(base) => duration_nanos(base.elapsed()),
        }
    }

    /// Ticks from `earlier` to `later`; zero when `later` is not after
    /// `earlier` (readings taken on different threads may arrive out of order).
    #[inline]
    pub(crate) fn ticks_between(&self, earlier: u64, later: u64) -> f64 {
        later.saturating_sub(earlier) as f64
    }

    /// Nanoseconds per tick: 1 except for the TSC, measured by `quanta`'s
    /// calibration. Lets the hot path scale by one multiplication instead of
    /// converting every reading.
    pub(crate) fn nanos_per_tick(&self) -> f64 {
        match self {
            Self::Tsc(clock) => {
                const SPAN: u64 = 1 << 40;
                clock.delta_as_nanos(0, SPAN) as f64 / SPAN as f64
            }
            Self::Std(_) | Self::Tokio(_) => 1.0,
        }
    }
}

/// A duration in whole nanoseconds, saturating after 584 years.
pub(crate) fn duration_nanos(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_tokio_clock_follows_paused_time() {
        let clock = Clock::start(ClockSource::Tokio);
        let t0 = clock.now();
        tokio::time::advance(Duration::from_millis(30)).await;
        let t1 = clock.now();
        assert_eq!(clock.ticks_between(t0, t1) * clock.nanos_per_tick(), 30_000_000.0);
        assert_eq!(clock.ticks_between(t1, t0), 0.0);
    }

    #[test]
    fn wall_clocks_never_run_backwards() {
        for source in [ClockSource::Tsc, ClockSource::Std] {
            let clock = Clock::start(source);
            let readings: Vec<u64> = (0..1_000).map(|_| clock.now()).collect();
            assert!(readings.windows(2).all(|w| w[0] <= w[1]), "{source:?}");
            let per_tick = clock.nanos_per_tick();
            assert!(per_tick > 0.0 && per_tick.is_finite(), "{source:?}: {per_tick}");
        }
    }
}

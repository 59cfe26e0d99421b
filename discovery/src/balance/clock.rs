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
//! So in production the TSC: it saves ~40 ns per request, a large share of
//! the balancer's whole overhead. Where the CPU has no invariant TSC, `quanta`
//! falls back to the OS monotonic clock by itself. The first TSC clock in a
//! process calibrates it against the OS clock (at most 200 ms, once).
//!
//! But the TSC does not stop when a test pauses tokio's time: a service
//! tested under `tokio::time::pause` would see every latency as (nearly)
//! zero and be balanced differently from production (in a paused-time
//! simulation with one endpoint of ten at 10×, p99.9 was 544–600 ms on the
//! TSC against 134–158 ms on tokio's clock). So the default,
//! [`ClockSource::Auto`], looks once, when the balancer is built, whether
//! tokio's clock is paused there, and then measures on tokio's clock if it
//! is and on the TSC if not. The test is sound without tokio's `test-util`
//! API: unpaused, `tokio::time::Instant::now()` reads the OS monotonic
//! clock, so across a moment in which the OS clock visibly moves it moves
//! too; paused, it stands still until the test advances it or the runtime
//! idles, neither of which can happen while the balancer's constructor
//! runs. [`ClockSource::Tokio`] and [`ClockSource::Tsc`] force one or the
//! other. Backoff and fail-fast timers always run on tokio's timer,
//! whatever the clock here.
//!
//! `orch-resilience` has a `ClockSource` of its own (`Tokio` by default,
//! or `Tsc`), and deliberately so: DESIGN lets it depend on no sibling,
//! and the two answer different questions (the balancer reads the clock
//! twice per request for peak-EWMA, so its default is the TSC outside
//! paused-time tests). Keep the `Tokio` and `Tsc` variants meaning the
//! same in both.

use serde::{Deserialize, Serialize};

/// Which clock measures response latency for load estimates.
///
/// Serialised as `"auto"`, `"tsc"`, `"std"` or `"tokio"`. Default
/// [`Auto`](Self::Auto).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClockSource {
    /// [`Tokio`](Self::Tokio) if tokio's time is paused where the balancer
    /// is built (a test under `tokio::time::pause` or `start_paused`), else
    /// [`Tsc`](Self::Tsc). Decided once: a balancer built before time is
    /// paused keeps the TSC (use `Tokio` for that test).
    #[default]
    Auto,
    /// The CPU's time-stamp counter through `quanta` (≈ 12 ns a read here);
    /// the OS clock where the CPU has no invariant TSC.
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
            ClockSource::Auto if tokio_time_is_paused() => {
                tracing::debug!("tokio's time is paused: the balancer measures latency on it");
                Self::Tokio(tokio::time::Instant::now())
            }
            ClockSource::Auto | ClockSource::Tsc => Self::Tsc(quanta::Clock::new()),
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

/// Whether tokio's clock stands still while the OS clock moves: paused
/// (see the module docs for why this cannot mistake one for the other).
fn tokio_time_is_paused() -> bool {
    let tokio_before = tokio::time::Instant::now();
    let os_before = std::time::Instant::now();
    // The OS clock moves within nanoseconds; the bound only guards against
    // one that never does, which then counts as "not paused".
    for _ in 0..1_000_000 {
        if std::time::Instant::now() > os_before {
            return tokio::time::Instant::now() == tokio_before;
        }
        std::hint::spin_loop();
    }
    false
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

    #[tokio::test(start_paused = true)]
    async fn the_default_clock_follows_paused_time() {
        let clock = Clock::start(ClockSource::default());
        assert!(matches!(clock, Clock::Tokio(_)), "{clock:?}");
        let t0 = clock.now();
        tokio::time::advance(Duration::from_millis(30)).await;
        assert_eq!(clock.ticks_between(t0, clock.now()), 30_000_000.0);
    }

    #[tokio::test]
    async fn the_default_clock_is_the_tsc_while_time_runs() {
        assert!(matches!(Clock::start(ClockSource::Auto), Clock::Tsc(_)));
        // Outside any runtime, too.
        let outside = std::thread::spawn(|| matches!(Clock::start(ClockSource::Auto), Clock::Tsc(_)));
        assert!(outside.join().unwrap_or(false));
    }

    #[test]
    fn wall_clocks_never_run_backwards() {
        for source in [ClockSource::Auto, ClockSource::Tsc, ClockSource::Std] {
            let clock = Clock::start(source);
            let readings: Vec<u64> = (0..1_000).map(|_| clock.now()).collect();
            assert!(readings.windows(2).all(|w| w[0] <= w[1]), "{source:?}");
            let per_tick = clock.nanos_per_tick();
            assert!(per_tick > 0.0 && per_tick.is_finite(), "{source:?}: {per_tick}");
        }
    }
}

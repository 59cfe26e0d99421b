//! Restart backoff: how long a crashed instance waits before it starts again.
//!
//! The delays come from [`backon`], the maintained backoff library this
//! workspace builds every backoff on. Users of the unmaintained `backoff`
//! crate can plug theirs in with the `backoff` cargo feature
//! (`LegacyBackoff`, which exists only with that feature).

use std::fmt;
use std::time::Duration;

use backon::BackoffBuilder;
use serde::{Deserialize, Serialize};

use super::SpecError;

/// The delays before successive restarts of one instance.
///
/// An instance's schedule starts over once it has run for `reset_after`
/// without exiting (Kubernetes resets its crash-loop backoff after 10 minutes
/// stable). Delays grow from `initial` by `factor` up to `max`; with `jitter`
/// each delay gets a uniformly random extra in `[0, delay)`, so instances
/// that crashed together do not restart in lockstep.
///
/// Defaults: 10 ms doubling to 30 s, jitter on, reset after 60 s stable.
/// Kubernetes starts at 10 s because a container start costs seconds; an
/// in-process restart costs microseconds, so the first retries can come much
/// sooner while a crash loop still slows to one try per 30 s.
///
/// ```
/// use std::time::Duration;
/// use orch_core::BackoffPolicy;
///
/// let policy = BackoffPolicy::default()
///     .initial(Duration::from_millis(100))
///     .max(Duration::from_secs(5))
///     .jitter(false);
/// let delays: Vec<_> = policy.delays().take(4).collect();
/// assert_eq!(delays, [100, 200, 400, 800].map(Duration::from_millis));
///
/// let cfg: BackoffPolicy = serde_json::from_str(
///     r#"{"initial":"1s","max":"1m","factor":3.0,"jitter":true,"reset_after":"10m"}"#,
/// ).unwrap();
/// assert_eq!(cfg.max, Duration::from_secs(60));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BackoffPolicy {
    /// First delay.
    #[serde(with = "humantime_serde")]
    pub initial: Duration,
    /// Largest delay.
    #[serde(with = "humantime_serde")]
    pub max: Duration,
    /// Growth factor per restart; at least 1.
    pub factor: f32,
    /// Add a random extra in `[0, delay)` to each delay.
    pub jitter: bool,
    /// Running this long without exiting resets the schedule.
    #[serde(with = "humantime_serde")]
    pub reset_after: Duration,
}

impl Default for BackoffPolicy {
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(10),
            max: Duration::from_secs(30),
            factor: 2.0,
            jitter: true,
            reset_after: Duration::from_secs(60),
        }
    }
}

impl BackoffPolicy {
    /// Restart at once, every time (OTP's behaviour). The restart intensity
    /// is then the only brake on a crash loop.
    pub fn none() -> Self {
        Self {
            initial: Duration::ZERO,
            max: Duration::ZERO,
            jitter: false,
            ..Self::default()
        }
    }

    /// Sets the first delay.
    pub fn initial(mut self, d: Duration) -> Self {
        self.initial = d;
        self
    }

    /// Sets the largest delay.
    pub fn max(mut self, d: Duration) -> Self {
        self.max = d;
        self
    }

    /// Sets the growth factor.
    pub fn factor(mut self, f: f32) -> Self {
        self.factor = f;
        self
    }

    /// Turns jitter on or off.
    pub fn jitter(mut self, on: bool) -> Self {
        self.jitter = on;
        self
    }

    /// Sets how long a run must last to reset the schedule.
    pub fn reset_after(mut self, d: Duration) -> Self {
        self.reset_after = d;
        self
    }

    /// Checks the fields; the error names the offending one.
    pub fn validate(&self) -> Result<(), SpecError> {
        if !(self.factor >= 1.0 && self.factor.is_finite()) {
            return Err(SpecError::field("backoff.factor", "must be a finite number >= 1"));
        }
        if self.max < self.initial {
            return Err(SpecError::field("backoff.max", "must be >= backoff.initial"));
        }
        if self.reset_after.is_zero() {
            return Err(SpecError::field(
                "backoff.reset_after",
                "must be greater than zero",
            ));
        }
        Ok(())
    }

    /// The schedule of delays, built with `backon`.
    pub fn delays(&self) -> impl Iterator<Item = Duration> + Send + 'static {
        let mut builder = backon::ExponentialBuilder::new()
            .with_min_delay(self.initial)
            .with_max_delay(self.max)
            .with_factor(self.factor)
            .without_max_times();
        if self.jitter {
            builder = builder.with_jitter();
        }
        // backon grows delays in f32, which turns 40 ms into 39.999999 ms;
        // whole microseconds are precise enough for restarts and keep the
        // schedule exact for the plain cases.
        builder.build().map(round_to_micros)
    }
}

fn round_to_micros(d: Duration) -> Duration {
    Duration::from_micros((d.as_nanos() as f64 / 1_000.0).round() as u64)
}

/// A source of restart delay schedules, one fresh schedule per reset.
///
/// [`BackoffPolicy`] is the serialisable default; implement this to plug in
/// any other schedule (for example a `backon` builder through [`Backon`]).
pub trait RestartBackoff: Send + Sync + 'static {
    /// A new schedule, starting from its first delay. `None` from the
    /// iterator means "no more delays": the last delay is then reused.
    fn schedule(&self) -> Box<dyn Iterator<Item = Duration> + Send>;
}

impl RestartBackoff for BackoffPolicy {
    fn schedule(&self) -> Box<dyn Iterator<Item = Duration> + Send> {
        Box::new(self.delays())
    }
}

/// Any [`backon::BackoffBuilder`] as a restart backoff.
///
/// ```
/// use orch_core::{Backon, ChildSpec};
///
/// let spec = ChildSpec::task("worker", |_ctx| async { Ok::<_, std::io::Error>(()) })
///     .backoff_with(Backon(backon::FibonacciBuilder::default().without_max_times()));
/// # let _ = spec;
/// ```
#[derive(Debug, Clone)]
pub struct Backon<B>(pub B);

impl<B> RestartBackoff for Backon<B>
where
    B: BackoffBuilder + Clone + Send + Sync + 'static,
    B::Backoff: Send + 'static,
{
    fn schedule(&self) -> Box<dyn Iterator<Item = Duration> + Send> {
        Box::new(self.0.clone().build())
    }
}

/// A `backoff::backoff::Backoff` (from the unmaintained `backoff` crate) as a
/// restart backoff, for code that already configures one.
///
/// Each schedule starts from a clone of the given value, reset.
#[cfg(feature = "backoff")]
#[derive(Debug, Clone)]
pub struct LegacyBackoff<B>(pub B);

#[cfg(feature = "backoff")]
impl<B> RestartBackoff for LegacyBackoff<B>
where
    B: backoff::backoff::Backoff + Clone + Send + Sync + 'static,
{
    fn schedule(&self) -> Box<dyn Iterator<Item = Duration> + Send> {
        let mut b = self.0.clone();
        b.reset();
        Box::new(std::iter::from_fn(move || b.next_backoff()))
    }
}

/// The live schedule of one instance: remembers the last delay so an
/// exhausted schedule keeps its final delay instead of restarting at once.
pub(crate) struct DelaySchedule {
    delays: Box<dyn Iterator<Item = Duration> + Send>,
    last: Duration,
    pub(crate) attempt: u32,
}

impl fmt::Debug for DelaySchedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DelaySchedule")
            .field("last", &self.last)
            .field("attempt", &self.attempt)
            .finish()
    }
}

impl DelaySchedule {
    pub(crate) fn new(source: &dyn RestartBackoff) -> Self {
        Self {
            delays: source.schedule(),
            last: Duration::ZERO,
            attempt: 0,
        }
    }

    pub(crate) fn next_delay(&mut self) -> Duration {
        if let Some(d) = self.delays.next() {
            self.last = d;
        }
        self.attempt = self.attempt.saturating_add(1);
        self.last
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_and_cap() {
        let p = BackoffPolicy::default()
            .initial(Duration::from_millis(10))
            .max(Duration::from_millis(50))
            .jitter(false);
        let got: Vec<_> = p.delays().take(5).collect();
        assert_eq!(got, [10, 20, 40, 50, 50].map(Duration::from_millis));
    }

    #[test]
    fn jitter_stays_within_one_delay() {
        let p = BackoffPolicy::default()
            .initial(Duration::from_millis(100))
            .max(Duration::from_secs(10));
        for (i, d) in p.delays().take(6).enumerate() {
            let base = Duration::from_millis(100 * (1 << i));
            assert!(d >= base && d < base * 2, "delay {i} = {d:?}");
        }
    }

    #[test]
    fn none_is_always_zero() {
        let mut s = DelaySchedule::new(&BackoffPolicy::none());
        assert!((0..10).all(|_| s.next_delay().is_zero()));
        assert_eq!(s.attempt, 10);
    }

    #[test]
    fn bad_fields_are_named() {
        let e = BackoffPolicy::default().factor(0.5).validate().unwrap_err();
        assert!(e.to_string().contains("backoff.factor"));
        let e = BackoffPolicy::default()
            .max(Duration::from_millis(1))
            .validate()
            .unwrap_err();
        assert!(e.to_string().contains("backoff.max"));
        let e = BackoffPolicy::default()
            .reset_after(Duration::ZERO)
            .validate()
            .unwrap_err();
        assert!(e.to_string().contains("backoff.reset_after"));
    }

    #[cfg(feature = "backoff")]
    #[test]
    fn legacy_backoff_adapter_yields_its_delays() {
        let b = backoff::ExponentialBackoffBuilder::new()
            .with_initial_interval(Duration::from_millis(7))
            .with_randomization_factor(0.0)
            .with_multiplier(2.0)
            .with_max_elapsed_time(None)
            .build();
        let legacy = LegacyBackoff(b);
        let mut s = legacy.schedule();
        assert_eq!(s.next(), Some(Duration::from_millis(7)));
        assert_eq!(s.next(), Some(Duration::from_millis(14)));
        // A new schedule starts over.
        assert_eq!(legacy.schedule().next(), Some(Duration::from_millis(7)));
    }
}

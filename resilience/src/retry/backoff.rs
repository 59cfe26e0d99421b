//! Backoff schedules as `backon` iterators.
//!
//! Constant and exponential schedules come from `backon`. `backon` has no
//! linear schedule, no decorrelated jitter and only an additive jitter
//! (`d + [0, d)`), so [`LinearBackoff`], [`DecorrelatedJitterBackoff`] and
//! [`FullJitter`] are implemented here, each as a plain
//! `Iterator<Item = Duration> + Send + Sync + Unpin`, which is what
//! [`backon::Backoff`] is: they work wherever `backon` schedules do.

use std::{
    fmt,
    hash::{BuildHasher, Hasher},
    sync::Arc,
    time::Duration,
};

use backon::{Backoff, BackoffBuilder};

use super::config::{BackoffConfig, BackoffKind, Jitter};

/// The schedule built from a [`BackoffConfig`]: an endless iterator of delays.
///
/// ```
/// use std::time::Duration;
/// use backon::BackoffBuilder;
/// use orch_resilience::retry::{BackoffConfig, Jitter};
///
/// let config = BackoffConfig::exponential(Duration::from_millis(100), Duration::from_millis(500));
/// let plain: Vec<_> = config.jitter(Jitter::None).build().take(4).collect();
/// assert_eq!(plain, [100, 200, 400, 500].map(Duration::from_millis));
///
/// // Full jitter: each delay is somewhere in [0, d].
/// for (delay, cap) in config.build().zip([100, 200, 400, 500]) {
///     assert!(delay <= Duration::from_millis(cap));
/// }
/// ```
pub struct ConfigBackoff {
    schedule: Schedule,
    jitter: Option<Rng>,
}

enum Schedule {
    Constant(backon::ConstantBackoff),
    Linear(LinearBackoff),
    Exponential(backon::ExponentialBackoff),
    Decorrelated(DecorrelatedJitterBackoff),
}

impl BackoffBuilder for BackoffConfig {
    type Backoff = ConfigBackoff;

    fn build(self) -> ConfigBackoff {
        let schedule = match self.kind {
            BackoffKind::Constant => Schedule::Constant(
                backon::ConstantBuilder::new()
                    .with_delay(self.initial_delay)
                    .without_max_times()
                    .build(),
            ),
            BackoffKind::Linear => Schedule::Linear(LinearBackoff::new(self.initial_delay, self.max_delay)),
            BackoffKind::Exponential => Schedule::Exponential(
                backon::ExponentialBuilder::new()
                    .with_min_delay(self.initial_delay)
                    .with_max_delay(self.max_delay)
                    .with_factor(self.multiplier)
                    .without_max_times()
                    .build(),
            ),
            BackoffKind::DecorrelatedJitter => {
                Schedule::Decorrelated(DecorrelatedJitterBackoff::new(self.initial_delay, self.max_delay))
            }
        };
        let jitter = match (self.kind, self.jitter) {
            (BackoffKind::DecorrelatedJitter, _) | (_, Jitter::None) => None,
            (_, Jitter::Full) => Some(Rng::new()),
        };
        ConfigBackoff { schedule, jitter }
    }
}

impl Iterator for ConfigBackoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let delay = match &mut self.schedule {
            // backon grows delays in f32 (100 ms × 2 = 200.000003 ms); whole
            // microseconds keep the plain schedules exact.
            Schedule::Constant(b) => b.next().map(round_to_micros),
            Schedule::Exponential(b) => b.next().map(round_to_micros),
            Schedule::Linear(b) => b.next(),
            Schedule::Decorrelated(b) => b.next(),
        }?;
        Some(match &mut self.jitter {
            Some(rng) => rng.up_to(delay),
            None => delay,
        })
    }
}

impl fmt::Debug for ConfigBackoff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.schedule {
            Schedule::Constant(_) => "constant",
            Schedule::Linear(_) => "linear",
            Schedule::Exponential(_) => "exponential",
            Schedule::Decorrelated(_) => "decorrelated_jitter",
        };
        f.debug_struct("ConfigBackoff")
            .field("kind", &kind)
            .field("full_jitter", &self.jitter.is_some())
            .finish()
    }
}

fn round_to_micros(d: Duration) -> Duration {
    let micros = (d.as_nanos() + 500) / 1_000;
    Duration::from_micros(u64::try_from(micros).unwrap_or(u64::MAX))
}

/// Delays `step`, `2 × step`, `3 × step`, ... capped at `max`; endless.
///
/// ```
/// use std::time::Duration;
/// use orch_resilience::retry::LinearBackoff;
///
/// let delays: Vec<_> = LinearBackoff::new(Duration::from_secs(1), Duration::from_secs(2)).take(3).collect();
/// assert_eq!(delays, [1, 2, 2].map(Duration::from_secs));
/// ```
#[derive(Debug, Clone)]
pub struct LinearBackoff {
    step: Duration,
    max: Duration,
    n: u32,
}

impl LinearBackoff {
    /// A linear schedule of `step` increments up to `max`.
    pub const fn new(step: Duration, max: Duration) -> Self {
        Self { step, max, n: 0 }
    }
}

impl Iterator for LinearBackoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        self.n = self.n.saturating_add(1);
        Some(self.step.saturating_mul(self.n).min(self.max))
    }
}

/// AWS's "decorrelated jitter" (*Exponential Backoff and Jitter*, AWS
/// Architecture Blog, 2015): `sleep = min(max, uniform(base, sleep × 3))`,
/// `sleep` starting at `base`; endless.
///
/// Each delay is at least `base` and at most three times the previous one,
/// so delays grow about ×3 on average per retry without a common rhythm
/// between clients.
///
/// ```
/// use std::time::Duration;
/// use orch_resilience::retry::DecorrelatedJitterBackoff;
///
/// let base = Duration::from_millis(10);
/// let mut previous = base;
/// for delay in DecorrelatedJitterBackoff::new(base, Duration::from_secs(1)).take(20) {
///     assert!(delay >= base && delay <= (previous * 3).min(Duration::from_secs(1)));
///     previous = delay;
/// }
/// ```
#[derive(Debug, Clone)]
pub struct DecorrelatedJitterBackoff {
    base: Duration,
    max: Duration,
    previous: Duration,
    rng: Rng,
}

impl DecorrelatedJitterBackoff {
    /// A decorrelated-jitter schedule between `base` and `max`.
    pub fn new(base: Duration, max: Duration) -> Self {
        Self::with_rng(base, max, Rng::new())
    }

    /// The same, with a fixed random seed (reproducible schedules in tests).
    pub fn with_seed(base: Duration, max: Duration, seed: u64) -> Self {
        Self::with_rng(base, max, Rng::with_seed(seed))
    }

    fn with_rng(base: Duration, max: Duration, rng: Rng) -> Self {
        Self {
            base,
            max,
            previous: base,
            rng,
        }
    }
}

impl Iterator for DecorrelatedJitterBackoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let high = self.previous.saturating_mul(3).max(self.base);
        let delay = (self.base + self.rng.up_to(high - self.base)).min(self.max);
        self.previous = delay;
        Some(delay)
    }
}

/// "Full jitter" over any schedule: each delay `d` becomes a uniformly
/// random duration in `[0, d]`.
///
/// ```
/// use std::time::Duration;
/// use backon::BackoffBuilder;
/// use orch_resilience::retry::FullJitter;
///
/// let schedule = backon::FibonacciBuilder::default().with_min_delay(Duration::from_millis(10)).build();
/// for delay in FullJitter::new(schedule) {
///     assert!(delay <= Duration::from_secs(1));
/// }
/// ```
#[derive(Debug, Clone)]
pub struct FullJitter<B> {
    inner: B,
    rng: Rng,
}

impl<B: Backoff> FullJitter<B> {
    /// Full jitter over `backoff`.
    pub fn new(backoff: B) -> Self {
        Self {
            inner: backoff,
            rng: Rng::new(),
        }
    }

    /// The same, with a fixed random seed (reproducible schedules in tests).
    pub fn with_seed(backoff: B, seed: u64) -> Self {
        Self {
            inner: backoff,
            rng: Rng::with_seed(seed),
        }
    }

    /// The schedule being jittered.
    pub fn get_ref(&self) -> &B {
        &self.inner
    }

    /// The schedule being jittered, mutably.
    pub fn get_mut(&mut self) -> &mut B {
        &mut self.inner
    }

    /// Returns the schedule being jittered.
    pub fn into_inner(self) -> B {
        self.inner
    }
}

impl<B: Backoff> Iterator for FullJitter<B> {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let delay = self.inner.next()?;
        Some(self.rng.up_to(delay))
    }
}

/// SplitMix64 (Steele, Lea & Flood, 2014): tiny, fast and good enough to
/// spread retries; nothing here needs cryptographic randomness.
#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    /// Seeded from the standard library's per-process random hash keys, so
    /// every schedule differs without a dependency on a random crate.
    fn new() -> Self {
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u64(0x6f72_6368_7265_7472);
        Self(hasher.finish())
    }

    fn with_seed(seed: u64) -> Self {
        Self(seed)
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A uniformly random duration in `[0, max]`.
    fn up_to(&mut self, max: Duration) -> Duration {
        // 53 random bits make a float in [0, 1]; the result never exceeds `max`.
        let unit = (self.next_u64() >> 11) as f64 / ((1_u64 << 53) - 1) as f64;
        max.mul_f64(unit).min(max)
    }
}

/// A custom `backon` schedule for every call of a layer that retries
/// ([`RetryLayer::backoff`](super::RetryLayer::backoff)): each such call
/// builds a fresh one from a clone of the builder.
#[derive(Clone)]
pub(crate) struct CustomBackoff(Arc<dyn Fn() -> Box<dyn Backoff> + Send + Sync>);

impl CustomBackoff {
    pub(crate) fn new<B>(builder: B) -> Self
    where
        B: BackoffBuilder + Clone + 'static,
        B::Backoff: 'static,
    {
        Self(Arc::new(move || Box::new(builder.clone().build())))
    }

    pub(crate) fn start(&self) -> ActiveBackoff {
        ActiveBackoff::Custom((self.0)())
    }
}

impl fmt::Debug for CustomBackoff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("custom backon::BackoffBuilder")
    }
}

/// One call's schedule.
pub(crate) enum ActiveBackoff {
    Config(ConfigBackoff),
    Custom(Box<dyn Backoff>),
}

impl ActiveBackoff {
    pub(crate) fn next_delay(&mut self) -> Option<Duration> {
        match self {
            Self::Config(b) => b.next(),
            Self::Custom(b) => b.next(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: &[u64]) -> Vec<Duration> {
        v.iter().copied().map(Duration::from_millis).collect()
    }

    #[test]
    fn plain_schedules_are_exact() {
        let c = BackoffConfig::constant(Duration::from_millis(30));
        assert_eq!(c.build().take(3).collect::<Vec<_>>(), ms(&[30, 30, 30]));
        let e = BackoffConfig::exponential(Duration::from_millis(100), Duration::from_secs(10))
            .jitter(Jitter::None);
        assert_eq!(
            e.build().take(6).collect::<Vec<_>>(),
            ms(&[100, 200, 400, 800, 1600, 3200])
        );
        let e3 = e.multiplier(1.5);
        assert_eq!(e3.build().take(3).collect::<Vec<_>>(), ms(&[100, 150, 225]));
    }

    #[test]
    fn full_jitter_stays_within_the_delay() {
        let e = BackoffConfig::exponential(Duration::from_millis(100), Duration::from_secs(1));
        let mut below = 0;
        for _ in 0..200 {
            let d = e.build().next().unwrap();
            assert!(d <= Duration::from_millis(100));
            if d < Duration::from_millis(50) {
                below += 1;
            }
        }
        // Uniform in [0, 100 ms]: about half below 50 ms.
        assert!((50..150).contains(&below), "{below}");
    }

    #[test]
    fn seeded_schedules_repeat() {
        let a: Vec<_> =
            DecorrelatedJitterBackoff::with_seed(Duration::from_millis(5), Duration::from_secs(1), 7)
                .take(10)
                .collect();
        let b: Vec<_> =
            DecorrelatedJitterBackoff::with_seed(Duration::from_millis(5), Duration::from_secs(1), 7)
                .take(10)
                .collect();
        assert_eq!(a, b);
        let j: Vec<_> =
            FullJitter::with_seed(LinearBackoff::new(Duration::from_millis(10), Duration::MAX), 3)
                .take(10)
                .collect();
        assert!(
            j.iter()
                .zip(1..)
                .all(|(d, n)| *d <= Duration::from_millis(10 * n))
        );
    }
}

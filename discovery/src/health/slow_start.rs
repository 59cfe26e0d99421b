//! Envoy's slow start: a new endpoint's weight ramps up over a window.

use std::time::Duration;

use tokio::time::Instant;

use crate::Weight;

use super::config::{ConfigError, SlowStartConfig};

/// The weight factor of an endpoint that joined a moment ago (Envoy's
/// `slow_start_config`).
///
/// A new instance has cold caches, cold JIT, empty connection pools; its
/// full share of traffic at once can time out the first requests. Over the
/// window, its weight goes from `min_weight_percent` of its weight to all
/// of it: `factor(t) = max(min_weight_percent / 100, (t / window)^(1 /
/// aggression))`, then 1 once `t ≥ window`.
///
/// The balancer decides what counts as joining (typically an endpoint
/// added after the balancer's first membership, so a fresh client does not
/// ramp every endpoint at once: slow start is for scale-ups, as Envoy's
/// docs note), keeps the time, and applies the factor to the weights it
/// picks with, refreshing them while any endpoint ramps (until
/// [`ends_at`](Self::ends_at)).
///
/// ```
/// use std::time::Duration;
/// use orch_discovery::{Weight, health::{SlowStart, SlowStartConfig}};
///
/// let ramp = SlowStart::new(&SlowStartConfig::new(Duration::from_secs(60))).unwrap();
/// assert_eq!(ramp.factor(Duration::ZERO), 0.1); // min_weight_percent
/// assert_eq!(ramp.factor(Duration::from_secs(30)), 0.5); // linear with aggression 1
/// assert_eq!(ramp.factor(Duration::from_secs(90)), 1.0);
///
/// // For an integer picker, scale every weight by the same resolution.
/// let w = Weight::new(4).unwrap();
/// assert_eq!(SlowStart::scale(w, 0.5, 100).get(), 200);
/// assert_eq!(SlowStart::scale(w, 1.0, 100).get(), 400);
/// ```
///
/// Unlike Envoy, whose time factor counts whole seconds from 1, the time
/// here is exact, so short windows ramp smoothly too.
#[derive(Debug, Clone, PartialEq)]
pub struct SlowStart {
    window: Duration,
    exponent: f64,
    min_factor: f64,
}

impl SlowStart {
    /// A ramp from its config; fails if the config does not
    /// [validate](SlowStartConfig::validate).
    pub fn new(config: &SlowStartConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        Ok(Self {
            window: config.window,
            exponent: 1.0 / config.aggression,
            min_factor: config.min_weight_percent / 100.0,
        })
    }

    /// How long the ramp lasts.
    pub fn window(&self) -> Duration {
        self.window
    }

    /// The factor, in `[min_weight_percent / 100, 1]`, for an endpoint that
    /// joined `age` ago.
    pub fn factor(&self, age: Duration) -> f64 {
        if age >= self.window {
            return 1.0;
        }
        let time = age.as_secs_f64() / self.window.as_secs_f64();
        let ramp = if self.exponent == 1.0 {
            time
        } else {
            time.powf(self.exponent)
        };
        ramp.max(self.min_factor).min(1.0)
    }

    /// The factor at `now` for an endpoint that joined at `joined`.
    pub fn factor_at(&self, joined: Instant, now: Instant) -> f64 {
        self.factor(now.saturating_duration_since(joined))
    }

    /// Whether an endpoint that joined at `joined` is still ramping at `now`.
    pub fn is_ramping(&self, joined: Instant, now: Instant) -> bool {
        now.saturating_duration_since(joined) < self.window
    }

    /// When the ramp of an endpoint that joined at `joined` ends.
    pub fn ends_at(&self, joined: Instant) -> Instant {
        joined + self.window
    }

    /// `weight × resolution × factor`, rounded, at least 1, at most
    /// `u32::MAX`: a ramped weight for an integer picker such as
    /// [`SmoothWrr`](crate::pick::SmoothWrr). Scale every endpoint's weight
    /// with the same `resolution` (ramping or not: a factor of 1 for the
    /// others) so their proportions hold; 100 gives 1 % steps.
    pub fn scale(weight: Weight, factor: f64, resolution: u32) -> Weight {
        let scaled = (f64::from(weight.get()) * f64::from(resolution) * factor).round();
        // A float-to-int cast saturates (NaN gives 0), and the floor of 1
        // keeps the weight valid.
        let scaled = (scaled as u32).max(1);
        Weight::new(scaled).unwrap_or(Weight::ONE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aggression_bends_the_ramp() {
        let config = SlowStartConfig::new(Duration::from_secs(100)).min_weight_percent(0.0);
        let fast = SlowStart::new(&config.clone().aggression(2.0)).unwrap();
        let slow = SlowStart::new(&config.clone().aggression(0.5)).unwrap();
        let linear = SlowStart::new(&config).unwrap();
        let at = Duration::from_secs(25);
        assert_eq!(linear.factor(at), 0.25);
        assert_eq!(fast.factor(at), 0.5); // 0.25^(1/2)
        assert_eq!(slow.factor(at), 0.0625); // 0.25^2
        assert_eq!(linear.factor(Duration::ZERO), 0.0);
    }

    #[test]
    fn scale_stays_a_valid_weight() {
        assert_eq!(SlowStart::scale(Weight::ONE, 0.0, 100).get(), 1);
        assert_eq!(SlowStart::scale(Weight::ONE, f64::NAN, 100).get(), 1);
        assert_eq!(
            SlowStart::scale(Weight::new(u32::MAX).unwrap(), 1.0, 100).get(),
            u32::MAX
        );
        assert_eq!(SlowStart::scale(Weight::new(3).unwrap(), 0.1, 100).get(), 30);
    }
}

//! How fast the replica count may move: Kubernetes HPA's `behavior`
//! (stabilization windows per direction, rate policies per period), with
//! its defaults.
//!
//! Stabilization is what stops flapping: a scale-down goes only as low as
//! the highest recommendation within the down window (300 s by default),
//! a scale-up only as high as the lowest within the up window (0 s: react
//! at once). Rate policies then cap how many replicas may be added or
//! removed within a period, and a cooldown per direction how often the
//! count may move that way.
//!
//! The cooldown is not HPA's: there the sync period (15 s) is what spaces
//! two changes. An autoscaler evaluated every second moves in staircases
//! instead, one small step each time the scale-down window's maximum
//! expires or a backlog grows within a rate period; a cooldown turns each
//! staircase into one step (as AWS's scale-in and scale-out cooldowns, or
//! HPA's up- and downscale delays before stabilization windows replaced
//! them).

use std::{collections::VecDeque, time::Duration};

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::AutoscaleError;

/// Rules for both directions.
///
/// ```
/// use std::time::Duration;
/// use orch_core::autoscale::Behavior;
///
/// let behavior = Behavior::default();
/// assert_eq!(behavior.scale_down.stabilization_window, Duration::from_secs(300));
/// assert_eq!(behavior.scale_up.stabilization_window, Duration::ZERO);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Behavior {
    /// Adding replicas: no stabilization, at most double or add 4 per 15 s
    /// (whichever allows more), no cooldown, as HPA.
    pub scale_up: ScalingRules,
    /// Removing replicas: a 300 s stabilization window, then at most all
    /// of them per 15 s, no cooldown, as HPA.
    pub scale_down: ScalingRules,
}

impl Default for Behavior {
    fn default() -> Self {
        Self {
            scale_up: ScalingRules {
                stabilization_window: Duration::ZERO,
                cooldown: Duration::ZERO,
                select: SelectPolicy::Max,
                policies: vec![
                    RatePolicy::percent(100, Duration::from_secs(15)),
                    RatePolicy::replicas(4, Duration::from_secs(15)),
                ],
            },
            scale_down: ScalingRules {
                stabilization_window: Duration::from_secs(300),
                cooldown: Duration::ZERO,
                select: SelectPolicy::Max,
                policies: vec![RatePolicy::percent(100, Duration::from_secs(15))],
            },
        }
    }
}

impl Behavior {
    /// Sets the cooldown of each direction: after a scale-up no other
    /// scale-up for `up`, after a scale-down no other scale-down for `down`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use orch_core::autoscale::Behavior;
    ///
    /// // Evaluated every second: one step per rate period up, and the
    /// // scale-down window's staircase in steps of four minutes.
    /// let behavior = Behavior::default().cooldowns(Duration::from_secs(15), Duration::from_secs(240));
    /// assert_eq!(behavior.scale_down.cooldown, Duration::from_secs(240));
    /// ```
    pub fn cooldowns(mut self, up: Duration, down: Duration) -> Self {
        self.scale_up.cooldown = up;
        self.scale_down.cooldown = down;
        self
    }

    pub(crate) fn validate(&self) -> Result<(), AutoscaleError> {
        self.scale_up
            .validate()
            .map_err(|e| e.within("behavior.scale_up"))?;
        self.scale_down
            .validate()
            .map_err(|e| e.within("behavior.scale_down"))
    }
}

/// The rules of one direction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScalingRules {
    /// How far back recommendations are considered before moving.
    #[serde(with = "humantime_serde")]
    pub stabilization_window: Duration,
    /// After a change in this direction, how long before the next one in
    /// this direction (default 0: every evaluation may move, as HPA's every
    /// sync). Counted from the last change carried out: a failed or dry-run
    /// one starts none. A change the other way is not held: a scale-up
    /// right after a scale-down still goes at once. Worth setting when the
    /// evaluation period is much shorter than the rate policies' period,
    /// e.g. 15 s up and a few minutes down at a 1 s period.
    #[serde(default, with = "humantime_serde")]
    pub cooldown: Duration,
    /// Which rate policy applies when several do.
    #[serde(default)]
    pub select: SelectPolicy,
    /// Caps on the change per period; none means no cap.
    #[serde(default)]
    pub policies: Vec<RatePolicy>,
}

impl ScalingRules {
    fn validate(&self) -> Result<(), AutoscaleError> {
        for (i, policy) in self.policies.iter().enumerate() {
            let at = |field: &str| format!("policies[{i}].{field}");
            if policy.value == 0 {
                return Err(AutoscaleError::field(at("value"), "must be at least 1"));
            }
            if policy.period.is_zero() {
                return Err(AutoscaleError::field(at("period"), "must be greater than zero"));
            }
        }
        Ok(())
    }
}

/// Which of several rate policies applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SelectPolicy {
    /// The policy that allows the largest change (HPA's default).
    #[default]
    Max,
    /// The policy that allows the smallest change.
    Min,
    /// No change in this direction at all.
    Disabled,
}

/// At most `value` replicas, or `value` percent of the replicas at the
/// period's start, added (or removed) within `period`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RatePolicy {
    /// Replicas or percent.
    pub kind: RateKind,
    /// How many (or what percent).
    pub value: u32,
    /// The period the change is counted over.
    #[serde(with = "humantime_serde")]
    pub period: Duration,
}

impl RatePolicy {
    /// At most `value` replicas per `period`.
    pub const fn replicas(value: u32, period: Duration) -> Self {
        Self {
            kind: RateKind::Replicas,
            value,
            period,
        }
    }

    /// At most `value` percent per `period`.
    pub const fn percent(value: u32, period: Duration) -> Self {
        Self {
            kind: RateKind::Percent,
            value,
            period,
        }
    }
}

/// What a [`RatePolicy`] counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RateKind {
    /// A number of replicas.
    Replicas,
    /// A percentage of the replicas at the period's start.
    Percent,
}

/// What the autoscaler remembers to apply a [`Behavior`]: past
/// recommendations (for stabilization) and past scale events (for rates).
#[derive(Debug, Default)]
pub(crate) struct History {
    recommendations: VecDeque<(Instant, usize)>,
    changes: VecDeque<(Instant, i64)>,
    /// The last scale-up and the last scale-down, for the cooldowns.
    last_up: Option<Instant>,
    last_down: Option<Instant>,
}

impl History {
    /// Records this evaluation's recommendation and returns it stabilized:
    /// no lower than the highest recommendation of the down window, no
    /// higher than the lowest of the up window, each compared with
    /// `current` as HPA does. A window of `w` holds the recommendations
    /// younger than `w` (HPA's cutoff), so a window of 0 holds none.
    pub(crate) fn stabilize(
        &mut self,
        behavior: &Behavior,
        now: Instant,
        current: usize,
        recommended: usize,
    ) -> usize {
        let keep = behavior
            .scale_up
            .stabilization_window
            .max(behavior.scale_down.stabilization_window);
        while self
            .recommendations
            .front()
            .is_some_and(|&(at, _)| now.saturating_duration_since(at) >= keep)
        {
            self.recommendations.pop_front();
        }
        let within = |window: Duration| {
            self.recommendations
                .iter()
                .filter(move |&&(at, _)| now.saturating_duration_since(at) < window)
                .map(|&(_, n)| n)
        };
        let up = within(behavior.scale_up.stabilization_window).fold(recommended, usize::min);
        let down = within(behavior.scale_down.stabilization_window).fold(recommended, usize::max);
        self.recommendations.push_back((now, recommended));
        current.max(up).min(down)
    }

    /// `desired` capped by the rate policies of its direction. Each policy
    /// counts from the replicas at its period's start: the current count
    /// less every change made within the period, up and down alike (HPA's
    /// `getReplicasChangePerPeriod`, added less deleted), so a scale-down
    /// followed by a scale-up within one period is not a fresh start.
    pub(crate) fn limit(&self, behavior: &Behavior, now: Instant, current: usize, desired: usize) -> usize {
        let period_start = |period: Duration| -> usize {
            let net: i64 = self
                .changes
                .iter()
                .filter(|&&(at, _)| now.saturating_duration_since(at) < period)
                .map(|&(_, change)| change)
                .sum();
            usize::try_from(current as i64 - net).unwrap_or(0)
        };
        if desired > current {
            let rules = &behavior.scale_up;
            let limits = rules.policies.iter().map(|p| {
                let start = period_start(p.period);
                match p.kind {
                    RateKind::Replicas => start + p.value as usize,
                    RateKind::Percent => (start * (100 + p.value as usize)).div_ceil(100),
                }
            });
            let limit = match rules.select {
                SelectPolicy::Disabled => return current,
                SelectPolicy::Max => limits.max(),
                SelectPolicy::Min => limits.min(),
            };
            // A period that already added its share allows no more, but
            // never less than now (HPA). From zero a percentage allows
            // nothing; activation must still bring the first replica, as
            // KEDA does outside HPA.
            limit.map_or(desired, |limit| desired.min(limit.max(current).max(1)))
        } else if desired < current {
            let rules = &behavior.scale_down;
            let limits = rules.policies.iter().map(|p| {
                let start = period_start(p.period);
                match p.kind {
                    RateKind::Replicas => start.saturating_sub(p.value as usize),
                    RateKind::Percent => start * 100usize.saturating_sub(p.value as usize) / 100,
                }
            });
            let limit = match rules.select {
                SelectPolicy::Disabled => return current,
                // The largest change is the lowest floor.
                SelectPolicy::Max => limits.min(),
                SelectPolicy::Min => limits.max(),
            };
            limit.map_or(desired, |limit| desired.max(limit.min(current)))
        } else {
            desired
        }
    }

    /// How long the cooldown of the direction from `current` to `desired`
    /// still holds the count, if it does.
    pub(crate) fn cooling(
        &self,
        behavior: &Behavior,
        now: Instant,
        current: usize,
        desired: usize,
    ) -> Option<Duration> {
        let (rules, last) = if desired > current {
            (&behavior.scale_up, self.last_up)
        } else if desired < current {
            (&behavior.scale_down, self.last_down)
        } else {
            return None;
        };
        let left = rules
            .cooldown
            .saturating_sub(now.saturating_duration_since(last?));
        (!left.is_zero()).then_some(left)
    }

    /// Remembers a change that was carried out.
    pub(crate) fn record_change(&mut self, behavior: &Behavior, now: Instant, from: usize, to: usize) {
        if to > from {
            self.last_up = Some(now);
        } else {
            self.last_down = Some(now);
        }
        let longest = behavior
            .scale_up
            .policies
            .iter()
            .chain(&behavior.scale_down.policies)
            .map(|p| p.period)
            .max()
            .unwrap_or_default();
        while self
            .changes
            .front()
            .is_some_and(|&(at, _)| now.saturating_duration_since(at) >= longest)
        {
            self.changes.pop_front();
        }
        self.changes.push_back((now, to as i64 - from as i64));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn scale_down_waits_for_the_window_and_scale_up_does_not() {
        let behavior = Behavior::default();
        let mut history = History::default();
        let t0 = Instant::now();
        assert_eq!(history.stabilize(&behavior, t0, 5, 9), 9);
        let later = t0 + Duration::from_secs(60);
        assert_eq!(
            history.stabilize(&behavior, later, 9, 2),
            9,
            "9 is still in the window"
        );
        let past = t0 + Duration::from_secs(300);
        assert_eq!(history.stabilize(&behavior, past, 9, 2), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn rates_count_changes_within_the_period() {
        let behavior = Behavior::default();
        let mut history = History::default();
        let now = Instant::now();
        // Up: doubling (+100 %) or +4, whichever allows more.
        assert_eq!(history.limit(&behavior, now, 2, 50), 6);
        assert_eq!(history.limit(&behavior, now, 10, 50), 20);
        history.record_change(&behavior, now, 10, 20);
        // Within the same period the start is still 10.
        assert_eq!(history.limit(&behavior, now, 20, 50), 20);
        assert_eq!(
            history.limit(&behavior, now + Duration::from_secs(15), 20, 50),
            40
        );
        // From zero at least one.
        assert_eq!(history.limit(&behavior, now, 0, 3), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn rates_count_both_directions_from_the_period_start() {
        let mut behavior = Behavior::default();
        behavior.scale_down.policies = vec![RatePolicy::replicas(2, Duration::from_secs(60))];
        let mut history = History::default();
        let now = Instant::now();
        // Down 10 -> 6: the up period started at 10, so +100 % allows 20.
        history.record_change(&behavior, now, 10, 6);
        assert_eq!(history.limit(&behavior, now, 6, 50), 20);
        // Up 6 -> 12: the net change within the period is +2, so the down
        // period started at 10 too: two fewer is 8.
        history.record_change(&behavior, now, 6, 12);
        assert_eq!(history.limit(&behavior, now, 12, 1), 8);
        // A period that already added more than a policy allows holds the
        // count rather than turning a scale-up into a scale-down.
        behavior.scale_up.policies = vec![RatePolicy::replicas(1, Duration::from_secs(60))];
        assert_eq!(history.limit(&behavior, now, 12, 50), 12);
    }
}

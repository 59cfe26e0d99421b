//! A plain Kubernetes HPA for `benches/autoscale.rs`, written apart from
//! orch so that a wrong formula in one is not copied into the other.
//!
//! It follows kube-controller-manager's horizontal pod autoscaler
//! (`pkg/controller/podautoscaler`) with its defaults, on a CPU-style
//! utilisation target:
//!
//! - the replica calculator: utilisation in whole percent of the request,
//!   ratio = utilisation / target, no change within the tolerance (0.1),
//!   desired = ceil(ratio × ready pods); pods not counted as ready are left
//!   out on a scale-down and count as idle on a scale-up, and a scale-up
//!   that this turns into a scale-down (or within tolerance) does nothing;
//! - no sample with a ready pod in it: no decision;
//! - the behaviour defaults: scale-up with no stabilization, at most +100 %
//!   or +4 pods per 15 s (the larger); scale-down after a 300 s
//!   stabilization window (the highest recommendation within it), at most
//!   −100 % per 15 s;
//! - min and max replicas, applied with the rate limits.

use std::collections::VecDeque;

use crate::world::World;

/// The rate policies' period (all of HPA's defaults use 15 s).
const RATE_PERIOD: u64 = 15;
/// The scale-down stabilization window (HPA's default).
const DOWN_WINDOW: u64 = 300;

/// One HPA object's controller state.
#[derive(Debug)]
pub struct Hpa {
    /// Target utilisation, in percent of the request.
    target_percent: u32,
    tolerance: f64,
    min: usize,
    max: usize,
    /// Raw recommendations of the last [`DOWN_WINDOW`] seconds.
    recommendations: VecDeque<(u64, usize)>,
    /// Scale events (second, signed change) of the last [`RATE_PERIOD`].
    events: VecDeque<(u64, i64)>,
    /// Where orch's target tracking departs from HPA (utilisation as a
    /// real number), do as orch does.
    orch_rules: bool,
}

impl Hpa {
    /// An HPA keeping utilisation at `target_percent`, between `min` and
    /// `max` replicas.
    pub fn new(target_percent: u32, min: usize, max: usize) -> Self {
        Self {
            target_percent,
            tolerance: 0.1,
            min,
            max,
            recommendations: VecDeque::new(),
            events: VecDeque::new(),
            orch_rules: false,
        }
    }

    /// This HPA with orch's one departure from it, for a cross-check of
    /// everything else: utilisation as a real number rather than whole
    /// percent (orch's metric is a number, not a quantity of millicores).
    pub fn with_orch_rules(mut self) -> Self {
        self.orch_rules = true;
        self
    }

    /// One sync of the HPA at second `now`, scaling `world` if it decides
    /// to.
    pub fn evaluate(&mut self, now: u64, world: &mut World) {
        let current = world.replicas();
        let desired = if current > self.max {
            self.max
        } else if current < self.min {
            self.min
        } else {
            let Some((sample, ready)) = world.scraped().filter(|&(_, ready)| ready > 0) else {
                // HPA: "did not receive metrics for any ready pods", an
                // error that ends the sync with no recommendation kept.
                return;
            };
            let raw = self.replica_count(current, ready, sample.utilisation);
            self.normalize(now, current, raw)
        };
        if desired != current {
            self.events.push_back((now, desired as i64 - current as i64));
            world.scale_to(desired);
        }
    }

    /// The replica calculator (`calcPlainMetricReplicas` for CPU).
    fn replica_count(&self, current: usize, ready: usize, utilisation: f64) -> usize {
        debug_assert!(ready > 0 && ready <= current);
        let target = f64::from(self.target_percent);
        // metricsTotal * 100 / requestsTotal in integers: whole percent.
        let percent = |u: f64| {
            if self.orch_rules {
                u * 100.0
            } else {
                (u * 100.0 + 1e-9).floor()
            }
        };
        // orch rounds up what is a whole number but for a rounding error.
        let ceil = |x: f64| {
            (if self.orch_rules {
                (x - 1e-9).ceil()
            } else {
                x.ceil()
            }) as usize
        };
        let ratio = percent(utilisation) / target;
        let unready = current - ready;
        if unready == 0 || ratio <= 1.0 {
            if (1.0 - ratio).abs() <= self.tolerance {
                return current;
            }
            return ceil(ratio * ready as f64);
        }
        // A scale-up with pods not ready: they count as idle.
        let rebalanced = percent(utilisation * ready as f64 / current as f64) / target;
        if (1.0 - rebalanced).abs() <= self.tolerance || rebalanced < 1.0 {
            return current;
        }
        ceil(rebalanced * current as f64).max(current)
    }

    /// Stabilization, then the rate limits and the bounds
    /// (`normalizeDesiredReplicasWithBehaviors`).
    fn normalize(&mut self, now: u64, current: usize, raw: usize) -> usize {
        while self
            .recommendations
            .front()
            .is_some_and(|&(at, _)| at + DOWN_WINDOW <= now)
        {
            self.recommendations.pop_front();
        }
        // The up window is 0 s: no past recommendation limits a scale-up.
        let down = self.recommendations.iter().map(|&(_, r)| r).fold(raw, usize::max);
        self.recommendations.push_back((now, raw));
        let stabilized = current.max(raw).min(down);

        while self
            .events
            .front()
            .is_some_and(|&(at, _)| at + RATE_PERIOD <= now)
        {
            self.events.pop_front();
        }
        let added: i64 = self.events.iter().filter(|e| e.1 > 0).map(|e| e.1).sum();
        let deleted: i64 = self.events.iter().filter(|e| e.1 < 0).map(|e| -e.1).sum();
        let period_start = (current as i64 - added + deleted).max(0) as usize;
        if stabilized > current {
            let limit = (period_start * 2).max(period_start + 4).max(current);
            stabilized.min(limit.min(self.max))
        } else if stabilized < current {
            // −100 % of the period's start: no floor but min_replicas.
            stabilized.max(self.min)
        } else {
            stabilized
        }
    }
}

//! Smooth weighted round robin: nginx's algorithm, precomputed.

use std::fmt;

use crate::Weight;
use crate::balance::{
    endpoints::ReadyView,
    rng::{Rng, below},
};

/// The longest cycle kept as a precomputed schedule (entries of 4 bytes:
/// 256 KiB at most).
const MAX_SCHEDULE: u64 = 1 << 16;

/// The most stepper work (cycle length × weight classes) spent building a
/// schedule: about a few milliseconds, paid once per rebuild.
const MAX_BUILD_STEPS: u64 = 1 << 22;

/// How many picks [`SmoothWrr::pick_where`] tries before it scans the slots.
const PROBES: usize = 32;

/// Smooth weighted round robin over slots `0..n`: nginx's algorithm, with
/// each pick O(1).
///
/// Each slot is picked in proportion to its weight, exactly: in every cycle
/// of `Σ weights / gcd(weights)` picks, slot `i` is picked
/// `weights[i] / gcd` times. And the picks interleave as evenly as they
/// can, so a heavy slot never gets a burst: weights 5, 1, 1 give
/// `a a b a c a a` where plain weighted round robin gives `a a a a a b c`.
/// After any number of picks, every slot's count stays close to its exact
/// share: typically within one pick (nginx's algorithm does not bound it
/// strictly; across thousands of random weightings of up to 30 slots the
/// worst seen was 1.3 picks).
///
/// ```
/// use orch_discovery::{Weight, pick::SmoothWrr};
///
/// let w = |n| Weight::new(n).unwrap();
/// let mut wrr = SmoothWrr::new([w(5), w(1), w(1)]);
/// let picks: Vec<usize> = (0..7).filter_map(|_| wrr.pick()).collect();
/// assert_eq!(picks, [0, 0, 1, 0, 2, 0, 0]);
///
/// // An ejected slot leaves the rotation; the rest stay smooth.
/// wrr.set_eligible(0, false);
/// let picks: Vec<usize> = (0..4).filter_map(|_| wrr.pick()).collect();
/// assert_eq!(picks, [1, 2, 1, 2]);
/// ```
///
/// # The algorithm, and why it is precomputed
///
/// nginx (`ngx_http_upstream_get_peer`, 2012) keeps a `current` value per
/// slot; each pick adds every slot's weight to its `current`, picks the
/// largest (the first one on ties) and subtracts the total weight from it.
/// That is O(n) per pick. The sequence it produces is periodic, so
/// `SmoothWrr` computes one period when it is (re)built and then picks by
/// walking the table: one load and one increment, whatever `n`.
///
/// Building runs the same recurrence grouped by weight: slots of equal
/// weight always take their turns in slot order, so one `current` per
/// distinct weight is enough, and a build costs O(cycle × distinct
/// weights) instead of O(cycle × n). When the cycle is longer than 65 536
/// picks, or the build would take more than ~4 M steps (many distinct,
/// large, coprime weights), no table is kept and each pick runs the grouped
/// recurrence instead: O(distinct weights) per pick, the same sequence.
/// Weights are divided by their greatest common divisor first, which does
/// not change the sequence and keeps typical cycles short (weights 100,
/// 200, 300 cycle in 6 picks).
///
/// Envoy's weighted round robin is an earliest-deadline-first scheduler
/// instead (O(log n) per pick). Its picks are less even: with one heavy
/// endpoint and many light ones of equal weight, deadlines of the light
/// ones coincide and they are picked in a burst, which Envoy breaks up with
/// random offsets. nginx's recurrence interleaves them by construction.
///
/// # Eligibility
///
/// A slot that must not be picked (not ready, ejected) is taken out with
/// [`set_eligible`](Self::set_eligible): the cycle is rebuilt over the
/// remaining slots, so they stay exactly weighted and smooth. The rebuild
/// is lazy (at the next pick), so several changes cost one rebuild, and it
/// keeps the position in the cycle. For a check that changes per request
/// (a connection that is momentarily not ready), use
/// [`pick_where`](Self::pick_where): it skips the slots the check refuses,
/// giving their turn to the next in the cycle.
///
/// Slots are numbered `0..n` with `n` below 2^31 (stored as `u32`).
///
/// # Starting point
///
/// Ties go to the lowest slot, so with equal weights the cycle begins at
/// slot 0. Many clients that rebuild at the same moment would then all send
/// their first request to the same endpoint; [`set_start`](Self::set_start)
/// rotates the tie order (Envoy starts its round robin at a random endpoint
/// for the same reason).
#[derive(Clone)]
pub struct SmoothWrr {
    weights: Vec<Weight>,
    eligible: Vec<bool>,
    start: usize,
    state: State,
    /// Weights, eligibility or start changed since the state was built.
    stale: bool,
    limits: Limits,
}

// Not derived: a precomputed schedule holds up to `MAX_SCHEDULE` entries.
impl fmt::Debug for SmoothWrr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mode = match &self.state {
            State::Empty => "empty",
            State::Schedule { .. } => "schedule",
            State::Live(_) => "live",
        };
        f.debug_struct("SmoothWrr")
            .field("weights", &self.weights)
            .field("eligible", &self.eligible)
            .field("start", &self.start)
            .field("mode", &mode)
            .field("stale", &self.stale)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone)]
enum State {
    /// No eligible slot.
    Empty,
    /// One precomputed cycle, walked by `cursor`.
    Schedule { entries: Box<[u32]>, cursor: usize },
    /// Cycle too long to keep: the recurrence runs per pick.
    Live(Stepper),
}

/// When a cycle is precomputed (the constants, or smaller ones in tests).
#[derive(Debug, Clone, Copy)]
struct Limits {
    schedule: u64,
    build_steps: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            schedule: MAX_SCHEDULE,
            build_steps: MAX_BUILD_STEPS,
        }
    }
}

// ===== impl SmoothWrr =====

impl SmoothWrr {
    /// A picker over one slot per weight, all eligible.
    pub fn new(weights: impl IntoIterator<Item = Weight>) -> Self {
        let weights: Vec<Weight> = weights.into_iter().collect();
        Self {
            eligible: vec![true; weights.len()],
            weights,
            start: 0,
            state: State::Empty,
            stale: true,
            limits: Limits::default(),
        }
    }

    /// Replaces every slot (after a membership change): one slot per weight,
    /// all eligible again, the cycle restarted.
    pub fn set_weights(&mut self, weights: impl IntoIterator<Item = Weight>) {
        self.weights.clear();
        self.weights.extend(weights);
        self.eligible.clear();
        self.eligible.resize(self.weights.len(), true);
        self.state = State::Empty;
        self.stale = true;
    }

    /// Changes one slot's weight (a registry update, or a slow-start ramp);
    /// takes effect at the next pick.
    ///
    /// # Panics
    ///
    /// If `slot` is not below [`len`](Self::len).
    pub fn set_weight(&mut self, slot: usize, weight: Weight) {
        if self.weights[slot] != weight {
            self.weights[slot] = weight;
            self.stale = true;
        }
    }

    /// Puts a slot in or out of the rotation; takes effect at the next pick.
    ///
    /// # Panics
    ///
    /// If `slot` is not below [`len`](Self::len).
    pub fn set_eligible(&mut self, slot: usize, eligible: bool) {
        if self.eligible[slot] != eligible {
            self.eligible[slot] = eligible;
            self.stale = true;
        }
    }

    /// Rotates the tie order so it begins at `start` (taken modulo the
    /// number of slots): with equal weights, the cycle is `start`,
    /// `start + 1`, … Give each client a random start. Restarts the cycle.
    pub fn set_start(&mut self, start: usize) {
        self.start = start;
        self.state = State::Empty;
        self.stale = true;
    }

    /// The number of slots, eligible or not.
    pub fn len(&self) -> usize {
        self.weights.len()
    }

    /// Whether there are no slots.
    pub fn is_empty(&self) -> bool {
        self.weights.is_empty()
    }

    /// A slot's weight.
    ///
    /// # Panics
    ///
    /// If `slot` is not below [`len`](Self::len).
    pub fn weight(&self, slot: usize) -> Weight {
        self.weights[slot]
    }

    /// Whether a slot is in the rotation.
    ///
    /// # Panics
    ///
    /// If `slot` is not below [`len`](Self::len).
    pub fn is_eligible(&self, slot: usize) -> bool {
        self.eligible[slot]
    }

    /// The number of picks in one cycle: the eligible weights' sum divided
    /// by their greatest common divisor; 0 when no slot is eligible.
    pub fn cycle_len(&self) -> u64 {
        Stepper::new(&self.weights, &self.eligible, self.start).map_or(0, |s| s.total)
    }

    /// The next slot, or `None` when no slot is eligible.
    #[inline]
    pub fn pick(&mut self) -> Option<usize> {
        if self.stale {
            self.rebuild();
        }
        match &mut self.state {
            // A step through the precomputed cycle.
            State::Schedule { entries, cursor } => {
                let slot = *entries.get(*cursor)?;
                *cursor += 1;
                if *cursor == entries.len() {
                    *cursor = 0;
                }
                Some(slot as usize)
            }
            State::Live(stepper) => Some(stepper.step()),
            State::Empty => None,
        }
    }

    /// The next slot that `usable` accepts, or `None` when none does.
    ///
    /// Slots `usable` refuses are skipped as if picked (their turn passes to
    /// the next slot in the cycle, so the others keep their relative
    /// shares). After 32 refusals in a row, the eligible slots are scanned
    /// in order from the last refused one, so the answer is `None` only if
    /// `usable` refuses every eligible slot. Slots out of the rotation
    /// ([`set_eligible`](Self::set_eligible)) are never offered.
    pub fn pick_where(&mut self, mut usable: impl FnMut(usize) -> bool) -> Option<usize> {
        let mut last = 0;
        for _ in 0..PROBES {
            let slot = self.pick()?;
            if usable(slot) {
                return Some(slot);
            }
            last = slot;
        }
        let n = self.weights.len();
        (1..=n)
            .map(|k| (last + k) % n)
            .find(|&slot| self.eligible[slot] && usable(slot))
    }

    /// Rebuilds the cycle from the current weights and eligibility, keeping
    /// the position within the cycle when both old and new are schedules.
    fn rebuild(&mut self) {
        self.stale = false;
        let phase = match &self.state {
            State::Schedule { entries, cursor } => Some((*cursor, entries.len())),
            State::Empty | State::Live(_) => None,
        };
        let Some(mut stepper) = Stepper::new(&self.weights, &self.eligible, self.start) else {
            self.state = State::Empty;
            return;
        };
        let period = stepper.total;
        let classes = stepper.classes.len() as u64;
        if period <= self.limits.schedule && period.saturating_mul(classes) <= self.limits.build_steps {
            // `period` is at most `MAX_SCHEDULE`, so it fits a usize, and
            // slots are below `len`, which the caller keeps under u32::MAX.
            let entries: Box<[u32]> = (0..period).map(|_| stepper.step() as u32).collect();
            let cursor = phase.map_or(0, |(cursor, len)| {
                (cursor as u128 * u128::from(period) / len as u128) as usize
            });
            self.state = State::Schedule { entries, cursor };
        } else {
            self.state = State::Live(stepper);
        }
    }
}

// ===== impl Stepper =====

/// nginx's recurrence, one `current` per distinct weight.
///
/// In nginx every slot has `current = t·w − k·W` after `t` picks, `k` of
/// them its own. Slots of the same weight `w` differ only by `k`, and take
/// their turns in tie order, so within a class the next to go is the one
/// at `next`, and the class's best `current` is that slot's. Picking it
/// moves `next` on; when `next` wraps, every member has had one more turn
/// and the class's `current` drops by `W`.
#[derive(Debug, Clone)]
struct Stepper {
    classes: Vec<Class>,
    /// Sum of the reduced eligible weights: the cycle length.
    total: u64,
    /// Number of slots and the rotation: slot = (rank + start) mod n.
    n: usize,
    start: usize,
}

#[derive(Debug, Clone)]
struct Class {
    weight: i64,
    current: i64,
    /// Tie ranks of the members, ascending.
    ranks: Box<[u32]>,
    next: usize,
}

impl Stepper {
    /// A stepper over the eligible slots, or `None` if there are none.
    fn new(weights: &[Weight], eligible: &[bool], start: usize) -> Option<Self> {
        let n = weights.len();
        let start = if n == 0 { 0 } else { start % n };
        let divisor = weights
            .iter()
            .zip(eligible)
            .filter(|(_, e)| **e)
            .fold(0, |g, (w, _)| gcd(g, u64::from(w.get())));
        if divisor == 0 {
            return None;
        }
        // (reduced weight, rank) of every eligible slot, grouped by weight
        // and in rank order within a weight.
        let mut members: Vec<(u64, u32)> = (0..n)
            .filter_map(|rank| {
                let slot = (rank + start) % n;
                eligible[slot].then(|| (u64::from(weights[slot].get()) / divisor, rank as u32))
            })
            .collect();
        members.sort_unstable();
        let total = members.iter().map(|(w, _)| w).sum();
        let classes = members
            .chunk_by(|a, b| a.0 == b.0)
            .map(|chunk| Class {
                // A reduced weight is at most u32::MAX, so it fits an i64.
                weight: chunk[0].0 as i64,
                current: 0,
                ranks: chunk.iter().map(|(_, rank)| *rank).collect(),
                next: 0,
            })
            .collect();
        Some(Self {
            classes,
            total,
            n,
            start,
        })
    }

    /// One pick of nginx's recurrence: every class gains its weight, the
    /// best (ties to the lowest rank) is picked and pays the total.
    #[inline]
    fn step(&mut self) -> usize {
        let mut best = 0;
        let mut best_current = i64::MIN;
        let mut best_rank = u32::MAX;
        for (index, class) in self.classes.iter_mut().enumerate() {
            class.current += class.weight;
            let rank = class.ranks[class.next];
            if class.current > best_current || (class.current == best_current && rank < best_rank) {
                best = index;
                best_current = class.current;
                best_rank = rank;
            }
        }
        let class = &mut self.classes[best];
        class.next += 1;
        if class.next == class.ranks.len() {
            class.next = 0;
            // The total of reduced weights of fewer than 2^31 slots, each
            // below 2^32, fits an i64.
            class.current -= self.total as i64;
        }
        let slot = best_rank as usize + self.start;
        if slot >= self.n { slot - self.n } else { slot }
    }
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

// ===== the balancer's round robin =====

/// [`Algorithm::RoundRobin`](crate::balance::Algorithm::RoundRobin): nginx's
/// cycle over the balancer's members, by their table weights (slow start
/// ramps them).
///
/// The cycle is built over every member, ready or not, and rebuilt only
/// when membership or a table weight changes; a weight change keeps the
/// position in the cycle. A member that is not ready, or ejected outside
/// panic mode, is skipped with [`SmoothWrr::pick_where`]: its turn passes
/// to the next in the cycle, so the others keep their exact shares.
#[derive(Debug)]
pub(crate) struct RoundRobin {
    wrr: SmoothWrr,
    /// The [`ReadyView::members_version`] the cycle was built for.
    built_for: Option<u64>,
    /// Where the cycle begins among equal weights: random per balancer, so
    /// many clients built at once do not all start on the same endpoint.
    start: u64,
}

impl RoundRobin {
    /// An empty picker whose cycles begin at `start` (modulo the members).
    pub(crate) fn new(start: u64) -> Self {
        Self {
            wrr: SmoothWrr::new([]),
            built_for: None,
            start,
        }
    }

    /// The next ready position in the cycle that may be picked; any ready
    /// one if none may (every ready endpoint ejected and panic mode off).
    #[inline]
    pub(crate) fn pick<S>(&mut self, ready: &ReadyView<'_, S>, rng: &mut Rng) -> Option<usize> {
        if self.built_for != Some(ready.members_version) {
            self.rebuild(ready);
        }
        let mut chosen = None;
        let picked = self.wrr.pick_where(|member| {
            chosen = ready.member_position(member);
            chosen.is_some()
        });
        if picked.is_some() {
            return chosen;
        }
        // Rare: every ready endpoint is ejected and panic mode is off.
        let n = ready.len();
        (n > 0).then(|| below(rng.next_u64() as u32, n))
    }

    fn rebuild<S>(&mut self, ready: &ReadyView<'_, S>) {
        let members = ready.members;
        if self.wrr.len() == members.len() {
            // Same count: new weights (or the same count after an add and
            // a remove) keep the position in the cycle.
            for (index, member) in members.iter().enumerate() {
                self.wrr.set_weight(index, member.table_weight);
            }
        } else {
            self.wrr.set_weights(members.iter().map(|m| m.table_weight));
            if !members.is_empty() {
                self.wrr.set_start((self.start % members.len() as u64) as usize);
            }
        }
        self.built_for = Some(ready.members_version);
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    impl SmoothWrr {
        fn with_limits(mut self, schedule: u64, build_steps: u64) -> Self {
            self.limits = Limits {
                schedule,
                build_steps,
            };
            self.stale = true;
            self
        }

        fn is_scheduled(&mut self) -> bool {
            if self.stale {
                self.rebuild();
            }
            matches!(self.state, State::Schedule { .. })
        }
    }

    fn weights(raw: &[u32]) -> Vec<Weight> {
        raw.iter().map(|&w| Weight::new(w).unwrap()).collect()
    }

    /// nginx's loop, literally: O(n) per pick.
    fn nginx(raw: &[u32], picks: usize) -> Vec<usize> {
        let total: i64 = raw.iter().map(|&w| i64::from(w)).sum();
        let mut current = vec![0_i64; raw.len()];
        (0..picks)
            .map(|_| {
                let mut best = 0;
                for i in 0..raw.len() {
                    current[i] += i64::from(raw[i]);
                    if current[i] > current[best] {
                        best = i;
                    }
                }
                current[best] -= total;
                best
            })
            .collect()
    }

    fn picks(wrr: &mut SmoothWrr, n: usize) -> Vec<usize> {
        (0..n).map(|_| wrr.pick().unwrap()).collect()
    }

    #[test]
    fn schedule_and_live_modes_give_nginx_sequence() {
        let raw = [5, 1, 1];
        let mut scheduled = SmoothWrr::new(weights(&raw));
        assert!(scheduled.is_scheduled());
        let mut live = SmoothWrr::new(weights(&raw)).with_limits(0, 0);
        assert!(!live.is_scheduled());
        assert_eq!(picks(&mut scheduled, 14), nginx(&raw, 14));
        assert_eq!(picks(&mut live, 14), nginx(&raw, 14));
    }

    #[test]
    fn long_cycles_run_live() {
        // Coprime weights whose cycle exceeds the schedule limit.
        let raw = [65_521, 65_519, 3];
        let mut wrr = SmoothWrr::new(weights(&raw));
        assert!(!wrr.is_scheduled());
        assert_eq!(wrr.cycle_len(), 131_043);
        assert_eq!(picks(&mut wrr, 1_000), nginx(&raw, 1_000));
    }

    #[test]
    fn rebuild_keeps_the_phase_of_a_schedule() {
        let mut wrr = SmoothWrr::new(weights(&[1; 10]));
        assert_eq!(picks(&mut wrr, 5), [0, 1, 2, 3, 4]);
        wrr.set_weight(9, Weight::new(1).unwrap()); // no change: no rebuild
        assert!(!wrr.stale);
        wrr.set_eligible(0, false);
        // Cursor 5 of 10 maps to 4 of 9: the cycle goes on from the middle.
        assert_eq!(picks(&mut wrr, 5), [5, 6, 7, 8, 9]);
    }

    #[test]
    fn start_rotates_ties() {
        let mut wrr = SmoothWrr::new(weights(&[1, 1, 1, 1]));
        wrr.set_start(6);
        assert_eq!(picks(&mut wrr, 5), [2, 3, 0, 1, 2]);
        let mut wrr = SmoothWrr::new(weights(&[2, 1, 1])).with_limits(0, 0);
        wrr.set_start(1);
        // nginx over slots in the order 1, 2, 0.
        let rotated: Vec<usize> = nginx(&[1, 1, 2], 8).iter().map(|&r| (r + 1) % 3).collect();
        assert_eq!(picks(&mut wrr, 8), rotated);
    }

    proptest! {
        #[test]
        fn any_weights_give_nginx_sequence(
            raw in prop::collection::vec(1_u32..40, 1..12),
            live in any::<bool>(),
        ) {
            let mut wrr = SmoothWrr::new(weights(&raw));
            if live {
                wrr = wrr.with_limits(0, 0);
            }
            let len: u32 = raw.iter().sum();
            let n = 2 * len as usize + 3;
            prop_assert_eq!(picks(&mut wrr, n), nginx(&raw, n));
        }

        /// A smoothness guard, not a theorem: nginx's lag is not strictly
        /// bounded by one (it reaches ~1.13 for these sizes), but a regression
        /// towards bursts would exceed two.
        #[test]
        fn every_prefix_stays_close_to_the_exact_share(
            raw in prop::collection::vec(1_u32..60, 1..10),
        ) {
            let mut wrr = SmoothWrr::new(weights(&raw));
            let total: f64 = raw.iter().map(|&w| f64::from(w)).sum();
            let mut counts = vec![0_u32; raw.len()];
            for t in 1..=(2 * total as usize) {
                counts[wrr.pick().unwrap()] += 1;
                for (i, &w) in raw.iter().enumerate() {
                    let exact = t as f64 * f64::from(w) / total;
                    prop_assert!((f64::from(counts[i]) - exact).abs() < 2.0, "slot {i} after {t}");
                }
            }
        }
    }
}

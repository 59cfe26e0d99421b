//! Power of two choices with weights: the balancer's
//! [`Algorithm::PeakEwma`](crate::balance::Algorithm::PeakEwma) and
//! [`Algorithm::PendingRequests`](crate::balance::Algorithm::PendingRequests),
//! and Maglev's fallback for requests without a key.
//!
//! tower's P2C draws two endpoints uniformly and ignores weights (tower
//! issue 696). Here the two candidates are drawn in proportion to weight
//! (Vose's alias method: O(1) per draw, rebuilt only when the ready set or a
//! weight changes) and compared by `cost`, in which requests in flight count
//! per unit of weight (`in_flight / weight + 1`, see
//! `EndpointLoad::cost`). So with no requests in flight and equal
//! latencies the costs tie, the first candidate wins, and traffic splits
//! exactly by weight (a 1 %-weight canary gets 1 %); under load, in-flight
//! requests settle in proportion to weight. When all weights are equal the
//! candidates are two distinct endpoints drawn uniformly, as in tower.
//! Slow start's ramped weights are weights like any other here.

use crate::balance::endpoints::{ReadySlot, ReadyView};
use crate::balance::load::Now;
use crate::balance::rng::{Rng, below};

/// The cost of a ready endpoint (see `EndpointLoad::cost`).
#[inline]
fn cost<S>(slot: &ReadySlot<S>, now: &mut Now<'_>) -> f64 {
    slot.load.cost(slot.in_flight(), slot.inv_weight, now)
}

/// Power of two choices: the cheaper of two candidates.
///
/// Always inlined: it is most of the default algorithm's path, and with two
/// callers (the P2C picker and Maglev's keyless fallback) the compiler
/// otherwise kept it out of line, which cost a third of the balancer's
/// overhead in `benches/balance.rs`.
#[inline(always)]
pub(crate) fn p2c<S>(
    sampler: &mut Sampler,
    ready: &ReadyView<'_, S>,
    rng: &mut Rng,
    now: &mut Now<'_>,
) -> Option<usize> {
    let n = ready.len();
    if n <= 1 {
        return (n == 1).then_some(0);
    }
    let (a, b) = sampler.two(ready, rng);
    let chosen = match (ready.available(a), ready.available(b)) {
        (Some(_), _) if a == b => a,
        (Some(sa), Some(sb)) => {
            let (ca, cb) = (cost(sa, now), cost(sb, now));
            let chosen = if cb < ca { b } else { a };
            tracing::trace!(a.index = a, a.cost = ca, b.index = b, b.cost = cb, chosen, "p2c");
            chosen
        }
        (Some(_), None) => a,
        (None, Some(_)) => b,
        (None, None) => first_available(ready, rng).unwrap_or(a),
    };
    Some(chosen)
}

/// Any available endpoint, scanning from a random start; `None` when all
/// are ejected.
fn first_available<S>(ready: &ReadyView<'_, S>, rng: &mut Rng) -> Option<usize> {
    let n = ready.len();
    let start = below(rng.next_u64() as u32, n);
    (0..n)
        .map(|i| (start + i) % n)
        .find(|&pos| ready.available(pos).is_some())
}

/// Draws P2C candidates: uniformly and distinct for equal weights, by weight
/// (with replacement) otherwise.
#[derive(Debug, Default)]
pub(crate) struct Sampler {
    /// Vose alias table over ready positions: `(threshold, alias)`; column
    /// `i` yields `i` when a 32-bit coin is below the threshold, else `alias`.
    /// Empty when every ready endpoint has the same weight.
    table: Vec<(u64, u32)>,
    /// The [`ReadyView::version`] the table was built for.
    built_for: Option<u64>,
}

impl Sampler {
    /// Two candidate positions (`n ≥ 2`). Always inlined, as [`p2c`].
    #[inline(always)]
    fn two<S>(&mut self, ready: &ReadyView<'_, S>, rng: &mut Rng) -> (usize, usize) {
        let n = ready.len();
        debug_assert!(n >= 2, "two candidates need two endpoints");
        if self.built_for != Some(ready.version) {
            self.rebuild(ready);
        }
        if self.table.is_empty() {
            let r = rng.next_u64();
            let a = below(r as u32, n);
            let b = below((r >> 32) as u32, n - 1);
            let b = if b >= a { b + 1 } else { b };
            debug_assert_ne!(a, b, "uniform candidates are distinct");
            return (a, b);
        }
        (self.draw(rng), self.draw(rng))
    }

    /// One position drawn in proportion to weight.
    #[inline]
    fn draw(&self, rng: &mut Rng) -> usize {
        let r = rng.next_u64();
        let column = below(r as u32, self.table.len());
        let (threshold, alias) = self.table[column];
        if (r >> 32) < threshold {
            column
        } else {
            alias as usize
        }
    }

    /// Vose's alias method over the ready weights: O(n). Cold: inlined into
    /// every pick it cost 3 ns a request at 16 endpoints (`benches/balance.rs`).
    #[cold]
    fn rebuild<S>(&mut self, ready: &ReadyView<'_, S>) {
        self.built_for = Some(ready.version);
        self.table.clear();
        let n = ready.len();
        let weight = |pos: usize| ready.slot(pos).map_or(0.0, |s| 1.0 / s.inv_weight);
        if (1..n).all(|pos| weight(pos) == weight(0)) {
            return;
        }
        let total: f64 = (0..n).map(weight).sum();
        self.table.resize(n, (1 << 32, 0));
        let (mut small, mut large): (Vec<_>, Vec<_>) = (0..n)
            .map(|pos| (pos as u32, weight(pos) * n as f64 / total))
            .partition(|&(_, scaled)| scaled < 1.0);
        while let (Some((s, ps)), Some((l, pl))) = (small.pop(), large.pop()) {
            self.table[s as usize] = (threshold(ps), l);
            let rest = pl + ps - 1.0;
            let list = if rest < 1.0 { &mut small } else { &mut large };
            list.push((l, rest));
        }
        // Leftovers are 1 up to rounding: they always yield themselves.
        for (pos, _) in small.into_iter().chain(large) {
            self.table[pos as usize] = (1 << 32, pos);
        }
    }
}

/// A probability as a threshold for a 32-bit coin.
fn threshold(p: f64) -> u64 {
    (p.clamp(0.0, 1.0) * (1u64 << 32) as f64) as u64
}

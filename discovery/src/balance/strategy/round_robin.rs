//! Smooth weighted round robin through the balancer: nginx's cycle
//! ([`SmoothWrr`]) over the members, by their table weights (slow start
//! ramps them).
//!
//! The cycle is built over every member, ready or not, and rebuilt only
//! when membership or a table weight changes; a weight change keeps the
//! position in the cycle. A member that is not ready, or ejected outside
//! panic mode, is skipped with [`SmoothWrr::pick_where`]: its turn passes
//! to the next in the cycle, so the others keep their exact shares.

use super::ReadySlots;
use crate::balance::rng::{Rng, below};
use crate::balance::state::Now;
use crate::pick::SmoothWrr;

/// Round robin's picker and the members version it was built for.
#[derive(Debug)]
pub(crate) struct RoundRobin {
    wrr: SmoothWrr,
    built_for: Option<u64>,
    /// Where the cycle begins among equal weights: random per balancer, so
    /// many clients built at once do not all start on the same endpoint.
    start: u64,
}

impl RoundRobin {
    /// An empty picker whose cycles begin at `start` (modulo the members).
    pub(super) fn new(start: u64) -> Self {
        Self {
            wrr: SmoothWrr::new([]),
            built_for: None,
            start,
        }
    }

    /// The next ready position in the cycle that may be picked; any ready
    /// one if none may (every ready endpoint ejected and panic mode off).
    #[inline]
    pub(super) fn pick<S>(
        &mut self,
        slots: &ReadySlots<'_, S>,
        rng: &mut Rng,
        _now: &mut Now<'_>,
    ) -> Option<usize> {
        if self.built_for != Some(slots.members.version) {
            self.rebuild(slots);
        }
        let mut chosen = None;
        let picked = self.wrr.pick_where(|member| {
            chosen = slots.member_position(member);
            chosen.is_some()
        });
        if picked.is_some() {
            return chosen;
        }
        any_ready(slots, rng)
    }

    #[cold]
    fn rebuild<S>(&mut self, slots: &ReadySlots<'_, S>) {
        let members = &slots.members.list;
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
        self.built_for = Some(slots.members.version);
    }
}

/// Any ready position, at random; `None` when nothing is ready.
#[cold]
fn any_ready<S>(slots: &ReadySlots<'_, S>, rng: &mut Rng) -> Option<usize> {
    let n = slots.len();
    (n > 0).then(|| below(rng.next_u64() as u32, n))
}

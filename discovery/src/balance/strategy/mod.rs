//! The one place where the endpoint for a request is chosen.
//!
//! [`Strategy::pick`] sees the ready endpoints ([`ReadySlots`]: each one's
//! weight and shared load state, plus the member list that table pickers
//! number endpoints by) and, lazily, the request's key, and returns a
//! position in the ready set. Every ready endpoint can be called (each has
//! answered `poll_ready` with `Ready` since its last call), so the choice is
//! made in `call`, when the request is known.
//!
//! | strategy | file | per pick | rebuilt when |
//! |---|---|---|---|
//! | P2C (peak-EWMA, pending) | `p2c.rs` | two draws, two costs | ready set or a ready weight changes (alias table; none for equal weights) |
//! | round robin | `round_robin.rs` | a step of a precomputed nginx cycle | membership or a table weight changes |
//! | Maglev | `maglev.rs` | a key hash and a table read | membership or a discovery weight changes |
//!
//! Table pickers are built over *members* (every known endpoint, ready or
//! not) so that readiness flapping never rebuilds a table; they skip
//! members that are not ready, or ejected (unless in panic mode), with
//! `pick_where` / `lookup_where`.

mod maglev;
mod p2c;
mod round_robin;

use std::sync::Arc;

use super::config::Algorithm;
use super::rng::Rng;
use super::set::{Members, NOT_READY, ReadySlot};
use super::state::Now;

use maglev::MaglevPicker;
use p2c::{Sampler, p2c};
use round_robin::RoundRobin;

/// How the balancer chooses among ready endpoints. See the module docs.
///
/// `repr(u8)`: an explicit one-byte tag makes the dispatch per request one
/// compare, where the niche-packed layout had to decode the variant.
#[derive(Debug)]
#[repr(u8)]
pub(crate) enum Strategy {
    /// Power of two choices over the endpoints' load (peak-EWMA or
    /// requests in flight, as their `EndpointState` models it).
    PowerOfTwoChoices(Sampler),
    /// Smooth weighted round robin over the members.
    RoundRobin(RoundRobin),
    /// Maglev over the members, by the request's key.
    Maglev(MaglevPicker),
}

/// The ready endpoints as a strategy sees them.
pub(crate) struct ReadySlots<'a, S> {
    /// The ready endpoints; a pick returns a position here.
    pub(crate) slots: &'a [ReadySlot<S>],
    /// All ready endpoints have the same weight.
    pub(crate) uniform: bool,
    /// Changes whenever the ready set or a ready weight changes.
    pub(crate) version: u64,
    /// Every known endpoint, in table order, and their versions.
    pub(crate) members: &'a Members,
}

impl<S> ReadySlots<'_, S> {
    /// Number of ready endpoints.
    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.slots.len()
    }

    /// The ready endpoint at `pos`.
    #[inline]
    pub(crate) fn slot(&self, pos: usize) -> Option<&ReadySlot<S>> {
        self.slots.get(pos)
    }

    /// The endpoint at `pos`, if the position is valid and it may be
    /// picked: not ejected, or the balancer is in panic mode (which makes
    /// every endpoint available).
    #[inline]
    fn available(&self, pos: usize) -> Option<&ReadySlot<S>> {
        self.slot(pos).filter(|slot| slot.state.is_available())
    }

    /// The ready position of member `index`, if it may be picked now.
    #[inline]
    fn member_position(&self, index: usize) -> Option<usize> {
        let ready = self.members.list.get(index)?.ready;
        if ready == NOT_READY {
            return None;
        }
        let pos = ready as usize;
        self.available(pos).map(|_| pos)
    }
}

impl Strategy {
    /// The strategy `algorithm` names, for the balancer `name`; `start`
    /// seeds where round robin begins its cycle.
    pub(crate) fn for_algorithm(algorithm: &Algorithm, start: u64, name: &Arc<str>) -> Self {
        match algorithm {
            Algorithm::PeakEwma(_) | Algorithm::PendingRequests(_) => {
                Self::PowerOfTwoChoices(Sampler::default())
            }
            Algorithm::RoundRobin => Self::RoundRobin(RoundRobin::new(start)),
            Algorithm::Maglev(config) => Self::Maglev(MaglevPicker::new(config.table_size, Arc::clone(name))),
        }
    }

    /// The position in `slots` of the endpoint for a request whose key
    /// hash `key` gives (called only by Maglev); `None` only when nothing
    /// is ready. An ejected endpoint is chosen only in panic mode or when
    /// every ready endpoint is ejected (then any is better than none).
    #[inline]
    pub(crate) fn pick<S>(
        &mut self,
        slots: &ReadySlots<'_, S>,
        key: impl FnOnce() -> Option<u64>,
        rng: &mut Rng,
        now: &mut Now<'_>,
    ) -> Option<usize> {
        match self {
            Self::PowerOfTwoChoices(sampler) => p2c(sampler, slots, rng, now),
            Self::RoundRobin(round_robin) => round_robin.pick(slots, rng, now),
            Self::Maglev(maglev) => maglev.pick(slots, key, rng, now),
        }
    }
}

//! Pickers: how the endpoint for a request is chosen, one file per
//! algorithm.
//!
//! A balancer spends its whole overhead budget (tens of nanoseconds) per
//! request, and its endpoints change rarely. So every picker does its work
//! when the endpoints change and keeps a table that a pick only reads (or,
//! for round robin, one counter per distinct weight):
//!
//! | file | algorithm | per pick | rebuilt when |
//! |---|---|---|---|
//! | `p2c.rs` | P2C over peak-EWMA or requests in flight, weighted | two draws, two costs | the ready list or a ready weight changes (alias table; for equal weights only a check that they are) |
//! | `wrr.rs` | [`SmoothWrr`]: in turn, weighted, interleaved (nginx) | one step per distinct weight (one for equal weights) | membership or a table weight changes |
//! | `maglev.rs` | [`Maglev`]: by key, consistently (as in Envoy) | a key hash and a table read | membership or a discovery weight changes |
//!
//! [`SmoothWrr`] and [`Maglev`] are public tables over slot indices that
//! know nothing of services or health. Beside each, the balancer's picker
//! for that algorithm works over a read-only view of the balancer's ready
//! endpoints and its members (every known endpoint, ready or not, so that
//! readiness flapping never rebuilds a table), skipping members that are
//! not ready, or ejected (unless in panic mode, see
//! [`health`](crate::health)). None allocates per pick.
//!
//! Credits: nginx's smooth weighted round robin (Maxim Dounin, 2012,
//! `ngx_http_upstream_round_robin.c`); Maglev hashing from Eisenbud et al.,
//! NSDI 2016, with the weighted table of Envoy's `maglev_lb.cc`; P2C from
//! Mitzenmacher, weighted with Vose's alias method.

mod hash;
mod maglev;
mod p2c;
mod wrr;

use std::sync::Arc;

pub use hash::{mix64, stable_hash};
pub use maglev::{Maglev, MaglevError};
pub use wrr::SmoothWrr;

use crate::balance::{Algorithm, endpoints::ReadyView, load::Now, rng::Rng};
use maglev::MaglevPicker;
use p2c::{Sampler, p2c};
use wrr::RoundRobin;

/// The balancer's picker for its [`Algorithm`].
///
/// `repr(u8)`: an explicit one-byte tag makes the dispatch per request one
/// compare, where the niche-packed layout had to decode the variant.
#[derive(Debug)]
#[repr(u8)]
pub(crate) enum Picker {
    /// Power of two choices over the endpoints' load (peak-EWMA or
    /// requests in flight, as their `EndpointLoad` models it).
    PowerOfTwoChoices(Sampler),
    /// Smooth weighted round robin over the members.
    RoundRobin(RoundRobin),
    /// Maglev over the members, by the request's key.
    Maglev(MaglevPicker),
}

impl Picker {
    /// The picker `algorithm` names, for the balancer `name`; `start`
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

    /// The ready position of the endpoint for a request whose key hash
    /// `key` gives (called only by Maglev); `None` only when nothing is
    /// ready. An ejected endpoint is chosen only in panic mode or when
    /// every ready endpoint is ejected (then any is better than none).
    #[inline]
    pub(crate) fn pick<S>(
        &mut self,
        ready: &ReadyView<'_, S>,
        key: impl FnOnce() -> Option<u64>,
        rng: &mut Rng,
        now: &mut Now<'_>,
    ) -> Option<usize> {
        match self {
            Self::PowerOfTwoChoices(sampler) => p2c(sampler, ready, rng, now),
            Self::RoundRobin(round_robin) => round_robin.pick(ready, rng),
            Self::Maglev(maglev) => maglev.pick(ready, key, rng, now),
        }
    }
}

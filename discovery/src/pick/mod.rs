//! Table-based pickers: given the balancer's slots `0..n` and their
//! weights, choose one per request in constant time.
//!
//! A balancer spends its whole overhead budget (tens of nanoseconds) per
//! request, and its endpoints change rarely. So both pickers do their work
//! when the endpoints change and keep a table that a pick only reads:
//!
//! | picker | picks | per pick | per rebuild |
//! |---|---|---|---|
//! | [`SmoothWrr`] | in turn, weighted, interleaved (nginx) | O(1) (a table step) | O(cycle × distinct weights) |
//! | [`Maglev`] | by key, consistently (Maglev, as in Envoy) | O(1) (a table read) | O(M log M), M = 65 537 |
//!
//! Both work on slot indices and know nothing of services or health: the
//! balancer owns the endpoints, tells the pickers which slots are eligible
//! (ready, not ejected; see [`health`](crate::health)), and rebuilds them
//! when membership changes. Neither allocates per pick.
//!
//! Credits: nginx's smooth weighted round robin (Maxim Dounin, 2012,
//! `ngx_http_upstream_round_robin.c`); Maglev hashing from Eisenbud et al.,
//! NSDI 2016, with the weighted table of Envoy's `maglev_lb.cc`.

mod hash;
mod maglev;
mod wrr;

pub use hash::{mix64, stable_hash};
pub use maglev::{Maglev, MaglevError};
pub use wrr::SmoothWrr;

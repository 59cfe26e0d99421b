//! Service discovery and client-side load balancing.
//!
//! | module | what it is |
//! |---|---|
//! | [`endpoint`] | [`Endpoint`], [`EndpointId`], [`Weight`], [`EndpointChange`]: the vocabulary every part shares |
//! | [`pick`] | [`SmoothWrr`](pick::SmoothWrr), [`Maglev`](pick::Maglev): O(1) table-based pickers over the balancer's slots |
//! | [`health`] | passive health: outlier ejection (Envoy's), panic threshold, slow start |
#![forbid(unsafe_code)]

pub mod endpoint;
pub mod health;
pub mod pick;

pub use endpoint::{Endpoint, EndpointChange, EndpointId, Weight, ZeroWeight};

//! Service discovery and client-side load balancing.
//!
//! | module | what it is |
//! |---|---|
//! | [`endpoint`] | [`Endpoint`], [`EndpointId`], [`Weight`], [`EndpointChange`]: the vocabulary every part shares |
//! | [`balance`] | [`Balancer`]: the client-side load balancer (P2C over peak-EWMA or requests in flight, weights, fail-fast) |
#![forbid(unsafe_code)]

pub mod balance;
pub mod endpoint;

pub use balance::Balancer;
pub use endpoint::{Endpoint, EndpointChange, EndpointId, Weight, ZeroWeight};

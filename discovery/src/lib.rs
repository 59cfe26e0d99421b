//! Service discovery and client-side load balancing.
//!
//! | module | what it is |
//! |---|---|
//! | [`endpoint`] | [`Endpoint`], [`EndpointId`], [`Weight`], [`EndpointChange`]: the vocabulary every part shares |
#![forbid(unsafe_code)]

pub mod endpoint;

pub use endpoint::{Endpoint, EndpointChange, EndpointId, Weight, ZeroWeight};

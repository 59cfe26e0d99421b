//! orch: resilient microservices for tokio and tower.
//!
//! This facade re-exports the workspace's crates so one dependency brings
//! them all:
//!
//! - [`core`] (`orch-core`): the embedded supervisor, health probes,
//!   lifecycle events and the `Scaler` seam.
//! - [`resilience`] (`orch-resilience`): resilience layers (not yet built).
//! - [`discovery`] (`orch-discovery`): registry and load balancing (not yet built).
//! - [`versioning`] (`orch-versioning`): versioned contracts (not yet built).
#![forbid(unsafe_code)]

pub use orch_core as core;
pub use orch_discovery as discovery;
pub use orch_resilience as resilience;
pub use orch_versioning as versioning;

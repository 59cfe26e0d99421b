//! Passive health: the balancer learns from the responses it already gets
//! which endpoints to avoid, without probes of its own.
//!
//! Discovery says which endpoints exist and are ready; it cannot see that
//! one of them answers every request with an error, or much more often
//! than its peers. Passive health fills that gap, as Envoy's outlier
//! detection does, and guards against its own excesses:
//!
//! | part | what it does | Envoy's |
//! |---|---|---|
//! | [`EndpointStats`] | lock-free outcome counters each response future records into, from any thread | host monitor |
//! | [`OutlierDetector`] | ejects endpoints for runs of failures or outlying success rates, for a growing time; returns them by itself | `outlier_detection` |
//! | [`PanicThreshold`] | when too few endpoints are healthy, spread over all of them | `healthy_panic_threshold` |
//! | [`SlowStart`] | ramps a new endpoint's weight up over a window | `slow_start_config` |
//! | [`HealthConfig`] | the three configs, `serde` with humantime durations, validated | |
//!
//! The balancer owns a detector and the clock: it calls
//! [`OutlierDetector::poll`] with `now` when something is due (the
//! [`next_deadline`](OutlierDetector::next_deadline) on its timer, or a
//! trip by a run of failures), acts on the [`HealthEvent`]s it returns
//! (take the endpoint out of or back into its pickers, log, count
//! `orch_balancer_ejections_total{reason}`), and asks
//! [`PanicThreshold::is_panic`] whether to honour ejections at all. Nothing
//! here spawns a task or reads a clock; see [`Balancer`](crate::Balancer)
//! for the wiring.
//!
//! Semantics and defaults follow Envoy's outlier detection
//! (`source/common/upstream/outlier_detection_impl.cc`), panic threshold and
//! slow start; the differences are documented where they occur.

mod config;
mod outlier;
mod panic;
mod slow_start;
mod stats;

pub use config::{ConfigError, HealthConfig, OutlierConfig, SlowStartConfig, SuccessRateConfig};
pub use outlier::{EjectionReason, HealthEvent, OutlierDetector};
pub use panic::PanicThreshold;
pub use slow_start::SlowStart;
pub use stats::EndpointStats;

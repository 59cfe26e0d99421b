//! The autoscaler: how many replicas a group should have, decided the way
//! Kubernetes' HPA and KEDA decide, for any [`Scaler`](crate::Scaler).
//!
//! Every evaluation period (15 s by default, milliseconds in-process) the
//! [`Autoscaler`] reads the scaler's status and its [`MetricSource`]s, asks
//! each policy for a number of replicas, takes the highest, and moves
//! toward it within the [`Behavior`] (stabilization windows, rate limits,
//! cooldowns) and the bounds. Every evaluation leaves a [`Decision`] with
//! its inputs, each policy's recommendation, what was done and why.
//!
//! - Signals: [`MetricSource`] (a sample with a timestamp, or missing),
//!   [`WorkQueue`] (an in-process queue whose depth is a signal),
//!   [`source_fn`] (a closure), `JetStreamPending` (a NATS JetStream
//!   consumer's unfinished messages, feature `nats`).
//! - Policies: [`TargetTracking`] (HPA), [`QueueBacklog`] (KEDA, with
//!   activation and scale to zero), `Schedule` (cron windows in a time
//!   zone, feature `schedule`).
//! - Config: [`AutoscalerConfig`], serde with human-readable durations,
//!   validated at build ([`AutoscaleError`] names the field).
//!
//! Scale-in goes through the scaler: a supervisor's
//! [`ReplicaGroup`](crate::ReplicaGroup) drains the replicas it removes
//! (they leave the balancer, finish in-flight work within their grace
//! period, then stop).

mod autoscaler;
mod behavior;
mod config;
mod decision;
mod error;
#[cfg(feature = "nats")]
mod nats;
mod policy;
mod queue;
mod source;

pub use autoscaler::{Autoscaler, AutoscalerBuilder, AutoscalerHandle};
pub use behavior::{Behavior, RateKind, RatePolicy, ScalingRules, SelectPolicy};
pub use config::AutoscalerConfig;
pub use decision::{Decision, DecisionSubscription, MetricState, Outcome, Steps};
pub use error::AutoscaleError;
#[cfg(feature = "nats")]
pub use nats::{JetStreamPending, JetStreamPendingConfig};
#[cfg(feature = "schedule")]
pub use policy::Schedule;
pub use policy::{PolicyConfig, QueueBacklog, Recommendation, TargetTracking, Vote};
pub use queue::WorkQueue;
pub use source::{FnSource, MetricSource, Reading, source_fn};

use crate::ScaleStatus;

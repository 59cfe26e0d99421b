//! The embedded orchestrator of orch: supervisor trees, health probes and
//! lifecycle events.
//!
//! A [`Supervisor`] starts the children of a [`SupervisorSpec`] in order,
//! watches them, restarts them by Erlang/OTP's rules (strategies, restart
//! types, restart intensity) with Kubernetes-style backoff and probes, and
//! stops them in reverse order with a grace period. Every step is a
//! [`LifecycleEvent`] that the discovery registry and the autoscaler consume
//! through a gap-free [`Subscription`].
//!
//! ```
//! use std::time::Duration;
//! use orch_core::{ChildSpec, EventKind, Supervisor, SupervisorSpec, Update};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let spec = SupervisorSpec::builder("app")
//!     .child(ChildSpec::task("flaky", |ctx| async move {
//!         if ctx.generation() == 0 {
//!             return Err("first run fails".into());
//!         }
//!         ctx.cancelled().await;
//!         Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
//!     }))
//!     .build()?;
//! let handle = Supervisor::start(spec)?;
//! let mut events = handle.subscribe().events;
//! // Starting, Ready, Exited (failed), Restarting, Starting, Ready (generation 1).
//! while let Some(Update::Event(e)) = events.next().await {
//!     if e.generation == 1 && matches!(e.kind, EventKind::Ready { .. }) {
//!         break;
//!     }
//! }
//! handle.shutdown().await?;
//! # Ok(())
//! # }
//! ```
//!
//! # Processes
//!
//! No OS process that a supervisor starts outlives the application: a
//! graceful stop sends SIGTERM, then SIGKILL, to the child's whole process
//! group; dropping the runtime kills the group; and on Linux the kernel
//! kills the child when the application dies hard (`kill -9`, `abort`),
//! through `PR_SET_PDEATHSIG`. Processes that a child started itself are
//! not covered in that last case. [`ProcessSpec`] states the contract and
//! its limits. A service stops gracefully on SIGTERM as on Ctrl-C by
//! awaiting [`shutdown_signal`] before [`SupervisorHandle::shutdown`].
//!
//! # Cargo features
//!
//! None is on by default; without them orch-core compiles neither hyper
//! nor tonic.
//!
//! - `http`: `HttpProbe` (Kubernetes' `httpGet` over a pooled hyper-util
//!   client) and served axum children (`ChildSpec::serve_http`, module
//!   `serve`).
//! - `grpc`: `GrpcHealthProbe` (`grpc.health.v1` through tonic-health) and
//!   served tonic children (`ChildSpec::serve_grpc`).
//! - `backoff`: accept the `backoff` crate's schedules as restart backoff.
//! - `schedule`: schedule policies of the autoscaler
//!   (`autoscale::Schedule`, cron windows in a time zone).
//! - `nats`: the autoscaler's NATS JetStream signal
//!   (`autoscale::JetStreamPending`, a durable consumer's pending and
//!   ack pending counts, on `async-nats`).
//!
//! # Autoscaling
//!
//! The [`autoscale`] module decides how many replicas a [`Scaler`] (a
//! supervisor's [`ReplicaGroup`]) should have, with HPA's target tracking,
//! KEDA's queue backlog and scale to zero, and schedule windows, under
//! HPA's stabilization windows and rate policies; every evaluation is a
//! [`autoscale::Decision`] with its reason.
// The one exception is the `pre_exec` that arms the parent-death signal
// (child/spawner.rs), allowed there with its SAFETY argument.
#![deny(unsafe_code)]
#![deny(missing_docs)]

pub mod autoscale;
pub mod child;
#[cfg(feature = "config")]
pub mod config;
pub mod event;
pub mod probe;
mod scaler;
#[cfg(any(feature = "http", feature = "grpc"))]
pub mod serve;
mod signal;
pub mod spec;
pub mod supervisor;

pub use child::{ChildContext, OutputMode, ProcessSpec};
pub use event::{
    EventKind, EventStream, ExitReason, InstanceId, InstanceInfo, InstanceState, LifecycleEvent,
    Subscription, Update,
};
#[cfg(feature = "grpc")]
pub use probe::GrpcHealthProbe;
#[cfg(feature = "http")]
pub use probe::{HttpProbe, HttpProbeBuilder};
pub use probe::{Probe, ProbeKind, ProbeOutcome, ProbeSpec, ProbeTarget, ProbeTiming, TcpProbe, probe_fn};
pub use scaler::{ScaleError, ScaleStatus, Scaler};
pub use signal::{ShutdownSignal, shutdown_signal};
#[cfg(feature = "backoff")]
pub use spec::LegacyBackoff;
pub use spec::{
    BackoffPolicy, Backon, ChildPolicy, ChildSpec, RestartBackoff, RestartIntensity, RestartType, SpecError,
    Strategy, SupervisorBuilder, SupervisorPolicy, SupervisorSpec,
};
pub use supervisor::{
    ChildInfo, CommandError, ReplicaGroup, StartError, Supervisor, SupervisorError, SupervisorHandle,
};

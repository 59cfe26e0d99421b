//! Specs: the validated, mostly plain-data description of a supervisor tree.
//!
//! Everything a user configures lives here; runtime state lives in
//! [`supervisor`](crate::supervisor). Specs are checked as a whole when built,
//! so a bad value is reported with its path before anything starts.

mod backoff;
mod child;
mod error;
mod intensity;
mod supervisor;

pub(crate) use backoff::DelaySchedule;
#[cfg(feature = "backoff")]
pub use backoff::LegacyBackoff;
pub use backoff::{BackoffPolicy, Backon, RestartBackoff};
pub(crate) use child::{ChildKind, ReadyGate};
pub use child::{ChildPolicy, ChildSpec, RestartType};
pub use error::SpecError;
pub(crate) use intensity::IntensityTracker;
pub use intensity::RestartIntensity;
pub use supervisor::{Strategy, SupervisorBuilder, SupervisorPolicy, SupervisorSpec};

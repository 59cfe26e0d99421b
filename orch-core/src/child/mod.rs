//! What a child is and how one incarnation of it runs: async tasks,
//! OS processes, and nested supervisors, each turned into one future that
//! ends with an [`ExitReason`](crate::ExitReason).

mod context;
mod process;
mod spawner;
mod task;

pub use context::ChildContext;
pub(crate) use context::{ChildReport, InstanceShared};
pub(crate) use process::run_process;
pub use process::{OutputMode, ProcessSpec};
pub(crate) use task::{TaskFactory, factory as task_factory, run_task};

//! Process children: an OS process per incarnation, in its own process
//! group so that stopping it stops everything it started, and bound to its
//! host so that it does not outlive the application (see [`ProcessSpec`]).
//!
//! Crash = non-zero exit status or a signal. Stop = SIGTERM to the group;
//! if the process has not exited when the grace period ends, the
//! supervisor drops this future and the group gets SIGKILL.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

use super::{ChildContext, spawner};
use crate::{ExitReason, SpecError};

/// Where a process child's stdout and stderr go.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutputMode {
    /// Shared with this application (the default, as with `docker run`).
    #[default]
    Inherit,
    /// Discarded.
    Null,
}

/// The command a process child runs.
///
/// Each incarnation runs in a process group of its own. What ends it:
///
/// - **A stop by the supervisor** (shutdown, a failed liveness probe, a
///   sibling's restart, a scale-down): SIGTERM to the whole group, then
///   SIGKILL to the group once the child's grace period is over. Whatever
///   the process started in its group goes with it.
/// - **A crash**: the process exited on its own; SIGKILL to what it left in
///   its group.
/// - **The tokio runtime dropped without a shutdown**: the instance's
///   future is dropped, which sends SIGKILL to the group (and to the process
///   itself, tokio's `kill_on_drop`).
/// - **The application dies hard** (`kill -9`, `abort`, `panic = "abort"`,
///   `std::process::exit` without a shutdown, a crash): on Linux the
///   process was started with `PR_SET_PDEATHSIG` = SIGKILL, so the kernel
///   kills it as the application dies. The signal is armed between fork and
///   exec, from a thread that lives as long as the application (the kernel
///   ties the signal to the forking thread), and a process whose host died
///   before the signal was armed exits before exec.
///
/// Limits of the hard-death case: the death signal reaches the process
/// orch started, not the processes it started itself (they are in its
/// group, which nobody is left to signal, and are handed to init). Run
/// programs with `exec` (`sh -c "exec server"`) rather than under a shell
/// that stays, or have the program stop its own children when its parent
/// goes. Linux clears the signal when the process executes a set-user-ID,
/// set-group-ID or file-capability binary. Other Unix systems have no
/// death signal: there only the supervisor's stops and the drop guard
/// apply.
///
/// ```
/// use orch_core::ProcessSpec;
///
/// let spec = ProcessSpec::new("sh").arg("-c").arg("exec sleep 60").env("RUST_LOG", "info");
/// let json = serde_json::to_string(&spec).unwrap();
/// assert!(json.contains("sleep 60"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProcessSpec {
    /// The program, looked up in `PATH` if it has no slash.
    pub program: String,
    /// Its arguments.
    #[serde(default)]
    pub args: Vec<String>,
    /// Extra environment variables (the rest is inherited).
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Working directory; the application's if unset.
    #[serde(default)]
    pub current_dir: Option<PathBuf>,
    /// Where stdout and stderr go.
    #[serde(default)]
    pub output: OutputMode,
}

impl ProcessSpec {
    /// Runs `program` with no arguments.
    pub fn new(program: impl Into<String>) -> Self {
        Self {
            program: program.into(),
            args: Vec::new(),
            env: BTreeMap::new(),
            current_dir: None,
            output: OutputMode::Inherit,
        }
    }

    /// Appends an argument.
    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Sets an environment variable.
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.insert(key.into(), value.into());
        self
    }

    /// Sets the working directory.
    pub fn current_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.current_dir = Some(dir.into());
        self
    }

    /// Sets where output goes.
    pub fn output(mut self, mode: OutputMode) -> Self {
        self.output = mode;
        self
    }

    pub(crate) fn validate(&self) -> Result<(), SpecError> {
        if self.program.is_empty() {
            return Err(SpecError::field("process.program", "must not be empty"));
        }
        Ok(())
    }
}

/// Sends SIGKILL to a process group when dropped: whether this future ends
/// by itself or is dropped by the supervisor after the grace period, nothing
/// the child started outlives it.
struct GroupGuard {
    pgid: Option<Pid>,
}

impl GroupGuard {
    fn signal(&self, signal: Signal) {
        if let Some(pgid) = self.pgid {
            // ESRCH (group already gone) is the expected, harmless case.
            let _ = killpg(pgid, signal);
        }
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        self.signal(Signal::SIGKILL);
    }
}

/// Runs one incarnation to its end.
pub(crate) async fn run_process(spec: Arc<ProcessSpec>, ctx: ChildContext) -> ExitReason {
    let mut cmd = tokio::process::Command::new(&spec.program);
    cmd.args(&spec.args)
        .envs(&spec.env)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .process_group(0);
    if let Some(dir) = &spec.current_dir {
        cmd.current_dir(dir);
    }
    if spec.output == OutputMode::Null {
        cmd.stdout(Stdio::null()).stderr(Stdio::null());
    }
    let mut child = match spawner::spawn(cmd).await {
        Ok(child) => child,
        Err(e) => return ExitReason::SpawnFailed(format!("{}: {e}", spec.program).into()),
    };
    // With process_group(0) the group id is the child's pid.
    let group = GroupGuard {
        pgid: child
            .id()
            .and_then(|id| i32::try_from(id).ok())
            .map(Pid::from_raw),
    };
    let status = tokio::select! {
        status = child.wait() => status,
        () = ctx.cancelled() => {
            tracing::debug!(instance = %ctx.id(), "sending SIGTERM to process group");
            group.signal(Signal::SIGTERM);
            child.wait().await
        }
    };
    drop(group);
    if ctx.is_cancelled() {
        return ExitReason::Stopped;
    }
    match status {
        Err(e) => ExitReason::Failed(format!("waiting for {}: {e}", spec.program).into()),
        Ok(status) => {
            use std::os::unix::process::ExitStatusExt;
            match (status.code(), status.signal()) {
                (Some(0), _) => ExitReason::Normal,
                (Some(code), _) => ExitReason::ExitCode(code),
                (None, Some(sig)) => ExitReason::Signal(sig),
                (None, None) => ExitReason::Failed("unknown exit status".into()),
            }
        }
    }
}

//! Waiting for the operating system to ask the application to stop.
//!
//! A service under a process manager (Kubernetes, systemd, Docker, a test
//! harness) is asked to stop with SIGTERM, and by a person with Ctrl-C
//! (SIGINT). A 12-factor service treats both the same way: it shuts its
//! supervisor tree down gracefully, then exits. Left to their default
//! action, both signals end the application at once, skipping every grace
//! period; [`shutdown_signal`] replaces that action with an event to await.

use std::fmt;
use std::io;

use tokio::signal::unix::{SignalKind, signal};

/// The signal that asked the application to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ShutdownSignal {
    /// SIGINT: Ctrl-C in a terminal.
    Interrupt,
    /// SIGTERM: the stop request of Kubernetes, systemd, Docker and `kill`.
    Terminate,
}

impl ShutdownSignal {
    /// The signal's conventional name, `"SIGINT"` or `"SIGTERM"`.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Interrupt => "SIGINT",
            Self::Terminate => "SIGTERM",
        }
    }
}

impl fmt::Display for ShutdownSignal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Resolves when the application receives SIGINT or SIGTERM.
///
/// This is what a service awaits before
/// [`SupervisorHandle::shutdown`](crate::SupervisorHandle::shutdown), racing
/// it against [`SupervisorHandle::wait`](crate::SupervisorHandle::wait) so
/// that a tree that gives up on its own also ends the service:
///
/// ```no_run
/// use orch_core::{ChildSpec, ProcessSpec, Supervisor, SupervisorSpec};
///
/// #[tokio::main]
/// async fn main() -> Result<(), Box<dyn std::error::Error>> {
///     let spec = SupervisorSpec::builder("app")
///         .child(ChildSpec::process("worker", ProcessSpec::new("sleep").arg("3600")))
///         .build()?;
///     let handle = Supervisor::start(spec)?;
///     tokio::select! {
///         signal = orch_core::shutdown_signal() => {
///             eprintln!("{}: stopping", signal?);
///             handle.shutdown().await?;
///         }
///         outcome = handle.wait() => outcome?,
///     }
///     Ok(())
/// }
/// ```
///
/// # Fine print
///
/// - The handlers are installed when the future is first polled, and stay
///   installed for the life of the process (tokio never uninstalls them).
///   From then on neither signal ends the application by itself; before
///   that, either one ends it at once. Poll it early: a `select!` in `main`
///   right after starting the tree does.
/// - A signal counts only for a future that was already polled when it
///   arrived. Create the future once (outside any loop) and keep it; a new
///   one created after a signal does not see that signal.
/// - After the first signal, a second one is not acted on by anyone unless
///   you await this again, for example to abort a shutdown that takes too
///   long.
///
/// # Errors
///
/// Fails if the handlers cannot be installed: outside a tokio runtime, or
/// in one built without its IO driver (`enable_io`/`enable_all`). Also fails
/// if the runtime's signal driver stops before a signal arrives (the
/// runtime is shutting down).
pub async fn shutdown_signal() -> io::Result<ShutdownSignal> {
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    tokio::select! {
        Some(()) = interrupt.recv() => Ok(ShutdownSignal::Interrupt),
        Some(()) = terminate.recv() => Ok(ShutdownSignal::Terminate),
        else => Err(io::Error::other("the runtime's signal driver stopped")),
    }
}

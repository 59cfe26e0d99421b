//! Starting process children so that none outlives its host.
//!
//! On Linux every process child is started with `PR_SET_PDEATHSIG` set to
//! SIGKILL before `exec`, so the kernel kills it when the application dies,
//! however it dies (`kill -9`, `abort`, a crash, `std::process::exit`).
//!
//! The kernel ties that signal to the *thread* that forked the child, not
//! to the process: if the forking thread exits while the application runs
//! on, the child is killed. Tokio gives no thread that guarantee (a
//! multi-thread worker that enters `block_in_place` hands its scheduler on
//! and may retire as an idle blocking thread; a current-thread runtime can
//! be moved to another thread and its first thread end). So every fork
//! happens on one dedicated thread, `orch-process-spawner`, started at the
//! first spawn and never stopped: it lives exactly as long as the process.
//! It sleeps on a channel between spawns and costs one idle thread.
//!
//! Dropping a runtime without shutting its supervisors down does not end
//! the application, so no death signal fires: there `kill_on_drop` and the
//! process group guard in [`run_process`](super::run_process) kill the
//! children as their futures are dropped.

use std::io;
use std::panic::AssertUnwindSafe;
use std::sync::{Mutex, PoisonError, mpsc};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::process::{Child, Command};
use tokio::sync::oneshot;

/// One spawn for the spawner thread: the command, the runtime whose
/// reactor will watch the child, and where the outcome goes.
struct Request {
    command: Command,
    runtime: tokio::runtime::Handle,
    reply: oneshot::Sender<io::Result<Child>>,
}

/// The spawner thread's mailbox; `None` until the first spawn (and again
/// should the thread ever be gone, so that the next spawn starts another).
static SPAWNER: Mutex<Option<mpsc::Sender<Request>>> = Mutex::new(None);

/// Spawns `command` on the spawner thread with the death signal armed, and
/// registers the child with the current tokio runtime.
pub(super) async fn spawn(mut command: Command) -> io::Result<Child> {
    die_with_host(&mut command);
    let runtime = tokio::runtime::Handle::try_current().map_err(io::Error::other)?;
    let (reply, outcome) = oneshot::channel();
    let request = Request {
        command,
        runtime,
        reply,
    };
    let mailbox = mailbox()?;
    if mailbox.send(request).is_err() {
        // The thread is gone (it cannot panic, see `serve`; this is
        // defensive): forget it so the next spawn starts a new one.
        *SPAWNER.lock().unwrap_or_else(PoisonError::into_inner) = None;
        return Err(spawner_gone());
    }
    outcome.await.map_err(|_| spawner_gone())?
}

fn spawner_gone() -> io::Error {
    io::Error::other("the orch-process-spawner thread is gone")
}

/// The spawner thread's mailbox, starting the thread on first use.
fn mailbox() -> io::Result<mpsc::Sender<Request>> {
    let mut slot = SPAWNER.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(tx) = slot.as_ref() {
        return Ok(tx.clone());
    }
    let (tx, rx) = mpsc::channel();
    std::thread::Builder::new()
        .name("orch-process-spawner".into())
        .spawn(move || serve(rx))?;
    *slot = Some(tx.clone());
    Ok(tx)
}

/// The spawner thread's loop. The static keeps a sender alive, so it never
/// returns, and it must not unwind either: its exit would fire the death
/// signal of every child it started.
fn serve(requests: mpsc::Receiver<Request>) {
    for Request {
        mut command,
        runtime,
        reply,
    } in requests
    {
        let _entered = runtime.enter();
        let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| command.spawn()))
            .unwrap_or_else(|_| Err(io::Error::other("spawning the process panicked")));
        if let Err(Ok(child)) = reply.send(outcome) {
            // The caller was dropped while we forked (its supervisor gave up
            // on it, or its runtime went away): the child is nobody's, so it
            // goes with everything it may already have started.
            if let Some(pgid) = child.id().and_then(|id| i32::try_from(id).ok()) {
                let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
            }
            drop(child); // kill_on_drop: SIGKILL, then reaped by tokio
        }
    }
}

/// Arms `PR_SET_PDEATHSIG` in the child, between fork and exec.
///
/// SIGKILL rather than SIGTERM: once the host is dead nobody enforces a
/// grace period, so a child that ignores or traps SIGTERM (a shell with
/// `trap '' TERM`, a server stuck in its drain) would live on forever.
/// Graceful stops go through the supervisor, which sends SIGTERM first.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn die_with_host(command: &mut Command) {
    use nix::errno::Errno;
    use nix::sys::prctl;
    use nix::sys::signal::raise;
    use nix::unistd::{getpid, getppid};

    let host = getpid();
    let arm = move || -> io::Result<()> {
        prctl::set_pdeathsig(Signal::SIGKILL)?;
        // The host may have died between fork and prctl, too early for the
        // signal: then the child was already handed to init (or a
        // subreaper) and its parent is no longer the host. Deliver what
        // the death signal would have; should that return, the error makes
        // std end the child with `_exit` instead of exec'ing.
        if getppid() != host {
            let _ = raise(Signal::SIGKILL);
            return Err(Errno::ESRCH.into());
        }
        Ok(())
    };
    // SAFETY: `pre_exec` runs the closure in the forked child, where only
    // async-signal-safe operations are sound (another thread of the host
    // may have held the allocator's lock at fork). The closure calls only
    // prctl(2), getppid(2) and raise(3), async-signal-safe calls made
    // through nix without allocating, and builds its errors with
    // `io::Error::from_raw_os_error` (nix's `From<Errno>`), which does not
    // allocate either; it captures one `Pid` by copy and touches no other
    // state, lock or buffer.
    #[allow(unsafe_code)]
    unsafe {
        command.pre_exec(arm);
    }
}

/// No parent-death signal outside Linux: children there rely on the
/// supervisor's stops, `kill_on_drop` and the group guard only.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn die_with_host(_command: &mut Command) {}

//! No OS process outlives the application that supervises it.
//!
//! A host process runs a supervisor tree with process children and writes
//! their pids to a file; the test then ends the host in each way an
//! application ends and checks that none of those pids is still running.
//! The host is this test binary run again: the test [`host`] does the
//! host's work when [`MODE_ENV`] is set and returns at once otherwise.
//!
//! The tree: `worker` (`exec sleep`), `shell` (a shell that stays, with a
//! background `sleep` in its group: a grandchild), and a nested supervisor
//! `pool` with a replica group of two `exec sleep`s.
//!
//! Covered: SIGTERM and SIGINT stop the tree gracefully and the host exits
//! 0; SIGKILL and `std::process::exit` without a shutdown kill the
//! children through the parent-death signal; a runtime dropped without a
//! shutdown kills the children and their groups; a child survives the exit
//! of the thread that polled its spawn (the death signal belongs to the
//! forking thread). Grandchildren are not covered when the host dies hard
//! (documented on `ProcessSpec`); those tests remove them afterwards.
//!
//! The kernel delivers signals asynchronously, so disappearances are
//! polled with short sleeps up to [`WAIT`]: the waits are on the OS, and
//! nothing asserts how long anything took.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::pin;
use std::process::{ExitStatus, Stdio};
use std::task::Poll;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use orch_core::{EventKind, ShutdownSignal, Supervisor};
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::ChildStdout;

mod process_tree;
mod support;

use process_tree::{
    Pids, TempPath, WAIT, assert_all_gone, is_running, kill_leftovers, poll_os, sh, tree, wait_os,
};

/// Selects the host's behaviour once its tree runs: `signal` (wait for
/// SIGINT/SIGTERM, then shut down) or `exit` (exit without a shutdown).
const MODE_ENV: &str = "ORCH_CORE_PROCESS_HOST_MODE";
/// The file the host's children append their pids to.
const PIDS_ENV: &str = "ORCH_CORE_PROCESS_HOST_PIDS";

// ===== the host =====

/// The host process (a no-op in a normal test run, see the module doc).
#[test]
fn host() {
    let (Ok(mode), Some(pids)) = (std::env::var(MODE_ENV), std::env::var_os(PIDS_ENV)) else {
        return;
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async move {
        let pids = PathBuf::from(pids);
        let handle = Supervisor::start(tree(&pids)).expect("inside a runtime");
        let mut stop = pin!(orch_core::shutdown_signal());
        // The first poll installs the handlers: from here on SIGTERM and
        // SIGINT no longer end this process by their default action.
        std::future::poll_fn(|cx| {
            assert!(stop.as_mut().poll(cx).is_pending(), "no signal yet");
            Poll::Ready(())
        })
        .await;
        wait_os("the tree's pids", || Pids::read(&pids)).await;
        println!("host: ready");
        if mode == "exit" {
            // Once the test has seen the tree run (it closes our stdin),
            // exit like a `main` that gives up without a shutdown: no
            // destructor runs, the runtime is never dropped.
            let _ = std::io::stdin().read_line(&mut String::new());
            std::process::exit(3);
        }
        let signal = stop.await.expect("signal handlers installed");
        println!("host: stopping on {signal}");
        tokio::time::timeout(WAIT, handle.shutdown())
            .await
            .expect("shutdown within WAIT")
            .expect("clean shutdown");
        println!("host: stopped");
    });
}

/// A running host and the pids of its tree.
struct Host {
    process: tokio::process::Child,
    stdout: Lines<BufReader<ChildStdout>>,
    pids: Pids,
    _file: TempPath,
}

impl Host {
    /// Starts the host in `mode` and waits until its whole tree runs.
    async fn start(mode: &str, name: &str) -> Host {
        let file = TempPath::new(name);
        let exe = std::env::current_exe().expect("the test binary's path");
        let mut process = tokio::process::Command::new(exe)
            .args(["host", "--exact", "--nocapture", "--test-threads=1"])
            .env(MODE_ENV, mode)
            .env(PIDS_ENV, &file.0)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("the host starts");
        let stdout = process.stdout.take().expect("piped stdout");
        let mut host = Host {
            process,
            stdout: BufReader::new(stdout).lines(),
            pids: Pids {
                children: Vec::new(),
                grandchildren: Vec::new(),
            },
            _file: file,
        };
        host.expect_line("host: ready").await;
        host.pids = Pids::read(&host._file.0).expect("the host is ready once all pids are written");
        assert_eq!(host.pids.children.len(), 4, "{:?}", host.pids);
        for pid in host.pids.all() {
            assert!(is_running(pid), "pid {pid} runs while the host does");
        }
        host
    }

    /// Reads the host's stdout up to a line that ends with `line` (the
    /// first may follow libtest's `test host ... `).
    async fn expect_line(&mut self, line: &str) {
        let found = tokio::time::timeout(WAIT, async {
            while let Some(l) = self.stdout.next_line().await.expect("readable stdout") {
                if l.ends_with(line) {
                    return true;
                }
            }
            false
        })
        .await
        .unwrap_or_else(|_| panic!("no line {line:?} from the host within {WAIT:?}"));
        assert!(found, "the host ended without printing {line:?}");
    }

    fn signal(&self, signal: Signal) {
        let pid = self.process.id().expect("the host runs");
        kill(
            Pid::from_raw(i32::try_from(pid).expect("pids fit in i32")),
            signal,
        )
        .expect("signal sent");
    }

    async fn exit_status(&mut self) -> ExitStatus {
        tokio::time::timeout(WAIT, self.process.wait())
            .await
            .expect("the host exits within WAIT")
            .expect("the host's status")
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        // A failed test must not leave its tree behind (the host itself
        // goes by `kill_on_drop`, its children with it; not grandchildren).
        if std::thread::panicking() {
            kill_leftovers(&self.pids.all().filter(|&pid| is_running(pid)).collect::<Vec<_>>());
        }
    }
}

// ===== graceful stops =====

async fn stops_gracefully_on(signal: Signal, name: ShutdownSignal) {
    let mut host = Host::start("signal", &format!("graceful-{name}")).await;
    host.signal(signal);
    host.expect_line(&format!("host: stopping on {name}")).await;
    host.expect_line("host: stopped").await;
    let status = host.exit_status().await;
    assert!(status.success(), "the host exits 0: {status:?}");
    // Grandchildren included: the graceful stop signals whole groups.
    assert_all_gone(host.pids.all());
}

#[tokio::test]
async fn sigterm_stops_the_tree_and_the_host_exits_0() {
    stops_gracefully_on(Signal::SIGTERM, ShutdownSignal::Terminate).await;
}

#[tokio::test]
async fn sigint_stops_the_tree_and_the_host_exits_0() {
    stops_gracefully_on(Signal::SIGINT, ShutdownSignal::Interrupt).await;
}

// ===== hard deaths =====

#[tokio::test]
async fn sigkill_of_the_host_kills_its_process_children() {
    let mut host = Host::start("signal", "sigkill").await;
    host.signal(Signal::SIGKILL);
    let status = host.exit_status().await;
    assert_eq!(std::os::unix::process::ExitStatusExt::signal(&status), Some(9));
    assert_all_gone(host.pids.children.iter().copied());
    kill_leftovers(&host.pids.grandchildren);
}

#[tokio::test]
async fn host_exiting_without_shutdown_kills_its_process_children() {
    let mut host = Host::start("exit", "exit").await;
    drop(host.process.stdin.take());
    let status = host.exit_status().await;
    assert_eq!(status.code(), Some(3), "the host's own exit");
    assert_all_gone(host.pids.children.iter().copied());
    kill_leftovers(&host.pids.grandchildren);
}

// ===== in this process =====

/// Starts the tree on `runtime`, then drops the runtime without a shutdown.
fn drop_runtime_under_tree(runtime: tokio::runtime::Runtime, name: &str) {
    let file = TempPath::new(name);
    let pids = runtime.block_on(async {
        let _handle = Supervisor::start(tree(&file.0)).expect("inside a runtime");
        wait_os("the tree's pids", || Pids::read(&file.0)).await
    });
    drop(runtime);
    // The application lives on, so no death signal: the dropped futures
    // kill their process groups, grandchildren included.
    assert_all_gone(pids.all());
}

#[test]
fn current_thread_runtime_dropped_without_shutdown_kills_the_children() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    drop_runtime_under_tree(runtime, "drop-current");
}

#[test]
fn multi_thread_runtime_dropped_without_shutdown_kills_the_children() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    drop_runtime_under_tree(runtime, "drop-multi");
}

/// The kernel's thread id of the calling thread.
fn thread_id() -> u32 {
    let link = std::fs::read_link("/proc/thread-self").expect("/proc/thread-self");
    let tid = link
        .file_name()
        .and_then(|n| n.to_str())
        .expect("`<pid>/task/<tid>`");
    tid.parse().expect("a thread id")
}

#[test]
fn a_child_outlives_the_thread_that_polled_its_spawn() {
    let pid_file = TempPath::new("thread-pid");
    let out = TempPath::new("thread-out");
    let script = format!(
        r#"trap 'echo term > "{out}"; exit 0' TERM; echo $$ > "{pid}"; while true; do sleep 0.05; done"#,
        out = out.0.display(),
        pid = pid_file.0.display(),
    );
    // A current-thread runtime polls everything on the thread that runs
    // `block_on`: here a thread that then ends, while the runtime (moved
    // out) and the application go on.
    let (runtime, handle, mut events, pid, tid) = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let (handle, events, pid) = runtime.block_on(async {
            let (handle, events) = support::start(sh("svc", script));
            let pid: u32 = wait_os("the child's pid", || {
                let s = std::fs::read_to_string(&pid_file.0).ok()?;
                s.strip_suffix('\n')?.parse().ok()
            })
            .await;
            (handle, events, pid)
        });
        (runtime, handle, events, pid, thread_id())
    })
    .join()
    .expect("the first thread ends cleanly");
    // The thread's task entry goes only after the kernel has handled its
    // children (a death signal is sent before).
    poll_os("the first thread to be gone", || {
        (!Path::new(&format!("/proc/self/task/{tid}")).exists()).then_some(())
    });
    runtime.block_on(async {
        tokio::time::timeout(WAIT, handle.shutdown())
            .await
            .expect("shutdown within WAIT")
            .expect("clean shutdown");
        let (before, stopped) =
            support::wait_for(&mut events, WAIT, |e| matches!(e.kind, EventKind::Stopped { .. })).await;
        assert!(!before.iter().any(support::is_exit), "no crash: {before:?}");
        assert_eq!(stopped.kind, EventKind::Stopped { forced: false });
    });
    let said = std::fs::read_to_string(&out.0).expect("the trap ran");
    assert_eq!(said, "term\n", "the child lived to get the supervisor's SIGTERM");
    assert_all_gone([pid]);
}

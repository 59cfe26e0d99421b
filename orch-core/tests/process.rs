//! Process children: real OS processes run with `sh -c`, supervised on real
//! time (a paused clock would let grace periods elapse while the OS is
//! still working).
//!
//! Covered: how exits map to `ExitReason` (status 0, non-zero status,
//! signal, spawn failure), what the restart type makes of them, and how
//! shutdown stops a process group (SIGTERM first, SIGKILL once the grace
//! period is over, at once with a zero grace). Also: a crash or a failed
//! liveness probe leaves nothing of the process group running.
//!
//! Every wait is bounded by [`WAIT`] so that a bug fails a test instead of
//! hanging it; nothing asserts how long anything took.

use std::path::{Path, PathBuf};
use std::time::Duration;

use orch_core::{
    ChildSpec, EventKind, EventStream, ExitReason, LifecycleEvent, OutputMode, ProbeOutcome, ProbeSpec,
    ProcessSpec, RestartType, SupervisorHandle, probe_fn,
};

/// Upper bound for anything a test waits for.
const WAIT: Duration = Duration::from_secs(10);

mod support;
use support::{is_exit, start};

// ===== helpers =====

/// A path in the temp dir unique to this test process and `name`; removed
/// when dropped.
struct TempPath(PathBuf);

impl TempPath {
    fn new(name: &str) -> Self {
        let path = std::env::temp_dir().join(format!("orch-core-process-{}-{name}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        Self(path)
    }

    fn as_str(&self) -> &str {
        self.0.to_str().expect("temp paths are UTF-8")
    }

    /// The file's content once it ends with a newline (the writer is done).
    async fn read_line(&self) -> String {
        let path = self.0.clone();
        poll(&format!("a line in {}", self.as_str()), move || {
            std::fs::read_to_string(&path)
                .ok()
                .filter(|s| s.ends_with('\n'))
                .map(|s| s.trim_end().to_owned())
        })
        .await
    }
}

impl TempPath {
    /// Line `n` (from 0) of the file, once it is complete.
    async fn read_line_at(&self, n: usize) -> String {
        let path = self.0.clone();
        poll(&format!("line {n} of {}", self.as_str()), move || {
            let content = std::fs::read_to_string(&path).ok()?;
            let line = content.split_inclusive('\n').nth(n)?;
            line.strip_suffix('\n').map(str::to_owned)
        })
        .await
    }
}

impl Drop for TempPath {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Polls `check` every 10 ms until it returns `Some`, for at most [`WAIT`].
async fn poll<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "gave up waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A `sh -c script` process child with its output discarded.
fn shell(id: &str, script: &str) -> ChildSpec {
    ChildSpec::process(
        id,
        ProcessSpec::new("sh")
            .arg("-c")
            .arg(script)
            .output(OutputMode::Null),
    )
}

async fn next_event(events: &mut EventStream) -> LifecycleEvent {
    support::next_event(events, WAIT).await
}

async fn wait_for(
    events: &mut EventStream,
    pred: impl FnMut(&LifecycleEvent) -> bool,
) -> (Vec<LifecycleEvent>, LifecycleEvent) {
    support::wait_for(events, WAIT, pred).await
}

fn exited(reason: ExitReason) -> EventKind {
    EventKind::Exited { reason }
}

/// Shuts the tree down within [`WAIT`].
async fn shutdown(handle: &SupervisorHandle) {
    tokio::time::timeout(WAIT, handle.shutdown())
        .await
        .expect("shutdown finishes in time")
        .expect("clean shutdown");
}

/// The state letter and process group of a process, from `/proc/{pid}/stat`
/// (`None` once the pid is gone).
fn proc_stat(pid: u32) -> Option<(String, u32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "pid (comm) state ppid pgrp ...": the command name may hold spaces
    // and parentheses, so split after the last ')'.
    let (_, rest) = stat.rsplit_once(')')?;
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.to_owned();
    let pgrp = fields.nth(1)?.parse().ok()?;
    Some((state, pgrp))
}

/// Whether `pid` is a live process (not gone, not a zombie).
fn is_running(pid: u32) -> bool {
    proc_stat(pid).is_some_and(|(state, _)| state != "Z" && state != "X")
}

/// Live (non-zombie) processes of the process group `pgid`.
fn live_group_members(pgid: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| {
            proc_stat(pid).is_some_and(|(state, pgrp)| pgrp == pgid && state != "Z" && state != "X")
        })
        .collect()
}

/// Waits until the process `pid` and every live process of its group (the
/// child is its group's leader) are gone.
async fn assert_gone(pid: u32) {
    poll(&format!("pid {pid} to disappear"), || {
        (!Path::new(&format!("/proc/{pid}")).exists()).then_some(())
    })
    .await;
    poll(&format!("process group {pid} to be empty"), || {
        live_group_members(pid).is_empty().then_some(())
    })
    .await;
}

// ===== exits =====

#[tokio::test]
async fn transient_child_exiting_zero_stops_without_restart() {
    let (handle, mut events) = start(shell("job", "exit 0").restart(RestartType::Transient));

    let starting = next_event(&mut events).await;
    assert_eq!(starting.kind, EventKind::Starting);
    let (_, exit) = wait_for(&mut events, is_exit).await;
    assert_eq!(exit.kind, exited(ExitReason::Normal));
    assert_eq!(exit.generation, 0);
    let stopped = next_event(&mut events).await;
    assert_eq!(
        stopped.kind,
        EventKind::Stopped { forced: false },
        "removed, not restarted"
    );

    // The decision is final: nothing left to run or restart.
    let children = handle.children().await.expect("supervisor runs");
    assert_eq!((children[0].desired, children[0].instances), (0, 0));
    assert!(handle.instances().is_empty());

    shutdown(&handle).await;
}

#[tokio::test]
async fn non_zero_exit_is_a_crash_and_restarts() {
    // The first incarnation exits 3; later ones serve until stopped.
    let marker = TempPath::new("exit3-marker");
    let script = format!(
        r#"if [ -e "{m}" ]; then exec sleep 60; else echo ran > "{m}"; exit 3; fi"#,
        m = marker.as_str()
    );
    let (handle, mut events) = start(shell("job", &script));

    let (_, exit) = wait_for(&mut events, is_exit).await;
    assert_eq!(exit.kind, exited(ExitReason::ExitCode(3)));
    assert_eq!(exit.generation, 0);
    let restarting = next_event(&mut events).await;
    assert!(
        matches!(restarting.kind, EventKind::Restarting { attempt: 1, .. }),
        "{restarting:?}"
    );
    let again = next_event(&mut events).await;
    assert_eq!(again.kind, EventKind::Starting);
    assert_eq!(again.generation, 1);

    shutdown(&handle).await;
}

#[tokio::test]
async fn transient_child_with_non_zero_exit_is_restarted() {
    let marker = TempPath::new("transient-marker");
    let script = format!(
        r#"if [ -e "{m}" ]; then exec sleep 60; else echo ran > "{m}"; exit 1; fi"#,
        m = marker.as_str()
    );
    let (handle, mut events) = start(shell("job", &script).restart(RestartType::Transient));

    let (_, exit) = wait_for(&mut events, is_exit).await;
    assert_eq!(exit.kind, exited(ExitReason::ExitCode(1)));
    let (_, again) = wait_for(&mut events, |e| e.kind == EventKind::Starting).await;
    assert_eq!(again.generation, 1);

    shutdown(&handle).await;
}

#[tokio::test]
async fn process_killed_by_signal_reports_the_signal() {
    let (handle, mut events) = start(shell("job", "kill -9 $$").restart(RestartType::Temporary));

    let (_, exit) = wait_for(&mut events, is_exit).await;
    assert_eq!(exit.kind, exited(ExitReason::Signal(9)));
    assert!(exit.kind != exited(ExitReason::Normal));
    let stopped = next_event(&mut events).await;
    assert_eq!(
        stopped.kind,
        EventKind::Stopped { forced: false },
        "temporary: not restarted"
    );

    shutdown(&handle).await;
}

#[tokio::test]
async fn nonexistent_program_is_a_spawn_failure() {
    let program = "orch-core-test-no-such-program-7f3a";
    let child = ChildSpec::process("job", ProcessSpec::new(program)).restart(RestartType::Temporary);
    let (handle, mut events) = start(child);

    let (_, exit) = wait_for(&mut events, is_exit).await;
    match &exit.kind {
        EventKind::Exited {
            reason: ExitReason::SpawnFailed(msg),
        } => assert!(msg.contains(program), "the message names the program: {msg}"),
        other => panic!("expected a spawn failure, got {other:?}"),
    }
    assert!(
        ExitReason::SpawnFailed("x".into()).is_abnormal(),
        "a spawn failure is a crash"
    );
    let stopped = next_event(&mut events).await;
    assert_eq!(stopped.kind, EventKind::Stopped { forced: false });

    shutdown(&handle).await;
}

#[tokio::test]
async fn permanent_spawn_failure_is_restarted() {
    let child = ChildSpec::process("job", ProcessSpec::new("orch-core-test-no-such-program-7f3a"));
    let (handle, mut events) = start(child);

    let (_, exit) = wait_for(&mut events, is_exit).await;
    assert!(
        matches!(
            exit.kind,
            EventKind::Exited {
                reason: ExitReason::SpawnFailed(_)
            }
        ),
        "{exit:?}"
    );
    let restarting = next_event(&mut events).await;
    assert!(
        matches!(restarting.kind, EventKind::Restarting { .. }),
        "{restarting:?}"
    );

    // It keeps failing; the tree may give up on its restart intensity by
    // the time we stop it, which is fine here.
    let _ = tokio::time::timeout(WAIT, handle.shutdown())
        .await
        .expect("shutdown finishes in time");
}

// ===== shutdown =====

#[tokio::test]
async fn shutdown_sends_sigterm_and_waits_for_a_clean_exit() {
    let out = TempPath::new("sigterm-out");
    let started = TempPath::new("sigterm-started");
    let script = format!(
        r#"trap 'echo term > "{out}"; exit 0' TERM; echo $$ > "{started}"; while true; do sleep 0.05; done"#,
        out = out.as_str(),
        started = started.as_str(),
    );
    let child = shell("svc", &script).shutdown_grace(Duration::from_secs(30));
    let (handle, mut events) = start(child);

    // Shut down only once the trap is installed.
    let pid: u32 = started
        .read_line()
        .await
        .parse()
        .expect("the script wrote its pid");
    assert!(is_running(pid), "the child runs before shutdown");
    let (stop, ()) = tokio::join!(
        async {
            let (before, stopped) =
                wait_for(&mut events, |e| matches!(e.kind, EventKind::Stopped { .. })).await;
            let kinds: Vec<_> = before.iter().map(|e| &e.kind).collect();
            assert!(kinds.contains(&&EventKind::Stopping), "{kinds:?}");
            assert!(!before.iter().any(is_exit), "a stop is not a crash: {kinds:?}");
            stopped
        },
        shutdown(&handle),
    );
    assert_eq!(
        stop.kind,
        EventKind::Stopped { forced: false },
        "it exited within its grace"
    );
    assert_eq!(
        out.read_line().await,
        "term",
        "the trap ran: the process got SIGTERM"
    );
    assert_gone(pid).await;
}

#[tokio::test]
async fn shutdown_kills_a_process_that_ignores_sigterm() {
    let pid_file = TempPath::new("ignore-term-pid");
    let script = format!(
        r#"trap '' TERM; echo $$ > "{pid}"; while true; do sleep 0.05; done"#,
        pid = pid_file.as_str(),
    );
    let child = shell("stubborn", &script).shutdown_grace(Duration::from_millis(300));
    let (handle, mut events) = start(child);

    let pid: u32 = pid_file
        .read_line()
        .await
        .parse()
        .expect("the script wrote its pid");
    assert!(is_running(pid), "the child runs before shutdown");

    let (stop, ()) = tokio::join!(
        async {
            let (before, stopped) =
                wait_for(&mut events, |e| matches!(e.kind, EventKind::Stopped { .. })).await;
            let kinds: Vec<_> = before.iter().map(|e| &e.kind).collect();
            assert!(kinds.contains(&&EventKind::Stopping), "{kinds:?}");
            stopped
        },
        shutdown(&handle),
    );
    assert_eq!(
        stop.kind,
        EventKind::Stopped { forced: true },
        "killed after its grace"
    );
    assert_gone(pid).await;
}

#[tokio::test]
async fn shutdown_stops_a_process_with_default_sigterm_handling() {
    // `sleep` dies of SIGTERM; the grace (far longer than WAIT) is never
    // needed, so a missing SIGTERM fails the test by timing out.
    let pid_file = TempPath::new("default-term-pid");
    let script = format!(r#"echo $$ > "{pid}"; exec sleep 60"#, pid = pid_file.as_str());
    let child = shell("svc", &script).shutdown_grace(Duration::from_secs(60));
    let (handle, mut events) = start(child);

    let pid: u32 = pid_file
        .read_line()
        .await
        .parse()
        .expect("the script wrote its pid");
    let (stop, ()) = tokio::join!(
        async {
            let (before, stopped) =
                wait_for(&mut events, |e| matches!(e.kind, EventKind::Stopped { .. })).await;
            assert!(!before.iter().any(is_exit), "a stop is not a crash");
            stopped
        },
        shutdown(&handle),
    );
    assert_eq!(stop.kind, EventKind::Stopped { forced: false });
    assert_gone(pid).await;
}

#[tokio::test]
async fn zero_grace_kills_at_once() {
    let pid_file = TempPath::new("zero-grace-pid");
    let script = format!(
        r#"trap '' TERM; echo $$ > "{pid}"; while true; do sleep 0.05; done"#,
        pid = pid_file.as_str(),
    );
    let child = shell("brutal", &script).shutdown_grace(Duration::ZERO);
    let (handle, mut events) = start(child);

    let pid: u32 = pid_file
        .read_line()
        .await
        .parse()
        .expect("the script wrote its pid");
    let (stop, ()) = tokio::join!(
        async {
            wait_for(&mut events, |e| matches!(e.kind, EventKind::Stopped { .. }))
                .await
                .1
        },
        shutdown(&handle),
    );
    assert_eq!(
        stop.kind,
        EventKind::Stopped { forced: true },
        "OTP's brutal_kill"
    );
    assert_gone(pid).await;
}

#[tokio::test]
async fn crash_kills_what_the_process_left_running_in_its_group() {
    // The child starts a background `sleep` (same process group), writes
    // its pid, and crashes; the supervisor must not leave the sleep behind.
    let bg_file = TempPath::new("crash-bg-pid");
    let script = format!(r#"sleep 60 & echo $! > "{bg}"; exit 5"#, bg = bg_file.as_str());
    let (handle, mut events) = start(shell("leaky", &script).restart(RestartType::Temporary));

    let (_, exit) = wait_for(&mut events, is_exit).await;
    assert_eq!(exit.kind, exited(ExitReason::ExitCode(5)));
    let bg: u32 = bg_file
        .read_line()
        .await
        .parse()
        .expect("the script wrote the pid");
    poll(&format!("background pid {bg} to stop"), || {
        (!is_running(bg)).then_some(())
    })
    .await;

    shutdown(&handle).await;
}

#[tokio::test]
async fn failed_liveness_kills_the_process_and_restarts_it() {
    // Liveness fails for generation 0 only; the supervisor must stop that
    // process (SIGTERM to its group) and start generation 1.
    let pid_file = TempPath::new("liveness-pid");
    let script = format!(r#"echo $$ >> "{pid}"; exec sleep 60"#, pid = pid_file.as_str());
    let liveness = ProbeSpec::new(probe_fn(|target| async move {
        if target.generation == 0 {
            ProbeOutcome::Unhealthy
        } else {
            ProbeOutcome::Healthy
        }
    }))
    .period(Duration::from_millis(50))
    .failure_threshold(2);
    let child = shell("svc", &script).liveness(liveness);
    let (handle, mut events) = start(child);

    let (before, exit) = wait_for(&mut events, is_exit).await;
    assert_eq!(exit.kind, exited(ExitReason::LivenessFailed));
    assert_eq!(exit.generation, 0);
    assert!(
        before.iter().any(|e| e.kind == EventKind::Stopping),
        "killed by the supervisor"
    );
    let (_, again) = wait_for(&mut events, |e| e.kind == EventKind::Starting).await;
    assert_eq!(again.generation, 1);

    // The first line of the pid file is generation 0's pid.
    let first = pid_file.read_line_at(0).await;
    let pid: u32 = first.parse().expect("the script wrote its pid");
    assert_gone(pid).await;

    shutdown(&handle).await;
}

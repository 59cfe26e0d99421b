//! The tree the host tests run, the pids it writes, and polling the OS
//! for processes to go.
#![allow(dead_code)] // the host tests use a different subset in each role

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use orch_core::{ChildSpec, OutputMode, ProcessSpec, SupervisorSpec};

/// Upper bound for anything a test waits for.
pub const WAIT: Duration = Duration::from_secs(10);
/// Lines the tree's processes write: four children, one grandchild.
pub const PID_LINES: usize = 5;

pub fn sh(id: &str, script: String) -> ChildSpec {
    ChildSpec::process(
        id,
        ProcessSpec::new("sh")
            .arg("-c")
            .arg(script)
            .output(OutputMode::Null),
    )
}

/// The tree every test runs; each process appends `child PID` or
/// `grandchild PID` to `pids` once it runs.
pub fn tree(pids: &Path) -> SupervisorSpec {
    let f = pids.to_str().expect("temp paths are UTF-8");
    let sleeper = format!(r#"echo "child $$" >> "{f}"; exec sleep 300"#);
    let shell = format!(r#"sleep 300 & echo "grandchild $!" >> "{f}"; echo "child $$" >> "{f}"; wait"#);
    let pool = SupervisorSpec::builder("pool")
        .child(sh("replica", sleeper.clone()).replicas(2))
        .build()
        .expect("valid spec");
    SupervisorSpec::builder("app")
        .child(sh("worker", sleeper))
        .child(sh("shell", shell))
        .child(ChildSpec::supervisor(pool))
        .build()
        .expect("valid spec")
}

/// Pids read back from the file the tree writes.
#[derive(Debug)]
pub struct Pids {
    pub children: Vec<u32>,
    pub grandchildren: Vec<u32>,
}

impl Pids {
    /// The pids, once all [`PID_LINES`] lines are complete.
    pub fn read(path: &Path) -> Option<Pids> {
        let content = std::fs::read_to_string(path).ok()?;
        let lines: Vec<&str> = content
            .split_inclusive('\n')
            .filter(|l| l.ends_with('\n'))
            .collect();
        if lines.len() < PID_LINES {
            return None;
        }
        let mut pids = Pids {
            children: Vec::new(),
            grandchildren: Vec::new(),
        };
        for line in lines {
            let (kind, pid) = line.trim_end().split_once(' ').expect("`kind pid` lines");
            let pid = pid.parse().expect("a pid");
            match kind {
                "child" => pids.children.push(pid),
                "grandchild" => pids.grandchildren.push(pid),
                other => panic!("unexpected line kind {other:?}"),
            }
        }
        Some(pids)
    }

    pub fn all(&self) -> impl Iterator<Item = u32> + '_ {
        self.children.iter().chain(&self.grandchildren).copied()
    }
}

/// A path in the temp dir unique to this test process and `name`; removed
/// when dropped.
pub struct TempPath(pub PathBuf);

impl TempPath {
    pub fn new(name: &str) -> Self {
        let path = std::env::temp_dir().join(format!("orch-core-host-{}-{name}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        Self(path)
    }
}

impl Drop for TempPath {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

// ===== polling the OS =====

/// Calls `check` every 10 ms until it returns `Some`, for at most [`WAIT`].
pub fn poll_os<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(Instant::now() < deadline, "gave up waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// [`poll_os`] for async code, sleeping on the runtime's timer.
pub async fn wait_os<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
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

/// Whether `pid` is a live process (not gone, not a zombie).
pub fn is_running(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // "pid (comm) state ...": comm may hold spaces, so split after the last ')'.
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().next());
    !matches!(state, None | Some("Z" | "X"))
}

pub fn assert_all_gone(pids: impl IntoIterator<Item = u32>) {
    for pid in pids {
        poll_os(&format!("pid {pid} to stop running"), || {
            (!is_running(pid)).then_some(())
        });
    }
}

/// Removes what the tree left behind on purpose (grandchildren after a
/// hard death of their host).
pub fn kill_leftovers(pids: &[u32]) {
    for &pid in pids {
        let pid = i32::try_from(pid).expect("pids fit in i32");
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
    }
}

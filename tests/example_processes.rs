//! The examples that start OS processes leave none behind.
//!
//! `supervisor_tree` supervises a shell process and `etcd_discovery` starts
//! its own etcd. Each is run as its users run it (`--serve`, the binary
//! `cargo test` built beside this test), and once it serves, it is either
//! stopped with SIGTERM, which must end it cleanly, or killed with SIGKILL,
//! which gives it no chance to clean up: in both cases every process it had
//! started must be gone afterwards (`PR_SET_PDEATHSIG` does the work in the
//! second case).
//!
//! The waits are bounds on real processes starting and stopping, not
//! timing asserts. `etcd_discovery` needs `etcd` on `PATH`; its tests skip
//! without it unless `ORCH_TEST_ETCD=required`, as the etcd tests do.
#![cfg(target_os = "linux")]
#![allow(clippy::unwrap_used, reason = "tests unwrap what they set up")]

use std::{collections::HashMap, path::PathBuf, process::Stdio, time::Duration};

use nix::{
    sys::signal::{Signal, kill},
    unistd::Pid,
};
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::{Child, Command},
};

/// Bound on an example's scenario before it serves.
const UNTIL_SERVING: Duration = Duration::from_secs(180);
/// Bound on an example's shutdown, and on its processes disappearing.
const UNTIL_GONE: Duration = Duration::from_secs(30);

/// The example binary that `cargo test` builds beside this test's own
/// (`target/<profile>/examples/<name>`).
fn example_binary(name: &str) -> PathBuf {
    let test_binary = std::env::current_exe().unwrap();
    // target/<profile>/deps/<this test> → target/<profile>/examples/<name>
    let profile_dir = test_binary.parent().and_then(|deps| deps.parent()).unwrap();
    let binary = profile_dir.join("examples").join(name);
    assert!(
        binary.exists(),
        "{} not built: `cargo test` builds the examples (not with `--test` alone: build them first with `cargo build --examples --all-features`)",
        binary.display()
    );
    binary
}

/// Whether `etcd_discovery` can run here; panics when it must and cannot.
fn etcd_available() -> bool {
    let on_path = std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join("etcd").is_file()));
    if !on_path && std::env::var("ORCH_TEST_ETCD").as_deref() == Ok("required") {
        panic!("ORCH_TEST_ETCD=required but no etcd on PATH (Debian: apt-get install etcd-server)");
    }
    on_path
}

/// Starts an example with `--serve` and waits until it says it serves.
async fn start_serving(name: &str) -> Child {
    let mut child = Command::new(example_binary(name))
        .arg("--serve")
        // etcd_discovery must start its own etcd, not use a shared one.
        .env_remove("ORCH_EXAMPLE_ETCD_URL")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let serving = async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if line.starts_with("--- serving") {
                return;
            }
        }
        panic!("{name} ended before it served");
    };
    tokio::time::timeout(UNTIL_SERVING, serving)
        .await
        .unwrap_or_else(|_| panic!("{name} did not serve within {UNTIL_SERVING:?}"));
    // Keep reading, so that the example never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    child
}

/// State letter and parent pid of a process, from `/proc/{pid}/stat`.
fn proc_stat(pid: u32) -> Option<(char, u32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "pid (comm) state ppid ...": comm may hold spaces and parentheses.
    let (_, rest) = stat.rsplit_once(')')?;
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    Some((state, ppid))
}

/// A live process: neither gone nor a zombie.
fn is_running(pid: u32) -> bool {
    proc_stat(pid).is_some_and(|(state, _)| state != 'Z' && state != 'X')
}

/// Every live descendant of `root`, with its command name.
fn descendants(root: u32) -> Vec<(u32, String)> {
    let parents: HashMap<u32, u32> = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| Some((pid, proc_stat(pid)?.1)))
        .collect();
    let mut found = Vec::new();
    let mut frontier = vec![root];
    while let Some(parent) = frontier.pop() {
        for (&pid, &ppid) in &parents {
            if ppid == parent && is_running(pid) {
                frontier.push(pid);
                let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
                found.push((pid, comm.trim().to_owned()));
            }
        }
    }
    found
}

/// Waits until none of `processes` runs any more.
async fn assert_all_gone(name: &str, processes: &[(u32, String)]) {
    let all_gone = async {
        while processes.iter().any(|(pid, _)| is_running(*pid)) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    if tokio::time::timeout(UNTIL_GONE, all_gone).await.is_err() {
        let left: Vec<_> = processes.iter().filter(|(pid, _)| is_running(*pid)).collect();
        panic!("{name} left processes running: {left:?}");
    }
}

/// The processes `name` started once it serves; at least one is `expected`.
fn started_processes(name: &str, child: &Child, expected: &str) -> Vec<(u32, String)> {
    let processes = descendants(child.id().unwrap());
    assert!(
        processes.iter().any(|(_, comm)| comm == expected),
        "{name} serves without a `{expected}` process: {processes:?}"
    );
    processes
}

/// SIGTERM: the example shuts down cleanly and takes its processes along.
async fn stops_on_sigterm(name: &str, expected: &str) {
    let mut child = start_serving(name).await;
    let processes = started_processes(name, &child, expected);
    kill(Pid::from_raw(child.id().unwrap() as i32), Signal::SIGTERM).unwrap();
    let status = tokio::time::timeout(UNTIL_GONE, child.wait())
        .await
        .unwrap_or_else(|_| panic!("{name} did not stop within {UNTIL_GONE:?} of SIGTERM"))
        .unwrap();
    assert!(status.success(), "{name} ended with {status} after SIGTERM");
    assert_all_gone(name, &processes).await;
}

/// SIGKILL: the example cannot clean up, its processes die with it anyway.
async fn takes_its_processes_when_killed(name: &str, expected: &str) {
    let mut child = start_serving(name).await;
    let processes = started_processes(name, &child, expected);
    child.start_kill().unwrap();
    child.wait().await.unwrap();
    assert_all_gone(name, &processes).await;
}

#[tokio::test]
async fn supervisor_tree_stops_its_process_child_on_sigterm() {
    stops_on_sigterm("supervisor_tree", "sh").await;
}

#[tokio::test]
async fn supervisor_tree_killed_takes_its_process_child() {
    takes_its_processes_when_killed("supervisor_tree", "sh").await;
}

#[tokio::test]
async fn etcd_discovery_stops_its_etcd_on_sigterm() {
    if etcd_available() {
        stops_on_sigterm("etcd_discovery", "etcd").await;
    }
}

#[tokio::test]
async fn etcd_discovery_killed_takes_its_etcd() {
    if etcd_available() {
        takes_its_processes_when_killed("etcd_discovery", "etcd").await;
    }
}

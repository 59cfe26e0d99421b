//! A real etcd for the etcd backend's tests: started on free loopback ports
//! with its own data directory, killed when the guard is dropped (and with
//! the test process, through `kill_on_drop` and a parent-death signal), plus
//! a few raw calls to etcd's
//! JSON gateway so the tests check etcd's content independently of the code
//! under test.
#![allow(dead_code, reason = "each test uses a part of the helpers")]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use tokio::process::{Child, Command};

/// How long etcd may take to answer after it was started.
const READY_WITHIN: Duration = Duration::from_secs(30);

/// The etcd binary, or `None` after saying why the test is skipped; fails
/// when `ORCH_TEST_ETCD=required` (CI) and there is none.
pub fn etcd_binary() -> Option<PathBuf> {
    let found = on_path("etcd");
    if found.is_none() {
        assert_ne!(
            std::env::var("ORCH_TEST_ETCD").as_deref(),
            Ok("required"),
            "ORCH_TEST_ETCD=required but no etcd on PATH (apt-get install etcd-server)"
        );
        eprintln!(
            "skipped: no etcd on PATH (install etcd-server; set ORCH_TEST_ETCD=required to fail instead)"
        );
    }
    found
}

/// Where `program` is on `PATH`, if it is.
fn on_path(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}

/// A running etcd, killed on drop; its data directory is removed on drop.
pub struct Etcd {
    binary: PathBuf,
    client_port: u16,
    peer_port: u16,
    data_dir: PathBuf,
    child: Option<Child>,
    http: Client<HttpConnector, Full<Bytes>>,
}

impl Etcd {
    /// Starts etcd and waits until it answers.
    pub async fn start(binary: PathBuf) -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let data_dir = std::env::temp_dir().join(format!(
            "orch-etcd-test-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&data_dir);
        let mut etcd = Self {
            binary,
            client_port: free_port(),
            peer_port: free_port(),
            data_dir,
            child: None,
            http: Client::builder(TokioExecutor::new()).build(HttpConnector::new()),
        };
        etcd.spawn().await;
        etcd
    }

    /// The client URL.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    /// Kills etcd (its data stays).
    pub async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().await.expect("kill etcd");
        }
    }

    /// Starts etcd again on the same ports and data, and waits until it answers.
    pub async fn restart(&mut self) {
        self.stop().await;
        self.spawn().await;
    }

    async fn spawn(&mut self) {
        let client = self.url();
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        // `setpriv --pdeathsig KILL` (util-linux) execs etcd with the
        // parent-death signal set, so an etcd cannot outlive a test process
        // that is killed hard (SIGKILL, a harness timeout), which
        // `kill_on_drop` alone cannot promise.
        let mut command = match on_path("setpriv") {
            Some(setpriv) => {
                let mut command = Command::new(setpriv);
                command.args(["--pdeathsig", "KILL", "--"]).arg(&self.binary);
                command
            }
            None => Command::new(&self.binary),
        };
        let child = command
            .arg("--name=default")
            .arg(format!("--data-dir={}", self.data_dir.display()))
            .arg(format!("--listen-client-urls={client}"))
            .arg(format!("--advertise-client-urls={client}"))
            .arg(format!("--listen-peer-urls={peer}"))
            .arg(format!("--initial-advertise-peer-urls={peer}"))
            .arg(format!("--initial-cluster=default={peer}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start etcd");
        self.child = Some(child);
        tokio::time::timeout(READY_WITHIN, async {
            // Polling is the one wait on wall-clock time: etcd gives no other
            // signal that it is ready.
            while self
                .try_call("/v3/kv/range", json!({"key": STANDARD.encode("/")}))
                .await
                .is_err()
            {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await
        .expect("etcd answers");
    }

    async fn try_call(&self, path: &str, body: Value) -> Result<Value, String> {
        let request = http::Request::post(format!("{}{path}", self.url()))
            .body(Full::new(Bytes::from(body.to_string())))
            .map_err(|e| e.to_string())?;
        let response = self.http.request(request).await.map_err(|e| e.to_string())?;
        let status = response.status();
        let bytes = response
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        if !status.is_success() {
            return Err(format!("{status}: {}", String::from_utf8_lossy(&bytes)));
        }
        serde_json::from_slice(&bytes).map_err(|e| e.to_string())
    }

    async fn call(&self, path: &str, body: Value) -> Value {
        tokio::time::timeout(Duration::from_secs(10), self.try_call(path, body))
            .await
            .expect("etcd answers in time")
            .expect("etcd call")
    }

    /// Writes `key` (no lease).
    pub async fn put(&self, key: &str, value: &str) {
        self.call(
            "/v3/kv/put",
            json!({"key": STANDARD.encode(key), "value": STANDARD.encode(value)}),
        )
        .await;
    }

    /// Deletes `key`.
    pub async fn delete(&self, key: &str) {
        self.call("/v3/kv/deleterange", json!({"key": STANDARD.encode(key)}))
            .await;
    }

    /// The value of `key`, if present.
    pub async fn get(&self, key: &str) -> Option<String> {
        let answer = self
            .call("/v3/kv/range", json!({"key": STANDARD.encode(key)}))
            .await;
        let value = answer["kvs"][0]["value"].as_str()?;
        let bytes = STANDARD.decode(value).expect("base64 value");
        Some(String::from_utf8(bytes).expect("utf-8 value"))
    }

    /// The lease `key` is attached to (0 for none), if the key is present.
    pub async fn lease_of(&self, key: &str) -> Option<i64> {
        let answer = self
            .call("/v3/kv/range", json!({"key": STANDARD.encode(key)}))
            .await;
        let kv = answer["kvs"].get(0)?;
        // int64 fields are JSON strings, and left out when 0.
        Some(
            kv["lease"]
                .as_str()
                .map_or(0, |lease| lease.parse().expect("lease id")),
        )
    }

    /// Revokes `lease`, deleting its keys: a lease lost behind the
    /// registration's back, as when it expired during a partition.
    pub async fn revoke(&self, lease: i64) {
        self.call("/v3/lease/revoke", json!({"ID": lease.to_string()}))
            .await;
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SIGKILL now; `kill_on_drop` would do it too, this makes it
            // explicit and immediate.
            let _ = child.start_kill();
        }
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}

/// A port that was free a moment ago (the OS does not hand it out again
/// at once).
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local address").port()
}

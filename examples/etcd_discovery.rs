//! Discovery across machines through etcd, shown in one process: "machine
//! A" supervises replicas of an axum service and publishes them into etcd;
//! "machine B" follows etcd into its own registry and calls them through
//! the balancer and the HTTP preset, knowing nothing of A but the etcd
//! prefix.
//!
//! - **A:** `Supervisor` (3 replicas of `orders`, `serve_http` on loopback
//!   ports) → `SupervisorSource` → a local `Registry` → `EtcdPublisher`,
//!   which keeps one leased key per ready replica under
//!   `/orch/example/orders/`.
//! - **B:** `EtcdSource` → its own `Registry` → P2C balancer over the hyper
//!   connector → the resilience stack's HTTP preset.
//! - Half way through the load, A scales `orders` down to 2: the replica
//!   being stopped leaves A's registry, its key is revoked, B's watch drops
//!   it, and no request fails. At the end A withdraws every key.
//!
//! etcd: the one at `ORCH_EXAMPLE_ETCD_URL` if set, or else an `etcd` on
//! `PATH` (Debian: `apt-get install etcd-server`) that the example starts on
//! a free loopback port with a temporary data directory, as a process child
//! of an orch supervisor of its own: stopped when the example ends, and
//! killed by the kernel if the example is killed (`tests/example_processes.rs`
//! checks both).
//!
//! ```text
//! cargo run --example etcd_discovery            # load, a scale-down, a summary
//! cargo run --example etcd_discovery -- --serve # then keep serving until Ctrl-C or SIGTERM
//! ```

use std::{
    collections::BTreeMap,
    net::{SocketAddr, TcpListener},
    path::PathBuf,
    time::{Duration, Instant},
};

use axum::{Router, routing::get};
use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use orch::core::{
    ChildContext, ChildSpec, OutputMode, ProbeSpec, ProcessSpec, Supervisor, SupervisorHandle,
    SupervisorSpec, TcpProbe, shutdown_signal,
};
use orch::discovery::{
    Registry, SupervisorSource,
    balance::Balancer,
    connect::HyperConnector,
    source::etcd::{EtcdConfig, EtcdPublisher, EtcdSource},
};
use orch::resilience::{ResilienceLayer, RetryConfig};
use tower::{Layer, ServiceExt};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

const PREFIX: &str = "/orch/example/orders/";
const REQUESTS: usize = 400;
/// Bound of every wait on etcd or the replicas.
const WITHIN: Duration = Duration::from_secs(20);

// ===== etcd =====

/// An etcd this example started, as a process child of its own supervisor:
/// stopped with the supervisor (SIGTERM, then SIGKILL after a grace), and
/// killed by the kernel should the example die first (orch starts process
/// children with `PR_SET_PDEATHSIG`). Its data directory goes on drop.
struct OwnEtcd {
    supervisor: SupervisorHandle,
    data_dir: PathBuf,
}

impl OwnEtcd {
    async fn stop(self) -> Result<(), BoxError> {
        self.supervisor.shutdown().await?;
        Ok(())
    }
}

impl Drop for OwnEtcd {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}

fn on_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}

fn free_port() -> Result<u16, BoxError> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// The etcd to use: `ORCH_EXAMPLE_ETCD_URL`, or one started here and
/// ready (its client port accepts connections).
async fn etcd() -> Result<(String, Option<OwnEtcd>), BoxError> {
    if let Ok(url) = std::env::var("ORCH_EXAMPLE_ETCD_URL") {
        return Ok((url, None));
    }
    let binary = on_path("etcd").ok_or(
        "no etcd: set ORCH_EXAMPLE_ETCD_URL, or put etcd on PATH (Debian: apt-get install etcd-server)",
    )?;
    let (client, peer) = (free_port()?, free_port()?);
    let url = format!("http://127.0.0.1:{client}");
    let peer_url = format!("http://127.0.0.1:{peer}");
    let data_dir = std::env::temp_dir().join(format!("orch-example-etcd-{}", std::process::id()));
    let process = ProcessSpec::new(binary.display().to_string())
        .arg("--name=example")
        .arg(format!("--data-dir={}", data_dir.display()))
        .arg(format!("--listen-client-urls={url}"))
        .arg(format!("--advertise-client-urls={url}"))
        .arg(format!("--listen-peer-urls={peer_url}"))
        .arg(format!("--initial-advertise-peer-urls={peer_url}"))
        .arg(format!("--initial-cluster=example={peer_url}"))
        .output(OutputMode::Null);
    let listening = SocketAddr::from(([127, 0, 0, 1], client));
    let spec = SupervisorSpec::builder("etcd")
        .child(
            ChildSpec::process("etcd", process)
                .readiness(ProbeSpec::new(TcpProbe::at(listening)).period(Duration::from_millis(50))),
        )
        .build()?;
    let own = OwnEtcd {
        supervisor: Supervisor::start(spec)?,
        data_dir,
    };
    // Wait until it listens, so that the first calls do not log
    // "unreachable" (they would retry anyway).
    let ready = async {
        while !own.supervisor.instances().iter().any(|i| i.state.is_ready()) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(WITHIN, ready)
        .await
        .map_err(|_| "etcd did not start listening")?;
    println!("--- started etcd at {url}");
    Ok((url, Some(own)))
}

// ===== machine A: the replicas =====

fn orders_router(ctx: &ChildContext) -> Router {
    let me = ctx.id().to_string();
    Router::new().route("/whoami", get(move || async move { me }))
}

// ===== machine B: the client =====

/// Sends `count` GETs from 4 tasks; returns who answered, and the failures.
async fn send<S>(client: &S, count: usize) -> (BTreeMap<String, usize>, Vec<String>)
where
    S: tower::Service<Request<Full<Bytes>>, Response = http::Response<hyper::body::Incoming>>
        + Clone
        + Send
        + 'static,
    S::Error: std::fmt::Display,
    S::Future: Send,
{
    let tasks: Vec<_> = (0..4)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move {
                let mut seen = (BTreeMap::new(), Vec::new());
                for _ in 0..count / 4 {
                    let outcome = match Request::get("/whoami").body(Full::default()) {
                        Ok(request) => client.clone().oneshot(request).await.map_err(|e| e.to_string()),
                        Err(e) => Err(e.to_string()),
                    };
                    let body = match outcome {
                        Ok(response) => response.into_body().collect().await.map_err(|e| e.to_string()),
                        Err(e) => Err(e),
                    };
                    match body {
                        Ok(body) => {
                            let who = String::from_utf8_lossy(&body.to_bytes()).into_owned();
                            *seen.0.entry(who).or_insert(0) += 1;
                        }
                        Err(e) => seen.1.push(e),
                    }
                }
                seen
            })
        })
        .collect();
    let (mut answered, mut failed) = (BTreeMap::new(), Vec::new());
    for task in tasks {
        match task.await {
            Ok((by, errors)) => {
                for (who, n) in by {
                    *answered.entry(who).or_insert(0) += n;
                }
                failed.extend(errors);
            }
            Err(e) => failed.push(e.to_string()),
        }
    }
    (answered, failed)
}

async fn wait_for(registry: &Registry, n: usize, what: &str) -> Result<(), BoxError> {
    tokio::time::timeout(WITHIN, registry.wait_until(move |set| set.len() == n))
        .await
        .map_err(|_| format!("{what}: the registry never held {n} endpoints"))?;
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let serve = std::env::args().any(|a| a == "--serve");
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .init();
    let (url, own_etcd) = etcd().await?;
    let config = EtcdConfig::new([url.as_str()], PREFIX);

    // Machine A.
    let spec = SupervisorSpec::builder("a")
        .child(ChildSpec::serve_http("orders", orders_router).replicas(3))
        .build()?;
    let handle = Supervisor::start(spec)?;
    let local = Registry::new("orders@a");
    let _source_a = SupervisorSource::new("orders").start(&handle, &local).await?;
    let publisher = EtcdPublisher::new(&config)?.start(&local)?;

    // Machine B.
    let remote = Registry::new("orders@b");
    let source_b = EtcdSource::new(&config)?.start(&remote)?;
    let balancer = Balancer::new(remote.changes(), HyperConnector::<Full<Bytes>>::new()).into_shared();
    let client = ResilienceLayer::http()
        .retry(RetryConfig::default().max_attempts(3))
        .attempt_timeout(Duration::from_secs(1))
        .build()?
        .layer(balancer);

    let started = Instant::now();
    let run = async {
        tokio::time::timeout(WITHIN, source_b.synced())
            .await
            .map_err(|_| "etcd never answered")?;
        wait_for(&remote, 3, "B sees A's replicas").await?;
        println!(
            "--- B sees 3 replicas of orders through etcd; {} requests",
            REQUESTS / 2
        );
        let (before, mut failed) = send(&client, REQUESTS / 2).await;

        println!("--- A scales orders to 2");
        handle.resize("orders", 2).await?;
        wait_for(&remote, 2, "B sees the scale-down").await?;
        println!("--- B sees 2 replicas; {} requests", REQUESTS / 2);
        let (after, failed_after) = send(&client, REQUESTS / 2).await;
        failed.extend(failed_after);
        if serve {
            println!("--- serving; Ctrl-C or SIGTERM shuts down");
            std::future::pending::<()>().await;
        }
        Ok::<_, BoxError>((before, after, failed))
    };
    let outcome = tokio::select! {
        outcome = run => Some(outcome?),
        signal = shutdown_signal() => {
            println!("--- {} received", signal?);
            None
        }
    };
    // A withdraws its keys before its replicas stop; B stops following
    // etcd before etcd stops.
    publisher.stop().await;
    handle.shutdown().await?;
    drop(source_b);
    if let Some(own) = own_etcd {
        own.stop().await?;
    }
    let Some((before, after, failed)) = outcome else {
        return Ok(());
    };
    println!("--- summary after {:.1} s", started.elapsed().as_secs_f64());
    println!("    answered with 3 replicas  {before:?}");
    println!("    answered with 2 replicas  {after:?}");
    println!("    failed                    {}", failed.len());
    for failure in failed.iter().take(5) {
        println!("    failed: {failure}");
    }
    if !failed.is_empty() {
        return Err(format!("{} requests failed", failed.len()).into());
    }
    Ok(())
}

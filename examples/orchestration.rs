//! The orchestration loop in one process, as far as it is built today: a
//! supervisor tree runs real TCP servers on 127.0.0.1, probes them, restarts
//! a crashed one (which comes back on a new port and is routed to again only
//! once ready), scales a replica group up and down, supervises an OS process,
//! and shuts everything down in reverse start order.
//!
//! ```text
//! cargo run --example orchestration              # scenario, then serve until Ctrl-C
//! cargo run --example orchestration -- --bounded # scenario, then exit (CI)
//! ```

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use orch::core::{
    BackoffPolicy, ChildSpec, EventKind, InstanceId, ProbeSpec, ProcessSpec, RestartType, Strategy,
    Supervisor, SupervisorSpec, TcpProbe, Update,
};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::time::Instant;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// One API replica: a line protocol server on an ephemeral loopback port.
/// `ping` answers `pong from <id>`; `crash` simulates a bug (a panic).
fn api_replica() -> ChildSpec {
    ChildSpec::task("api", |ctx| async move {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        ctx.announce(listener.local_addr()?);
        loop {
            let (stream, _) = tokio::select! {
                () = ctx.cancelled() => return Ok::<_, BoxError>(()),
                accepted = listener.accept() => accepted?,
            };
            let mut lines = BufReader::new(stream);
            let mut line = String::new();
            // Probes connect and hang up without a line: that is fine.
            if lines.read_line(&mut line).await.unwrap_or(0) == 0 {
                continue;
            }
            match line.trim() {
                "crash" => panic!("simulated bug in {}", ctx.id()),
                _ => {
                    let reply = format!("pong from {} (generation {})\n", ctx.id(), ctx.generation());
                    lines.get_mut().write_all(reply.as_bytes()).await?;
                }
            }
        }
    })
    .replicas(3)
    .ready_on_announce()
    .readiness(ProbeSpec::new(TcpProbe::new()).period(Duration::from_millis(200)))
    .liveness(ProbeSpec::new(TcpProbe::new()).period(Duration::from_millis(500)))
    .backoff(BackoffPolicy::default().initial(Duration::from_millis(50)))
    .shutdown_grace(Duration::from_secs(2))
}

/// An OS process child: fails on its first run, then runs until SIGTERM.
fn reporter(marker: &std::path::Path) -> ChildSpec {
    let script = "if [ ! -e \"$MARK\" ]; then touch \"$MARK\"; exit 3; fi; trap 'exit 0' TERM; while :; do sleep 0.1; done";
    ChildSpec::process(
        "reporter",
        ProcessSpec::new("sh")
            .arg("-c")
            .arg(script)
            .env("MARK", marker.display().to_string()),
    )
    .restart(RestartType::Transient)
    .backoff(
        BackoffPolicy::default()
            .initial(Duration::from_millis(100))
            .jitter(false),
    )
    .shutdown_grace(Duration::from_secs(2))
}

/// A nested one-for-all supervisor: queue and worker restart together.
fn jobs() -> Result<ChildSpec, BoxError> {
    let task = |id: &str| {
        ChildSpec::task(id, |ctx| async move {
            ctx.cancelled().await;
            Ok::<_, BoxError>(())
        })
    };
    let spec = SupervisorSpec::builder("jobs")
        .strategy(Strategy::OneForAll)
        .child(task("queue"))
        .child(task("worker"))
        .build()?;
    Ok(ChildSpec::supervisor(spec))
}

async fn ask(addr: SocketAddr, line: &str) -> Result<String, BoxError> {
    let mut stream = TcpStream::connect(addr).await?;
    stream.write_all(format!("{line}\n").as_bytes()).await?;
    let mut reply = String::new();
    BufReader::new(stream).read_line(&mut reply).await?;
    Ok(reply.trim().to_owned())
}

/// The ready API replicas and their addresses, as a registry would see them.
type Rotation = BTreeMap<InstanceId, SocketAddr>;

async fn wait_rotation(rx: &mut watch::Receiver<Rotation>, pred: impl Fn(&Rotation) -> bool) -> Rotation {
    match tokio::time::timeout(Duration::from_secs(20), rx.wait_for(|r| pred(r))).await {
        Ok(Ok(r)) => r.clone(),
        _ => panic!("the rotation never reached the expected state"),
    }
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let bounded = std::env::args().any(|a| a == "--bounded");
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .init();

    // The simulated bug panics on purpose: one line instead of a backtrace.
    std::panic::set_hook(Box::new(|info| {
        eprintln!("panic (caught by the supervisor): {info}")
    }));

    let marker = std::env::temp_dir().join(format!("orch-example-{}.mark", std::process::id()));
    let spec = SupervisorSpec::builder("app")
        .child(api_replica())
        .child(reporter(&marker))
        .child(jobs()?)
        .build()?;
    let handle = Supervisor::start(spec)?;

    // The subscriber: prints every event and keeps the rotation of ready
    // API replicas up to date, starting from the snapshot.
    let sub = handle.subscribe();
    let (rotation_tx, mut rotation) = watch::channel(Rotation::new());
    let t0 = Instant::now();
    let printer = tokio::spawn(async move {
        let mut events = sub.events;
        while let Some(update) = events.next().await {
            let Update::Event(e) = update else { continue };
            println!(
                "{:>6} ms  {:<22} gen {}  {:?}",
                t0.elapsed().as_millis(),
                e.id,
                e.generation,
                e.kind
            );
            if &*e.child == "api" {
                rotation_tx.send_modify(|r| match e.kind {
                    EventKind::Ready { address: Some(addr) } => {
                        r.insert(e.id.clone(), addr);
                    }
                    EventKind::Ready { address: None } => {}
                    _ => {
                        r.remove(&e.id);
                    }
                });
            }
        }
    });

    println!("--- waiting for 3 API replicas to be ready");
    let ready = wait_rotation(&mut rotation, |r| r.len() == 3).await;
    for addr in ready.values() {
        println!("--- client: {}", ask(*addr, "ping").await?);
    }

    let (victim, addr) = ready
        .iter()
        .nth(1)
        .map(|(i, a)| (i.clone(), *a))
        .ok_or("no replica")?;
    println!("--- client: crashing {victim} at {addr}");
    let _ = ask(addr, "crash").await;
    let back = wait_rotation(&mut rotation, |r| r.get(&victim).is_some_and(|a| *a != addr)).await;
    let new_addr = back[&victim];
    println!(
        "--- {victim} is back on {new_addr}: {}",
        ask(new_addr, "ping").await?
    );

    println!("--- scaling api to 5");
    handle.resize("api", 5).await?;
    wait_rotation(&mut rotation, |r| r.len() == 5).await;
    println!("--- scaling api to 2");
    handle.resize("api", 2).await?;
    let left = wait_rotation(&mut rotation, |r| r.len() == 2).await;
    println!("--- rotation now: {:?}", left.keys().collect::<Vec<_>>());

    println!("--- waiting for the reporter process to be back after its failed first run");
    let reporter_back = async {
        while !handle
            .instances()
            .iter()
            .any(|i| &*i.child == "reporter" && i.generation == 1 && i.state.is_ready())
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(20), reporter_back).await?;

    for child in handle.children().await? {
        println!(
            "--- child {:<9} kind {:<10} desired {} instances {} ready {}",
            child.id, child.kind, child.desired, child.instances, child.ready
        );
    }

    if !bounded {
        println!("--- serving; press Ctrl-C to shut down");
        tokio::signal::ctrl_c().await?;
    }
    println!("--- shutting down (reverse start order)");
    handle.shutdown().await?;
    printer.await?;
    let _ = std::fs::remove_file(&marker);
    println!("--- done");
    Ok(())
}

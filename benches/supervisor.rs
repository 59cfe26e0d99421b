//! Supervisor benchmarks, each against a bare-tokio baseline in the same run.
//!
//! 1. **Crash-to-ready**: a task child with zero backoff crashes on demand;
//!    one iteration is the time from the moment its future returns `Err` to
//!    the moment a subscriber holds the `Ready` event of the next generation.
//!    Baseline: a bare `tokio::spawn` plus one `tokio::sync::mpsc` hop back
//!    to the spawning task. Both on a current-thread runtime and on a
//!    multi-thread runtime with 2 workers. Criterion gets the summed
//!    latencies through `iter_custom`; a separate run of a few thousand
//!    interleaved samples gives median and p99 (printed to stderr).
//! 2. **Memory per supervised child**: a replica group of 10,000 task
//!    children each awaiting `ctx.cancelled()`, against 10,000 bare tokio
//!    tasks each awaiting a child `CancellationToken`.
//!
//! The workspace forbids `unsafe_code` (a command-line `forbid` that no
//! `#![allow]` can lift), so a counting `GlobalAlloc` is impossible here.
//! Memory is measured instead as the growth of `RssAnon` (anonymous resident
//! memory, from `/proc/self/status`) in a fresh child process per run (this
//! binary re-executed with an environment variable), on a current-thread
//! runtime so every allocation comes from glibc's main arena. That counts
//! touched heap pages, so it includes allocator overhead and slack
//! (`Vec` capacity that was written to), which is what a user pays.
//!
//! Run with `cargo bench --bench supervisor`; under `cargo test --benches`
//! everything runs once, small.

use std::future::Future;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use criterion::Criterion;
use orch::core::{
    BackoffPolicy, ChildSpec, EventKind, EventStream, InstanceState, RestartIntensity, Supervisor,
    SupervisorHandle, SupervisorSpec, Update,
};
use tokio::runtime::Runtime;
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;

/// Set in the re-executed child process: which memory case to measure.
const MEMORY_CASE_ENV: &str = "ORCH_BENCH_MEMORY_CASE";
/// Set in the re-executed child process: how many children.
const MEMORY_N_ENV: &str = "ORCH_BENCH_MEMORY_N";

/// How much work a run does: full under `cargo bench`, a smoke run otherwise.
#[derive(Clone, Copy)]
struct Scale {
    full: bool,
    latency_samples: usize,
    memory_children: usize,
    memory_runs: usize,
}

impl Scale {
    fn from_args() -> Self {
        let args: Vec<String> = std::env::args().collect();
        let full = args.iter().any(|a| a == "--bench") && !args.iter().any(|a| a == "--test");
        if full {
            Self {
                full,
                latency_samples: 5_000,
                memory_children: 10_000,
                memory_runs: 3,
            }
        } else {
            Self {
                full,
                latency_samples: 200,
                memory_children: 1_000,
                memory_runs: 1,
            }
        }
    }
}

#[derive(Clone, Copy)]
enum Flavor {
    CurrentThread,
    MultiThread2,
}

impl Flavor {
    fn name(self) -> &'static str {
        match self {
            Self::CurrentThread => "current_thread",
            Self::MultiThread2 => "multi_thread_2w",
        }
    }

    fn runtime(self) -> Runtime {
        match self {
            Self::CurrentThread => tokio::runtime::Builder::new_current_thread().enable_all().build(),
            Self::MultiThread2 => tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build(),
        }
        .expect("build tokio runtime")
    }
}

// ---------------------------------------------------------------------------
// Crash-to-ready
// ---------------------------------------------------------------------------

/// One crash of the supervised child and its restart to ready.
#[derive(Clone, Copy)]
struct CrashSample {
    /// Child returned `Err` → subscriber holds `Ready` of the next generation.
    total: Duration,
    /// Child returned `Err` → supervisor published `Exited` (event's `at`).
    to_exited: Duration,
    /// `Exited` published → `Ready` of the next generation published.
    exited_to_ready: Duration,
    /// `Ready` published → subscriber holds it.
    ready_to_seen: Duration,
}

/// A supervisor with one task child that crashes whenever `crash` is notified.
struct CrashRig {
    handle: SupervisorHandle,
    events: EventStream,
    crash: Arc<Notify>,
    /// Nanoseconds since `base` at which the child last returned `Err`.
    exited_at: Arc<AtomicU64>,
    base: Instant,
    generation: u64,
}

impl CrashRig {
    async fn start() -> Self {
        let base = Instant::now();
        let crash = Arc::new(Notify::new());
        let exited_at = Arc::new(AtomicU64::new(0));
        let (child_crash, child_exited_at) = (crash.clone(), exited_at.clone());
        let child = ChildSpec::task("crasher", move |ctx| {
            let (crash, exited_at) = (child_crash.clone(), child_exited_at.clone());
            async move {
                tokio::select! {
                    () = crash.notified() => {
                        exited_at.store(base.elapsed().as_nanos() as u64, Ordering::Release);
                        Err("crash on demand")
                    }
                    () = ctx.cancelled() => Ok(()),
                }
            }
        })
        .backoff(BackoffPolicy::none());
        let spec = SupervisorSpec::builder("bench")
            .intensity(RestartIntensity::new(u32::MAX, Duration::from_secs(1)))
            .child(child)
            .build()
            .expect("valid spec");
        let handle = Supervisor::start(spec).expect("inside a tokio runtime");
        let sub = handle.subscribe();
        let mut rig = Self {
            handle,
            events: sub.events,
            crash,
            exited_at,
            base,
            generation: 0,
        };
        let ready = sub
            .snapshot
            .iter()
            .any(|i| i.generation == 0 && i.state == InstanceState::Ready);
        if !ready {
            rig.wait_ready(0).await;
        }
        rig
    }

    /// Waits for `Ready` of `generation`; returns when the subscriber got it,
    /// when it was published, and when `Exited` of the generation before was
    /// published (if seen). Events carry tokio instants, which on a runtime
    /// whose clock is not paused are `std` instants.
    async fn wait_ready(&mut self, generation: u64) -> (Instant, Instant, Option<Instant>) {
        let mut exited = None;
        loop {
            match self.events.next().await {
                Some(Update::Event(e)) => match e.kind {
                    EventKind::Ready { .. } if e.generation == generation => {
                        return (Instant::now(), e.at.into_std(), exited);
                    }
                    EventKind::Exited { .. } if e.generation + 1 == generation => {
                        exited = Some(e.at.into_std());
                    }
                    _ => {}
                },
                Some(Update::Resync(snapshot)) => {
                    // Cannot happen at four events per iteration, but be correct.
                    if let Some(i) = snapshot
                        .iter()
                        .find(|i| i.generation == generation && i.state == InstanceState::Ready)
                    {
                        return (Instant::now(), i.since.into_std(), exited);
                    }
                }
                None => panic!("supervisor event stream ended"),
            }
        }
    }

    async fn crash_once(&mut self) -> CrashSample {
        let next = self.generation + 1;
        self.crash.notify_one();
        let (seen, ready_pub, exited_pub) = self.wait_ready(next).await;
        self.generation = next;
        let crashed = self.base + Duration::from_nanos(self.exited_at.load(Ordering::Acquire));
        let exited_pub = exited_pub.unwrap_or(ready_pub);
        CrashSample {
            total: seen.saturating_duration_since(crashed),
            to_exited: exited_pub.saturating_duration_since(crashed),
            exited_to_ready: ready_pub.saturating_duration_since(exited_pub),
            ready_to_seen: seen.saturating_duration_since(ready_pub),
        }
    }
}

/// One bare spawn plus one mpsc hop back.
#[derive(Clone, Copy)]
struct HopSample {
    /// Before `tokio::spawn` → spawning task holds the message.
    total: Duration,
    /// Before `tokio::spawn` → spawned future first polled (it sends at once).
    to_running: Duration,
}

/// Baseline: spawn a future that sends one message back over an mpsc channel.
struct HopRig {
    tx: mpsc::UnboundedSender<Instant>,
    rx: mpsc::UnboundedReceiver<Instant>,
}

impl HopRig {
    fn new() -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        Self { tx, rx }
    }

    async fn hop_once(&mut self) -> HopSample {
        let tx = self.tx.clone();
        let start = Instant::now();
        tokio::spawn(async move {
            let _ = tx.send(Instant::now());
        });
        let running = self.rx.recv().await.expect("the rig holds a sender");
        let end = Instant::now();
        HopSample {
            total: end.saturating_duration_since(start),
            to_running: running.saturating_duration_since(start),
        }
    }
}

/// Raw samples of one runtime flavor.
struct Samples {
    crashes: Vec<CrashSample>,
    hops: Vec<HopSample>,
    crashes_interleaved: Vec<Duration>,
    hops_interleaved: Vec<Duration>,
}

impl Samples {
    fn with_capacity(n: usize) -> Self {
        Self {
            crashes: Vec::with_capacity(n),
            hops: Vec::with_capacity(n),
            crashes_interleaved: Vec::with_capacity(n),
            hops_interleaved: Vec::with_capacity(n),
        }
    }
}

struct Rigs {
    crash: CrashRig,
    hop: HopRig,
}

/// Runs `fut` as a task on `rt` (on a worker for the multi-thread runtime).
fn run_on<T, F>(rt: &Runtime, fut: F) -> T
where
    T: Send + 'static,
    F: Future<Output = T> + Send + 'static,
{
    rt.block_on(rt.spawn(fut)).expect("bench task panicked")
}

/// Latency order statistics of a sample, in nanoseconds-precise `Duration`s.
struct Stats {
    median: Duration,
    p90: Duration,
    p99: Duration,
    mean: Duration,
    max: Duration,
}

impl Stats {
    fn of(mut v: Vec<Duration>) -> Self {
        assert!(!v.is_empty(), "no samples");
        v.sort_unstable();
        let pct = |p: f64| {
            let rank = (p * v.len() as f64).ceil() as usize;
            v[rank.clamp(1, v.len()) - 1]
        };
        let sum: Duration = v.iter().sum();
        Self {
            median: pct(0.5),
            p90: pct(0.9),
            p99: pct(0.99),
            mean: sum / v.len() as u32,
            max: v[v.len() - 1],
        }
    }
}

fn us(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1e6)
}

fn ratio(a: Duration, b: Duration) -> f64 {
    a.as_secs_f64() / b.as_secs_f64().max(1e-12)
}

struct LatencyResult {
    flavor: Flavor,
    supervisor: Stats,
    baseline: Stats,
}

fn crash_to_ready(c: &mut Criterion, flavor: Flavor, scale: Scale) -> LatencyResult {
    let rt = flavor.runtime();
    let rigs = run_on(&rt, async {
        Rigs {
            crash: CrashRig::start().await,
            hop: HopRig::new(),
        }
    });
    let mut slot = Some(rigs);

    let mut group = c.benchmark_group(format!("crash_to_ready/{}", flavor.name()));
    group.bench_function("supervisor_restart", |b| {
        b.iter_custom(|iters| {
            let mut rigs = slot.take().expect("rigs are returned after each run");
            let (rigs, total) = run_on(&rt, async move {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    total += rigs.crash.crash_once().await.total;
                }
                (rigs, total)
            });
            slot = Some(rigs);
            total
        });
    });
    group.bench_function("baseline_spawn_mpsc_hop", |b| {
        b.iter_custom(|iters| {
            let mut rigs = slot.take().expect("rigs are returned after each run");
            let (rigs, total) = run_on(&rt, async move {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    total += rigs.hop.hop_once().await.total;
                }
                (rigs, total)
            });
            slot = Some(rigs);
            total
        });
    });
    group.finish();

    // Separate samples for the order statistics: first back-to-back blocks
    // (the way criterion iterates), then crash and hop interleaved one by one
    // (so that both see the same background load).
    let mut rigs = slot.take().expect("rigs are returned after each run");
    let n = scale.latency_samples;
    let (rigs, samples) = run_on(&rt, async move {
        let mut s = Samples::with_capacity(n);
        // A short warm-up of our own (criterion may have been filtered out).
        for _ in 0..n / 10 {
            rigs.crash.crash_once().await;
            rigs.hop.hop_once().await;
        }
        for _ in 0..n {
            s.crashes.push(rigs.crash.crash_once().await);
        }
        for _ in 0..n {
            s.hops.push(rigs.hop.hop_once().await);
        }
        for _ in 0..n {
            s.crashes_interleaved.push(rigs.crash.crash_once().await.total);
            s.hops_interleaved.push(rigs.hop.hop_once().await.total);
        }
        (rigs, s)
    });
    let restarts = rigs.crash.generation;
    run_on(&rt, async move {
        rigs.crash.handle.shutdown().await.expect("clean shutdown");
    });
    drop(rt);

    let Samples {
        crashes,
        hops,
        crashes_interleaved,
        hops_interleaved,
    } = samples;
    let supervisor = Stats::of(crashes.iter().map(|s| s.total).collect());
    let baseline = Stats::of(hops.iter().map(|s| s.total).collect());
    let to_exited = Stats::of(crashes.iter().map(|s| s.to_exited).collect());
    let exited_to_ready = Stats::of(crashes.iter().map(|s| s.exited_to_ready).collect());
    let ready_to_seen = Stats::of(crashes.iter().map(|s| s.ready_to_seen).collect());
    let to_running = Stats::of(hops.iter().map(|s| s.to_running).collect());
    let supervisor_il = Stats::of(crashes_interleaved);
    let baseline_il = Stats::of(hops_interleaved);

    eprintln!();
    eprintln!(
        "crash-to-ready, {} runtime: {n} samples per row ({restarts} restarts in this run), µs",
        flavor.name()
    );
    eprintln!(
        "  {:<44} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "case", "median", "p90", "p99", "mean", "max"
    );
    let row = |name: &str, s: &Stats| {
        eprintln!(
            "  {:<44} {:>9} {:>9} {:>9} {:>9} {:>9}",
            name,
            us(s.median),
            us(s.p90),
            us(s.p99),
            us(s.mean),
            us(s.max)
        );
    };
    row("supervisor: Err returned -> Ready seen", &supervisor);
    row("  Err returned -> Exited published", &to_exited);
    row("  Exited published -> Ready published", &exited_to_ready);
    row("  Ready published -> Ready seen", &ready_to_seen);
    row("baseline: spawn + mpsc hop back", &baseline);
    row("  spawn -> spawned future runs", &to_running);
    row("supervisor, interleaved with baseline", &supervisor_il);
    row("baseline, interleaved with supervisor", &baseline_il);
    eprintln!(
        "  ratio supervisor/baseline: median {:.1}x, p99 {:.1}x (interleaved: {:.1}x, {:.1}x)",
        ratio(supervisor.median, baseline.median),
        ratio(supervisor.p99, baseline.p99),
        ratio(supervisor_il.median, baseline_il.median),
        ratio(supervisor_il.p99, baseline_il.p99)
    );
    LatencyResult {
        flavor,
        supervisor,
        baseline,
    }
}

// ---------------------------------------------------------------------------
// Memory per child
// ---------------------------------------------------------------------------

/// Anonymous resident memory of this process, in KiB.
fn rss_anon_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("RssAnon:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("RssAnon in /proc/self/status")
}

/// What one measurement in a child process saw.
struct MemoryRun {
    before_kib: u64,
    after_kib: u64,
    startup: Duration,
    shutdown: Duration,
}

impl MemoryRun {
    fn bytes_per_child(&self, n: usize) -> f64 {
        (self.after_kib.saturating_sub(self.before_kib) * 1024) as f64 / n as f64
    }
}

/// `n` supervised task children in one replica group, all ready and running.
async fn measure_supervisor(n: usize) -> MemoryRun {
    let started = Arc::new(AtomicUsize::new(0));
    let counter = started.clone();
    let group = ChildSpec::task("idle", move |ctx| {
        let counter = counter.clone();
        async move {
            counter.fetch_add(1, Ordering::Relaxed);
            ctx.cancelled().await;
            Ok::<(), std::io::Error>(())
        }
    })
    .replicas(n);
    let spec = SupervisorSpec::builder("mem")
        .child(group)
        .build()
        .expect("valid spec");
    let before_kib = rss_anon_kib();
    let t0 = Instant::now();
    let handle = Supervisor::start(spec).expect("inside a tokio runtime");
    // Every child has been polled once (its future is allocated)...
    while started.load(Ordering::Relaxed) < n {
        tokio::task::yield_now().await;
    }
    // ...and the supervisor counts all of them ready (polled only now:
    // each query walks all instances).
    loop {
        let children = handle.children().await.expect("supervisor running");
        if children.iter().map(|c| c.ready).sum::<usize>() == n {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let startup = t0.elapsed();
    let after_kib = rss_anon_kib();
    let t1 = Instant::now();
    handle.shutdown().await.expect("clean shutdown");
    MemoryRun {
        before_kib,
        after_kib,
        startup,
        shutdown: t1.elapsed(),
    }
}

/// `n` bare tokio tasks each awaiting a child of one `CancellationToken`.
async fn measure_baseline(n: usize) -> MemoryRun {
    let started = Arc::new(AtomicUsize::new(0));
    let parent = CancellationToken::new();
    let before_kib = rss_anon_kib();
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..n {
        let token = parent.child_token();
        let counter = started.clone();
        tasks.push(tokio::spawn(async move {
            counter.fetch_add(1, Ordering::Relaxed);
            token.cancelled().await;
        }));
    }
    while started.load(Ordering::Relaxed) < n {
        tokio::task::yield_now().await;
    }
    let startup = t0.elapsed();
    let after_kib = rss_anon_kib();
    let t1 = Instant::now();
    parent.cancel();
    for task in tasks {
        task.await.expect("baseline task");
    }
    MemoryRun {
        before_kib,
        after_kib,
        startup,
        shutdown: t1.elapsed(),
    }
}

/// Body of the re-executed child process: one warm-up, one measurement.
fn memory_child(case: &str, n: usize) {
    let rt = Flavor::CurrentThread.runtime();
    let run = rt.block_on(async {
        match case {
            "supervisor" => {
                measure_supervisor(64).await;
                measure_supervisor(n).await
            }
            "baseline" => {
                measure_baseline(64).await;
                measure_baseline(n).await
            }
            other => panic!("unknown memory case {other:?}"),
        }
    });
    println!(
        "{} {} {} {}",
        run.before_kib,
        run.after_kib,
        run.startup.as_nanos(),
        run.shutdown.as_nanos()
    );
}

fn spawn_memory_child(case: &str, n: usize) -> MemoryRun {
    let exe = std::env::current_exe().expect("path of this bench binary");
    let out = Command::new(exe)
        .env(MEMORY_CASE_ENV, case)
        .env(MEMORY_N_ENV, n.to_string())
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .expect("run memory measurement process");
    assert!(
        out.status.success(),
        "memory measurement {case} failed: {}",
        out.status
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let f: Vec<u64> = text
        .split_whitespace()
        .map(|w| w.parse().expect("numeric output"))
        .collect();
    assert_eq!(f.len(), 4, "unexpected memory output {text:?}");
    MemoryRun {
        before_kib: f[0],
        after_kib: f[1],
        startup: Duration::from_nanos(f[2]),
        shutdown: Duration::from_nanos(f[3]),
    }
}

struct MemoryResult {
    n: usize,
    supervisor: f64,
    baseline: f64,
}

fn memory_per_child(scale: Scale) -> MemoryResult {
    let n = scale.memory_children;
    let mut rows = Vec::new();
    for case in ["supervisor", "baseline"] {
        let mut runs: Vec<MemoryRun> = (0..scale.memory_runs)
            .map(|_| spawn_memory_child(case, n))
            .collect();
        runs.sort_by(|a, b| a.bytes_per_child(n).total_cmp(&b.bytes_per_child(n)));
        let all: Vec<String> = runs
            .iter()
            .map(|r| format!("{:.0}", r.bytes_per_child(n)))
            .collect();
        let median = runs.swap_remove(runs.len() / 2);
        rows.push((case, median, all.join("/")));
    }
    eprintln!();
    eprintln!(
        "memory per child, {n} children, current_thread runtime, RssAnon growth (median of {} fresh processes)",
        scale.memory_runs
    );
    eprintln!(
        "  {:<12} {:>12} {:>12} {:>14} {:>18} {:>12} {:>12}",
        "case", "before KiB", "growth KiB", "bytes/child", "all runs B/child", "start->all", "shutdown"
    );
    for (case, run, all) in &rows {
        eprintln!(
            "  {:<12} {:>12} {:>12} {:>14.0} {:>18} {:>9.1} ms {:>9.1} ms",
            case,
            run.before_kib,
            run.after_kib.saturating_sub(run.before_kib),
            run.bytes_per_child(n),
            all,
            run.startup.as_secs_f64() * 1e3,
            run.shutdown.as_secs_f64() * 1e3
        );
    }
    let supervisor = rows[0].1.bytes_per_child(n);
    let baseline = rows[1].1.bytes_per_child(n);
    eprintln!(
        "  ratio supervisor/baseline: {:.1}x ({:.0} extra bytes per child)",
        supervisor / baseline.max(1.0),
        supervisor - baseline
    );
    MemoryResult {
        n,
        supervisor,
        baseline,
    }
}

fn main() {
    if let Ok(case) = std::env::var(MEMORY_CASE_ENV) {
        let n = std::env::var(MEMORY_N_ENV)
            .ok()
            .and_then(|v| v.parse().ok())
            .expect("ORCH_BENCH_MEMORY_N");
        memory_child(&case, n);
        return;
    }
    let scale = Scale::from_args();
    let mut c = Criterion::default()
        .sample_size(30)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4))
        .configure_from_args();
    if std::env::args().any(|a| a == "--list") {
        // Let criterion list the benchmarks; measure nothing.
        crash_list(&mut c);
        return;
    }
    let latencies: Vec<LatencyResult> = [Flavor::CurrentThread, Flavor::MultiThread2]
        .into_iter()
        .map(|f| crash_to_ready(&mut c, f, scale))
        .collect();
    let memory = memory_per_child(scale);
    c.final_summary();

    eprintln!();
    eprintln!(
        "summary{}:",
        if scale.full {
            ""
        } else {
            " (smoke run, not a measurement)"
        }
    );
    eprintln!(
        "  {:<40} {:>12} {:>12} {:>12}",
        "measurement", "supervisor", "baseline", "ratio"
    );
    for l in &latencies {
        for (what, s, b) in [
            ("median", l.supervisor.median, l.baseline.median),
            ("p99", l.supervisor.p99, l.baseline.p99),
        ] {
            eprintln!(
                "  {:<40} {:>9} µs {:>9} µs {:>11.1}x",
                format!("crash->ready {what} ({})", l.flavor.name()),
                us(s),
                us(b),
                ratio(s, b)
            );
        }
    }
    eprintln!(
        "  {:<40} {:>10.0} B {:>10.0} B {:>11.1}x",
        format!("memory per child (n = {})", memory.n),
        memory.supervisor,
        memory.baseline,
        memory.supervisor / memory.baseline.max(1.0)
    );
}

/// Registers the benchmark names without running them (for `--list`).
fn crash_list(c: &mut Criterion) {
    for flavor in [Flavor::CurrentThread, Flavor::MultiThread2] {
        let mut group = c.benchmark_group(format!("crash_to_ready/{}", flavor.name()));
        group.bench_function("supervisor_restart", |b| b.iter(|| ()));
        group.bench_function("baseline_spawn_mpsc_hop", |b| b.iter(|| ()));
        group.finish();
    }
}

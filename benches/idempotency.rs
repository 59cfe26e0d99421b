//! Throughput of the memory idempotency store: one claim plus one complete
//! of a fresh key, the work a keyed request adds, against a bare sharded
//! `Mutex<HashMap>` insert plus update of the same keys and responses in
//! the same run.
//!
//! Every claim is of a key not seen before, so each iteration measures an
//! insert, not a replay. Two states of the store, each with its baseline:
//! `steady`, where expired records are freed as fast as new ones come (a
//! service past its first retention period; see [`Store::steady`]), and
//! `growing`, a store that starts empty each sample and only grows (the
//! first day of a 24 h retention; the map's growth and fresh pages are in
//! the figure). Keys are
//! UUID-shaped, written into a reused buffer; every iteration builds the
//! response a layer would save (one header, a 16-byte body), for both
//! lines alike. The store's futures are ready at once (no await point
//! inside), so each is polled once with a no-op waker: no executor cost is
//! in the numbers, the `async-trait` boxing is.
//!
//! Groups:
//! - `claim_complete_1_thread`: ours and the bare map on one thread.
//! - `claim_complete_2_threads`: two OS threads on one shared store (or
//!   map), each with keys of its own. Throughput counts both threads'
//!   operations, so perfect scaling shows twice the one-thread figure.
//!
//! Each state also has an `allocation only` line: the same allocations
//! and footprint as the bare map's records, each thread on its own, with
//! nothing shared; its two-thread gain is what the allocator and memory
//! give any in-memory store.
//!
//! `steady/bare map, shards of its own` is the bare map with each thread
//! keeping to half of the shards (the even or the odd ones): the same
//! locks, maps and allocations, nothing shared between the threads. Its
//! two-thread gain against the bare map's is what sharing the shards
//! costs; no store whose threads must find each other's keys can avoid
//! that cost.
//!
//! Each group also has `ceiling/arithmetic only`, two threads that share
//! nothing: its two-thread gain is what the machine can give at all (a
//! VM's two vCPUs may be one core's hyperthreads or be shared with other
//! work), so read the store's scaling against it.
//!
//! - `redis_latency` and `postgres_latency` (when the server's URL is set
//!   in `ORCH_TEST_REDIS_URL` or `ORCH_TEST_POSTGRES_URL`): the latency a
//!   networked store adds per keyed request against its server's bare
//!   commands, and its round trips per operation (`support/store_latency.rs`).
//!
//! Run: `cargo bench --bench idempotency`.

use std::{
    collections::{HashMap, VecDeque},
    future::Future,
    hash::{BuildHasher, RandomState},
    hint::black_box,
    pin::pin,
    sync::{
        Arc, Barrier, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    task::{Context, Poll, Waker},
    time::{Duration, Instant},
};

use bytes::Bytes;
use criterion::{
    BenchmarkGroup, Criterion, Throughput, criterion_group, criterion_main, measurement::WallTime,
};
use orch::resilience::idempotency::{
    Claim, Fingerprint, IdempotencyStore, MemoryStore, MemoryStoreConfig, ResponseStatus, SavedResponse,
    StoreError,
};

const LEASE: Duration = Duration::from_millis(10);
const SCOPE: &str = "tenant-42";

/// A UUID v7-shaped key for `n` of `thread`, written into `buf`.
fn key(buf: &mut [u8; 36], thread: u8, n: u64) -> &str {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    buf.copy_from_slice(b"0190a1b2-c3d4-7000-8000-000000000000");
    buf[0] = HEX[usize::from(thread & 15)];
    for (i, byte) in buf[24..].iter_mut().rev().enumerate() {
        *byte = HEX[((n >> (4 * i)) & 15) as usize];
    }
    std::str::from_utf8(buf).unwrap_or_else(|_| unreachable!("hex digits are ASCII"))
}

fn response() -> SavedResponse {
    SavedResponse::new(
        ResponseStatus::Http(201),
        Bytes::from_static(b"{\"order\":123456}"),
    )
    .with_header("content-type", Bytes::from_static(b"application/json"))
}

/// Polls a future that is ready at once.
fn now<F: Future>(future: F) -> F::Output {
    match pin!(future).poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(output) => output,
        Poll::Pending => unreachable!("the memory store never waits"),
    }
}

/// What a keyed request costs a store: claim a fresh key, then save its
/// response; `n` numbers the calling thread's keys.
trait Target: Sync {
    fn claim_complete(&self, thread: u8, n: u64);
}

/// The memory store, with bounds far above what a run claims.
struct Store(MemoryStore);

impl Store {
    fn new(retention: Duration) -> Self {
        Self(
            MemoryStoreConfig::default()
                .retention(retention)
                .max_records(1 << 26)
                .max_bytes(1 << 40)
                .build()
                .expect("valid config"),
        )
    }

    /// The steady-state store: records expire 20 ms after completion and
    /// the claims that follow free them (the store's lazy expiry), so after
    /// the warm-up each sample runs on a store of about 20 ms of traffic
    /// (20,000–50,000 records) whose memory is reused, as in a long-running
    /// service, rather than one that grows and faults in fresh pages.
    fn steady() -> Self {
        Self::new(Duration::from_millis(20))
    }

    /// A store that only grows: the default 24 h retention.
    fn growing() -> Self {
        Self::new(Duration::from_secs(24 * 60 * 60))
    }
}

impl Target for Store {
    #[inline]
    fn claim_complete(&self, thread: u8, n: u64) {
        let mut buf = [0; 36];
        let fingerprint = Fingerprint::from_bytes([7; 32]);
        let claim = self.0.claim(SCOPE, key(&mut buf, thread, n), fingerprint, LEASE);
        let Ok(Claim::Acquired { token }) = now(claim) else {
            panic!("a fresh key is acquired");
        };
        match now(self.0.complete(&token, response())) {
            // A worker preempted for longer than the steady store's 20 ms
            // retention finds its record gone; that is the store's answer.
            Ok(()) | Err(StoreError::StaleToken) => {}
            Err(err) => panic!("complete: {err}"),
        }
    }
}

/// The baseline: the same sharding with nothing but an insert and an
/// update, no fingerprint, lease, fencing, expiry queue or bounds. In the
/// steady state it removes each thread's key from `window` keys ago, about
/// what the steady store holds.
struct BareMap {
    shards: Box<[Padded<Mutex<BareShard>>]>,
    hasher: RandomState,
    window: Option<u64>,
    /// Each thread keeps to shards of its own (the even ones or the odd
    /// ones): the same work with nothing shared, to tell what sharing the
    /// shards costs from what the map's work costs.
    own_shards: bool,
}

type BareShard = HashMap<Arc<str>, Option<SavedResponse>>;

#[repr(align(128))]
struct Padded<T>(T);

impl BareMap {
    fn new(window: Option<u64>) -> Self {
        Self {
            shards: (0..64).map(|_| Padded(Mutex::default())).collect(),
            hasher: RandomState::new(),
            window,
            own_shards: false,
        }
    }

    fn steady() -> Self {
        Self::new(Some(1 << 15))
    }

    fn growing() -> Self {
        Self::new(None)
    }

    fn steady_own_shards() -> Self {
        Self {
            own_shards: true,
            ..Self::steady()
        }
    }

    fn shard(&self, name: &str, thread: u8) -> &Mutex<BareShard> {
        let index = (self.hasher.hash_one(name) >> 40) as usize & 63;
        let index = if self.own_shards {
            (index & !1) | usize::from(thread & 1)
        } else {
            index
        };
        &self.shards[index].0
    }

    fn name(thread: u8, n: u64) -> String {
        let mut buf = [0; 36];
        let key = key(&mut buf, thread, n);
        let mut name = String::with_capacity(SCOPE.len() + key.len());
        name.push_str(SCOPE);
        name.push_str(key);
        name
    }
}

impl Target for BareMap {
    #[inline]
    fn claim_complete(&self, thread: u8, n: u64) {
        let name: Arc<str> = Self::name(thread, n).into();
        let shard = self.shard(&name, thread);
        shard.lock().expect("lock").insert(Arc::clone(&name), None);
        *shard.lock().expect("lock").get_mut(&name).expect("inserted") = Some(response());
        if let Some(old) = self.window.and_then(|window| n.checked_sub(window)) {
            let old = Self::name(thread, old);
            self.shard(&old, thread)
                .lock()
                .expect("lock")
                .remove(old.as_str());
        }
    }
}

/// Spins on arithmetic alone: how much faster two threads go than one on
/// this machine when nothing is shared, the ceiling for the other lines.
struct Spin;

impl Target for Spin {
    #[inline]
    fn claim_complete(&self, thread: u8, n: u64) {
        let mut x = black_box(n ^ u64::from(thread));
        // The rotation keeps the compiler from folding the loop into one
        // affine step.
        for _ in 0..64 {
            x = (x.rotate_left(7) ^ 0x9e37_79b9_7f4a_7c15).wrapping_mul(6_364_136_223_846_793_005);
        }
        black_box(x);
    }
}

/// The allocations of the bare map's records and nothing else: each
/// thread makes the name and the response of its keys and keeps them in a
/// queue of its own (in the steady state the last `window` of them), so no
/// line is shared. Its two-thread gain is what the allocator and the memory
/// system give to this much allocation and this footprint, the ceiling for
/// any store that keeps its records in memory.
struct AllocOnly {
    queues: [Padded<Mutex<VecDeque<Held>>>; 2],
    window: Option<u64>,
}

type Held = (Arc<str>, SavedResponse);

impl AllocOnly {
    fn new(window: Option<u64>) -> Self {
        Self {
            queues: [Padded(Mutex::default()), Padded(Mutex::default())],
            window,
        }
    }

    fn steady() -> Self {
        Self::new(Some(1 << 15))
    }

    fn growing() -> Self {
        Self::new(None)
    }
}

impl Target for AllocOnly {
    #[inline]
    fn claim_complete(&self, thread: u8, n: u64) {
        let name: Arc<str> = BareMap::name(thread, n).into();
        // Uncontended: each thread has its own queue.
        let mut queue = self.queues[usize::from(thread)].0.lock().expect("lock");
        queue.push_back((name, response()));
        if self.window.is_some_and(|window| queue.len() as u64 > window) {
            drop(queue.pop_front());
        }
    }
}

/// How a line's target lives across samples.
enum Life<T> {
    /// One target for every sample: the steady state. Each thread's next
    /// key number is kept, so no sample claims a key an earlier one left.
    Shared(T, [AtomicU64; 2]),
    /// A new target per sample, made outside the timing and dropped after
    /// it: the growing store, which starts empty each time.
    PerSample(fn() -> T),
}

impl<T: Target> Life<T> {
    fn shared(target: T) -> Self {
        Self::Shared(target, [AtomicU64::new(0), AtomicU64::new(0)])
    }

    /// `iters` claim+complete pairs on each of `threads` threads; the time
    /// of the slowest thread.
    fn run(&self, threads: u8, iters: u64) -> Duration {
        match self {
            Self::Shared(target, next) => time(target, threads, iters, |thread| {
                next[usize::from(thread)].fetch_add(iters, Ordering::Relaxed)
            }),
            Self::PerSample(make) => {
                let target = make();
                let elapsed = time(&target, threads, iters, |_| 0);
                drop(target);
                elapsed
            }
        }
    }
}

fn time<T: Target>(target: &T, threads: u8, iters: u64, first: impl Fn(u8) -> u64 + Sync) -> Duration {
    let start = Barrier::new(usize::from(threads));
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|thread| {
                let (start, first) = (&start, &first);
                scope.spawn(move || {
                    let first = first(thread);
                    // Touch the thread's allocator arena before the clock starts.
                    black_box(response());
                    start.wait();
                    let began = Instant::now();
                    for n in first..first + iters {
                        target.claim_complete(thread, n);
                    }
                    began.elapsed()
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().expect("worker")).max()
    })
    .unwrap_or_default()
}

fn line<T: Target>(g: &mut BenchmarkGroup<'_, WallTime>, name: &str, threads: u8, life: Life<T>) {
    g.bench_function(name, |b| b.iter_custom(|iters| life.run(threads, iters)));
}

fn group(c: &mut Criterion, threads: u8) {
    let mut g = c.benchmark_group(format!(
        "claim_complete_{threads}_thread{}",
        if threads > 1 { "s" } else { "" }
    ));
    g.throughput(Throughput::Elements(u64::from(threads)));
    line(
        &mut g,
        "steady/bare sharded map",
        threads,
        Life::shared(BareMap::steady()),
    );
    line(
        &mut g,
        "steady/bare map, shards of its own",
        threads,
        Life::shared(BareMap::steady_own_shards()),
    );
    line(
        &mut g,
        "steady/memory store",
        threads,
        Life::shared(Store::steady()),
    );
    line(
        &mut g,
        "growing/bare sharded map",
        threads,
        Life::PerSample(BareMap::growing),
    );
    line(
        &mut g,
        "growing/memory store",
        threads,
        Life::PerSample(Store::growing),
    );
    line(
        &mut g,
        "steady/allocation only",
        threads,
        Life::shared(AllocOnly::steady()),
    );
    line(
        &mut g,
        "growing/allocation only",
        threads,
        Life::PerSample(AllocOnly::growing),
    );
    line(&mut g, "ceiling/arithmetic only", threads, Life::shared(Spin));
    g.finish();
}

fn claim_complete(c: &mut Criterion) {
    group(c, 1);
    group(c, 2);
}

#[path = "support/store_latency.rs"]
mod store_latency;

criterion_group!(
    benches,
    claim_complete,
    store_latency::redis_latency,
    store_latency::postgres_latency
);
criterion_main!(benches);

//! Latency the networked idempotency stores add per keyed request, on
//! loopback, each against the bare commands of its server in the same run,
//! and the round trips each store operation costs, counted.
//!
//! - `redis_latency` (when `ORCH_TEST_REDIS_URL` is set): one claim plus
//!   one complete on the Redis store against a bare `GET` then `SET` of a
//!   fresh key on one connection, both two round trips. Round trips are
//!   counted from the server's per-command statistics (`INFO
//!   commandstats`).
//! - `postgres_latency` (when `ORCH_TEST_POSTGRES_URL` is set): one claim
//!   plus one complete on the PostgreSQL store against two bare `SELECT 1`
//!   on a connection of the same pool, both prepared once. Round trips are
//!   counted by a loopback proxy between the store and the server: each
//!   burst the client sends after the server has answered is one trip.
//!
//! A store's first operations load its scripts or prepare its statements;
//! the counts are taken after, over [`COUNTED`] operations, and printed.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use criterion::Criterion;
use orch::resilience::idempotency::{
    Claim, Fingerprint, IdempotencyStore, PostgresStore, PostgresStoreConfig,
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    runtime::Runtime,
};

use super::{LEASE, SCOPE, key, response};

/// Operations over which round trips are counted.
const COUNTED: u64 = 1000;

/// The server URL in `var`, or `None` after saying the group is skipped.
fn server_url(group: &str, var: &str) -> Option<String> {
    let url = std::env::var(var).ok().filter(|u| !u.is_empty());
    if url.is_none() {
        println!("{group}: skipped, {var} is not set");
    }
    url
}

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// One claim of a fresh key and its completion.
async fn claim_complete(store: &dyn IdempotencyStore, n: u64) {
    let mut buf = [0; 36];
    let claim = store.claim(
        SCOPE,
        key(&mut buf, 0, n),
        Fingerprint::from_bytes([7; 32]),
        LEASE * 100,
    );
    let Ok(Claim::Acquired { token }) = claim.await else {
        panic!("a fresh key is acquired")
    };
    store.complete(&token, response()).await.expect("complete");
}

/// Times `iters` runs of `op` inside one `block_on`, so that the runtime's
/// entry cost is not in the figure.
fn timed<F: Future<Output = ()>>(runtime: &Runtime, iters: u64, mut op: impl FnMut() -> F) -> Duration {
    runtime.block_on(async {
        let began = Instant::now();
        for _ in 0..iters {
            op().await;
        }
        began.elapsed()
    })
}

/// The Redis store's latency against bare commands; skipped without a
/// server. Keys are fresh each iteration and expire within a minute.
pub fn redis_latency(c: &mut Criterion) {
    let Some(url) = server_url("redis_latency", "ORCH_TEST_REDIS_URL") else {
        return;
    };
    let runtime = runtime();
    let prefix = format!("orch-bench:{}:", run_unique());
    let store = orch::resilience::idempotency::redis::RedisStoreConfig::default()
        .url(url.as_str())
        .key_prefix(prefix.as_str())
        .retention(Duration::from_secs(60))
        .build()
        .expect("valid config");
    let bare = runtime.block_on(async {
        let client = redis::Client::open(url.as_str()).expect("url");
        redis::aio::ConnectionManager::new(client).await.expect("connect")
    });
    let next = AtomicU64::new(0);
    let fresh = || next.fetch_add(1, Ordering::Relaxed);

    // The top-level commands the store sent, from the server's counters
    // (commands a script runs inside are counted apart, under their own
    // names): after a first call has loaded the scripts, every operation
    // should be one EVALSHA.
    runtime.block_on(claim_complete(&store, fresh()));
    let sent = |conn: &redis::aio::ConnectionManager| {
        let mut conn = conn.clone();
        async move {
            let info: String = redis::cmd("INFO")
                .arg("commandstats")
                .query_async(&mut conn)
                .await
                .expect("INFO");
            let calls = |command: &str| {
                info.lines()
                    .find_map(|l| l.strip_prefix(&format!("cmdstat_{command}:calls=")))
                    .and_then(|rest| rest.split(',').next()?.parse::<u64>().ok())
                    .unwrap_or(0)
            };
            [calls("evalsha"), calls("eval"), calls("script|load")]
        }
    };
    let before = runtime.block_on(sent(&bare));
    for _ in 0..COUNTED {
        runtime.block_on(claim_complete(&store, fresh()));
    }
    let after = runtime.block_on(sent(&bare));
    let per_op = |i: usize| (after[i] - before[i]) as f64 / COUNTED as f64;
    println!(
        "redis_latency: round trips per claim+complete over {COUNTED}: EVALSHA {:.2}, EVAL {:.2}, \
         SCRIPT LOAD {:.2} (other clients of the server would add to them)",
        per_op(0),
        per_op(1),
        per_op(2),
    );

    let mut g = c.benchmark_group("redis_latency");
    g.bench_function("bare GET+SET", |b| {
        b.iter_custom(|iters| {
            timed(&runtime, iters, || {
                let mut conn = bare.clone();
                let name = format!("{prefix}bare:{}", fresh());
                async move {
                    let found: Option<Vec<u8>> = redis::cmd("GET")
                        .arg(&name)
                        .query_async(&mut conn)
                        .await
                        .expect("GET");
                    assert!(found.is_none(), "fresh key");
                    let () = redis::cmd("SET")
                        .arg(&name)
                        .arg(&b"{\"order\":123456}"[..])
                        .arg("PX")
                        .arg(60_000)
                        .query_async(&mut conn)
                        .await
                        .expect("SET");
                }
            })
        });
    });
    g.bench_function("store claim+complete", |b| {
        b.iter_custom(|iters| timed(&runtime, iters, || claim_complete(&store, fresh())));
    });
    g.finish();
}

/// The PostgreSQL store's latency against bare `SELECT 1`s; skipped
/// without a server. The store works in a schema of its own, dropped at
/// the end.
pub fn postgres_latency(c: &mut Criterion) {
    let Some(url) = server_url("postgres_latency", "ORCH_TEST_POSTGRES_URL") else {
        return;
    };
    let runtime = runtime();
    let schema = format!("orch_bench_{}", run_unique());
    let store_at = |url: &str| {
        let config = PostgresStoreConfig::default()
            .url(url)
            .schema(schema.as_str())
            .retention(Duration::from_secs(60))
            .max_connections(1);
        PostgresStore::new(config).expect("valid config")
    };
    let store = store_at(&url);
    runtime.block_on(store.migrate()).expect("migrate");
    let next = AtomicU64::new(0);
    let fresh = || next.fetch_add(1, Ordering::Relaxed);

    // Round trips, through a counting proxy: a store of its own on one
    // connection, its statements prepared by a first call.
    let (proxy_url, trips) = runtime.block_on(counting_proxy(&url));
    let counted = store_at(&proxy_url);
    runtime.block_on(claim_complete(&counted, fresh()));
    let before = trips.load(Ordering::Relaxed);
    for _ in 0..COUNTED {
        runtime.block_on(claim_complete(&counted, fresh()));
    }
    let per_op = (trips.load(Ordering::Relaxed) - before) as f64 / (2 * COUNTED) as f64;
    println!(
        "postgres_latency: round trips per operation (claim or complete) over {COUNTED} of each: {per_op:.2}"
    );
    drop(counted);

    let mut g = c.benchmark_group("postgres_latency");
    g.bench_function("bare SELECT 1 twice", |b| {
        b.iter_custom(|iters| {
            timed(&runtime, iters, || async {
                let client = store.pool().get().await.expect("a pooled connection");
                let select = client.prepare_cached("SELECT 1").await.expect("prepare");
                for _ in 0..2 {
                    let row = client.query_one(&select, &[]).await.expect("SELECT 1");
                    assert_eq!(row.get::<_, i32>(0), 1);
                }
            })
        });
    });
    g.bench_function("store claim+complete", |b| {
        b.iter_custom(|iters| timed(&runtime, iters, || claim_complete(&store, fresh())));
    });
    g.finish();

    runtime.block_on(async {
        let client = store.pool().get().await.expect("a pooled connection");
        client
            .batch_execute(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
            .await
            .expect("drop the bench schema");
    });
}

/// A loopback proxy in front of the server in `url`: the URL to reach the
/// server through it, and the number of round trips it has seen, counted
/// as bursts from the client that follow an answer of the server (or open
/// the connection).
async fn counting_proxy(url: &str) -> (String, Arc<AtomicU64>) {
    // postgres://user@host:port/db: the authority is between "://" (or
    // the user's "@") and the next "/".
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    let authority_end = url[after_scheme..]
        .find('/')
        .map_or(url.len(), |i| after_scheme + i);
    let host_start = url[after_scheme..authority_end]
        .rfind('@')
        .map_or(after_scheme, |i| after_scheme + i + 1);
    let server = url[host_start..authority_end].to_owned();
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the proxy");
    let proxy = listener.local_addr().expect("the proxy's address");
    let trips = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&trips);
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let server = TcpStream::connect(server.as_str())
                .await
                .expect("reach the server");
            tokio::spawn(relay(client, server, Arc::clone(&counter)));
        }
    });
    let proxied = format!("{}{proxy}{}", &url[..host_start], &url[authority_end..]);
    (proxied, trips)
}

/// Relays one connection both ways, counting client bursts that follow a
/// server answer.
async fn relay(client: TcpStream, server: TcpStream, trips: Arc<AtomicU64>) {
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    // Set by each server answer, taken by the next client burst.
    let answered = Arc::new(AtomicBool::new(true));
    let answered_up = Arc::clone(&answered);
    let upstream = async move {
        let mut buf = vec![0; 64 * 1024];
        while let Ok(n @ 1..) = client_read.read(&mut buf).await {
            if answered_up.swap(false, Ordering::AcqRel) {
                trips.fetch_add(1, Ordering::Relaxed);
            }
            if server_write.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
    };
    let downstream = async move {
        let mut buf = vec![0; 64 * 1024];
        while let Ok(n @ 1..) = server_read.read(&mut buf).await {
            answered.store(true, Ordering::Release);
            if client_write.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
    };
    tokio::join!(upstream, downstream);
}

/// A run-unique name part: the clock's nanoseconds.
fn run_unique() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default()
}

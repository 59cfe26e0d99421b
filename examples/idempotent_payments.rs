//! Idempotency keys on a payments API: however often, and however
//! concurrently, a client sends a charge with one `Idempotency-Key`, the
//! card is charged once and every repeat gets the first answer.
//!
//! - **Server:** an axum `POST /payments` behind
//!   `orch::resilience::idempotency::http::IdempotencyLayer` with a key
//!   required. The handler takes 300 ms to "charge the card" and writes a
//!   ledger, so the summary can count charges per key.
//! - **Client:** a hyper client that sends each payment three times at
//!   once with the same key and payload (as a retrying client after a lost
//!   answer would), waits out `409 Conflict` for the `Retry-After` the
//!   server sends, then sends every payment once more (a replay, marked
//!   `Idempotent-Replayed: true`) and once with another amount (`422`). A
//!   payment without a key gets `400`. Each refusal's
//!   `application/problem+json` body is printed once.
//! - **Store:** `--store memory` (the default, in the process),
//!   `--store redis` (URL from `ORCH_EXAMPLE_REDIS_URL`, default
//!   `redis://127.0.0.1:6379/`) or `--store postgres`
//!   (`ORCH_EXAMPLE_POSTGRES_URL`, default
//!   `postgres://postgres@127.0.0.1:5432/postgres`, schema
//!   `orch_example`). An unreachable server stops the example with an
//!   error saying so. Keys carry a per-run prefix, so runs against a
//!   shared store never meet.
//!
//! It ends by itself with a summary and exits non-zero if a key was
//! charged other than once or an answer was not the expected one.
//!
//! ```text
//! cargo run --example idempotent_payments                    # memory store
//! cargo run --example idempotent_payments -- --store redis
//! cargo run --example idempotent_payments -- --store postgres --serve
//! ```

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use axum::{Json, Router, extract::State, http::HeaderMap, http::StatusCode, routing::post};
use bytes::Bytes;
use http::{Request, header::RETRY_AFTER};
use http_body_util::{BodyExt, Full};
use hyper_util::{client::legacy::Client, client::legacy::connect::HttpConnector, rt::TokioExecutor};
use orch::core::shutdown_signal;
use orch::resilience::{
    IDEMPOTENCY_KEY,
    idempotency::{
        Claim, Fingerprint, IdempotencyStore, MemoryStore, PostgresStore, PostgresStoreConfig,
        http::{IdempotencyConfig, IdempotencyLayer},
        redis::RedisStoreConfig,
    },
};
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Payments the client makes, each with a key of its own.
const PAYMENTS: usize = 8;
/// How many copies of each payment are sent at once.
const DUPLICATES: usize = 3;
/// How many times one send is repeated while the server answers `409`.
const MAX_ATTEMPTS: usize = 5;

// ===== the store =====

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StoreKind {
    Memory,
    Redis,
    Postgres,
}

struct Args {
    store: StoreKind,
    serve: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        store: StoreKind::Memory,
        serve: false,
    };
    let mut argv = std::env::args().skip(1);
    while let Some(arg) = argv.next() {
        let value = match arg.as_str() {
            "--serve" => {
                args.serve = true;
                continue;
            }
            "--store" => argv
                .next()
                .ok_or("--store needs a value: memory, redis or postgres")?,
            other => match other.strip_prefix("--store=") {
                Some(value) => value.to_owned(),
                None => {
                    return Err(format!(
                        "unknown argument {other:?} (expected --store KIND, --serve)"
                    ));
                }
            },
        };
        args.store = match value.as_str() {
            "memory" => StoreKind::Memory,
            "redis" => StoreKind::Redis,
            "postgres" => StoreKind::Postgres,
            other => return Err(format!("--store {other:?}: expected memory, redis or postgres")),
        };
    }
    Ok(args)
}

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

/// The chosen store, checked to answer: a claim and release of a probe key.
async fn open_store(kind: StoreKind, run: &str) -> Result<(Arc<dyn IdempotencyStore>, String), BoxError> {
    let (store, at): (Arc<dyn IdempotencyStore>, String) = match kind {
        StoreKind::Memory => (Arc::new(MemoryStore::default()), "this process".to_owned()),
        StoreKind::Redis => {
            let url = env_or("ORCH_EXAMPLE_REDIS_URL", "redis://127.0.0.1:6379/");
            let store = RedisStoreConfig::default()
                .url(url.clone())
                .key_prefix("orch:example:payments:")
                .retention(Duration::from_secs(3600))
                .build()?;
            (Arc::new(store), format!("Redis at {url}"))
        }
        StoreKind::Postgres => {
            let url = env_or(
                "ORCH_EXAMPLE_POSTGRES_URL",
                "postgres://postgres@127.0.0.1:5432/postgres",
            );
            let config = PostgresStoreConfig::default()
                .url(url.clone())
                .schema("orch_example")
                .connect_timeout(Duration::from_secs(2));
            let store = PostgresStore::new(config)?;
            let at = format!("PostgreSQL at {url}");
            store
                .migrate()
                .await
                .map_err(|e| unreachable(&at, "ORCH_EXAMPLE_POSTGRES_URL", &e))?;
            (Arc::new(store), at)
        }
    };
    let probe = async {
        let fingerprint = Fingerprint::from_bytes([0; 32]);
        let key = format!("probe-{run}");
        if let Claim::Acquired { token } = store
            .claim("probe", &key, fingerprint, Duration::from_secs(5))
            .await?
        {
            store.release(&token).await?;
        }
        Ok::<_, orch::resilience::idempotency::StoreError>(())
    };
    let variable = match kind {
        StoreKind::Redis => "ORCH_EXAMPLE_REDIS_URL",
        _ => "ORCH_EXAMPLE_POSTGRES_URL",
    };
    match tokio::time::timeout(Duration::from_secs(5), probe).await {
        Ok(Ok(())) => Ok((store, at)),
        Ok(Err(e)) => Err(unreachable(&at, variable, &e)),
        Err(_) => Err(unreachable(&at, variable, &"no answer within 5 s")),
    }
}

fn unreachable(at: &str, variable: &str, error: &dyn std::fmt::Display) -> BoxError {
    format!("{at} is not reachable ({error}); start it, or point {variable} at one").into()
}

// ===== the server =====

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Payment {
    customer: String,
    amount_cents: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Charge {
    charge_id: String,
    customer: String,
    amount_cents: u64,
}

/// Every charge made, by idempotency key.
#[derive(Default)]
struct Ledger {
    charges: Mutex<BTreeMap<String, usize>>,
}

async fn charge(
    State(ledger): State<Arc<Ledger>>,
    headers: HeaderMap,
    Json(payment): Json<Payment>,
) -> (StatusCode, Json<Charge>) {
    // The layer refused requests without a key: the key is here.
    let key = headers
        .get(IDEMPOTENCY_KEY)
        .and_then(|k| k.to_str().ok())
        .unwrap_or_default()
        .trim_matches('"')
        .to_owned();
    // The card network is slow: duplicates sent meanwhile find the key busy.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let n = match ledger.charges.lock() {
        Ok(mut charges) => {
            let count = charges.entry(key.clone()).or_default();
            *count += 1;
            charges.values().sum::<usize>()
        }
        Err(_) => 0,
    };
    let charge = Charge {
        charge_id: format!("ch_{n:04}"),
        customer: payment.customer,
        amount_cents: payment.amount_cents,
    };
    (StatusCode::CREATED, Json(charge))
}

async fn serve(store: Arc<dyn IdempotencyStore>, ledger: Arc<Ledger>) -> Result<SocketAddr, BoxError> {
    let config = IdempotencyConfig::default()
        .name("payments".to_owned())
        .key_required(true)
        .lease(Duration::from_secs(10));
    let app = Router::new()
        .route("/payments", post(charge))
        .layer(IdempotencyLayer::with_shared_store(store, config)?)
        .with_state(ledger);
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, app).await {
            eprintln!("payments server failed: {error}");
        }
    });
    Ok(addr)
}

// ===== the client =====

type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// One answer as the client saw it.
#[derive(Debug)]
struct Answer {
    status: StatusCode,
    replayed: bool,
    body: String,
    retry_after: Option<u64>,
}

async fn send(
    client: &HttpClient,
    addr: SocketAddr,
    key: Option<&str>,
    payment: &Payment,
) -> Result<Answer, BoxError> {
    let mut request =
        Request::post(format!("http://{addr}/payments")).header("content-type", "application/json");
    if let Some(key) = key {
        request = request.header(IDEMPOTENCY_KEY, format!("\"{key}\""));
    }
    let response = client
        .request(request.body(Full::new(Bytes::from(serde_json::to_vec(payment)?)))?)
        .await?;
    let retry_after = response
        .headers()
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok()?.parse().ok());
    let status = response.status();
    let replayed = response
        .headers()
        .get("idempotent-replayed")
        .is_some_and(|v| v == "true");
    let body = String::from_utf8_lossy(&response.into_body().collect().await?.to_bytes()).into_owned();
    Ok(Answer {
        status,
        replayed,
        body,
        retry_after,
    })
}

/// Sends until the answer is not `409`, waiting the `Retry-After` (at most
/// 2 s) between tries.
async fn send_until_done(
    client: &HttpClient,
    addr: SocketAddr,
    key: &str,
    payment: &Payment,
    log: &Log,
) -> Result<Answer, BoxError> {
    for _ in 0..MAX_ATTEMPTS {
        let answer = send(client, addr, Some(key), payment).await?;
        log.see(&answer);
        if answer.status != StatusCode::CONFLICT {
            return Ok(answer);
        }
        let wait = answer.retry_after.unwrap_or(1).min(2);
        tokio::time::sleep(Duration::from_secs(wait)).await;
    }
    Err(format!("key {key}: still in progress after {MAX_ATTEMPTS} attempts").into())
}

/// Answers by status, printing the first problem body of each refusal.
#[derive(Default)]
struct Log {
    by_status: Mutex<BTreeMap<u16, usize>>,
}

impl Log {
    fn see(&self, answer: &Answer) {
        let Ok(mut by_status) = self.by_status.lock() else {
            return;
        };
        let count = by_status.entry(answer.status.as_u16()).or_default();
        *count += 1;
        if *count == 1 && !answer.status.is_success() {
            println!("--- first {}: {}", answer.status, answer.body);
        }
    }

    fn count(&self, status: StatusCode) -> usize {
        self.by_status
            .lock()
            .map(|s| s.get(&status.as_u16()).copied().unwrap_or(0))
            .unwrap_or(0)
    }
}

/// What the run found, for the summary and the exit code.
#[derive(Default)]
struct Outcome {
    problems: Vec<String>,
    replays: usize,
}

async fn run_client(addr: SocketAddr, run: &str, log: &Arc<Log>) -> Result<Outcome, BoxError> {
    let client: HttpClient = Client::builder(TokioExecutor::new()).build_http();
    let mut outcome = Outcome::default();
    let payment = |i: usize| Payment {
        customer: format!("cus_{i}"),
        amount_cents: 1_000 + i as u64,
    };

    // A payment without a key is refused before the handler.
    let answer = send(&client, addr, None, &payment(0)).await?;
    log.see(&answer);
    if answer.status != StatusCode::BAD_REQUEST {
        outcome
            .problems
            .push(format!("no key: {} instead of 400", answer.status));
    }

    // Every payment sent DUPLICATES times at once with one key.
    let keys: Vec<String> = (0..PAYMENTS).map(|i| format!("pay-{run}-{i:02}")).collect();
    let mut sends = tokio::task::JoinSet::new();
    for (i, key) in keys.iter().enumerate() {
        for _ in 0..DUPLICATES {
            let (client, key, payment, log) = (client.clone(), key.clone(), payment(i), Arc::clone(log));
            sends.spawn(async move {
                let answer = send_until_done(&client, addr, &key, &payment, &log).await;
                (key, answer)
            });
        }
    }
    let mut firsts: BTreeMap<String, Vec<Answer>> = BTreeMap::new();
    while let Some(joined) = sends.join_next().await {
        let (key, answer) = joined?;
        firsts.entry(key).or_default().push(answer?);
    }
    for (key, answers) in &firsts {
        let executed = answers
            .iter()
            .filter(|a| a.status == StatusCode::CREATED && !a.replayed)
            .count();
        let bodies: std::collections::BTreeSet<_> = answers.iter().map(|a| a.body.as_str()).collect();
        if executed != 1 || bodies.len() != 1 {
            outcome.problems.push(format!(
                "key {key}: {executed} fresh answers, {} distinct bodies",
                bodies.len()
            ));
        }
        outcome.replays += answers.iter().filter(|a| a.replayed).count();
    }

    // Once more later: a replay of the first answer; another amount: 422.
    for (i, key) in keys.iter().enumerate() {
        let again = send_until_done(&client, addr, key, &payment(i), log).await?;
        let first = firsts.get(key).and_then(|a| a.first()).map(|a| a.body.as_str());
        if !again.replayed || Some(again.body.as_str()) != first {
            outcome.problems.push(format!(
                "key {key}: the repeat was not a replay of the first answer"
            ));
        }
        outcome.replays += usize::from(again.replayed);
        let changed = Payment {
            amount_cents: 99_999,
            ..payment(i)
        };
        let mismatch = send(&client, addr, Some(key), &changed).await?;
        log.see(&mismatch);
        if mismatch.status != StatusCode::UNPROCESSABLE_ENTITY {
            outcome.problems.push(format!(
                "key {key}: another payload got {} instead of 422",
                mismatch.status
            ));
        }
    }
    Ok(outcome)
}

fn print_summary(store: &str, ledger: &Ledger, log: &Log, outcome: &Outcome, elapsed: Duration) {
    let charges = ledger.charges.lock().map(|c| c.clone()).unwrap_or_default();
    let charged_once = charges.values().filter(|&&n| n == 1).count();
    println!("--- summary after {:.1} s, store: {store}", elapsed.as_secs_f64());
    println!(
        "    payments {PAYMENTS}, each sent {DUPLICATES} times at once, then once more and once changed"
    );
    println!(
        "    charges made       {} ({charged_once} keys charged exactly once)",
        charges.values().sum::<usize>()
    );
    println!("    replays            {}", outcome.replays);
    println!(
        "    409 in progress    {}, 422 mismatch {}, 400 no key {}",
        log.count(StatusCode::CONFLICT),
        log.count(StatusCode::UNPROCESSABLE_ENTITY),
        log.count(StatusCode::BAD_REQUEST),
    );
    for problem in &outcome.problems {
        println!("    problem: {problem}");
    }
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let args = parse_args()?;
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .init();
    // Per-run keys: a shared store keeps the records of earlier runs.
    let run = format!("{:x}", SystemTime::now().duration_since(UNIX_EPOCH)?.as_micros());
    let started = tokio::time::Instant::now();
    let (store, at) = open_store(args.store, &run).await?;
    let ledger = Arc::new(Ledger::default());
    let addr = serve(store, Arc::clone(&ledger)).await?;
    println!("--- payments on http://{addr}, idempotency records in {at}");

    let log = Arc::new(Log::default());
    let outcome = tokio::select! {
        outcome = run_client(addr, &run, &log) => outcome?,
        signal = shutdown_signal() => {
            println!("--- {} received", signal?);
            return Ok(());
        }
    };
    print_summary(&at, &ledger, &log, &outcome, started.elapsed());
    if args.serve {
        println!("--- serving on http://{addr}; Ctrl-C or SIGTERM shuts down");
        println!("--- {} received", shutdown_signal().await?);
    }
    let charges = ledger.charges.lock().map(|c| c.clone()).unwrap_or_default();
    if charges.len() != PAYMENTS || charges.values().any(|&n| n != 1) {
        return Err(format!("expected each of {PAYMENTS} keys charged once, got {charges:?}").into());
    }
    if !outcome.problems.is_empty() {
        return Err(format!("{} unexpected answers", outcome.problems.len()).into());
    }
    Ok(())
}

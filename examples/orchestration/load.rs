//! The load generator: clients placing orders, more of them as the load
//! ramps up, fewest as it cools down, so that the autoscaler has something
//! to scale up for and then a reason to scale down.
//!
//! Each client places one order after the other, a third of them through
//! the version 1 client and the rest through version 2. An order that gets
//! no definitive answer (`409` while its first attempt runs, a `5xx`, a
//! transport error, an open breaker) is sent again with the same
//! idempotency key, bounded in attempts and time, so that every order ends
//! either answered or counted as never answered.

use std::{sync::Arc, time::Duration};

use bytes::Bytes;
use http::StatusCode;
use http_body_util::Full;
use orch::resilience::{IDEMPOTENCY_KEY, idempotency::http::IDEMPOTENT_REPLAYED};
use serde::Serialize;
use serde_json::{Value, json};
use tokio::{task::JoinSet, time::Instant};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use crate::clients::{OrdersClient, OrdersClients};
use crate::orders::order_id;
use crate::stats::Stats;

/// The longest an order is retried before it counts as never answered.
const ORDER_DEADLINE: Duration = Duration::from_secs(15);

/// The shape of the load over time.
#[derive(Debug, Clone, Copy)]
pub struct LoadShape {
    /// How long new orders are placed.
    pub duration: Duration,
    /// Clients at the peak.
    pub peak_users: usize,
    /// Sends of one order at most.
    pub order_attempts: u32,
    /// Makes the keys of this run.
    pub seed: u64,
}

impl LoadShape {
    /// Clients wanted `elapsed` into the load: a ramp over the first 30 %,
    /// the peak until 60 %, then a tenth of the peak.
    pub fn users_at(&self, elapsed: Duration) -> usize {
        let f = elapsed.as_secs_f64() / self.duration.as_secs_f64().max(1e-3);
        let peak = self.peak_users.max(1);
        let users = if f < 0.3 {
            1.0 + (peak - 1) as f64 * f / 0.3
        } else if f < 0.6 {
            peak as f64
        } else {
            (peak as f64 / 10.0).max(1.0)
        };
        users.round() as usize
    }

    /// The phase `elapsed` falls in, for the progress line.
    pub fn phase_at(&self, elapsed: Duration) -> &'static str {
        let f = elapsed.as_secs_f64() / self.duration.as_secs_f64().max(1e-3);
        match f {
            f if f < 0.3 => "ramp",
            f if f < 0.6 => "peak",
            f if f < 1.0 => "cool down",
            _ => "finishing",
        }
    }
}

/// How an order ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// `201`, with the charge that paid it.
    Accepted {
        /// The charge's id, as the answer gave it.
        charge_id: String,
    },
    /// Refused for good (a `4xx` other than "try again").
    Rejected {
        /// The status.
        status: u16,
    },
    /// No definitive answer within the attempts and the deadline.
    Unanswered {
        /// The last thing that went wrong.
        last_error: String,
    },
    /// Ctrl-C or SIGTERM came first.
    Interrupted,
}

/// One order, from the client's side.
#[derive(Debug, Clone, Serialize)]
pub struct OrderRecord {
    /// The order's id (derived from its key, as the server derives it).
    pub order_id: String,
    /// The API version of the client that placed it.
    pub version: u8,
    /// How it ended.
    pub outcome: Outcome,
    /// From the first send to the definitive answer.
    #[serde(skip)]
    pub latency: Duration,
    /// Times it was sent.
    pub sends: u32,
}

/// Runs the load until its duration is over, then lets every client
/// finish the order in hand; `interrupt` stops everything at once.
pub async fn run(
    shape: LoadShape,
    clients: Arc<OrdersClients>,
    stats: Arc<Stats>,
    interrupt: CancellationToken,
) -> Vec<OrderRecord> {
    let started = Instant::now();
    let mut users: Vec<CancellationToken> = Vec::new();
    let mut tasks = JoinSet::new();
    let next = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    while started.elapsed() < shape.duration && !interrupt.is_cancelled() {
        tokio::select! {
            () = interrupt.cancelled() => break,
            _ = tick.tick() => {}
        }
        let wanted = shape.users_at(started.elapsed());
        while users.len() < wanted {
            let retire = CancellationToken::new();
            let index = users.len();
            let client = if index.is_multiple_of(3) {
                (1, clients.v1.clone())
            } else {
                (2, clients.v2.clone())
            };
            let user = User {
                shape,
                client,
                stats: Arc::clone(&stats),
                next: Arc::clone(&next),
                retire: retire.clone(),
                interrupt: interrupt.clone(),
            };
            tasks.spawn(user.run());
            users.push(retire);
        }
        while users.len() > wanted {
            if let Some(retire) = users.pop() {
                retire.cancel();
            }
        }
    }
    for retire in users {
        retire.cancel();
    }
    let mut records = Vec::new();
    while let Some(done) = tasks.join_next().await {
        records.extend(done.unwrap_or_default());
    }
    records
}

/// One client placing orders one after the other.
struct User {
    shape: LoadShape,
    client: (u8, OrdersClient),
    stats: Arc<Stats>,
    next: Arc<std::sync::atomic::AtomicU64>,
    retire: CancellationToken,
    interrupt: CancellationToken,
}

impl User {
    async fn run(self) -> Vec<OrderRecord> {
        let mut records = Vec::new();
        while !self.retire.is_cancelled() && !self.interrupt.is_cancelled() {
            let n = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            records.push(self.place(n).await);
        }
        records
    }

    /// Places order `n`, sending it until it is answered.
    async fn place(&self, n: u64) -> OrderRecord {
        let (version, client) = &self.client;
        let key = format!("\"order-{n:06}-s{}\"", self.shape.seed);
        let body = match version {
            1 => json!({ "customer": format!("c-{}", n % 50), "amount_cents": 100 + n % 900 }),
            _ => {
                json!({ "customer_id": format!("c-{}", n % 50), "amount_cents": 100 + n % 900, "currency": "usd" })
            }
        };
        let body = Bytes::from(body.to_string());
        let started = Instant::now();
        let mut record = OrderRecord {
            order_id: order_id(&key),
            version: *version,
            outcome: Outcome::Interrupted,
            latency: Duration::ZERO,
            sends: 0,
        };
        let mut backoff = Duration::from_millis(25);
        let mut last_error = String::from("never sent");
        while record.sends < self.shape.order_attempts && started.elapsed() < ORDER_DEADLINE {
            record.sends += 1;
            self.stats.requests.incr();
            let request = http::Request::post("/orders")
                .header(IDEMPOTENCY_KEY, key.as_str())
                .header(http::header::CONTENT_TYPE, "application/json")
                .body(Full::new(body.clone()));
            let answer = match request {
                Ok(request) => tokio::select! {
                    () = self.interrupt.cancelled() => return record,
                    answer = client.clone().oneshot(request) => answer,
                },
                Err(error) => Err(error.into()),
            };
            match answer.map(|response| self.judge(response)) {
                Ok(Ok(outcome)) => {
                    self.stats.answered.incr();
                    record.outcome = outcome;
                    record.latency = started.elapsed();
                    return record;
                }
                Ok(Err(error)) => last_error = error,
                Err(error) => last_error = error.to_string(),
            }
            self.stats.errors.incr();
            tokio::select! {
                () = self.interrupt.cancelled() => return record,
                () = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(Duration::from_millis(500));
        }
        record.outcome = Outcome::Unanswered { last_error };
        record.latency = started.elapsed();
        record
    }

    /// A definitive outcome, or why the order must be sent again.
    fn judge(&self, response: http::Response<Bytes>) -> Result<Outcome, String> {
        let status = response.status();
        if response.headers().contains_key(IDEMPOTENT_REPLAYED) {
            self.stats.order_replays.incr();
        }
        if status == StatusCode::CREATED {
            let order: Value =
                serde_json::from_slice(response.body()).map_err(|e| format!("bad order: {e}"))?;
            let charge_id = order["charge_id"].as_str().ok_or("an order without charge_id")?;
            return Ok(Outcome::Accepted {
                charge_id: charge_id.to_owned(),
            });
        }
        let try_again = [
            StatusCode::REQUEST_TIMEOUT,
            StatusCode::CONFLICT,
            StatusCode::TOO_EARLY,
            StatusCode::TOO_MANY_REQUESTS,
        ];
        if status.is_client_error() && !try_again.contains(&status) {
            return Ok(Outcome::Rejected {
                status: status.as_u16(),
            });
        }
        Err(format!("status {status}"))
    }
}

//! A replica leaving rotation, end to end over loopback: a supervised
//! replica group of axum servers, a `SupervisorSource` feeding a registry,
//! a shared balancer over a `HyperConnector`, and closed-loop callers.
//!
//! The tests judge from three logs kept as things happen, never from how
//! long something took:
//!
//! - each server's own record of every request that reached it (which
//!   incarnation, which request, when) and of when it saw its
//!   cancellation ([`Servers`]);
//! - the discovery changes, each stamped at the moment the balancer took
//!   it from the registry's stream and applied it ([`Tap`]): a request sent
//!   after that moment is picked from a set without the removed endpoint;
//! - every request the callers sent, with when and how it ended ([`Load`]),
//!   and every lifecycle event of the tree ([`Events`]).
//!
//! Real sockets need real time: every wait is bounded by [`WAIT`], and
//! instants are only compared with each other to order events.

#![allow(clippy::unwrap_used, reason = "tests unwrap what they set up")]

#[path = "../support/replicas.rs"]
mod replicas;

mod crash;
mod scale_down;

use std::{
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use axum::{
    Router,
    extract::{Path, State},
    http::StatusCode,
    routing::get,
};
use bytes::Bytes;
use futures_util::StreamExt;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use orch::core::{ChildContext, ChildSpec, EventKind, HttpProbe, LifecycleEvent, Update};
use orch::discovery::{
    EndpointChange, Registry,
    balance::{Balancer, BalancerConfig, SharedBalancer},
    connect::HyperConnector,
};
use replicas::{Running, WAIT, fast};
use tokio::{sync::watch, task::JoinHandle, time::Instant};
use tower::ServiceExt;

type Client = SharedBalancer<Request<Full<Bytes>>, Response<Incoming>>;

/// Callers in a closed loop: at most this many requests are in flight.
const CALLERS: usize = 4;

/// How long a removed replica keeps serving between `Stopping` and its
/// cancellation: time for the balancer to drop it first.
const DRAIN: Duration = Duration::from_millis(200);

// ===== the servers =====

/// One request as the replica it reached recorded it.
#[derive(Debug, Clone)]
struct Arrival {
    replica: String,
    generation: u64,
    key: u64,
    at: Instant,
}

#[derive(Debug, Default)]
struct ServerLog {
    arrivals: Vec<Arrival>,
    /// When each incarnation (id, generation) saw its cancellation.
    cancelled: Vec<(String, u64, Instant)>,
    /// Each incarnation's context, so that a test can crash it.
    contexts: Vec<ChildContext>,
    /// Incarnations (id, generation) whose liveness probe fails.
    sick: Vec<(String, u64)>,
}

/// What the replicas of a test recorded. Every incarnation shares it.
#[derive(Clone)]
struct Servers(Arc<watch::Sender<ServerLog>>);

impl Servers {
    fn new() -> Self {
        Self(Arc::new(watch::channel(ServerLog::default()).0))
    }

    /// A replica group `web` of `replicas` axum servers with readiness
    /// and liveness probes and a [`DRAIN`]: `GET /work/{key}` is recorded,
    /// takes a few milliseconds (so that requests are in flight when a
    /// replica leaves) and answers `{instance}#{generation}`.
    fn child(&self, replicas: usize) -> ChildSpec {
        let servers = self.clone();
        ChildSpec::serve_http("web", move |ctx| servers.router(ctx))
            .replicas(replicas)
            .readiness(fast(HttpProbe::get("/ready").unwrap()))
            .liveness(fast(HttpProbe::get("/healthz").unwrap()).failure_threshold(1))
            .drain_delay(DRAIN)
            .shutdown_grace(Duration::from_secs(2))
    }

    fn router(&self, ctx: &ChildContext) -> Router {
        let (id, generation) = (ctx.id().to_string(), ctx.generation());
        self.0.send_modify(|log| log.contexts.push(ctx.clone()));
        let (servers, token, who) = (self.clone(), ctx.token().clone(), id.clone());
        tokio::spawn(async move {
            token.cancelled().await;
            let at = Instant::now();
            servers
                .0
                .send_modify(|log| log.cancelled.push((who, generation, at)));
        });
        Router::new()
            .route("/ready", get(|| async { StatusCode::OK }))
            .route("/healthz", get(healthz))
            .route("/work/{key}", get(work))
            .with_state((self.clone(), id, generation))
    }

    fn arrivals(&self) -> Vec<Arrival> {
        self.0.borrow().arrivals.clone()
    }

    fn cancelled(&self, replica: &str, generation: u64) -> Option<Instant> {
        let log = self.0.borrow();
        log.cancelled
            .iter()
            .find(|(id, g, _)| id == replica && *g == generation)
            .map(|(_, _, at)| *at)
    }

    /// The incarnation's liveness probe fails from now on; it still
    /// answers `/work`, so the supervisor's kill drains it like a stop.
    fn make_sick(&self, replica: &str, generation: u64) {
        self.0
            .send_modify(|log| log.sick.push((replica.to_owned(), generation)));
    }

    fn context(&self, replica: &str, generation: u64) -> ChildContext {
        let log = self.0.borrow();
        let found = log
            .contexts
            .iter()
            .find(|c| c.id().as_str() == replica && c.generation() == generation);
        found
            .cloned()
            .unwrap_or_else(|| panic!("no incarnation {replica}#{generation}"))
    }

    /// Waits (at most [`WAIT`]) until `n` requests reached `replica`'s
    /// incarnation `generation`.
    async fn wait_for_arrivals(&self, replica: &str, generation: u64, n: usize) {
        let mut log = self.0.subscribe();
        let reached = log.wait_for(|log| {
            let at = |a: &&Arrival| a.replica == replica && a.generation == generation;
            log.arrivals.iter().filter(at).count() >= n
        });
        tokio::time::timeout(WAIT, reached)
            .await
            .unwrap_or_else(|_| panic!("{replica}#{generation} never served {n} requests"))
            .unwrap();
    }
}

async fn healthz(State((servers, replica, generation)): State<(Servers, String, u64)>) -> StatusCode {
    let sick = servers
        .0
        .borrow()
        .sick
        .iter()
        .any(|(id, g)| *id == replica && *g == generation);
    if sick {
        StatusCode::INTERNAL_SERVER_ERROR
    } else {
        StatusCode::OK
    }
}

async fn work(
    State((servers, replica, generation)): State<(Servers, String, u64)>,
    Path(key): Path<u64>,
) -> String {
    let at = Instant::now();
    let arrival = Arrival {
        replica: replica.clone(),
        generation,
        key,
        at,
    };
    servers.0.send_modify(|log| log.arrivals.push(arrival));
    tokio::time::sleep(Duration::from_millis(3)).await;
    format!("{replica}#{generation}")
}

// ===== the balancer's view =====

/// A discovery change as the balancer applied it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seen {
    Insert(SocketAddr),
    Update(SocketAddr),
    Remove,
}

/// The discovery changes of one balancer, each stamped when the balancer
/// took it from its stream (it applies a change before it polls the next
/// one, and picks only after applying what it took).
#[derive(Clone, Default)]
struct Tap(Arc<Mutex<Vec<(Instant, String, Seen)>>>);

impl Tap {
    /// A balancer over `registry` whose changes this tap records.
    fn balancer(&self, registry: &Registry) -> Client {
        let tap = self.clone();
        let changes = registry.changes().inspect(move |change| {
            let seen = match change {
                EndpointChange::Insert(e) => Seen::Insert(e.address()),
                EndpointChange::Update(e) => Seen::Update(e.address()),
                EndpointChange::Remove(_) => Seen::Remove,
            };
            let record = (Instant::now(), change.id().as_str().to_owned(), seen);
            tap.0.lock().unwrap().push(record);
        });
        let config = BalancerConfig::default().name("web");
        Balancer::with_config(&config, changes, HyperConnector::new())
            .unwrap()
            .into_shared()
    }

    /// The changes of endpoint `id`, in the order the balancer applied them.
    fn of(&self, id: &str) -> Vec<(Instant, Seen)> {
        let log = self.0.lock().unwrap();
        log.iter()
            .filter(|(_, of, _)| of == id)
            .map(|(at, _, seen)| (*at, seen.clone()))
            .collect()
    }
}

/// Waits (at most [`WAIT`]) until the balancer has `n` ready endpoints.
async fn wait_for_ready(client: &Client, n: usize) {
    let load = client.load();
    let connected = async {
        while load.snapshot().is_none_or(|s| s.ready != n) {
            // The load gauge has no change notification: look again soon.
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    tokio::time::timeout(WAIT, connected)
        .await
        .unwrap_or_else(|_| panic!("the balancer never had {n} ready endpoints"));
}

// ===== the callers =====

/// One request a caller sent: when, and who answered (or the error).
#[derive(Debug, Clone)]
struct Sent {
    key: u64,
    at: Instant,
    outcome: Result<String, String>,
}

/// [`CALLERS`] closed-loop callers through one shared balancer, bounded in
/// count ([`Load::MAX`]) and stopped by [`finish`](Self::finish).
struct Load {
    stop: Arc<AtomicBool>,
    log: Arc<watch::Sender<Vec<Sent>>>,
    callers: Vec<JoinHandle<()>>,
}

impl Load {
    const MAX: u64 = 50_000;

    fn start(client: &Client) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let log = Arc::new(watch::channel(Vec::new()).0);
        let next = Arc::new(AtomicU64::new(0));
        let callers = (0..CALLERS)
            .map(|_| {
                let (client, stop, log, next) = (client.clone(), stop.clone(), log.clone(), next.clone());
                tokio::spawn(async move {
                    while !stop.load(Ordering::SeqCst) {
                        let key = next.fetch_add(1, Ordering::SeqCst);
                        if key >= Self::MAX {
                            break;
                        }
                        // Stamped before the request reaches the balancer's
                        // queue, so "sent after the removal" is never wrong.
                        let at = Instant::now();
                        let outcome = call(&client, key).await;
                        log.send_modify(|log| log.push(Sent { key, at, outcome }));
                    }
                })
            })
            .collect();
        Self { stop, log, callers }
    }

    /// Waits (at most [`WAIT`]) until `n` more requests have ended.
    async fn wait_for_more(&self, n: usize) {
        let target = self.log.borrow().len() + n;
        let mut log = self.log.subscribe();
        tokio::time::timeout(WAIT, log.wait_for(|log| log.len() >= target))
            .await
            .unwrap_or_else(|_| panic!("the load stalled before {target} requests"))
            .unwrap();
    }

    /// Stops the callers and returns every request they sent.
    async fn finish(self) -> Vec<Sent> {
        self.stop.store(true, Ordering::SeqCst);
        for caller in self.callers {
            caller.await.unwrap();
        }
        self.log.borrow().clone()
    }
}

async fn call(client: &Client, key: u64) -> Result<String, String> {
    let request = Request::get(format!("/work/{key}"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let response = tokio::time::timeout(WAIT, client.clone().oneshot(request))
        .await
        .map_err(|_| "timed out".to_owned())?
        .map_err(|e| e.to_string())?;
    if response.status() != StatusCode::OK {
        return Err(format!("status {}", response.status()));
    }
    let body = response.into_body().collect().await.map_err(|e| e.to_string())?;
    Ok(String::from_utf8_lossy(&body.to_bytes()).into_owned())
}

// ===== the lifecycle events =====

/// Every lifecycle event of a tree from the moment it is watched.
struct Events(watch::Receiver<Vec<LifecycleEvent>>);

impl Events {
    fn watch(running: &Running) -> Self {
        let (log, events) = watch::channel(Vec::new());
        let mut stream = running.handle.subscribe().events;
        tokio::spawn(async move {
            while let Some(update) = stream.next().await {
                match update {
                    Update::Event(event) => log.send_modify(|log| log.push(event)),
                    Update::Resync(_) => panic!("the event watcher fell behind"),
                }
            }
        });
        Self(events)
    }

    /// Waits (at most [`WAIT`]) for the first event of `replica`'s
    /// incarnation `generation` that `kind` accepts, and returns it.
    async fn wait_for(
        &mut self,
        replica: &str,
        generation: u64,
        kind: fn(&EventKind) -> bool,
    ) -> LifecycleEvent {
        let is = |e: &LifecycleEvent| e.id.as_str() == replica && e.generation == generation && kind(&e.kind);
        let found = self.0.wait_for(|log| log.iter().any(is));
        let log = tokio::time::timeout(WAIT, found)
            .await
            .unwrap_or_else(|_| panic!("{replica}#{generation}: the event never came"))
            .unwrap();
        log.iter().find(|e| is(e)).cloned().unwrap()
    }

    fn all(&self) -> Vec<LifecycleEvent> {
        self.0.borrow().clone()
    }
}

// ===== the rig =====

/// A running group with its servers, events and balancer watched, and the
/// load on it: 200 requests have been answered when [`start`](Self::start)
/// returns.
struct Rig {
    servers: Servers,
    web: Running,
    events: Events,
    tap: Tap,
    load: Load,
}

impl Rig {
    async fn start(replicas: usize) -> Self {
        let servers = Servers::new();
        let web = Running::start(servers.child(replicas), replicas).await;
        let events = Events::watch(&web);
        let tap = Tap::default();
        let client = tap.balancer(&web.registry);
        wait_for_ready(&client, replicas).await;
        let load = Load::start(&client);
        load.wait_for_more(200).await;
        Self {
            servers,
            web,
            events,
            tap,
            load,
        }
    }
}

// ===== shared checks =====

/// The requests that reached `replica`'s incarnation `generation`, each
/// with the caller's record of it.
fn reached<'a>(
    arrivals: &'a [Arrival],
    sent: &'a [Sent],
    replica: &'a str,
    generation: u64,
) -> impl Iterator<Item = (&'a Arrival, &'a Sent)> + 'a {
    arrivals
        .iter()
        .filter(move |a| a.replica == replica && a.generation == generation)
        .map(|a| {
            let s = sent.iter().find(|s| s.key == a.key);
            (
                a,
                s.unwrap_or_else(|| panic!("request {} reached a replica unsent", a.key)),
            )
        })
}

/// The requests that reached `replica`'s incarnation `generation`, after
/// checking that there were some and that none was sent after `removed_at`,
/// when the balancer dropped that incarnation.
fn none_sent_after_removal<'a>(
    arrivals: &'a [Arrival],
    sent: &'a [Sent],
    (replica, generation): (&'a str, u64),
    removed_at: Instant,
) -> Vec<(&'a Arrival, &'a Sent)> {
    let hits: Vec<_> = reached(arrivals, sent, replica, generation).collect();
    assert!(!hits.is_empty(), "{replica}#{generation} served before it left");
    for (arrival, request) in &hits {
        assert!(
            request.at <= removed_at,
            "request {} was sent after the balancer dropped {replica}#{generation}, and reached it",
            arrival.key
        );
    }
    hits
}

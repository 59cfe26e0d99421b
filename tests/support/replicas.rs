//! Supervised loopback replicas for the client tests: a replica group of
//! axum (`ChildSpec::serve_http`) or tonic (`ChildSpec::serve_grpc`)
//! servers under an orch supervisor, fed into a registry by a
//! `SupervisorSource`, as a user's service would run.
//!
//! A [`Fleet`] is what the tests see of the servers: it counts every
//! attempt that reached a replica (per request key, across replicas), can
//! script the next attempts of a key to fail, and has switches per replica
//! (answer every request with a status, fail the liveness probe so that
//! the supervisor kills it). Real sockets need real time, so every wait
//! here is bounded by [`WAIT`] and nothing asserts a duration.
#![allow(dead_code, reason = "http_client and grpc_client each use part of it")]

use std::{
    collections::{BTreeMap, HashMap},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU16, AtomicU64, AtomicUsize, Ordering},
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
use orch::core::{
    ChildContext, ChildSpec, GrpcHealthProbe, HttpProbe, ProbeSpec, Supervisor, SupervisorHandle,
    SupervisorSpec,
};
use orch::discovery::{Registry, SupervisorSource, SupervisorSourceGuard};
use tonic::service::Routes;
use tonic_health::{ServingStatus, server::HealthReporter};

#[allow(clippy::all, missing_docs)]
pub mod payments {
    include!("../../examples/proto/orch.examples.payments.v1.rs");
}

use payments::{
    ChargeReply, ChargeRequest,
    payments_server::{Payments, PaymentsServer},
};

/// The bound on any one wait; only a bug (or a machine far beyond loaded)
/// reaches it.
pub const WAIT: Duration = Duration::from_secs(10);

/// How often the replicas' probes run: short, so that readiness and a
/// liveness kill take a few tens of milliseconds.
pub const PROBE_PERIOD: Duration = Duration::from_millis(20);

// ===== the fleet =====

/// One incarnation of a replica: who it is, what it was told, what it saw.
#[derive(Debug)]
pub struct Replica {
    /// The instance id (`app/web-0`), also its endpoint's id.
    pub id: String,
    /// Its incarnation.
    pub generation: u64,
    /// 0: answer normally; else the status of every `/work` answer.
    status: AtomicU16,
    /// Its liveness probe fails from now on.
    sick: AtomicBool,
    /// Attempts that reached it.
    hits: AtomicUsize,
    /// Attempts whose handler finished (the others were cut).
    finished: AtomicUsize,
    /// A gRPC replica's health service, which its probes ask.
    health: Option<HealthReporter>,
}

impl Replica {
    /// Answers every later `/work` request (or `Charge`) with `status`.
    pub fn answer_with(&self, status: StatusCode) {
        self.status.store(status.as_u16(), Ordering::SeqCst);
    }

    /// Stops answering `/work` and fails its liveness probe from now on:
    /// the supervisor kills this incarnation (its listener and every
    /// connection, with the requests on them, after the child's shutdown
    /// grace) and starts a fresh one.
    pub async fn kill(&self) {
        self.sick.store(true, Ordering::SeqCst);
        if let Some(health) = &self.health {
            health.set_service_status("", ServingStatus::NotServing).await;
        }
    }

    /// Attempts that reached this incarnation.
    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    /// Attempts that reached this incarnation and were cut before its
    /// handler finished (by a kill), or are still running.
    pub fn unfinished(&self) -> usize {
        self.hits() - self.finished.load(Ordering::SeqCst)
    }

    fn forced_status(&self) -> Option<StatusCode> {
        match self.status.load(Ordering::SeqCst) {
            0 => None,
            code => StatusCode::from_u16(code).ok(),
        }
    }
}

#[derive(Debug, Default)]
struct FleetState {
    /// The latest incarnation of each instance id.
    replicas: Mutex<BTreeMap<String, Arc<Replica>>>,
    /// Attempts per request key, across replicas and incarnations.
    attempts: Mutex<HashMap<String, usize>>,
    /// How many more attempts of a key fail (503, or `UNAVAILABLE`).
    failing: Mutex<HashMap<String, usize>>,
    /// How long each `/work` request or `Charge` takes, in milliseconds.
    delay_ms: AtomicU64,
}

/// The servers of a test, as the test sees them. Cheap to clone; every
/// incarnation of every replica shares it.
#[derive(Debug, Clone, Default)]
pub struct Fleet(Arc<FleetState>);

impl Fleet {
    /// The next `n` attempts of `key` fail, on whichever replica they reach.
    pub fn fail_next(&self, key: &str, n: usize) {
        lock(&self.0.failing).insert(key.to_owned(), n);
    }

    /// Attempts of `key` that reached a replica.
    pub fn attempts(&self, key: &str) -> usize {
        lock(&self.0.attempts).get(key).copied().unwrap_or(0)
    }

    /// Every request takes `delay` at the replica from now on, so that
    /// requests are in flight when something happens.
    pub fn set_delay(&self, delay: Duration) {
        let ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        self.0.delay_ms.store(ms, Ordering::SeqCst);
    }

    /// The latest incarnation of every replica, by instance id.
    pub fn replicas(&self) -> Vec<Arc<Replica>> {
        lock(&self.0.replicas).values().cloned().collect()
    }

    /// The latest incarnation of the replica `id`.
    pub fn replica(&self, id: &str) -> Arc<Replica> {
        lock(&self.0.replicas)
            .get(id)
            .cloned()
            .unwrap_or_else(|| panic!("no replica {id}"))
    }

    /// Attempts that reached any replica.
    pub fn total_hits(&self) -> usize {
        lock(&self.0.attempts).values().sum()
    }

    /// Registers a new incarnation (a restart replaces the old one).
    fn incarnation(&self, ctx: &ChildContext, health: Option<HealthReporter>) -> Arc<Replica> {
        let replica = Arc::new(Replica {
            id: ctx.id().to_string(),
            generation: ctx.generation(),
            status: AtomicU16::new(0),
            sick: AtomicBool::new(false),
            hits: AtomicUsize::new(0),
            finished: AtomicUsize::new(0),
            health,
        });
        lock(&self.0.replicas).insert(replica.id.clone(), Arc::clone(&replica));
        replica
    }

    /// Counts an attempt of `key` at `replica`; true when it must fail.
    async fn attempt(&self, replica: &Replica, key: &str) -> bool {
        replica.hits.fetch_add(1, Ordering::SeqCst);
        *lock(&self.0.attempts).entry(key.to_owned()).or_default() += 1;
        let fail = match lock(&self.0.failing).get_mut(key) {
            Some(left) if *left > 0 => {
                *left -= 1;
                true
            }
            _ => false,
        };
        let delay = self.0.delay_ms.load(Ordering::SeqCst);
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        if replica.sick.load(Ordering::SeqCst) {
            // A dying replica stops answering; its kill cuts the request.
            std::future::pending::<()>().await;
        }
        replica.finished.fetch_add(1, Ordering::SeqCst);
        fail
    }

    // ===== HTTP replicas =====

    /// A replica group `id` of `replicas` axum servers: `GET /ready`
    /// (readiness), `GET /healthz` (liveness, fails once killed),
    /// `GET|POST /work/{key}` (counted; 200 with the instance id as body,
    /// 503 while the key is scripted to fail, or the replica's forced
    /// status). Probes every [`PROBE_PERIOD`]; a 50 ms shutdown grace.
    pub fn http_child(&self, id: &str, replicas: usize) -> ChildSpec {
        let fleet = self.clone();
        ChildSpec::serve_http(id, move |ctx| fleet.http_router(ctx))
            .replicas(replicas)
            .readiness(fast(HttpProbe::get("/ready").expect("a valid probe path")))
            .liveness(fast(HttpProbe::get("/healthz").expect("a valid probe path")).failure_threshold(1))
            .shutdown_grace(Duration::from_millis(50))
    }

    fn http_router(&self, ctx: &ChildContext) -> Router {
        let replica = self.incarnation(ctx, None);
        let sick = Arc::clone(&replica);
        Router::new()
            .route("/ready", get(|| async { StatusCode::OK }))
            .route(
                "/healthz",
                get(move || async move {
                    if sick.sick.load(Ordering::SeqCst) {
                        StatusCode::INTERNAL_SERVER_ERROR
                    } else {
                        StatusCode::OK
                    }
                }),
            )
            .route("/work/{key}", get(work).post(work))
            .with_state((self.clone(), replica))
    }

    // ===== gRPC replicas =====

    /// A replica group `id` of `replicas` tonic servers: `grpc.health.v1`
    /// (readiness and liveness; `NOT_SERVING` once killed) and `Payments`. `Charge` counts an attempt of its
    /// `order_id`, answers `INVALID_ARGUMENT` for a zero amount,
    /// `UNAVAILABLE` while the order is scripted to fail or the replica is
    /// told to answer with a status, else the charge with the instance id
    /// as `served_by`.
    pub fn grpc_child(&self, id: &str, replicas: usize) -> ChildSpec {
        let fleet = self.clone();
        ChildSpec::serve_grpc(id, move |ctx| {
            let (reporter, health) = tonic_health::server::health_reporter();
            let replica = fleet.incarnation(ctx, Some(reporter));
            Routes::new(health).add_service(PaymentsServer::new(Charger {
                fleet: fleet.clone(),
                replica,
            }))
        })
        .replicas(replicas)
        .readiness(fast(GrpcHealthProbe::new()))
        .liveness(fast(GrpcHealthProbe::new()).failure_threshold(1))
        .shutdown_grace(Duration::from_millis(50))
    }
}

/// A probe that runs every [`PROBE_PERIOD`].
pub fn fast(probe: impl orch::core::Probe) -> ProbeSpec {
    ProbeSpec::new(probe)
        .period(PROBE_PERIOD)
        .timeout(Duration::from_millis(500))
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

async fn work(
    State((fleet, replica)): State<(Fleet, Arc<Replica>)>,
    Path(key): Path<String>,
    _body: Bytes,
) -> (StatusCode, String) {
    let fail = fleet.attempt(&replica, &key).await;
    let status = match replica.forced_status() {
        Some(status) => status,
        None if fail => StatusCode::SERVICE_UNAVAILABLE,
        None => StatusCode::OK,
    };
    (status, replica.id.clone())
}

struct Charger {
    fleet: Fleet,
    replica: Arc<Replica>,
}

#[tonic::async_trait]
impl Payments for Charger {
    async fn charge(
        &self,
        request: tonic::Request<ChargeRequest>,
    ) -> Result<tonic::Response<ChargeReply>, tonic::Status> {
        let request = request.into_inner();
        let fail = self.fleet.attempt(&self.replica, &request.order_id).await;
        if request.amount_cents == 0 {
            return Err(tonic::Status::invalid_argument("amount_cents must not be zero"));
        }
        if fail || self.replica.forced_status().is_some() {
            return Err(tonic::Status::unavailable("scripted to fail"));
        }
        Ok(tonic::Response::new(ChargeReply {
            charge_id: format!("charge-{}", request.order_id),
            served_by: self.replica.id.clone(),
        }))
    }
}

// ===== the running service =====

/// A supervisor running one replica group, and the registry that follows
/// its ready instances.
pub struct Running {
    /// The supervisor.
    pub handle: SupervisorHandle,
    /// The ready instances of the group, as endpoints.
    pub registry: Registry,
    _source: SupervisorSourceGuard,
}

impl Running {
    /// Starts `child` under a supervisor `app`, and a registry named like
    /// the child that follows it; returns once `ready` instances are in it.
    pub async fn start(child: ChildSpec, ready: usize) -> Self {
        let id = child.id().to_owned();
        let spec = SupervisorSpec::builder("app")
            .child(child)
            .build()
            .expect("a valid supervisor spec");
        let handle = Supervisor::start(spec).expect("inside a tokio runtime");
        let registry = Registry::new(id.clone());
        let source = SupervisorSource::new(id)
            .start(&handle, &registry)
            .await
            .expect("the supervisor runs the child");
        let running = Self {
            handle,
            registry,
            _source: source,
        };
        running.wait_for_endpoints(|n| n == ready).await;
        running
    }

    /// Waits (at most [`WAIT`]) until the registry's size satisfies `ok`.
    pub async fn wait_for_endpoints(&self, ok: impl Fn(usize) -> bool) {
        let wait = self.registry.wait_until(move |endpoints| ok(endpoints.len()));
        tokio::time::timeout(WAIT, wait)
            .await
            .unwrap_or_else(|_| panic!("registry stuck at {} endpoints", self.registry.len()));
    }

    /// Waits (at most [`WAIT`]) until the endpoint `id` left the registry.
    pub async fn wait_for_removal(&self, id: &str) {
        let id = orch::discovery::EndpointId::new(id);
        let gone = id.clone();
        let wait = self
            .registry
            .wait_until(move |endpoints| endpoints.iter().all(|e| e.id() != &gone));
        tokio::time::timeout(WAIT, wait)
            .await
            .unwrap_or_else(|_| panic!("{id:?} never left the registry"));
    }

    /// Shuts the supervisor down (bounded) and checks it stopped cleanly.
    pub async fn shutdown(self) {
        tokio::time::timeout(WAIT, self.handle.shutdown())
            .await
            .expect("the shutdown ends")
            .expect("a clean shutdown");
    }
}

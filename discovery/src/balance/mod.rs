//! A client-side load balancer: one `tower::Service` in front of every
//! endpoint discovery knows, sending each request to a lightly loaded one.
//!
//! # Why not `tower::balance::p2c`
//!
//! [`Balancer`] is tower's P2C balancer rebuilt for what our registry and the
//! orchestration loop need, and for speed, with more algorithms:
//!
//! - **Endpoints, not services.** It consumes the registry's stream of
//!   [`EndpointChange`]s and connects each [`Endpoint`] itself through a
//!   connector (`MakeService`-style, asynchronous and fallible; [`connect_fn`]
//!   for plain functions). A failed connect or a `poll_ready` error evicts
//!   the service and reconnects after a backoff; a new address reconnects.
//!   Each connected service is polled with a waker of its own, so a ready
//!   endpoint that wakes it (its connection broke) is asked again at the
//!   next background pass rather than at its next pick. The connectors in
//!   [`connect`](crate::connect) (features `hyper` and `tonic`) do so.
//! - **Removes are final.** Once a Remove is seen the endpoint is never
//!   picked again (tower issue 856); requests in flight to it complete.
//! - **Weights.** Candidates are drawn in proportion to weight and compared
//!   by load per unit of weight (tower ignores weights, tower issue 696).
//! - **Failures are load.** A response the [`FailureClassifier`] calls a
//!   failure (an error other than a malformed request; 5xx, 429 and gRPC
//!   `UNAVAILABLE` in responses of the hyper and tonic connectors by
//!   default, and of any `http::Response` with [`HttpFailures`]) raises its
//!   endpoint's load, so an endpoint that fails
//!   fast stops looking like the fastest one.
//! - **Passive health.** Outlier ejection, a panic threshold and slow
//!   start, as Envoy has them (see [below](#passive-health)).
//! - **Fail fast.** With no ready endpoint, `poll_ready` waits at most
//!   [`BalancerConfig::failfast_timeout`] (3 s, linkerd2-proxy's default),
//!   then returns [`BalanceError::NoEndpoints`] instead of hanging.
//! - **Cost.** Per request: one `poll_ready` of the endpoint used last, a
//!   flag check, two random candidates and their costs, (peak-EWMA only)
//!   two reads of the TSC clock, and (with outlier detection, the default)
//!   one atomic add and one load on the endpoint's outlier counters.
//!   Everything else a request touches lives in the compact ready list, and
//!   endpoints that are connecting, not ready or backing off are polled
//!   only when they wake the balancer, never per request; so is passive
//!   health. `benches/balance.rs` measured on the project's machines
//!   (overhead over a bare service, same run, 16 / 1,000 endpoints): P2C
//!   peak-EWMA ≈ 72 / 72 ns against ≈ 600–650 ns for `tower::balance::p2c`
//!   with `PeakEwmaDiscover`; P2C pending ≈ 29 / 40 ns against ≈ 225–250 ns
//!   with `PendingRequestsDiscover` (at 1,000 endpoints the outlier
//!   counters are one more cache line per request, which is most of the
//!   difference); round robin ≈ 20 / 25 ns; Maglev ≈ 28 / 50 ns (its
//!   256 KiB table and the member list are read at random).
//!
//! # Algorithms
//!
//! | [`Algorithm`] | picks | from |
//! |---|---|---|
//! | [`PeakEwma`](Algorithm::PeakEwma) (default) | the less loaded of two random endpoints, load = peak-EWMA latency × requests in flight | Finagle, linkerd2-proxy's `pool-p2c`, `tower::load::PeakEwma` (linkerd's defaults: 30 ms default RTT, 10 s decay) |
//! | [`PendingRequests`](Algorithm::PendingRequests) | the less loaded of two random endpoints, load = requests in flight | least-pending |
//! | [`RoundRobin`](Algorithm::RoundRobin) | in turn, by weight, interleaved ([`SmoothWrr`](crate::pick::SmoothWrr)) | nginx's smooth weighted round robin |
//! | [`Maglev`](Algorithm::Maglev) | by the request's key, consistently ([`Maglev`](crate::pick::Maglev), prime table, 65 537 by default) | Google's Maglev, Envoy's weighted table |
//!
//! Every algorithm honours weights, picks only ready endpoints and skips
//! ejected ones outside panic mode. Maglev takes each request's key from
//! a [`RequestKey`] set with [`Balancer::hash_with`] (a closure, or
//! [`HeaderKey`] for an HTTP header); requests without a key go to P2C over
//! requests in flight. Round robin and Maglev build a table over every
//! known endpoint and rebuild it only when membership or a weight changes
//! (never per request, nor when readiness or ejection changes: those are
//! skipped at pick time, so a key comes back to its endpoint when the
//! endpoint does).
//!
//! # Passive health
//!
//! [`BalancerConfig::health`] (a [`HealthConfig`](crate::health::HealthConfig))
//! turns on the [`health`](crate::health) module's parts, with Envoy's
//! semantics and defaults:
//!
//! - **Outlier ejection** (on by default): every response the
//!   [`FailureClassifier`] judged is also recorded for the endpoint's
//!   outlier detector (one atomic add and one load per request). Five
//!   failures in a row, or a success rate far below the others' over a
//!   10 s interval, eject the endpoint for `30 s × times ejected` (at most
//!   300 s); at most 10 % of the endpoints are ejected at once (one always
//!   may be, the last one in rotation never is). An ejected endpoint comes
//!   back by itself when its time is over: a timer on the balancer's
//!   background waker applies the return even if no request comes
//!   meanwhile. The response that completes a run of failures wakes the
//!   balancer, which ejects the endpoint at its next `poll_ready`; nothing
//!   else about health runs per request.
//! - **Panic threshold** (50 %): when fewer than that share of the known
//!   endpoints are healthy (ready and not ejected), ejections are ignored
//!   and requests spread over every ready endpoint.
//! - **Slow start** (off by default): an endpoint added after the first
//!   membership ramps from 10 % of its weight to all of it over a window,
//!   counted from when it is first ready. Weights (the P2C alias table,
//!   round robin's cycle) are updated in ten steps over the window, never
//!   per request. Maglev ignores slow start (a ramp would move keys at
//!   every step; Envoy also ramps only round robin and least-request).
//!
//! Metrics: `orch_balancer_ejections_total{balancer, reason}`,
//! `orch_balancer_endpoints{balancer, state="ejected"}`,
//! `orch_balancer_panic{balancer}` (0 or 1), besides picks per endpoint
//! and endpoint counts; tracing events on every ejection, return and
//! change of panic mode.
//!
//! # Using it
//!
//! Like tower's `Balance`, a [`Balancer`] is a `Service` driven through
//! `&mut self`. To share it between tasks, turn it into a
//! [`SharedBalancer`] with [`Balancer::into_shared`]: a cheap `Clone`
//! handle (`Send + Sync + 'static`) that shares the balancer with a driver
//! task. A call made while an endpoint is ready runs in the caller's task;
//! otherwise it queues for the driver, which also follows discovery and
//! the timers. Its `poll_ready` fails only when the driver is gone; "no
//! endpoint within the fail-fast timeout" is the error of each call made
//! meanwhile, and once an endpoint is ready again the next call succeeds.
//! It fits wherever a tower client goes: under the resilience layers, or
//! as the channel of a tonic generated client
//! (`MyServiceClient::new(shared)`). Do not put a `Balancer` behind
//! `tower::buffer::Buffer`: `Buffer` takes the first `NoEndpoints` from
//! `poll_ready` as fatal (tower issue 43), and the client stays failed
//! after the endpoints are back.
//!
//! It needs a tokio runtime with the time driver (for backoff, fail-fast
//! and passive-health timers).
//!
//! ```
//! use std::convert::Infallible;
//! use futures_util::stream;
//! use orch_discovery::{Endpoint, EndpointChange, balance::{Balancer, connect_fn}};
//! use tower::{Service, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let changes = stream::iter([
//!     EndpointChange::Insert(Endpoint::new("api-1", "127.0.0.1:8081".parse().unwrap())),
//!     EndpointChange::Insert(Endpoint::new("api-2", "127.0.0.1:8082".parse().unwrap())),
//! ]);
//! let connect = connect_fn(|endpoint: &Endpoint| {
//!     let port = endpoint.address().port();
//!     service_fn(move |_request: &'static str| async move { Ok::<_, Infallible>(port) })
//! });
//! let mut balancer = Balancer::new(changes, connect);
//! let port = balancer.ready().await.unwrap().call("hello").await.unwrap();
//! assert!(port == 8081 || port == 8082);
//! # }
//! ```

mod classify;
mod clock;
mod config;
mod connect;
pub(crate) mod endpoints;
mod error;
mod future;
mod key;
pub(crate) mod load;
mod metrics;
pub(crate) mod rng;
mod shared;
mod wake;

use std::{
    fmt,
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use futures_util::Stream;
use tokio::time::Instant;
use tower_service::Service;

pub use classify::{ErrorsAreFailures, FailureClassifier, FailureFn, HttpFailures, failure_fn};
pub use clock::ClockSource;
pub use config::{
    Algorithm, BalancerConfig, ConfigError, InFlightBias, MaglevConfig, PeakEwmaConfig,
    PendingRequestsConfig, ReconnectBackoff,
};
pub use connect::{ConnectFn, connect_fn};
pub use error::{BalanceError, BoxError};
pub use future::ResponseFuture;
pub use key::{HeaderKey, NoKey, RequestKey};
pub use shared::{BalancerLoad, LoadSnapshot, SharedBalancer, SharedResponseFuture};

use clock::Clock;
use endpoints::{EndpointSet, MAX_CHANGES_PER_POLL};
use future::Tracker;
use load::Now;
use rng::Rng;
pub(crate) use wake::Timer;

use crate::{Endpoint, EndpointChange, pick::Picker};

/// Sends each request to one of the endpoints discovery knows, chosen by
/// the power of two choices over their load.
///
/// `D` is the stream of discovery changes (any
/// `Stream<Item = EndpointChange> + Unpin`; its end means "no more
/// changes", the endpoints stay), `M` the connector that turns an
/// [`Endpoint`] into a service (a `Service<Endpoint>`, such as a
/// `tower::MakeService`, or [`connect_fn`]), `K` the
/// [`FailureClassifier`] that tells failures from successes
/// ([`ErrorsAreFailures`] unless set with [`classify_with`](Self::classify_with)),
/// and `H` the [`RequestKey`] that Maglev hashes ([`NoKey`] unless set with
/// [`hash_with`](Self::hash_with)).
///
/// See the [module docs](self) for what it does and an example.
///
/// # The `Service` contract
///
/// - `poll_ready` applies the discovery changes that arrived, brings
///   endpoints that became ready into the ready set, asks again ready
///   endpoints whose service woke the balancer (evicting broken ones), applies passive
///   health (ejections and returns that are due) and returns `Ready` when
///   at least one endpoint is ready (every ready endpoint has answered
///   `Ready` to its own `poll_ready` since its last call). With none ready it
///   waits up to the fail-fast timeout, then returns
///   [`BalanceError::NoEndpoints`], and keeps returning it at once until an
///   endpoint is ready again.
/// - `call` picks the endpoint (so a future picker can look at the request)
///   and calls it. A `call` without a `Ready` from `poll_ready` before it
///   calls nothing and its future fails with [`BalanceError::NotReady`].
pub struct Balancer<D, M, K = ErrorsAreFailures, H = NoKey>
where
    M: Service<Endpoint>,
{
    /// Discovery's changes; `None` once the stream ended.
    changes: Option<D>,
    connector: M,
    /// Every known endpoint, in its stage; the ready ones a pick reads.
    set: EndpointSet<M::Response, M::Future>,
    picker: Picker,
    classifier: K,
    hasher: H,
    rng: Rng,
    /// Where the caller is between `poll_ready` and `call`.
    turn: Turn,
    failfast: FailFast,
    /// Bound of the queue of a [`SharedBalancer`] made from this one.
    queue_capacity: usize,
}

/// Where the caller is in its `poll_ready`, `call` turn.
#[derive(Clone, Copy)]
enum Turn {
    /// Nothing reserved, no endpoint to ask again.
    Idle,
    /// `poll_ready` returned `Ready` and no `call` used it yet.
    Reserved,
    /// The ready position of the endpoint called last, to ask again whether
    /// it is ready (positions only change in `poll_ready`).
    Called(usize),
}

impl Turn {
    /// The endpoint called last, if any, leaving the turn idle.
    fn take_called(&mut self) -> Option<usize> {
        match std::mem::replace(self, Self::Idle) {
            Self::Called(pos) => Some(pos),
            Self::Idle | Self::Reserved => None,
        }
    }
}

// ===== impl Balancer =====

impl<D, M> Balancer<D, M>
where
    D: Stream<Item = EndpointChange> + Unpin,
    M: Service<Endpoint>,
{
    /// A balancer with the default [`BalancerConfig`]: P2C over peak-EWMA,
    /// a 3 s fail-fast timeout, outlier ejection and a 50 % panic threshold.
    pub fn new(changes: D, connector: M) -> Self {
        match Self::with_config(&BalancerConfig::default(), changes, connector) {
            Ok(balancer) => balancer,
            // The default config is valid (a test says so); a config error
            // here is a bug in this crate, not a user's input.
            Err(error) => unreachable!("the default balancer config is invalid: {error}"),
        }
    }

    /// A balancer with `config`, or the first bad field of it.
    pub fn with_config(config: &BalancerConfig, changes: D, connector: M) -> Result<Self, ConfigError> {
        config.validate()?;
        let mut rng = config.seed.map_or_else(Rng::from_entropy, Rng::seeded);
        Ok(Self {
            changes: Some(changes),
            connector,
            set: EndpointSet::new(config, Clock::start(config.clock))?,
            picker: Picker::for_algorithm(&config.algorithm, rng.next_u64(), &config.name),
            classifier: ErrorsAreFailures,
            hasher: NoKey,
            rng,
            turn: Turn::Idle,
            failfast: FailFast::new(config.failfast_timeout),
            queue_capacity: config.queue_capacity,
        })
    }
}

impl<D, M, K, H> Balancer<D, M, K, H>
where
    M: Service<Endpoint>,
{
    /// The same balancer, classifying responses with `classifier` (for
    /// example [`HttpFailures`] for `http::Response`s). Failures raise an
    /// endpoint's load and count towards its outlier ejection.
    pub fn classify_with<K2>(self, classifier: K2) -> Balancer<D, M, K2, H> {
        self.map_parts(|_, hasher| (classifier, hasher))
    }

    /// The same balancer, taking each request's key for
    /// [`Algorithm::Maglev`] with `hasher`: a closure
    /// `Fn(&Req) -> Option<u64>` or a [`RequestKey`] such as [`HeaderKey`].
    /// Requests whose key is `None` go to P2C over requests in flight. Other
    /// algorithms never call it.
    ///
    /// ```
    /// use std::convert::Infallible;
    /// use futures_util::stream;
    /// use orch_discovery::{Endpoint, EndpointChange, pick::stable_hash};
    /// use orch_discovery::balance::{Algorithm, Balancer, BalancerConfig, connect_fn};
    /// use tower::{Service, ServiceExt, service_fn};
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let changes = stream::iter((1..=3).map(|i| {
    ///     let address = format!("127.0.0.1:808{i}").parse().unwrap();
    ///     EndpointChange::Insert(Endpoint::new(format!("cache-{i}"), address))
    /// }));
    /// let connect = connect_fn(|endpoint: &Endpoint| {
    ///     let port = endpoint.address().port();
    ///     service_fn(move |_user: &'static str| async move { Ok::<_, Infallible>(port) })
    /// });
    /// let config = BalancerConfig::default().algorithm(Algorithm::maglev());
    /// let mut balancer = Balancer::with_config(&config, changes, connect)
    ///     .unwrap()
    ///     .hash_with(|user: &&'static str| Some(stable_hash(user.as_bytes(), 0)));
    /// let first = balancer.ready().await.unwrap().call("user-42").await.unwrap();
    /// for _ in 0..10 {
    ///     assert_eq!(balancer.ready().await.unwrap().call("user-42").await.unwrap(), first);
    /// }
    /// # }
    /// ```
    pub fn hash_with<H2>(self, hasher: H2) -> Balancer<D, M, K, H2> {
        self.map_parts(|classifier, _| (classifier, hasher))
    }

    /// The same balancer with its classifier and hasher mapped by `f`: the
    /// one place that moves every field, so the builders that change a type
    /// parameter cannot drift apart or forget a field added later.
    fn map_parts<K2, H2>(self, f: impl FnOnce(K, H) -> (K2, H2)) -> Balancer<D, M, K2, H2> {
        let (classifier, hasher) = f(self.classifier, self.hasher);
        Balancer {
            changes: self.changes,
            connector: self.connector,
            set: self.set,
            picker: self.picker,
            classifier,
            hasher,
            rng: self.rng,
            turn: self.turn,
            failfast: self.failfast,
            queue_capacity: self.queue_capacity,
        }
    }

    /// Endpoints ejected by outlier detection, as of the last `poll_ready`.
    pub fn ejected_len(&self) -> usize {
        self.set.health.ejected_count()
    }

    /// Whether the balancer is in panic mode (too few healthy endpoints, so
    /// ejections are ignored), as of the last `poll_ready`.
    pub fn in_panic(&self) -> bool {
        self.set.health.panic
    }

    /// Endpoints known (ready, not ready, connecting or backing off), as of
    /// the last `poll_ready`.
    pub fn len(&self) -> usize {
        self.set.len()
    }

    /// True when no endpoint is known.
    pub fn is_empty(&self) -> bool {
        self.set.len() == 0
    }

    /// Endpoints that can be picked, as of the last `poll_ready`.
    pub fn ready_len(&self) -> usize {
        self.set.ready.len()
    }

    /// Requests in flight to the endpoints that can be picked, now (an
    /// autoscaling signal: divided by [`ready_len`](Self::ready_len), the
    /// load per replica).
    pub fn in_flight(&self) -> usize {
        self.set.ready.in_flight()
    }

    /// The connector.
    pub fn get_ref(&self) -> &M {
        &self.connector
    }

    /// The connector, mutably.
    pub fn get_mut(&mut self) -> &mut M {
        &mut self.connector
    }
}

impl<D, M, K, H> Balancer<D, M, K, H>
where
    D: Stream<Item = EndpointChange> + Unpin,
    M: Service<Endpoint>,
    M::Error: Into<BoxError>,
{
    /// Everything that is not a request: discovery changes, reconnects
    /// after backoff, connects, and services that were not ready. Polled
    /// with the wake flag's waker, so each wakes the balancer when it can
    /// make progress.
    fn drive<Req, E>(&mut self)
    where
        M::Response: Service<Req>,
        <M::Response as Service<Req>>::Error: Into<BoxError>,
        M::Future: Future<Output = Result<M::Response, E>>,
        E: Into<BoxError>,
    {
        // A clone (one reference count, per background pass only): the set
        // is borrowed mutably below.
        let waker = self.set.waker.clone();
        let mut cx = Context::from_waker(&waker);
        if let Some(changes) = &mut self.changes {
            let mut complete = false;
            for _ in 0..MAX_CHANGES_PER_POLL {
                match Pin::new(&mut *changes).poll_next(&mut cx) {
                    Poll::Ready(Some(change)) => self.set.apply(change),
                    Poll::Ready(None) => {
                        tracing::debug!(balancer = self.set.metrics.name(), "discovery stream ended");
                        self.changes = None;
                        complete = true;
                        break;
                    }
                    Poll::Pending => {
                        complete = true;
                        break;
                    }
                }
            }
            if !complete {
                // More may be waiting without a wake-up to come: look
                // again on the next poll.
                self.set.wake.set();
            }
            self.set.end_batch(complete);
        }
        self.set.sync_members();
        self.set.poll_backoff(&mut cx);
        self.set
            .start_connects(&mut self.connector, &mut cx, &mut self.rng);
        self.set.poll_connecting(&mut cx, &mut self.rng);
        self.set.poll_rechecks::<Req>(&mut self.rng);
        self.set.poll_unready::<Req>(&mut self.rng);
        self.set.poll_health(&mut cx);
        self.set.publish();
    }
}

impl<D, M, K, H, Req, E> shared::Drive<Req> for Balancer<D, M, K, H>
where
    D: Stream<Item = EndpointChange> + Unpin,
    M: Service<Endpoint>,
    M::Error: Into<BoxError>,
    M::Future: Future<Output = Result<M::Response, E>>,
    E: Into<BoxError>,
    M::Response: Service<Req>,
    <M::Response as Service<Req>>::Error: Into<BoxError>,
    K: FailureClassifier<<M::Response as Service<Req>>::Response, <M::Response as Service<Req>>::Error>,
    H: RequestKey<Req>,
{
    /// Background work without a request: what `poll_ready` does before it
    /// looks for a ready endpoint, and `cx`'s task is woken by the next
    /// progress (a connect, an endpoint ready again, a discovery change, a
    /// health timer) even while endpoints are ready. The driver of a
    /// [`SharedBalancer`] calls it while idle, so an endpoint that is ready
    /// again is noticed before the next request (tower issue 824).
    fn poll_background(&mut self, cx: &mut Context<'_>) {
        // Positions may move below: a reservation would name a stale one.
        if let Turn::Reserved = self.turn {
            self.turn = Turn::Idle;
        }
        loop {
            if self.set.wake.take() {
                // Driving may move ready positions, so the endpoint called
                // last is asked first. Without a wake it is left for the
                // next `poll_ready`: asked now, it would answer before its
                // request ended, and a request that then finds it broken
                // would not be seen until its next pick.
                if let Some(pos) = self.turn.take_called() {
                    self.set.repoll::<Req>(pos, &mut self.rng);
                }
                self.drive::<Req, E>();
            }
            if !self.set.wake.register(cx.waker()) {
                break;
            }
        }
    }
}

impl<D, M, K, H, Req, E> Service<Req> for Balancer<D, M, K, H>
where
    D: Stream<Item = EndpointChange> + Unpin,
    M: Service<Endpoint>,
    M::Error: Into<BoxError>,
    M::Future: Future<Output = Result<M::Response, E>>,
    E: Into<BoxError>,
    M::Response: Service<Req>,
    <M::Response as Service<Req>>::Error: Into<BoxError>,
    K: FailureClassifier<<M::Response as Service<Req>>::Response, <M::Response as Service<Req>>::Error>,
    H: RequestKey<Req>,
{
    type Response = <M::Response as Service<Req>>::Response;
    type Error = BalanceError;
    type Future = ResponseFuture<<M::Response as Service<Req>>::Future, K>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BalanceError>> {
        if let Some(pos) = self.turn.take_called() {
            // Polled with the endpoint's own waker, which drives the
            // background work: if it is not ready, it joins the not-ready
            // set; if it breaks later, it is asked again (`EndpointWaker` in `wake.rs`).
            self.set.repoll::<Req>(pos, &mut self.rng);
        }
        loop {
            if self.set.wake.take() {
                self.drive::<Req, E>();
            }
            if self.set.ready.len() > 0 {
                self.failfast.reset();
                self.turn = Turn::Reserved;
                return Poll::Ready(Ok(()));
            }
            // Nothing ready: sleep until background work wakes us, unless
            // it already did.
            if !self.set.wake.register(cx.waker()) {
                break;
            }
        }
        let known = self.set.len();
        let error = std::task::ready!(self.failfast.poll(cx, self.set.metrics.name(), known));
        self.set.metrics.no_endpoints.increment(1);
        Poll::Ready(Err(error))
    }

    #[inline]
    fn call(&mut self, request: Req) -> Self::Future {
        if !matches!(std::mem::replace(&mut self.turn, Turn::Idle), Turn::Reserved) {
            return ResponseFuture::failed(BalanceError::NotReady);
        }
        let mut now = Now::lazy(&self.set.clock);
        let hasher = &self.hasher;
        let key = || hasher.key_hash(&request);
        let Some(pos) = self
            .picker
            .pick(&self.set.ready.view(), key, &mut self.rng, &mut now)
        else {
            return ResponseFuture::failed(BalanceError::NotReady);
        };
        // Peak-EWMA: the reading the pick used (or a fresh one) is when the
        // request leaves.
        let sent_at = if self.set.measures_latency() { now.get() } else { 0 };
        let Some(slot) = self.set.ready.slot_mut(pos) else {
            return ResponseFuture::failed(BalanceError::NotReady);
        };
        slot.picks.increment(1);
        let tracker = Tracker {
            load: Arc::clone(&slot.load),
            sent_at,
            classifier: self.classifier.clone(),
        };
        let future = slot.service.call(request);
        self.turn = Turn::Called(pos);
        ResponseFuture::new(future, tracker)
    }
}

impl<D, M, K, H> fmt::Debug for Balancer<D, M, K, H>
where
    M: Service<Endpoint>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Balancer")
            .field("name", &self.set.metrics.name())
            .field("endpoints", &self.set.len())
            .field("ready", &self.set.ready.len())
            .field("ejected", &self.ejected_len())
            .field("panic", &self.in_panic())
            .field("discovery_ended", &self.changes.is_none())
            .finish_non_exhaustive()
    }
}

// ===== fail-fast =====

// Fail-fast: how long `poll_ready` waits for a ready endpoint before it
// gives up, so a caller with no endpoint gets an error instead of a hang.

/// The fail-fast clock of one balancer: idle while endpoints are ready,
/// waiting once none is, failing every call at once after the timeout until
/// an endpoint is ready again.
struct FailFast {
    /// [`BalancerConfig::failfast_timeout`].
    timeout: Duration,
    phase: Phase,
    timer: Timer,
}

/// Where `poll_ready` is in waiting for an endpoint.
enum Phase {
    /// An endpoint was ready last time (or it never waited).
    Idle,
    /// No endpoint is ready; fail at this deadline.
    Waiting(Instant),
    /// The deadline passed: fail at once until an endpoint is ready.
    Failing,
}

impl FailFast {
    fn new(timeout: Duration) -> Self {
        Self {
            timeout,
            phase: Phase::Idle,
            timer: Timer::default(),
        }
    }

    /// An endpoint is ready: the next wait starts afresh.
    fn reset(&mut self) {
        self.phase = Phase::Idle;
    }

    /// No endpoint is ready: `Pending` until the deadline, then the
    /// [`BalanceError::NoEndpoints`] of `known` endpoints, at once from then
    /// on. `balancer` names the balancer in the tracing event.
    fn poll(&mut self, cx: &mut Context<'_>, balancer: &str, known: usize) -> Poll<BalanceError> {
        loop {
            match self.phase {
                Phase::Idle if self.timeout.is_zero() => self.phase = Phase::Failing,
                Phase::Idle => self.phase = Phase::Waiting(Instant::now() + self.timeout),
                Phase::Waiting(deadline) => {
                    if self.timer.poll_until(deadline, cx).is_pending() {
                        return Poll::Pending;
                    }
                    tracing::debug!(balancer, known, waited = ?self.timeout, "no ready endpoint; failing fast");
                    self.phase = Phase::Failing;
                }
                Phase::Failing => {
                    return Poll::Ready(BalanceError::NoEndpoints {
                        waited: self.timeout,
                        known,
                    });
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::{
        collections::HashMap,
        convert::Infallible,
        future::{Ready, ready},
        task::Waker,
    };

    use futures_util::stream;

    use super::*;

    /// Answers with its endpoint id.
    struct Echo(String);

    impl Service<()> for Echo {
        type Response = String;
        type Error = Infallible;
        type Future = Ready<Result<String, Infallible>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, (): ()) -> Self::Future {
            ready(Ok(self.0.clone()))
        }
    }

    fn balancer(
        ids: &[&str],
    ) -> Balancer<
        impl Stream<Item = EndpointChange> + Unpin,
        impl Service<Endpoint, Response = Echo, Error = Infallible>,
    > {
        let changes: Vec<_> = ids
            .iter()
            .enumerate()
            .map(|(i, id)| {
                let address = std::net::SocketAddr::from(([127, 0, 0, 1], 8000 + i as u16));
                EndpointChange::Insert(Endpoint::new(*id, address))
            })
            .collect();
        let config = BalancerConfig::default()
            .algorithm(Algorithm::pending_requests())
            .seed(9);
        let connect = connect_fn(|e: &Endpoint| Echo(e.id().to_string()));
        Balancer::with_config(&config, stream::iter(changes), connect).unwrap()
    }

    fn send<B: Service<(), Response = String>>(balancer: &mut B) -> String {
        let mut cx = Context::from_waker(Waker::noop());
        assert!(matches!(balancer.poll_ready(&mut cx), Poll::Ready(Ok(()))));
        match std::pin::pin!(balancer.call(())).poll(&mut cx) {
            Poll::Ready(Ok(id)) => id,
            _ => panic!("the echo answers at once"),
        }
    }

    fn eject<D, M: Service<Endpoint>, K>(balancer: &Balancer<D, M, K>, pos: usize, available: bool) {
        let ready = balancer.set.ready.view();
        ready.slot(pos).unwrap().load.set_available(available);
    }

    #[tokio::test]
    async fn an_ejected_endpoint_is_skipped_unless_all_are_ejected() {
        let mut balancer = balancer(&["a", "b", "c"]);
        send(&mut balancer);
        let ready = balancer.set.ready.view();
        let ejected = ready.members[ready.slot(0).unwrap().member as usize]
            .id
            .to_string();
        eject(&balancer, 0, false);
        let mut counts: HashMap<String, usize> = HashMap::new();
        for _ in 0..3_000 {
            *counts.entry(send(&mut balancer)).or_default() += 1;
        }
        assert_eq!(counts.get(&ejected), None, "{counts:?}");
        assert_eq!(counts.values().sum::<usize>(), 3_000);

        // With every endpoint ejected, any is better than none.
        for pos in 1..3 {
            eject(&balancer, pos, false);
        }
        let mut counts: HashMap<String, usize> = HashMap::new();
        for _ in 0..3_000 {
            *counts.entry(send(&mut balancer)).or_default() += 1;
        }
        assert_eq!(counts.len(), 3, "{counts:?}");
    }
}

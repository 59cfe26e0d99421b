//! Helpers shared by the balancer's tests: scriptable endpoints that answer
//! at once, deterministic configs, tallies and a metrics snapshot (also used
//! by the supervisor source's tests).
#![allow(dead_code, reason = "each test file uses a part of the helpers")]

use std::{
    collections::HashMap,
    future::{Ready, ready},
    io,
    net::SocketAddr,
    sync::{Arc, Mutex},
    task::{Context, Poll, Waker},
};

use futures_util::{Stream, StreamExt, stream};
use metrics_util::debugging::{DebugValue, Snapshotter};
use orch_discovery::{
    Endpoint, EndpointChange, Weight,
    balance::{
        Algorithm, BalanceError, BalancerConfig, ClockSource, ConnectFn, ReconnectBackoff, connect_fn,
    },
};
use tokio::sync::mpsc;
use tower::{Service, ServiceExt};

/// How an endpoint answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// `Ok(id)`.
    Ok,
    /// `Err` every time.
    Fail,
    /// `Err` on every other call (the 2nd, 4th, …): a 50 % success rate.
    FailEveryOther,
}

struct Script {
    answer: Answer,
    ready: bool,
    wakers: Vec<Waker>,
    calls: usize,
}

/// The scripts of every endpoint, by id.
#[derive(Clone, Default)]
pub struct Fleet(Arc<Mutex<HashMap<String, Script>>>);

impl Fleet {
    fn with<R>(&self, id: &str, f: impl FnOnce(&mut Script) -> R) -> R {
        let mut map = self.0.lock().unwrap();
        let script = map.entry(id.to_owned()).or_insert_with(|| Script {
            answer: Answer::Ok,
            ready: true,
            wakers: Vec::new(),
            calls: 0,
        });
        f(script)
    }

    /// Sets how `id` answers from now on.
    pub fn answer(&self, id: &str, answer: Answer) {
        self.with(id, |s| s.answer = answer);
    }

    /// Makes `id`'s `poll_ready` answer `Ready` or `Pending`.
    pub fn set_ready(&self, id: &str, ready: bool) {
        let wakers = self.with(id, |s| {
            s.ready = ready;
            std::mem::take(&mut s.wakers)
        });
        wakers.into_iter().for_each(Waker::wake);
    }

    /// Calls `id` received.
    pub fn calls(&self, id: &str) -> usize {
        self.with(id, |s| s.calls)
    }

    /// A connector that builds a [`Node`] per endpoint, at once.
    pub fn connector(&self) -> ConnectFn<impl FnMut(&Endpoint) -> Node + Send + use<>> {
        let fleet = self.clone();
        connect_fn(move |endpoint: &Endpoint| Node {
            id: endpoint.id().to_string(),
            fleet: fleet.clone(),
        })
    }
}

/// One endpoint's service: answers any request with its id, or fails, at once.
pub struct Node {
    id: String,
    fleet: Fleet,
}

impl<R> Service<R> for Node {
    type Response = String;
    type Error = io::Error;
    type Future = Ready<Result<String, io::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), io::Error>> {
        self.fleet.with(&self.id, |s| {
            if s.ready {
                Poll::Ready(Ok(()))
            } else {
                s.wakers.push(cx.waker().clone());
                Poll::Pending
            }
        })
    }

    fn call(&mut self, _: R) -> Self::Future {
        let failed = self.fleet.with(&self.id, |s| {
            s.calls += 1;
            match s.answer {
                Answer::Ok => false,
                Answer::Fail => true,
                Answer::FailEveryOther => s.calls % 2 == 0,
            }
        });
        if failed {
            ready(Err(io::Error::other(format!("{} failed", self.id))))
        } else {
            ready(Ok(self.id.clone()))
        }
    }
}

pub fn endpoint(id: &str, weight: u32) -> Endpoint {
    let port = 10_000 + id.bytes().map(u16::from).sum::<u16>();
    Endpoint::new(id, SocketAddr::from(([127, 0, 0, 1], port))).with_weight(Weight::new(weight).unwrap())
}

/// `e0`, `e1`, … of weight 1.
pub fn ids(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("e{i}")).collect()
}

/// A discovery stream the test feeds by hand.
pub fn changes() -> (
    mpsc::UnboundedSender<EndpointChange>,
    impl Stream<Item = EndpointChange> + Unpin,
) {
    let (tx, mut rx) = mpsc::unbounded_channel();
    (tx, stream::poll_fn(move |cx| rx.poll_recv(cx)))
}

/// Inserts of `ids` with weight 1, then a stream that stays open.
pub fn fixed(ids: &[String]) -> impl Stream<Item = EndpointChange> + Unpin + use<> {
    let inserts: Vec<_> = ids
        .iter()
        .map(|id| EndpointChange::Insert(endpoint(id, 1)))
        .collect();
    stream::iter(inserts).chain(stream::pending())
}

/// Deterministic config on tokio's clock, without backoff jitter.
pub fn config(algorithm: impl Into<Algorithm>) -> BalancerConfig {
    BalancerConfig::default()
        .name("api")
        .algorithm(algorithm)
        .clock(ClockSource::Tokio)
        .seed(42)
        .reconnect(ReconnectBackoff::default().jitter(0.0))
}

/// One request: ready, call, await.
pub async fn send<S, R>(balancer: &mut S, request: R) -> Result<String, BalanceError>
where
    S: Service<R, Response = String, Error = BalanceError>,
{
    balancer.ready().await?.call(request).await
}

/// Which endpoint handled a request, failed or not.
pub fn handler(result: &Result<String, BalanceError>) -> String {
    match result {
        Ok(id) => id.clone(),
        Err(error) => error
            .inner_ref()
            .map(|e| e.to_string().trim_end_matches(" failed").to_owned())
            .unwrap_or_else(|| panic!("the balancer failed: {error}")),
    }
}

/// `n` requests of `request()` one after another; how many each endpoint
/// handled (successes and failures alike).
pub async fn tally<S, R>(
    balancer: &mut S,
    n: usize,
    mut request: impl FnMut(usize) -> R,
) -> HashMap<String, usize>
where
    S: Service<R, Response = String, Error = BalanceError>,
{
    let mut counts = HashMap::new();
    for i in 0..n {
        let result = send(balancer, request(i)).await;
        *counts.entry(handler(&result)).or_default() += 1;
    }
    counts
}

pub fn count(counts: &HashMap<String, usize>, id: &str) -> usize {
    counts.get(id).copied().unwrap_or(0)
}

/// One snapshot of a `DebuggingRecorder` (counters are deltas since the
/// last one; gauges are read once).
pub struct Snapshot(Vec<Sample>);

/// A metric's name, labels and value.
type Sample = (String, Vec<(String, String)>, DebugValue);

impl Snapshot {
    pub fn take(snapshotter: &Snapshotter) -> Self {
        Self(
            snapshotter
                .snapshot()
                .into_vec()
                .into_iter()
                .map(|(key, _, _, value)| {
                    let key = key.key();
                    let labels = key
                        .labels()
                        .map(|l| (l.key().to_owned(), l.value().to_owned()))
                        .collect();
                    (key.name().to_owned(), labels, value)
                })
                .collect(),
        )
    }

    /// The value of metric `name` with `labels` (a gauge as an integer).
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<u64> {
        self.0.iter().find_map(|(n, l, value)| {
            let matches = n == name
                && labels
                    .iter()
                    .all(|(k, v)| l.iter().any(|(lk, lv)| lk == k && lv == v));
            match (matches, value) {
                (true, DebugValue::Counter(n)) => Some(*n),
                (true, DebugValue::Gauge(g)) => Some(g.into_inner() as u64),
                _ => None,
            }
        })
    }

    /// Every counter named `name`, whatever its labels.
    pub fn counters(&self, name: &str) -> Vec<u64> {
        self.0
            .iter()
            .filter_map(|(n, _, value)| match value {
                DebugValue::Counter(c) if n == name => Some(*c),
                _ => None,
            })
            .collect()
    }

    pub fn picks(&self, id: &str) -> Option<u64> {
        self.get(
            "orch_balancer_picks_total",
            &[("balancer", "api"), ("endpoint", id)],
        )
    }

    /// The `ready` and `total` endpoint gauges.
    pub fn endpoints(&self) -> (Option<u64>, Option<u64>) {
        let gauge = |state| {
            self.get(
                "orch_balancer_endpoints",
                &[("balancer", "api"), ("state", state)],
            )
        };
        (gauge("ready"), gauge("total"))
    }

    pub fn ejections(&self, reason: &str) -> Option<u64> {
        self.get(
            "orch_balancer_ejections_total",
            &[("balancer", "api"), ("reason", reason)],
        )
    }

    pub fn ejected(&self) -> Option<u64> {
        self.get(
            "orch_balancer_endpoints",
            &[("balancer", "api"), ("state", "ejected")],
        )
    }

    pub fn panic(&self) -> Option<u64> {
        self.get("orch_balancer_panic", &[("balancer", "api")])
    }
}

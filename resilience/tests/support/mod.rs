//! Helpers shared by the resilience layers' tests: one metrics recorder that
//! every layer's metric assertions read through, one scripted inner service
//! for tests that only need "these answers, then that one", and the
//! millisecond shorthand of paused-time tests.
//!
//! Helpers that serve one layer's tests only live beside them (the retry
//! layer's call log in `retry/main.rs`, the hedge's latency script in
//! `hedge/main.rs`).
#![allow(dead_code, reason = "each test binary uses a part of the helpers")]
#![allow(clippy::unwrap_used, reason = "test helpers unwrap like the tests they serve")]

use std::{
    collections::{BTreeMap, VecDeque},
    fmt,
    future::Future,
    io,
    pin::Pin,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use tower::{Service, service_fn};

/// `v` milliseconds: paused-time tests state every instant in them.
pub fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}

// ===== metrics =====

/// A `DebuggingRecorder` a test installs for its own thread, so tests
/// running in parallel never see each other's metrics.
pub struct Metrics {
    recorder: DebuggingRecorder,
    snapshotter: Snapshotter,
}

impl Default for Metrics {
    fn default() -> Self {
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        Self {
            recorder,
            snapshotter,
        }
    }
}

impl Metrics {
    /// Records this thread's metrics until the guard is dropped (a
    /// current-thread test runtime polls every future on this thread).
    pub fn install(&self) -> metrics::LocalRecorderGuard<'_> {
        metrics::set_default_local_recorder(&self.recorder)
    }

    /// Runs `f` with this recorder, for metrics emitted outside a runtime or
    /// by a part of a test only.
    pub fn during<T>(&self, f: impl FnOnce() -> T) -> T {
        metrics::with_local_recorder(&self.recorder, f)
    }

    /// What was recorded since the last snapshot: `DebuggingRecorder` resets
    /// counters and gauges as it reads them, so take one per check.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot(
            self.snapshotter
                .snapshot()
                .into_vec()
                .into_iter()
                .map(|(key, _, _, value)| {
                    let key = key.key();
                    Sample {
                        name: key.name().to_owned(),
                        labels: key
                            .labels()
                            .map(|l| (l.key().to_owned(), l.value().to_owned()))
                            .collect(),
                        value,
                    }
                })
                .collect(),
        )
    }
}

/// One metric of a snapshot: its name, labels and value.
pub struct Sample {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: DebugValue,
}

impl Sample {
    /// Whether every one of `labels` is among the sample's labels.
    pub fn has(&self, labels: &[(&str, &str)]) -> bool {
        labels
            .iter()
            .all(|(k, v)| self.labels.iter().any(|(lk, lv)| lk == k && lv == v))
    }

    /// The value of label `key`, if the sample has it.
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels
            .iter()
            .find_map(|(k, v)| (k == key).then_some(v.as_str()))
    }
}

impl fmt::Debug for Sample {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let labels: Vec<_> = self.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        write!(f, "{}{{{}}} = {:?}", self.name, labels.join(","), self.value)
    }
}

/// The metrics of one [`Metrics::snapshot`].
#[derive(Debug)]
pub struct Snapshot(Vec<Sample>);

impl Snapshot {
    /// Every metric recorded, in no particular order.
    pub fn samples(&self) -> &[Sample] {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The sum of the counters named `name` that carry `labels` (and maybe
    /// more); 0 when there is none.
    pub fn counter(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
        self.0
            .iter()
            .filter(|s| s.name == name && s.has(labels))
            .map(|s| match s.value {
                DebugValue::Counter(n) => n,
                ref other => panic!("{name} is not a counter: {other:?}"),
            })
            .sum()
    }

    /// The counters named `name` that carry `labels`, by their value of
    /// label `by`.
    pub fn counters_by(&self, name: &str, labels: &[(&str, &str)], by: &str) -> BTreeMap<String, u64> {
        let mut counts = BTreeMap::new();
        for sample in self.0.iter().filter(|s| s.name == name && s.has(labels)) {
            if let (DebugValue::Counter(n), Some(key)) = (&sample.value, sample.label(by)) {
                *counts.entry(key.to_owned()).or_default() += n;
            }
        }
        counts
    }

    /// The first gauge named `name` that carries `labels`.
    pub fn gauge(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.0
            .iter()
            .filter(|s| s.name == name && s.has(labels))
            .find_map(|s| match s.value {
                DebugValue::Gauge(g) => Some(g.into_inner()),
                _ => None,
            })
    }
}

// ===== a scripted inner service =====

/// What the inner service does on one call.
#[derive(Debug, Clone, Copy)]
pub enum Step {
    /// Answers at once.
    Ok(u32),
    /// Fails at once with an I/O error (retryable under the default classifier).
    Fail,
    /// Answers after a delay.
    After(Duration, u32),
    /// Never answers (within any test's horizon).
    Hang,
}

pub type Reply = Pin<Box<dyn Future<Output = Result<u32, io::Error>> + Send>>;

/// How many calls reached the inner service.
#[derive(Clone, Default)]
pub struct Calls(Arc<AtomicUsize>);

impl Calls {
    pub fn get(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

/// A `Clone` inner service that plays `steps` in order, then `then` forever,
/// counting calls when they are made (not when first polled). Every clone
/// shares the script and the count.
///
/// The `tower::service_fn` is returned as an opaque `impl Service` naming
/// every associated type, and callers name `Req` (`scripted::<u32>`): when
/// the stack's inner service type is a bare `ServiceFn`, or is not fully
/// known where the stack service is used, rustc's trait solving over the
/// stack's nested `Maybe` types runs out of memory.
pub fn scripted<Req: Send + 'static>(
    steps: impl IntoIterator<Item = Step>,
    then: Step,
) -> (
    impl Service<Req, Response = u32, Error = io::Error, Future = Reply> + Clone,
    Calls,
) {
    let calls = Calls::default();
    let script = Arc::new(Mutex::new(steps.into_iter().collect::<VecDeque<_>>()));
    let counter = calls.clone();
    let service = service_fn(move |_: Req| -> Reply {
        counter.0.fetch_add(1, Ordering::SeqCst);
        let step = script.lock().unwrap().pop_front().unwrap_or(then);
        Box::pin(async move {
            match step {
                Step::Ok(v) => Ok(v),
                Step::Fail => Err(io::Error::other("connection reset")),
                Step::After(delay, v) => {
                    tokio::time::sleep(delay).await;
                    Ok(v)
                }
                Step::Hang => {
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                    Ok(0)
                }
            }
        })
    });
    (service, calls)
}

//! The supervisor source against a real orch-core supervisor on paused
//! tokio time: ready instances enter the registry, crashes and scale-down
//! take them out (scale-down before the instance sees its cancellation,
//! thanks to the drain delay), a lagging source reconciles from a resync,
//! and only the followed child of the followed supervisor is registered.
#![allow(clippy::unwrap_used, reason = "test helpers unwrap like the tests they serve")]

mod support;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use metrics_util::debugging::DebuggingRecorder;
use orch_core::{BackoffPolicy, ChildContext, ChildSpec, Supervisor, SupervisorHandle, SupervisorSpec};
use orch_discovery::{
    ChangeStream, Endpoint, EndpointChange, EndpointId, Registry, SourceError, SupervisorSource,
};
use support::Snapshot;
use tokio::sync::Notify;
use tokio::time::Instant;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

const DRAIN: Duration = Duration::from_secs(1);

fn addr(port: u16) -> SocketAddr {
    ([127, 0, 0, 1], port).into()
}

fn id(s: &str) -> EndpointId {
    s.into()
}

/// What the instances share with the test.
#[derive(Default)]
struct Lab {
    /// The registry instances look themselves up in when they are cancelled.
    registry: Mutex<Option<Registry>>,
    /// One kill switch per instance id.
    kills: Mutex<HashMap<String, Arc<Notify>>>,
    /// Per instance: when it saw its cancellation, and whether the registry
    /// still listed it then.
    cancelled: Mutex<Vec<(String, Instant, bool)>>,
}

impl Lab {
    fn kill_switch(&self, instance: &str) -> Arc<Notify> {
        self.kills
            .lock()
            .unwrap()
            .entry(instance.to_owned())
            .or_default()
            .clone()
    }

    fn kill(&self, instance: &str) {
        self.kill_switch(instance).notify_one();
    }

    fn cancelled(&self) -> Vec<(String, Instant, bool)> {
        self.cancelled.lock().unwrap().clone()
    }
}

/// The port an instance announces: 1000 per ordinal, plus its generation,
/// so that a restarted instance comes back on a new port.
fn port(ctx: &ChildContext) -> u16 {
    let ordinal: u16 = ctx.id().as_str().rsplit('-').next().unwrap().parse().unwrap();
    1000 * (ordinal + 1) + ctx.generation() as u16
}

/// A replica group whose instances announce an address, serve until
/// cancelled or killed, and record what the registry said when cancelled.
fn announcing(child: &str, replicas: usize, lab: &Arc<Lab>) -> ChildSpec {
    let lab = lab.clone();
    ChildSpec::task(child, move |ctx| {
        let lab = lab.clone();
        async move {
            ctx.announce(addr(port(&ctx)));
            let kill = lab.kill_switch(ctx.id().as_str());
            tokio::select! {
                () = ctx.cancelled() => {
                    let listed = lab
                        .registry
                        .lock()
                        .unwrap()
                        .as_ref()
                        .is_some_and(|r| r.contains(&id(ctx.id().as_str())));
                    lab.cancelled.lock().unwrap().push((ctx.id().to_string(), Instant::now(), listed));
                    Ok::<_, BoxError>(())
                }
                () = kill.notified() => Err("killed".into()),
            }
        }
    })
    .replicas(replicas)
    .ready_on_announce()
    .drain_delay(DRAIN)
    .shutdown_grace(Duration::from_secs(5))
    .backoff(BackoffPolicy::none())
}

/// A replica group that is ready at once and announces nothing.
fn silent(child: &str, replicas: usize) -> ChildSpec {
    ChildSpec::task(child, |ctx| async move {
        ctx.cancelled().await;
        Ok::<_, BoxError>(())
    })
    .replicas(replicas)
    .backoff(BackoffPolicy::none())
}

fn start(children: impl IntoIterator<Item = ChildSpec>) -> SupervisorHandle {
    let mut spec = SupervisorSpec::builder("app");
    for child in children {
        spec = spec.child(child);
    }
    Supervisor::start(spec.build().unwrap()).unwrap()
}

/// The next change, or a panic if none comes within an hour of paused time.
async fn next(changes: &mut ChangeStream) -> EndpointChange {
    tokio::time::timeout(Duration::from_secs(3600), changes.next())
        .await
        .expect("a change within the hour")
        .expect("the stream goes on")
}

/// A subscriber's view of the set.
type View = BTreeMap<String, SocketAddr>;

fn apply(view: &mut View, change: EndpointChange) {
    match change {
        EndpointChange::Insert(e) | EndpointChange::Update(e) => {
            view.insert(e.id().to_string(), e.address());
        }
        EndpointChange::Remove(id) => {
            view.remove(id.as_str());
        }
    }
}

/// Reads changes until the view equals `want`.
async fn until_view(changes: &mut ChangeStream, view: &mut View, want: &[(&str, u16)]) {
    let want: View = want.iter().map(|&(i, p)| (i.to_owned(), addr(p))).collect();
    while *view != want {
        let change = next(changes).await;
        apply(view, change);
    }
}

fn endpoint(instance: &str, port: u16) -> Endpoint {
    Endpoint::new(instance, addr(port))
}

#[tokio::test(start_paused = true)]
async fn the_registry_follows_ready_crashed_restarted_and_drained_instances() {
    let lab = Arc::new(Lab::default());
    let handle = start([announcing("api", 3, &lab), announcing("worker", 1, &lab)]);
    let registry = Registry::new("api");
    *lab.registry.lock().unwrap() = Some(registry.clone());
    let source = SupervisorSource::new("api")
        .start(&handle, &registry)
        .await
        .unwrap();
    let mut changes = registry.changes();
    let mut view = View::new();

    // Ready instances enter; the worker, another child, never does.
    until_view(
        &mut changes,
        &mut view,
        &[("app/api-0", 1000), ("app/api-1", 2000), ("app/api-2", 3000)],
    )
    .await;
    assert_eq!(source.endpoints().len(), 3);

    // A crash takes it out before the restart; it comes back (same id) on
    // its new port once ready again.
    lab.kill("app/api-1");
    assert_eq!(next(&mut changes).await, EndpointChange::Remove(id("app/api-1")));
    assert_eq!(
        next(&mut changes).await,
        EndpointChange::Insert(endpoint("app/api-1", 2001))
    );

    // Scale-down: the endpoint goes at Stopping, and the instance sees its
    // cancellation only a drain delay later, no longer listed.
    let asked = Instant::now();
    handle.resize("api", 2).await.unwrap();
    assert_eq!(next(&mut changes).await, EndpointChange::Remove(id("app/api-2")));
    assert_eq!(Instant::now(), asked, "removed at once");
    tokio::time::sleep(DRAIN * 2).await;
    assert_eq!(lab.cancelled(), [("app/api-2".to_owned(), asked + DRAIN, false)]);

    // Shutdown drains the rest the same way; then the source is done.
    let asked = Instant::now();
    handle.shutdown().await.unwrap();
    assert!(registry.is_empty());
    let cancelled = lab.cancelled();
    let api: Vec<_> = cancelled
        .iter()
        .filter(|(i, _, _)| i.starts_with("app/api-"))
        .skip(1)
        .collect();
    assert_eq!(api.len(), 2);
    // Children stop in reverse start order: the worker drains first, then api.
    assert!(
        api.iter()
            .all(|(_, at, listed)| *at == asked + DRAIN * 2 && !listed),
        "{api:?}"
    );
    tokio::task::yield_now().await;
    assert!(source.is_finished());
    assert!(source.endpoints().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_lagging_source_reconciles_from_the_resync() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _guard = metrics::set_default_local_recorder(&recorder);

    let lab = Arc::new(Lab::default());
    let handle = start([announcing("api", 3, &lab), silent("bulk", 0)]);
    let registry = Registry::new("api");
    *lab.registry.lock().unwrap() = Some(registry.clone());
    let _source = SupervisorSource::new("api")
        .start(&handle, &registry)
        .await
        .unwrap();
    let mut changes = registry.changes();
    let mut view = View::new();
    until_view(
        &mut changes,
        &mut view,
        &[("app/api-0", 1000), ("app/api-1", 2000), ("app/api-2", 3000)],
    )
    .await;

    // Both commands are queued before the supervisor runs, so it handles
    // them in one go: two Stopping events, then 4200 events of the bulk
    // group, more than the event hub buffers, before the source runs again.
    let asked = Instant::now();
    let (a, b) = tokio::join!(handle.resize("api", 1), handle.resize("bulk", 2100));
    a.unwrap();
    b.unwrap();
    until_view(&mut changes, &mut view, &[("app/api-0", 1000)]).await;
    assert_eq!(Instant::now(), asked, "the resync removed them at once");

    let resyncs = Snapshot::take(&snapshotter).counters("orch_registry_source_resyncs_total");
    assert_eq!(resyncs, [1], "the source went through a resync");

    tokio::time::sleep(DRAIN * 2).await;
    let mut cancelled = lab.cancelled();
    cancelled.sort();
    assert_eq!(
        cancelled,
        [
            ("app/api-1".to_owned(), asked + DRAIN, false),
            ("app/api-2".to_owned(), asked + DRAIN, false),
        ]
    );
    assert_eq!(registry.snapshot(), [endpoint("app/api-0", 1000)]);
    handle.shutdown().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn only_the_followed_child_of_the_followed_supervisor_is_registered() {
    let lab = Arc::new(Lab::default());
    let inner = SupervisorSpec::builder("inner")
        .child(announcing("api", 1, &lab))
        .build()
        .unwrap();
    let handle = start([announcing("api", 1, &lab), ChildSpec::supervisor(inner)]);
    // Let every instance announce.
    tokio::time::sleep(Duration::from_millis(1)).await;

    let outer = Registry::new("outer");
    let _outer_source = SupervisorSource::new("api").start(&handle, &outer).await.unwrap();
    let nested = handle.nested("inner").unwrap();
    let inner_registry = Registry::new("inner");
    let _inner_source = SupervisorSource::new("api")
        .start(&nested, &inner_registry)
        .await
        .unwrap();

    // Seeded from the snapshot before `start` returned.
    assert_eq!(outer.snapshot(), [endpoint("app/api-0", 1000)]);
    assert_eq!(inner_registry.snapshot(), [endpoint("app/inner/api-0", 1000)]);
    handle.shutdown().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn endpoints_are_decorated_by_the_mapping_and_keep_the_instance_id() {
    let lab = Arc::new(Lab::default());
    let handle = start([announcing("api", 1, &lab)]);
    tokio::time::sleep(Duration::from_millis(1)).await;
    let registry = Registry::new("api");
    let _source = SupervisorSource::new("api")
        .map_endpoint(|instance, endpoint| {
            // A new id is a mistake the source corrects.
            Endpoint::new("renamed", endpoint.address())
                .with_zone("local")
                .with_label("generation", instance.generation.to_string())
                .with_label("child", instance.child)
        })
        .start(&handle, &registry)
        .await
        .unwrap();
    assert_eq!(
        registry.snapshot(),
        [endpoint("app/api-0", 1000)
            .with_zone("local")
            .with_label("generation", "0")
            .with_label("child", "api")]
    );
    handle.shutdown().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_ready_instance_without_an_address_gets_no_endpoint() {
    let handle = start([silent("plain", 2)]);
    let registry = Registry::new("plain");
    let _source = SupervisorSource::new("plain")
        .start(&handle, &registry)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(handle.instances().iter().all(|i| i.state.is_ready()));
    assert!(registry.is_empty());
    handle.shutdown().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn dropping_the_guard_withdraws_the_endpoints_and_stops_following() {
    let lab = Arc::new(Lab::default());
    let handle = start([announcing("api", 2, &lab)]);
    tokio::time::sleep(Duration::from_millis(1)).await;
    let registry = Registry::new("api");
    let source = SupervisorSource::new("api")
        .start(&handle, &registry)
        .await
        .unwrap();
    assert_eq!(registry.len(), 2);

    drop(source);
    assert!(registry.is_empty());
    lab.kill("app/api-0");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(registry.is_empty(), "a restarted instance is not added back");
    handle.shutdown().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_missing_child_or_a_stopped_supervisor_is_refused() {
    let handle = start([silent("plain", 1)]);
    let registry = Registry::new("api");
    assert_eq!(
        SupervisorSource::new("api")
            .start(&handle, &registry)
            .await
            .unwrap_err(),
        SourceError::NoSuchChild {
            supervisor: "app".into(),
            child: "api".into()
        }
    );
    handle.shutdown().await.unwrap();
    assert_eq!(
        SupervisorSource::new("plain")
            .start(&handle, &registry)
            .await
            .unwrap_err(),
        SourceError::SupervisorStopped {
            supervisor: "app".into()
        }
    );
}

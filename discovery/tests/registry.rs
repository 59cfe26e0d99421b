//! The endpoint registry: edits and their errors, gap-free subscriptions
//! under concurrent writers, many subscribers, lag reconciliation, the end
//! of the streams, the static source, and the tower `Discover` adapter
//! feeding tower's P2C balancer.
#![allow(clippy::unwrap_used, reason = "test helpers unwrap like the tests they serve")]

use std::collections::{BTreeMap, BTreeSet};
use std::convert::Infallible;
use std::hash::BuildHasherDefault;
use std::net::SocketAddr;

use futures_util::{FutureExt, StreamExt};
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use orch_discovery::{
    Applied, ChangeStream, Endpoint, EndpointChange, EndpointId, Registry, RegistryError, StaticEndpoint,
    StaticSource, Weight,
};
use proptest::prelude::*;
use tower::balance::p2c::Balance;
use tower::load::{CompleteOnResponse, PendingRequests};
use tower::util::rng::HasherRng;
use tower::{Service, ServiceExt};

fn addr(port: u16) -> SocketAddr {
    ([127, 0, 0, 1], port).into()
}

fn ep(id: &str, port: u16) -> Endpoint {
    Endpoint::new(id, addr(port))
}

fn id(s: &str) -> EndpointId {
    s.into()
}

/// Everything the stream has ready now, without waiting; `true` if it ended.
fn drain_now(changes: &mut ChangeStream) -> (Vec<EndpointChange>, bool) {
    let mut out = Vec::new();
    loop {
        match changes.next().now_or_never() {
            Some(Some(c)) => out.push(c),
            Some(None) => return (out, true),
            None => return (out, false),
        }
    }
}

type View = BTreeMap<EndpointId, Endpoint>;

fn view_of(endpoints: impl IntoIterator<Item = Endpoint>) -> View {
    endpoints.into_iter().map(|e| (e.id().clone(), e)).collect()
}

/// Applies one change, checking that it makes sense after what came before:
/// a gap or a duplicate shows up as an insertion of a present id, or an
/// update or removal of an absent one, or an update that changes nothing.
fn apply(view: &mut View, change: EndpointChange) {
    match change {
        EndpointChange::Insert(e) => {
            let old = view.insert(e.id().clone(), e.clone());
            assert!(old.is_none(), "insert of present {e:?}");
        }
        EndpointChange::Update(e) => {
            let old = view.insert(e.id().clone(), e.clone());
            assert!(
                old.as_ref().is_some_and(|o| *o != e),
                "update of absent or identical {e:?}"
            );
        }
        EndpointChange::Remove(id) => assert!(view.remove(&id).is_some(), "remove of absent {id:?}"),
    }
}

// ===== edits =====

#[test]
fn edits_report_what_they_did_and_refuse_bad_input() {
    let registry = Registry::new("api");
    registry.insert(ep("a", 1)).unwrap();
    assert_eq!(
        registry.insert(ep("a", 2)),
        Err(RegistryError::AlreadyRegistered {
            registry: "api".into(),
            id: id("a")
        })
    );
    assert_eq!(
        registry.get(&id("a")),
        Some(ep("a", 1)),
        "a refused insert changes nothing"
    );
    assert_eq!(
        registry.update(ep("b", 2)),
        Err(RegistryError::UnknownEndpoint {
            registry: "api".into(),
            id: id("b")
        })
    );
    assert!(
        registry.get(&id("b")).is_none(),
        "a refused update inserts nothing"
    );
    assert_eq!(registry.update(ep("a", 1)), Ok(Applied::Unchanged));
    assert_eq!(registry.update(ep("a", 3)), Ok(Applied::Updated));
    assert_eq!(registry.upsert(ep("b", 2)), Applied::Inserted);
    assert_eq!(registry.upsert(ep("b", 2)), Applied::Unchanged);
    assert_eq!(registry.remove(&id("b")), Some(ep("b", 2)));
    assert_eq!(registry.remove(&id("b")), None);
    assert_eq!(registry.snapshot(), [ep("a", 3)]);
    assert_eq!((registry.len(), registry.is_empty()), (1, false));
    assert!(registry.contains(&id("a")));
    assert_eq!(registry.name(), "api");
}

#[test]
fn edits_that_change_nothing_notify_nobody() {
    let registry = Registry::new("api");
    let weighted = ep("a", 1)
        .with_weight(Weight::new(2).unwrap())
        .with_label("k", "v");
    registry.upsert(weighted.clone());
    let mut sub = registry.subscribe();

    // An equal endpoint built separately (labels in a different allocation).
    let again = ep("a", 1)
        .with_label("k", "v")
        .with_weight(Weight::new(2).unwrap());
    assert_eq!(registry.upsert(again.clone()), Applied::Unchanged);
    assert_eq!(registry.update(again), Ok(Applied::Unchanged));
    registry.remove(&id("missing"));
    assert_eq!(registry.replace_all([weighted.clone()]), Ok(0));
    assert_eq!(drain_now(&mut sub.changes), (vec![], false));

    // A real change goes through.
    registry.upsert(weighted.clone().with_zone("z"));
    assert_eq!(
        drain_now(&mut sub.changes).0,
        [EndpointChange::Update(weighted.with_zone("z"))]
    );
}

#[test]
fn replace_all_sends_removals_then_upserts_atomically_or_nothing() {
    let registry = Registry::from_endpoints("api", [ep("a", 1), ep("b", 2), ep("c", 3)]).unwrap();
    let mut sub = registry.subscribe();

    let err = registry.replace_all([ep("x", 9), ep("x", 10)]).unwrap_err();
    assert_eq!(
        err,
        RegistryError::DuplicateId {
            registry: "api".into(),
            id: id("x")
        }
    );
    assert_eq!(registry.len(), 3, "nothing applied");

    assert_eq!(registry.replace_all([ep("d", 4), ep("b", 20), ep("a", 1)]), Ok(3));
    assert_eq!(
        drain_now(&mut sub.changes).0,
        [
            EndpointChange::Remove(id("c")),
            EndpointChange::Update(ep("b", 20)),
            EndpointChange::Insert(ep("d", 4)),
        ]
    );
}

#[test]
fn bad_builder_input_is_refused_with_the_field_or_id_named() {
    let err = Registry::builder("api").subscriber_buffer(0).build().unwrap_err();
    assert_eq!(err.to_string(), "invalid subscriber_buffer: must be at least 1");
    let err = Registry::builder("api")
        .endpoint(ep("a", 1))
        .endpoint(ep("a", 2))
        .build()
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "registry api: endpoint id a appears more than once"
    );
}

// ===== streams =====

#[tokio::test]
async fn changes_start_with_the_current_set_then_follow() {
    let registry = Registry::from_endpoints("api", [ep("b", 2), ep("a", 1)]).unwrap();
    let mut changes = registry.changes();
    registry.upsert(ep("c", 3));
    registry.remove(&id("a"));
    let seen: Vec<_> = changes.by_ref().take(4).collect().await;
    assert_eq!(
        seen,
        [
            EndpointChange::Insert(ep("a", 1)),
            EndpointChange::Insert(ep("b", 2)),
            EndpointChange::Insert(ep("c", 3)),
            EndpointChange::Remove(id("a")),
        ]
    );
}

#[tokio::test]
async fn a_waiting_subscriber_is_woken_by_a_writer() {
    let registry = Registry::new("api");
    let mut sub = registry.subscribe();
    let reader = tokio::spawn(async move { sub.changes.next().await });
    tokio::task::yield_now().await;
    assert!(!reader.is_finished());
    registry.upsert(ep("a", 1));
    assert_eq!(reader.await.unwrap(), Some(EndpointChange::Insert(ep("a", 1))));
}

#[test]
fn streams_end_when_every_handle_is_gone() {
    let registry = Registry::from_endpoints("api", [ep("a", 1)]).unwrap();
    let other = registry.clone();
    let mut changes = registry.changes();
    let mut sub = registry.subscribe();
    drop(registry);
    other.upsert(ep("b", 2));
    assert_eq!(
        drain_now(&mut sub.changes),
        (vec![EndpointChange::Insert(ep("b", 2))], false)
    );

    other.remove(&id("a"));
    drop(other);
    // What was pending is still delivered, then the end.
    assert_eq!(
        drain_now(&mut changes),
        (
            vec![
                EndpointChange::Insert(ep("a", 1)),
                EndpointChange::Insert(ep("b", 2)),
                EndpointChange::Remove(id("a")),
            ],
            true
        )
    );
    assert_eq!(
        drain_now(&mut sub.changes),
        (vec![EndpointChange::Remove(id("a"))], true)
    );
    assert!(futures_util::stream::FusedStream::is_terminated(&changes));
}

#[test]
fn dropping_a_stream_unsubscribes() {
    let registry = Registry::new("api");
    let a = registry.changes();
    let b = registry.subscribe();
    assert_eq!(registry.subscribers(), 2);
    drop(a);
    drop(b);
    assert_eq!(registry.subscribers(), 0);
    registry.upsert(ep("a", 1));
}

#[test]
fn many_subscribers_see_the_same_changes_in_the_same_order() {
    let registry = Registry::from_endpoints("api", [ep("a", 1)]).unwrap();
    let mut subs: Vec<_> = (0..50).map(|_| registry.subscribe()).collect();
    let mut streams: Vec<_> = (0..50).map(|_| registry.changes()).collect();
    for i in 0..100u16 {
        let name = format!("e{}", i % 7);
        match i % 3 {
            0 | 1 => {
                registry.upsert(ep(&name, i));
            }
            _ => {
                registry.remove(&id(&name));
            }
        }
    }
    let final_view = view_of(registry.snapshot());
    let first = drain_now(&mut subs[0].changes).0;
    assert!(!first.is_empty());
    for sub in &mut subs[1..] {
        assert_eq!(drain_now(&mut sub.changes).0, first);
    }
    for sub in &subs {
        assert_eq!(sub.snapshot, [ep("a", 1)]);
    }
    let mut view = view_of([ep("a", 1)]);
    first.into_iter().for_each(|c| apply(&mut view, c));
    assert_eq!(view, final_view);

    let from_start = drain_now(&mut streams[0]).0;
    for s in &mut streams[1..] {
        assert_eq!(drain_now(s).0, from_start);
    }
    let mut view = View::new();
    from_start.into_iter().for_each(|c| apply(&mut view, c));
    assert_eq!(view, final_view);
}

#[test]
fn snapshot_plus_changes_has_no_gap_and_no_duplicate_under_concurrent_writers() {
    const WRITERS: usize = 4;
    const OPS: usize = 3000;
    let registry = Registry::builder("race")
        .subscriber_buffer(1 << 16)
        .build()
        .unwrap();

    // A reader thread follows live streams while the writers run, reading
    // concurrently with the writes.
    let live: Vec<ChangeStream> = (0..3).map(|_| registry.changes()).collect();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = std::thread::spawn({
        let done = done.clone();
        move || {
            let mut live = live;
            let mut views = vec![View::new(); live.len()];
            loop {
                let finished = done.load(std::sync::atomic::Ordering::Acquire);
                for (s, view) in live.iter_mut().zip(&mut views) {
                    drain_now(s).0.into_iter().for_each(|c| apply(view, c));
                }
                if finished {
                    return views;
                }
                std::thread::yield_now();
            }
        }
    });

    // Each writer edits its own ids and subscribes at fixed points of its
    // sequence, so subscriptions land between other writers' edits.
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let registry = registry.clone();
            std::thread::spawn(move || {
                let mut subs = Vec::new();
                for i in 0..OPS {
                    let name = format!("w{w}-{}", i % 16);
                    match i % 5 {
                        0..=2 => {
                            registry.upsert(ep(&name, (i % 7) as u16 + 1));
                        }
                        3 => {
                            registry.remove(&id(&name));
                        }
                        _ => {
                            registry.upsert(ep(&name, 1).with_zone("z"));
                        }
                    }
                    if i % 500 == 250 {
                        subs.push(registry.subscribe());
                    }
                }
                subs
            })
        })
        .collect();
    let subs: Vec<_> = writers.into_iter().flat_map(|h| h.join().unwrap()).collect();
    done.store(true, std::sync::atomic::Ordering::Release);
    let live_views = reader.join().unwrap();

    let final_view = view_of(registry.snapshot());
    assert!(!final_view.is_empty());
    assert_eq!(subs.len(), WRITERS * OPS / 500);
    for mut sub in subs {
        let mut view = view_of(sub.snapshot.clone());
        drain_now(&mut sub.changes)
            .0
            .into_iter()
            .for_each(|c| apply(&mut view, c));
        assert_eq!(view, final_view);
    }
    for view in live_views {
        assert_eq!(view, final_view);
    }
}

#[test]
fn streams_can_move_to_any_task() {
    fn movable<T: Send + Unpin + 'static>(_: &T) {}
    let registry = Registry::new("api");
    movable(&registry.changes());
    movable(&registry.subscribe());
    movable(&registry.discover(make));
    movable(&registry);
}

// ===== lag =====

#[test]
fn a_lagging_subscriber_receives_the_difference_and_goes_on() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _guard = metrics::set_default_local_recorder(&recorder);

    let registry = Registry::builder("lag")
        .subscriber_buffer(4)
        .endpoints([ep("a", 1), ep("b", 2), ep("c", 3)])
        .build()
        .unwrap();
    let mut changes = registry.changes();
    // Far more than the buffer, never read: a changes twice, b goes, c goes
    // and comes back as it was, d comes and goes, e comes.
    registry.upsert(ep("a", 10));
    registry.upsert(ep("a", 11));
    registry.remove(&id("b"));
    registry.remove(&id("c"));
    registry.upsert(ep("d", 4));
    registry.upsert(ep("c", 3));
    registry.remove(&id("d"));
    for port in 50..60 {
        registry.upsert(ep("e", port));
    }

    let (seen, ended) = drain_now(&mut changes);
    assert!(!ended);
    assert_eq!(
        seen,
        [
            // The set it started with, then the difference to now.
            EndpointChange::Insert(ep("a", 1)),
            EndpointChange::Insert(ep("b", 2)),
            EndpointChange::Insert(ep("c", 3)),
            EndpointChange::Remove(id("b")),
            EndpointChange::Update(ep("a", 11)),
            EndpointChange::Insert(ep("e", 59)),
        ]
    );
    // Back to one change at a time.
    registry.remove(&id("a"));
    assert_eq!(drain_now(&mut changes).0, [EndpointChange::Remove(id("a"))]);

    let mut lags = None;
    let mut endpoints = None;
    for (key, _, _, value) in snapshotter.snapshot().into_vec() {
        let key = key.key();
        assert!(key.labels().any(|l| l.key() == "registry" && l.value() == "lag"));
        match (key.name(), value) {
            ("orch_registry_subscriber_lags_total", DebugValue::Counter(n)) => lags = Some(n),
            ("orch_registry_endpoints", DebugValue::Gauge(v)) => endpoints = Some(v.0),
            _ => {}
        }
    }
    assert_eq!(lags, Some(1));
    assert_eq!(endpoints, Some(2.0));
}

#[test]
fn a_subscriber_that_lags_across_a_remove_and_readd_sees_one_update_or_nothing() {
    let registry = Registry::builder("lag").subscriber_buffer(1).build().unwrap();
    registry.upsert(ep("a", 1));
    registry.upsert(ep("b", 1));
    let mut sub = registry.subscribe();
    // a restarts on a new port; b comes back as it was.
    registry.remove(&id("a"));
    registry.remove(&id("b"));
    registry.upsert(ep("a", 2));
    registry.upsert(ep("b", 1));
    assert_eq!(
        drain_now(&mut sub.changes).0,
        [EndpointChange::Update(ep("a", 2))]
    );
}

#[derive(Debug, Clone)]
enum Op {
    Upsert(u8, u16),
    Remove(u8),
    Replace(Vec<(u8, u16)>),
    /// The subscriber reads up to this many changes.
    Read(u8),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..8u8, 1..4u16).prop_map(|(i, p)| Op::Upsert(i, p)),
        2 => (0..8u8).prop_map(Op::Remove),
        1 => proptest::collection::vec((0..8u8, 1..4u16), 0..6).prop_map(Op::Replace),
        3 => (0..6u8).prop_map(Op::Read),
    ]
}

proptest! {
    /// Whatever the buffer, the edits and when the subscriber reads, every
    /// change it sees makes sense after the previous ones, and once it has
    /// read everything it holds exactly the registry's set.
    #[test]
    fn a_subscriber_always_converges_on_the_registry(
        buffer in 1..6usize,
        initial in proptest::collection::btree_map(0..8u8, 1..4u16, 0..5),
        ops in proptest::collection::vec(op(), 0..60),
    ) {
        let name = |i: u8| format!("e{i}");
        let registry = Registry::builder("model")
            .subscriber_buffer(buffer)
            .endpoints(initial.iter().map(|(&i, &p)| ep(&name(i), p)))
            .build()
            .unwrap();
        let mut changes = registry.changes();
        let mut view = View::new();
        for op in ops {
            match op {
                Op::Upsert(i, p) => {
                    registry.upsert(ep(&name(i), p));
                }
                Op::Remove(i) => {
                    registry.remove(&id(&name(i)));
                }
                Op::Replace(set) => {
                    let set: BTreeMap<u8, u16> = set.into_iter().collect();
                    registry.replace_all(set.iter().map(|(&i, &p)| ep(&name(i), p))).unwrap();
                }
                Op::Read(n) => {
                    for _ in 0..n {
                        match changes.next().now_or_never() {
                            Some(Some(c)) => apply(&mut view, c),
                            _ => break,
                        }
                    }
                }
            }
        }
        drain_now(&mut changes).0.into_iter().for_each(|c| apply(&mut view, c));
        prop_assert_eq!(view, view_of(registry.snapshot()));
    }
}

// ===== static source =====

#[test]
fn a_static_source_builds_and_reloads_a_registry() {
    let source: StaticSource = serde_json::from_str(
        r#"{"endpoints": [
            {"id": "a", "address": "127.0.0.1:1"},
            {"id": "b", "address": "127.0.0.1:2", "weight": 3, "zone": "z", "version": "v2",
             "labels": {"track": "canary"}}
        ]}"#,
    )
    .unwrap();
    source.validate().unwrap();
    let registry = source.registry("api").unwrap();
    let b = ep("b", 2)
        .with_weight(Weight::new(3).unwrap())
        .with_zone("z")
        .with_version("v2")
        .with_label("track", "canary");
    assert_eq!(registry.snapshot(), [ep("a", 1), b.clone()]);
    // Round trip through configuration.
    let back: Vec<StaticEndpoint> = registry.snapshot().iter().map(StaticEndpoint::from).collect();
    assert_eq!(back, source.endpoints);

    let mut sub = registry.subscribe();
    let reload = StaticSource::new()
        .endpoint(StaticEndpoint::new("b", addr(2)))
        .endpoint(StaticEndpoint::new("c", addr(3)));
    assert_eq!(reload.apply_to(&registry), Ok(3));
    assert_eq!(
        drain_now(&mut sub.changes).0,
        [
            EndpointChange::Remove(id("a")),
            EndpointChange::Update(ep("b", 2)),
            EndpointChange::Insert(ep("c", 3)),
        ]
    );
}

#[test]
fn a_bad_static_source_names_the_field_or_the_repeated_id() {
    let dup = StaticSource::new()
        .endpoint(StaticEndpoint::new("a", addr(1)))
        .endpoint(StaticEndpoint::new("a", addr(2)));
    assert_eq!(
        dup.validate().unwrap_err().to_string(),
        "invalid endpoints[a].id: appears more than once"
    );
    assert_eq!(
        dup.registry("api").unwrap_err(),
        RegistryError::DuplicateId {
            registry: "api".into(),
            id: id("a")
        }
    );
    let registry = Registry::from_endpoints("api", [ep("x", 1)]).unwrap();
    assert!(dup.apply_to(&registry).is_err());
    assert_eq!(
        registry.snapshot(),
        [ep("x", 1)],
        "a refused reload changes nothing"
    );

    let empty_id = StaticSource::new().endpoint(StaticEndpoint::new("", addr(1)));
    assert_eq!(
        empty_id.validate().unwrap_err().to_string(),
        "invalid endpoints[].id: must not be empty"
    );
    let unknown = serde_json::from_str::<StaticSource>(r#"{"endpoints": [{"id": "a", "adress": "x"}]}"#);
    assert!(unknown.is_err(), "unknown fields are refused");
}

// ===== tower Discover =====

type Svc = PendingRequests<tower::util::BoxService<(), SocketAddr, Infallible>, CompleteOnResponse>;

/// A service per endpoint that answers with the address it stands for.
fn make(e: &Endpoint) -> Svc {
    let address = e.address();
    let svc = tower::service_fn(move |()| async move { Ok::<_, Infallible>(address) });
    PendingRequests::new(tower::util::BoxService::new(svc), CompleteOnResponse::default())
}

fn deterministic_rng() -> HasherRng<BuildHasherDefault<std::collections::hash_map::DefaultHasher>> {
    HasherRng::with_hasher(BuildHasherDefault::default())
}

/// Which addresses answer `calls` calls through the balancer.
async fn answers<D>(balance: &mut Balance<D, ()>, calls: usize) -> BTreeSet<SocketAddr>
where
    D: tower::discover::Discover<Key = EndpointId, Service = Svc> + Unpin,
    D::Error: Into<tower::BoxError>,
{
    let mut seen = BTreeSet::new();
    for _ in 0..calls {
        let a = balance.ready().await.unwrap().call(()).await.unwrap();
        seen.insert(a);
    }
    seen
}

#[tokio::test]
async fn the_discover_adapter_feeds_towers_p2c_balancer() {
    let registry = Registry::from_endpoints("api", [ep("a", 1), ep("b", 2)]).unwrap();
    let mut balance = Balance::from_rng(registry.discover(make), deterministic_rng());

    assert_eq!(
        answers(&mut balance, 50).await,
        BTreeSet::from([addr(1), addr(2)])
    );
    assert_eq!(balance.len(), 2);

    // Removed: no longer picked.
    registry.remove(&id("a"));
    assert_eq!(answers(&mut balance, 20).await, BTreeSet::from([addr(2)]));
    assert_eq!(balance.len(), 1);

    // Updated (a restart on a new port): the service is replaced.
    registry.upsert(ep("b", 20));
    assert_eq!(answers(&mut balance, 20).await, BTreeSet::from([addr(20)]));
    assert_eq!(balance.len(), 1);

    // Inserted: picked too.
    registry.upsert(ep("c", 3));
    assert_eq!(
        answers(&mut balance, 50).await,
        BTreeSet::from([addr(3), addr(20)])
    );

    // The registry is gone: the stream ends and the balancer keeps its set.
    drop(registry);
    assert_eq!(
        answers(&mut balance, 50).await,
        BTreeSet::from([addr(3), addr(20)])
    );
    assert_eq!(balance.len(), 2);
}

#[tokio::test]
async fn the_balancer_waits_while_the_registry_is_empty() {
    let registry = Registry::new("api");
    let mut balance = Balance::from_rng(registry.discover(make), deterministic_rng());
    let mut ready = balance.ready();
    assert!((&mut ready).now_or_never().is_none(), "no endpoint, not ready");
    registry.upsert(ep("a", 1));
    let svc = ready.await.unwrap();
    assert_eq!(svc.call(()).await.unwrap(), addr(1));
}

//! The etcd backend against a real etcd (3.4's JSON gateway): the source's
//! list and watch, invalid values, registrations, and an etcd restart.
//! Each test starts its own etcd; without one on PATH the tests are skipped
//! unless `ORCH_TEST_ETCD=required`.
#![cfg(feature = "etcd")]

mod etcd_support;

use std::time::Duration;

use futures_util::{FutureExt, StreamExt};
use orch_discovery::source::etcd::{
    EtcdConfig, EtcdError, EtcdPublisher, EtcdRegistration, EtcdSource, EtcdSourceGuard,
};
use orch_discovery::{Endpoint, EndpointChange, Registry, RegistryError, StaticEndpoint, Weight};

use etcd_support::{Etcd, etcd_binary};

const PREFIX: &str = "/orch/services/orders/";
/// Bound of every wait for the source or etcd.
const WITHIN: Duration = Duration::from_secs(20);

fn config(etcd: &Etcd) -> EtcdConfig {
    EtcdConfig::new([etcd.url()], PREFIX)
        // Short so the restart test reconnects soon; the cap is what bounds it.
        .reconnect_initial(Duration::from_millis(20))
        .reconnect_max(Duration::from_millis(500))
}

/// A source over `config` feeding a new `orders` registry, once it has
/// made its first sync.
async fn synced_source(config: &EtcdConfig) -> (Registry, EtcdSourceGuard) {
    let registry = Registry::new("orders");
    let source = EtcdSource::new(config)
        .expect("valid config")
        .start(&registry)
        .expect("in a runtime");
    tokio::time::timeout(WITHIN, source.synced())
        .await
        .expect("first sync");
    (registry, source)
}

fn value(id: &str, port: u16, weight: u32) -> String {
    format!(r#"{{"id":"{id}","address":"127.0.0.1:{port}","weight":{weight}}}"#)
}

fn key(id: &str) -> String {
    format!("{PREFIX}{id}")
}

async fn wait_until(
    registry: &Registry,
    what: &str,
    predicate: impl FnMut(&[Endpoint]) -> bool,
) -> Vec<Endpoint> {
    match tokio::time::timeout(WITHIN, registry.wait_until(predicate)).await {
        Ok(set) => set,
        Err(_) => panic!(
            "registry never reached: {what}; it holds {:?}",
            ids(&registry.snapshot())
        ),
    }
}

fn ids(set: &[Endpoint]) -> Vec<String> {
    set.iter().map(|e| e.id().to_string()).collect()
}

fn has(set: &[Endpoint], id: &str) -> bool {
    set.iter().any(|e| e.id().as_str() == id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_sync_lists_then_puts_and_deletes_follow() {
    let Some(binary) = etcd_binary() else { return };
    let etcd = Etcd::start(binary).await;
    etcd.put(&key("a"), &value("a", 8001, 1)).await;
    etcd.put(&key("b"), &value("b", 8002, 3)).await;
    // Outside the prefix, and a sibling prefix that shares its start.
    etcd.put("/orch/services/other/x", &value("x", 9000, 1)).await;
    etcd.put("/orch/services/orders-v2/y", &value("y", 9001, 1)).await;

    // The first endpoint is dead: the client fails over to the second.
    let mut config = config(&etcd);
    config.endpoints.insert(0, "http://127.0.0.1:1".to_owned());
    let (registry, source) = synced_source(&config).await;
    assert!(source.is_synced());
    assert_eq!(ids(&registry.snapshot()), ["a", "b"]);
    assert_eq!(registry.get(&"b".into()).map(|e| e.weight().get()), Some(3));

    etcd.put(&key("c"), &value("c", 8003, 1)).await;
    wait_until(&registry, "c added", |set| has(set, "c")).await;
    etcd.put(&key("b"), &value("b", 8002, 5)).await;
    wait_until(&registry, "b reweighted", |set| {
        set.iter()
            .any(|e| e.id().as_str() == "b" && e.weight().get() == 5)
    })
    .await;
    etcd.delete(&key("a")).await;
    let set = wait_until(&registry, "a removed", |set| !has(set, "a")).await;
    assert_eq!(ids(&set), ["b", "c"]);

    // Dropping the guard stops the source; the registry keeps what it had.
    drop(source);
    etcd.put(&key("d"), &value("d", 8004, 1)).await;
    assert_eq!(ids(&registry.snapshot()), ["b", "c"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_values_are_skipped_and_a_later_valid_put_applies() {
    let Some(binary) = etcd_binary() else { return };
    let etcd = Etcd::start(binary).await;
    // Invalid from the start: listed, skipped.
    etcd.put(&key("listed-bad"), &value("listed-bad", 8000, 0)).await;
    etcd.put(&key("ok"), &value("ok", 8001, 1)).await;

    let (registry, _source) = synced_source(&config(&etcd)).await;
    assert_eq!(ids(&registry.snapshot()), ["ok"]);

    // Each bad put is followed by a marker put: once the marker is in, the
    // watch has handled the bad put before it.
    let bad = [
        ("weight", value("new", 8002, 0)),
        ("address", r#"{"id":"new","address":"nowhere"}"#.to_owned()),
        ("id", value("other", 8002, 1)),
        (
            "unknown field",
            r#"{"id":"new","address":"127.0.0.1:8002","colour":"red"}"#.to_owned(),
        ),
        ("not JSON", "{".to_owned()),
    ];
    for (n, (what, bad_value)) in bad.iter().enumerate() {
        etcd.put(&key("new"), bad_value).await;
        let marker = format!("marker-{n}");
        etcd.put(&key(&marker), &value(&marker, 9000, 1)).await;
        let set = wait_until(&registry, "marker added", |set| has(set, &marker)).await;
        assert!(!has(&set, "new"), "bad {what} applied: {:?}", ids(&set));
    }

    // A later valid put of the same key applies.
    etcd.put(&key("new"), &value("new", 8002, 2)).await;
    wait_until(&registry, "new added", |set| has(set, "new")).await;

    // A bad value over a valid one changes nothing: the endpoint stays as it was.
    etcd.put(&key("new"), &value("new", 8003, 0)).await;
    etcd.put(&key("marker-last"), &value("marker-last", 9000, 1))
        .await;
    wait_until(&registry, "last marker added", |set| has(set, "marker-last")).await;
    let kept = registry.get(&"new".into()).expect("new kept");
    assert_eq!((kept.address().port(), kept.weight().get()), (8002, 2));

    etcd.put(&key("listed-bad"), &value("listed-bad", 8000, 1)).await;
    wait_until(&registry, "listed-bad fixed", |set| has(set, "listed-bad")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registration_appears_and_deregister_or_drop_removes_it() {
    let Some(binary) = etcd_binary() else { return };
    let etcd = Etcd::start(binary).await;
    let config = config(&etcd);
    let (registry, _source) = synced_source(&config).await;

    let mut me = StaticEndpoint::new("orders-1", "127.0.0.1:8001".parse().expect("address"));
    me.zone = Some("a".to_owned());
    me.labels.insert("track".to_owned(), "canary".to_owned());
    let registration = EtcdRegistration::start(&config, &me).expect("valid registration");
    assert_eq!(registration.key(), key("orders-1"));
    tokio::time::timeout(WITHIN, registration.registered())
        .await
        .expect("registered");
    assert!(registration.is_registered());
    let stored = etcd.get(&key("orders-1")).await.expect("key written");
    assert_eq!(
        serde_json::from_str::<StaticEndpoint>(&stored).expect("JSON endpoint"),
        me
    );
    let set = wait_until(&registry, "orders-1 added", |set| has(set, "orders-1")).await;
    assert_eq!(set[0], me.to_endpoint().expect("valid endpoint"));

    // deregister: the key is gone when it returns.
    registration.deregister().await.expect("lease revoked");
    assert_eq!(etcd.get(&key("orders-1")).await, None);
    wait_until(&registry, "orders-1 removed", |set| !has(set, "orders-1")).await;

    // drop: revoked by a task, soon after.
    let me2 = StaticEndpoint::new("orders-2", "127.0.0.1:8002".parse().expect("address"));
    let registration = EtcdRegistration::start(&config, &me2).expect("valid registration");
    tokio::time::timeout(WITHIN, registration.registered())
        .await
        .expect("registered");
    wait_until(&registry, "orders-2 added", |set| has(set, "orders-2")).await;
    drop(registration);
    wait_until(&registry, "orders-2 removed", |set| !has(set, "orders-2")).await;
    assert_eq!(etcd.get(&key("orders-2")).await, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_lease_is_granted_again_and_the_key_rewritten() {
    let Some(binary) = etcd_binary() else { return };
    let etcd = Etcd::start(binary).await;
    // The shortest TTL: a keepalive every third of a second notices the loss.
    let config = config(&etcd).lease_ttl(Duration::from_secs(1));
    let (registry, _source) = synced_source(&config).await;

    let me = StaticEndpoint::new("orders-1", "127.0.0.1:8001".parse().expect("address"));
    let registration = EtcdRegistration::start(&config, &me).expect("valid registration");
    tokio::time::timeout(WITHIN, registration.registered())
        .await
        .expect("registered");
    let first = etcd.lease_of(&key("orders-1")).await.expect("key written");
    assert_ne!(first, 0, "the key is attached to a lease");

    etcd.revoke(first).await;
    wait_until(&registry, "orders-1 removed with its lease", |set| {
        !has(set, "orders-1")
    })
    .await;
    wait_until(&registry, "orders-1 registered again", |set| has(set, "orders-1")).await;
    let second = etcd.lease_of(&key("orders-1")).await.expect("key written again");
    assert_ne!(second, first, "a new lease");
    registration.deregister().await.expect("lease revoked");
    assert_eq!(etcd.get(&key("orders-1")).await, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_etcd_restart_keeps_the_endpoints_and_converges_after() {
    let Some(binary) = etcd_binary() else { return };
    let mut etcd = Etcd::start(binary).await;
    let config = config(&etcd);
    etcd.put(&key("a"), &value("a", 8001, 1)).await;
    let me = StaticEndpoint::new("replica", "127.0.0.1:8100".parse().expect("address"));
    let registration = EtcdRegistration::start(&config, &me).expect("valid registration");
    tokio::time::timeout(WITHIN, registration.registered())
        .await
        .expect("registered");

    let (registry, _source) = synced_source(&config).await;
    wait_until(&registry, "a and replica", |set| {
        has(set, "a") && has(set, "replica")
    })
    .await;
    let mut changes = registry.changes();
    // The stream opens with the current set.
    for _ in 0..2 {
        assert!(matches!(
            changes.next().now_or_never(),
            Some(Some(EndpointChange::Insert(_)))
        ));
    }

    etcd.stop().await;
    assert_eq!(
        ids(&registry.snapshot()),
        ["a", "replica"],
        "endpoints kept while etcd is down"
    );

    // Changed before the source is back on its watch: it must list again.
    etcd.restart().await;
    etcd.put(&key("b"), &value("b", 8002, 1)).await;
    etcd.delete(&key("a")).await;
    let set = wait_until(&registry, "converged", |set| has(set, "b") && !has(set, "a")).await;
    assert_eq!(ids(&set), ["b", "replica"]);

    // The replica never left the registry on the way.
    while let Some(Some(change)) = changes.next().now_or_never() {
        assert_ne!(
            change,
            EndpointChange::Remove("replica".into()),
            "replica removed during the outage"
        );
    }

    // The registration is still (or again) in etcd, and still revocable.
    let fresh = Registry::new("fresh");
    let follower = EtcdSource::new(&config)
        .expect("valid config")
        .start(&fresh)
        .expect("in a runtime");
    tokio::time::timeout(WITHIN, follower.synced())
        .await
        .expect("sync after restart");
    wait_until(&fresh, "replica after restart", |set| has(set, "replica")).await;
    registration
        .deregister()
        .await
        .expect("lease revoked after restart");
    assert_eq!(etcd.get(&key("replica")).await, None);
    wait_until(&registry, "replica removed", |set| !has(set, "replica")).await;
}

#[tokio::test]
async fn bad_configs_are_typed_errors_naming_the_field() {
    let good = EtcdConfig::new(["http://127.0.0.1:2379"], PREFIX);
    let field = |result: Result<EtcdSource, EtcdError>| match result {
        Err(EtcdError::Config(e)) => e.field_name().to_owned(),
        other => panic!("expected a config error, got {other:?}"),
    };
    assert_eq!(
        field(EtcdSource::new(&EtcdConfig::new(
            ["https://127.0.0.1:2379"],
            PREFIX
        ))),
        "etcd.endpoints[0]"
    );
    assert_eq!(
        field(EtcdSource::new(&EtcdConfig::new(Vec::<String>::new(), PREFIX))),
        "etcd.endpoints"
    );
    assert_eq!(
        field(EtcdSource::new(&EtcdConfig::new(
            ["http://127.0.0.1:2379"],
            "/orch/orders"
        ))),
        "etcd.prefix"
    );
    assert_eq!(
        field(EtcdSource::new(&good.clone().lease_ttl(Duration::ZERO))),
        "etcd.lease_ttl"
    );

    let me = StaticEndpoint::new("orders-1", "127.0.0.1:8001".parse().expect("address"));
    match EtcdRegistration::start(&good.clone().lease_ttl(Duration::from_millis(1500)), &me) {
        Err(EtcdError::Config(e)) => assert_eq!(e.field_name(), "etcd.lease_ttl"),
        other => panic!("expected a config error, got {other:?}"),
    }
    let mut heavy = me.clone();
    heavy.weight = 0;
    match EtcdRegistration::start(&good, &heavy) {
        Err(EtcdError::Endpoint(RegistryError::InvalidField { field, .. })) => {
            assert_eq!(field, "endpoints[orders-1].weight");
        }
        other => panic!("expected an endpoint error, got {other:?}"),
    }

    // Unknown keys in a loaded config are refused.
    let unknown =
        serde_json::from_str::<EtcdConfig>(r#"{"endpoints":["http://h:1"],"prefix":"/p/","ttl":"5s"}"#);
    assert!(unknown.is_err());
}

#[test]
fn starting_outside_a_runtime_is_refused() {
    let config = EtcdConfig::new(["http://127.0.0.1:2379"], PREFIX);
    let source = EtcdSource::new(&config).expect("valid config");
    assert!(matches!(
        source.start(&Registry::new("orders")),
        Err(EtcdError::NoRuntime)
    ));
}

/// A watch that etcd cancels because its revisions were compacted is
/// followed by a new list at once, not after the reconnect delay. A fake
/// gateway, since a real etcd compacts under a live watch only in the
/// instant between a list and the watch that follows it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compacted_watch_lists_again_at_once() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use axum::{Router, body::Body, extract::State, routing::post};
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;

    #[derive(Clone, Default)]
    struct Calls {
        ranges: Arc<AtomicUsize>,
        watches: Arc<AtomicUsize>,
    }
    async fn range(State(calls): State<Calls>) -> String {
        // The first list holds `a`; after the compaction `b` replaced it.
        let id = if calls.ranges.fetch_add(1, Ordering::SeqCst) == 0 {
            "a"
        } else {
            "b"
        };
        let kv = serde_json::json!({
            "key": STANDARD.encode(key(id)),
            "value": STANDARD.encode(value(id, 8001, 1)),
        });
        serde_json::json!({"header": {"revision": "10"}, "kvs": [kv]}).to_string()
    }
    async fn watch(State(calls): State<Calls>) -> Body {
        let created = "{\"result\":{\"header\":{\"revision\":\"10\"},\"created\":true}}\n";
        if calls.watches.fetch_add(1, Ordering::SeqCst) == 0 {
            let canceled = "{\"result\":{\"header\":{\"revision\":\"12\"},\"canceled\":true,\"compact_revision\":\"11\"}}\n";
            Body::from(format!("{created}{canceled}"))
        } else {
            // Stays open with no events, as a quiet watch does.
            let lines = futures_util::stream::once(async move { Ok::<_, std::io::Error>(created) })
                .chain(futures_util::stream::pending());
            Body::from_stream(lines)
        }
    }

    let calls = Calls::default();
    let app = Router::new()
        .route("/v3/kv/range", post(range))
        .route("/v3/watch", post(watch))
        .with_state(calls.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    // A reconnect delay far beyond the wait: only an immediate list passes.
    let config = EtcdConfig::new([format!("http://{address}")], PREFIX)
        .reconnect_initial(Duration::from_secs(3600))
        .reconnect_max(Duration::from_secs(3600));
    let registry = Registry::new("orders");
    let source = EtcdSource::new(&config)
        .expect("valid config")
        .start(&registry)
        .expect("in a runtime");
    let set = wait_until(&registry, "b after the compaction", |set| has(set, "b")).await;
    assert_eq!(ids(&set), ["b"]);
    assert_eq!(calls.ranges.load(Ordering::SeqCst), 2);
    drop(source);
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_registry_is_published_into_etcd_and_stop_withdraws_it() {
    let Some(binary) = etcd_binary() else { return };
    let etcd = Etcd::start(binary).await;
    let config = config(&etcd);
    // This process's replicas (a SupervisorSource would keep it), and a
    // client elsewhere that follows etcd.
    let local = Registry::new("local");
    let address = |port: u16| format!("127.0.0.1:{port}").parse().expect("address");
    local.upsert(Endpoint::new("orders-1", address(8001)));
    let publisher = EtcdPublisher::new(&config)
        .expect("valid config")
        .start(&local)
        .expect("in a runtime");
    let (remote, _source) = synced_source(&config).await;
    wait_until(&remote, "orders-1 published", |set| has(set, "orders-1")).await;

    let three = Weight::new(3).expect("non-zero");
    local.upsert(Endpoint::new("orders-2", address(8002)).with_weight(three));
    wait_until(&remote, "orders-2 published", |set| has(set, "orders-2")).await;
    // A change is published as the new value, and the key stays.
    local.upsert(Endpoint::new("orders-2", address(8012)).with_weight(three));
    wait_until(&remote, "orders-2 moved", |set| {
        set.iter()
            .any(|e| e.id().as_str() == "orders-2" && e.address() == address(8012))
    })
    .await;
    // An instance that leaves the local registry leaves etcd at once.
    local.remove(&"orders-1".into());
    wait_until(&remote, "orders-1 withdrawn", |set| !has(set, "orders-1")).await;
    assert_eq!(etcd.get(&key("orders-1")).await, None);

    publisher.stop().await;
    assert_eq!(
        etcd.get(&key("orders-2")).await,
        None,
        "stop revokes what is left"
    );
    wait_until(&remote, "everything withdrawn", <[Endpoint]>::is_empty).await;
}

#[test]
fn a_publisher_with_a_bad_config_is_refused() {
    let bad = EtcdConfig::new(["http://127.0.0.1:2379"], "no-trailing-slash");
    let error = EtcdPublisher::new(&bad).expect_err("a prefix must end in /");
    assert!(error.to_string().contains("etcd.prefix"), "{error}");
}

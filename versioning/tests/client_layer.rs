//! The client layer in a hyper client calling a real axum server on
//! loopback that runs the server's `VersioningLayer` with v1 deprecated:
//! the version sent (header and media type), one warning per operation,
//! the metric on every deprecated answer, and the handle's snapshot.
#![allow(clippy::unwrap_used, reason = "tests unwrap what they set up")]

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use axum::{Extension, Router, routing::get};
use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::{client::legacy::Client, rt::TokioExecutor};
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use orch_versioning::{
    ApiVersion, ClientVersioningLayer, Lifecycle, Negotiated, Negotiation, SendAs, VersionSet,
    VersioningLayer,
};
use tower::{Layer, ServiceExt};
use tracing::{Level, field::Field};
use tracing_subscriber::{layer::SubscriberExt, registry::LookupSpan};

const DEPRECATED_AT: u64 = 1_719_878_400;
/// Fri, 01 Jan 2055 00:00:00 GMT: far ahead, so v1 still answers.
const SUNSET_AT: u64 = 2_682_374_400;

/// v1 deprecated with a sunset and migration notes, v2 stable.
async fn serve() -> SocketAddr {
    let at = UNIX_EPOCH + Duration::from_secs(DEPRECATED_AT);
    let sunset = UNIX_EPOCH + Duration::from_secs(SUNSET_AT);
    let set = VersionSet::builder("orders")
        .version(
            "1",
            Lifecycle::deprecated(at)
                .sunset(sunset)
                .link("https://example.com/migrate"),
        )
        .version("2", Lifecycle::Stable)
        .build()
        .unwrap();
    let handler = |Extension(v): Extension<Negotiated>| async move {
        let source = v.source.map_or("default", |s| s.label());
        format!("v{} from {source}", v.version)
    };
    let router = Router::new()
        .route("/orders", get(handler).post(handler))
        .route("/orders/{id}", get(handler));
    let layer = VersioningLayer::new(Negotiation::new(set).build().unwrap());
    let app = Router::new().fallback_service(layer.layer(router));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    address
}

/// Calls `method path` through a hyper client wrapped in `layer`; the
/// status and the body (the server says which version it served and where
/// it read it).
async fn call(
    layer: &ClientVersioningLayer,
    address: SocketAddr,
    method: &str,
    path: &str,
) -> (StatusCode, String) {
    let client = layer.layer(Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>());
    let request = Request::builder()
        .method(method)
        .uri(format!("http://{address}{path}"))
        .body(Empty::new())
        .unwrap();
    let response = tokio::time::timeout(Duration::from_secs(10), client.oneshot(request))
        .await
        .expect("an answer in time")
        .expect("an answer");
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// The fields of every warning logged while it is the default subscriber.
#[derive(Clone, Default)]
struct Warnings(Arc<Mutex<Vec<BTreeMap<String, String>>>>);

impl<S: tracing::Subscriber + for<'a> LookupSpan<'a>> tracing_subscriber::Layer<S> for Warnings {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        struct Fields<'a>(&'a mut BTreeMap<String, String>);
        impl tracing::field::Visit for Fields<'_> {
            fn record_str(&mut self, field: &Field, value: &str) {
                self.0.insert(field.name().to_owned(), value.to_owned());
            }
            fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
                self.0.insert(field.name().to_owned(), format!("{value:?}"));
            }
        }
        if *event.metadata().level() == Level::WARN {
            let mut fields = BTreeMap::new();
            event.record(&mut Fields(&mut fields));
            self.0.lock().unwrap().push(fields);
        }
    }
}

impl Warnings {
    fn taken(&self) -> Vec<BTreeMap<String, String>> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

/// `orch_api_deprecated_responses_total` per operation label.
fn deprecated_counts(snapshotter: &Snapshotter) -> BTreeMap<String, (String, u64)> {
    let mut counts = BTreeMap::new();
    for (key, _, _, value) in snapshotter.snapshot().into_vec() {
        let key = key.key();
        if key.name() != "orch_api_deprecated_responses_total" {
            continue;
        }
        let label = |name: &str| {
            key.labels()
                .find(|l| l.key() == name)
                .map(|l| l.value().to_owned())
                .unwrap_or_default()
        };
        assert_eq!(label("api"), "orders");
        let DebugValue::Counter(count) = value else {
            panic!("{value:?} is not a counter")
        };
        counts.insert(label("operation"), (label("version"), count));
    }
    counts
}

#[tokio::test]
async fn a_deprecated_version_warns_once_per_operation_and_counts_every_answer() {
    let warnings = Warnings::default();
    let _tracing = tracing::subscriber::set_default(tracing_subscriber::registry().with(warnings.clone()));
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _metrics = metrics::set_default_local_recorder(&recorder);

    let address = serve().await;
    let layer = ClientVersioningLayer::builder("orders", "1").build().unwrap();
    for _ in 0..3 {
        assert_eq!(
            call(&layer, address, "GET", "/orders").await,
            (StatusCode::OK, "v1 from header".to_owned())
        );
    }
    assert_eq!(call(&layer, address, "POST", "/orders").await.1, "v1 from header");

    let warned = warnings.taken();
    assert_eq!(warned.len(), 2, "one warning per operation: {warned:?}");
    let operations: Vec<_> = warned.iter().map(|w| w["operation"].as_str()).collect();
    assert_eq!(operations, ["GET /orders", "POST /orders"]);
    for warning in &warned {
        assert_eq!(warning["api"], "orders");
        assert_eq!(warning["version"], "1");
        assert_eq!(warning["deprecation"], "Tue, 02 Jul 2024 00:00:00 GMT");
        assert_eq!(warning["sunset"], "Fri, 01 Jan 2055 00:00:00 GMT");
        assert_eq!(warning["link"], "https://example.com/migrate");
    }

    let counts = deprecated_counts(&snapshotter);
    assert_eq!(counts["GET /orders"], ("1".to_owned(), 3));
    assert_eq!(counts["POST /orders"], ("1".to_owned(), 1));

    let seen = layer.deprecations().snapshot();
    assert_eq!(seen.len(), 2);
    let get = &seen["GET /orders"];
    assert_eq!(get.version, ApiVersion::semantic(1, 0));
    assert_eq!(get.responses, 3);
    assert_eq!(
        get.deprecation,
        Some(UNIX_EPOCH + Duration::from_secs(DEPRECATED_AT))
    );
    assert_eq!(get.sunset, Some(UNIX_EPOCH + Duration::from_secs(SUNSET_AT)));
    assert_eq!(get.link.as_deref(), Some("https://example.com/migrate"));
    assert!(get.sunset.is_some_and(|s| s > SystemTime::now()));
}

#[tokio::test]
async fn the_version_goes_as_a_media_type_and_operations_are_named_by_the_user() {
    let warnings = Warnings::default();
    let _tracing = tracing::subscriber::set_default(tracing_subscriber::registry().with(warnings.clone()));
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _metrics = metrics::set_default_local_recorder(&recorder);

    let address = serve().await;
    let layer = ClientVersioningLayer::builder("orders", "v1")
        .send_as(SendAs::MediaType)
        .operation(|parts| match parts.uri.path().strip_prefix("/orders/") {
            Some(_id) => format!("{} /orders/{{id}}", parts.method),
            None => format!("{} {}", parts.method, parts.uri.path()),
        })
        .build()
        .unwrap();
    for id in 1..=3 {
        let answer = call(&layer, address, "GET", &format!("/orders/{id}")).await;
        assert_eq!(answer, (StatusCode::OK, "v1 from media_type".to_owned()));
    }
    let warned = warnings.taken();
    assert_eq!(warned.len(), 1, "{warned:?}");
    assert_eq!(warned[0]["operation"], "GET /orders/{id}");
    assert_eq!(
        deprecated_counts(&snapshotter)["GET /orders/{id}"],
        ("1".to_owned(), 3)
    );
    assert_eq!(layer.deprecations().get("GET /orders/{id}").unwrap().responses, 3);
}

#[tokio::test]
async fn a_stable_version_stays_quiet() {
    let warnings = Warnings::default();
    let _tracing = tracing::subscriber::set_default(tracing_subscriber::registry().with(warnings.clone()));
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _metrics = metrics::set_default_local_recorder(&recorder);

    let address = serve().await;
    let layer = ClientVersioningLayer::builder("orders", "2").build().unwrap();
    assert_eq!(call(&layer, address, "GET", "/orders").await.1, "v2 from header");
    assert!(warnings.taken().is_empty());
    assert!(deprecated_counts(&snapshotter).is_empty());
    assert!(layer.deprecations().is_empty());
}

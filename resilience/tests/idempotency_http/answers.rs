//! What each request gets: replays, refusals with problem documents, and
//! which outcomes are saved.

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::Full;
use orch_resilience::idempotency::http::{FingerprintHasher, IdempotencyConfig};
use tower::Layer;

use super::{Handler, KEY, layer, memory, post, request, send};

#[tokio::test]
async fn a_repeat_replays_status_headers_and_body_without_running_again() {
    let store = memory();
    let handler = Handler::new();
    let service = layer(store.clone(), IdempotencyConfig::default()).layer(handler.service());

    let first = send(&service, post(KEY, "book")).await;
    assert_eq!(first.status, StatusCode::CREATED);
    assert!(!first.replayed());
    let again = send(&service, post(KEY, "book")).await;

    assert_eq!(handler.calls(), 1);
    assert!(again.replayed(), "the replay is marked");
    assert_eq!(
        (again.status, again.text()),
        (StatusCode::CREATED, "call 0: book".to_owned())
    );
    assert_eq!(again.headers["x-call"], "0");
    assert_eq!(again.headers["content-type"], "text/plain");
    assert!(again.headers.get("date").is_none(), "Date is not replayed");
    assert_eq!(store.len(), 1);
}

#[tokio::test]
async fn the_same_key_with_another_body_or_path_is_422_and_changes_nothing() {
    let store = memory();
    let handler = Handler::new();
    let service = layer(store.clone(), IdempotencyConfig::default()).layer(handler.service());
    send(&service, post(KEY, "book")).await;

    let other_body = send(&service, post(KEY, "lamp")).await;
    assert_eq!(other_body.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        other_body.problem()["type"],
        "urn:orch:problem:idempotency-key-mismatch"
    );
    let mut other_path = post(KEY, "book");
    *other_path.uri_mut() = "http://api/refunds".parse().unwrap();
    assert_eq!(
        send(&service, other_path).await.status,
        StatusCode::UNPROCESSABLE_ENTITY
    );

    assert_eq!(handler.calls(), 1);
    assert_eq!(
        send(&service, post(KEY, "book")).await.text(),
        "call 0: book",
        "the first is intact"
    );
}

#[tokio::test]
async fn a_client_error_is_saved_and_replayed() {
    let handler = Handler::new().statuses(&[404]);
    let service = layer(memory(), IdempotencyConfig::default()).layer(handler.service());
    assert_eq!(send(&service, post(KEY, "x")).await.status, StatusCode::NOT_FOUND);
    let again = send(&service, post(KEY, "x")).await;
    assert_eq!((again.status, again.replayed()), (StatusCode::NOT_FOUND, true));
    assert_eq!(handler.calls(), 1);
}

#[tokio::test]
async fn server_errors_and_try_again_answers_release_the_key() {
    for status in [500, 503, 429, 408] {
        let handler = Handler::new().statuses(&[status]);
        let service = layer(memory(), IdempotencyConfig::default()).layer(handler.service());
        assert_eq!(send(&service, post(KEY, "x")).await.status.as_u16(), status);
        let retry = send(&service, post(KEY, "x")).await;
        assert_eq!(
            (retry.status, retry.replayed()),
            (StatusCode::CREATED, false),
            "status {status}"
        );
        assert_eq!(handler.calls(), 2, "status {status}: the retry ran");
        assert!(send(&service, post(KEY, "x")).await.replayed());
    }
}

#[tokio::test]
async fn saving_server_errors_is_a_choice() {
    let mut config = IdempotencyConfig::default();
    config.saved.server_error = true;
    config.saved.client_error = false;
    let handler = Handler::new().statuses(&[500, 400, 201]);
    let service = layer(memory(), config).layer(handler.service());
    send(&service, post(KEY, "x")).await;
    assert!(
        send(&service, post(KEY, "x")).await.replayed(),
        "the 500 was saved"
    );

    let second = "\"018f6b2e-7c1a-7000-8000-0000000000bb\"";
    assert_eq!(
        send(&service, post(second, "x")).await.status,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        send(&service, post(second, "x")).await.status,
        StatusCode::CREATED,
        "the 400 was not"
    );
    assert_eq!(handler.calls(), 3);
}

#[tokio::test]
async fn every_bad_key_is_400_and_nothing_is_stored_or_run() {
    let store = memory();
    let handler = Handler::new();
    let service = layer(store.clone(), IdempotencyConfig::default()).layer(handler.service());
    let long = format!("\"{}\"", "0123456789abcdef".repeat(16));
    let bad: [&str; 8] = [
        "\"1\"",
        "\"\"",
        "018f6b2e-7c1a-7000-8000-0000000000aa",
        "\"unterminated",
        "\"aaaa bbbb cccc\"",
        "\"abababababab\"",
        "42",
        &long,
    ];
    for key in bad {
        let seen = send(&service, post(key, "x")).await;
        assert_eq!(seen.status, StatusCode::BAD_REQUEST, "key {key}");
        assert_eq!(
            seen.problem()["type"],
            "urn:orch:problem:idempotency-key-invalid",
            "key {key}"
        );
    }
    let mut twice = post(KEY, "x");
    twice
        .headers_mut()
        .append("idempotency-key", KEY.parse().unwrap());
    assert_eq!(send(&service, twice).await.status, StatusCode::BAD_REQUEST);

    assert_eq!(handler.calls(), 0);
    assert!(store.is_empty());
}

#[tokio::test]
async fn a_missing_key_is_400_only_where_required() {
    let store = memory();
    let handler = Handler::new();
    let optional = layer(store.clone(), IdempotencyConfig::default()).layer(handler.service());
    assert_eq!(
        send(&optional, request(Method::POST, None, "x")).await.status,
        StatusCode::CREATED
    );

    let required =
        layer(store.clone(), IdempotencyConfig::default().key_required(true)).layer(handler.service());
    let seen = send(&required, request(Method::POST, None, "x")).await;
    assert_eq!(seen.status, StatusCode::BAD_REQUEST);
    assert_eq!(seen.problem()["type"], "urn:orch:problem:idempotency-key-missing");
    // A method the layer does not protect needs no key, and stores none.
    assert_eq!(
        send(&required, request(Method::GET, Some(KEY), "")).await.status,
        StatusCode::CREATED
    );
    assert_eq!(handler.calls(), 2);
    assert!(store.is_empty());
}

#[tokio::test]
async fn a_body_over_the_limit_is_413_and_nothing_is_stored() {
    let store = memory();
    let handler = Handler::new();
    let config = IdempotencyConfig::default().max_body_bytes(8);
    let service = layer(store.clone(), config).layer(handler.service());
    let seen = send(&service, post(KEY, "nine bytes")).await;
    assert_eq!(seen.status, StatusCode::PAYLOAD_TOO_LARGE);
    seen.problem();
    assert_eq!(
        send(&service, post(KEY, "8 bytes!")).await.status,
        StatusCode::CREATED
    );
    assert_eq!(handler.calls(), 1);
    assert_eq!(store.len(), 1);
}

#[tokio::test]
async fn scopes_keep_clients_apart_and_fingerprints_can_be_chosen() {
    let handler = Handler::new();
    let tenant = |name: &'static str, body: &'static str| {
        let mut request = post(KEY, body);
        request.headers_mut().insert("x-tenant", name.parse().unwrap());
        request
    };
    let service = layer(memory(), IdempotencyConfig::default())
        .scope(|parts| {
            parts
                .headers
                .get("x-tenant")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned()
        })
        // The path only: bodies of a retry may differ (a timestamp).
        .fingerprint(|parts, _body: &Bytes| {
            FingerprintHasher::new()
                .field(parts.uri.path().as_bytes())
                .finish()
        })
        .layer(handler.service());
    send(&service, tenant("a", "t=1")).await;
    send(&service, tenant("b", "t=1")).await;
    assert_eq!(handler.calls(), 2, "one key, two tenants, two runs");
    let again = send(&service, tenant("a", "t=2")).await;
    assert!(again.replayed());
    assert_eq!(again.text(), "call 0: t=1");
}

#[tokio::test]
async fn axum_bodies_pass_through_the_layer() {
    let service = layer(memory(), IdempotencyConfig::default()).layer(tower::service_fn(
        |request: Request<axum::body::Body>| async move {
            let bytes = axum::body::to_bytes(request.into_body(), 1024).await.unwrap();
            Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(bytes)))
        },
    ));
    let request = || {
        Request::post("/orders")
            .header("idempotency-key", KEY)
            .body(axum::body::Body::from("abc"))
            .unwrap()
    };
    let response = tower::ServiceExt::oneshot(service.clone(), request())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let replay = tower::ServiceExt::oneshot(service, request()).await.unwrap();
    assert_eq!(replay.headers()["idempotent-replayed"], "true");
}

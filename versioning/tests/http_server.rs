//! The versioning layer in a real axum server on loopback, called over
//! HTTP/1.1 with hyper: every negotiation source and precedence, the
//! headers of a deprecated version, and every refusal with its
//! problem+json body.
#![allow(clippy::unwrap_used, reason = "tests unwrap what they set up")]

use std::{
    net::SocketAddr,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use axum::{Extension, Router, routing::get};
use bytes::Bytes;
use http::{Request, StatusCode, header};
use http_body_util::{BodyExt, Empty};
use hyper_util::{client::legacy::Client, rt::TokioExecutor};
use orch_versioning::{
    ApiVersion, DEPRECATION, Lifecycle, Negotiated, Negotiation, SUNSET, Source, VersionSet, VersioningLayer,
    parse_deprecation, parse_sunset,
};
use serde_json::Value;
use tower::Layer;

const DEPRECATED_AT: u64 = 1_719_878_400;

/// v1 deprecated with a sunset far ahead and notes; v2 stable; v3 stable
/// but `DELETE /orders` removed from v1; v0 removed.
fn set() -> VersionSet {
    let at = UNIX_EPOCH + Duration::from_secs(DEPRECATED_AT);
    let sunset = SystemTime::now() + Duration::from_secs(86_400 * 365);
    VersionSet::builder("orders")
        .version("0", Lifecycle::removed().link("https://example.com/v0-gone"))
        .version(
            "1",
            Lifecycle::deprecated(at)
                .sunset(sunset)
                .link("https://example.com/migrate"),
        )
        .version("2", Lifecycle::Stable)
        .version("3", Lifecycle::Stable)
        .default_version("2")
        .operation("DELETE /orders", "1", Lifecycle::removed())
        .pin(|parts| {
            (parts.headers.get("x-account").is_some_and(|v| v == "acct_old"))
                .then(|| ApiVersion::semantic(1, 0))
        })
        .build()
        .expect("a valid set")
}

async fn serve(negotiation: Negotiation) -> SocketAddr {
    let handler = |Extension(v): Extension<Negotiated>| async move {
        let source = v.source.map_or("default", |s| s.label());
        format!("v{} from {source}", v.version)
    };
    let router = Router::new().route("/orders", get(handler).delete(handler));
    // Outside the router, so that stripped path prefixes are routed.
    let app = Router::new().fallback_service(VersioningLayer::new(negotiation).layer(router));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a loopback port");
    let address = listener.local_addr().expect("an address");
    tokio::spawn(async move { axum::serve(listener, app).await });
    address
}

fn negotiation() -> Negotiation {
    Negotiation::new(set())
        .operation(|parts| Some(format!("{} {}", parts.method, parts.uri.path())))
        .build()
        .expect("a valid negotiation")
}

struct Answer {
    status: StatusCode,
    headers: http::HeaderMap,
    body: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
}

async fn send(address: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)]) -> Answer {
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let mut request = Request::builder()
        .method(method)
        .uri(format!("http://{address}{path}"));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = tokio::time::timeout(
        Duration::from_secs(10),
        client.request(request.body(Empty::new()).unwrap()),
    )
    .await
    .expect("an answer in time")
    .expect("an answer");
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.into_body().collect().await.expect("a body").to_bytes();
    Answer {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

#[tokio::test]
async fn each_source_names_the_version_and_the_answer_echoes_it() {
    let address = serve(negotiation()).await;
    type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str);
    let cases: [Case<'_>; 6] = [
        ("/orders", &[("api-version", "3")], "v3 from header"),
        ("/orders", &[("Api-Version", "v3")], "v3 from header"),
        ("/v3/orders", &[], "v3 from path"),
        (
            "/orders",
            &[("accept", "application/vnd.orders.v3+json")],
            "v3 from media_type",
        ),
        (
            "/orders",
            &[("accept", "text/html, application/json; version=3")],
            "v3 from media_type",
        ),
        ("/orders", &[], "v2 from default"),
    ];
    for (path, headers, expected) in cases {
        let answer = send(address, "GET", path, headers).await;
        assert_eq!(
            answer.status,
            StatusCode::OK,
            "{path} {headers:?}: {}",
            answer.body
        );
        assert_eq!(answer.body, expected, "{path} {headers:?}");
        let echoed = if expected.starts_with("v3") { "3" } else { "2" };
        assert_eq!(answer.headers["api-version"], echoed);
    }
    // A per-client pin for requests that name no version.
    let pinned = send(address, "GET", "/orders", &[("x-account", "acct_old")]).await;
    assert_eq!(pinned.body, "v1 from default");
}

#[tokio::test]
async fn precedence_is_configurable() {
    let header_first = serve(negotiation()).await;
    let both = [("api-version", "3")];
    assert_eq!(
        send(header_first, "GET", "/v2/orders", &both).await.body,
        "v3 from header"
    );

    let path_first = Negotiation::new(set())
        .precedence([Source::PathPrefix, Source::Header])
        .build()
        .unwrap();
    let path_first = serve(path_first).await;
    assert_eq!(
        send(path_first, "GET", "/v2/orders", &both).await.body,
        "v2 from path"
    );

    let header_only = Negotiation::new(set())
        .precedence([Source::Header])
        .build()
        .unwrap();
    let header_only = serve(header_only).await;
    let ignored = send(
        header_only,
        "GET",
        "/orders",
        &[("accept", "application/vnd.orders.v3+json")],
    )
    .await;
    assert_eq!(ignored.body, "v2 from default", "sources not listed are not read");
}

#[tokio::test]
async fn a_deprecated_version_says_when_it_goes_away() {
    let address = serve(negotiation()).await;
    let answer = send(address, "GET", "/orders", &[("api-version", "1")]).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.headers[DEPRECATION], format!("@{DEPRECATED_AT}").as_str());
    assert_eq!(
        parse_deprecation(&answer.headers[DEPRECATION]),
        Some(UNIX_EPOCH + Duration::from_secs(DEPRECATED_AT))
    );
    assert!(parse_sunset(&answer.headers[SUNSET]).is_some_and(|s| s > SystemTime::now()));
    assert_eq!(
        answer.headers[header::LINK],
        "<https://example.com/migrate>; rel=\"deprecation\"; type=\"text/html\""
    );
    let stable = send(address, "GET", "/orders", &[("api-version", "2")]).await;
    assert!(stable.headers.get(DEPRECATION).is_none() && stable.headers.get(SUNSET).is_none());
}

#[tokio::test]
async fn every_refusal_is_a_problem_listing_the_supported_versions() {
    let address = serve(negotiation()).await;
    let problem = |answer: &Answer, status: StatusCode, kind: &str| {
        assert_eq!(answer.status, status, "{}", answer.body);
        assert_eq!(answer.headers[header::CONTENT_TYPE], "application/problem+json");
        let body = answer.json();
        assert_eq!(body["type"], format!("urn:orch:problem:{kind}"));
        assert_eq!(body["status"], status.as_u16());
        assert_eq!(body["supported"], serde_json::json!(["1", "2", "3"]));
        assert_eq!(body["latest"], "3");
        body
    };
    let malformed = send(address, "GET", "/orders", &[("api-version", "two")]).await;
    let body = problem(&malformed, StatusCode::BAD_REQUEST, "malformed-api-version");
    assert!(
        body["detail"].as_str().unwrap().contains("api-version header"),
        "{body}"
    );

    let unknown = send(address, "GET", "/orders", &[("api-version", "7")]).await;
    problem(&unknown, StatusCode::BAD_REQUEST, "unsupported-api-version");
    let unknown_path = send(address, "GET", "/v7/orders", &[]).await;
    problem(&unknown_path, StatusCode::BAD_REQUEST, "unsupported-api-version");

    let from_accept = send(
        address,
        "GET",
        "/orders",
        &[("accept", "application/vnd.orders.v7+json")],
    )
    .await;
    problem(
        &from_accept,
        StatusCode::NOT_ACCEPTABLE,
        "unsupported-api-version",
    );
    let malformed_accept = send(
        address,
        "GET",
        "/orders",
        &[("accept", "application/vnd.orders.vX+json")],
    )
    .await;
    problem(
        &malformed_accept,
        StatusCode::NOT_ACCEPTABLE,
        "malformed-api-version",
    );

    let removed = send(address, "GET", "/orders", &[("api-version", "0")]).await;
    let body = problem(&removed, StatusCode::GONE, "api-version-removed");
    assert_eq!(body["migration"], "https://example.com/v0-gone");

    // One operation removed from v1 while the rest of v1 works.
    let delete_v1 = send(address, "DELETE", "/orders", &[("api-version", "1")]).await;
    problem(&delete_v1, StatusCode::GONE, "api-version-removed");
    assert_eq!(
        send(address, "GET", "/orders", &[("api-version", "1")])
            .await
            .status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_version_past_its_sunset_is_gone() {
    let past = UNIX_EPOCH + Duration::from_secs(DEPRECATED_AT);
    let set = VersionSet::builder("orders")
        .version(
            "1",
            Lifecycle::deprecated(past).sunset(past + Duration::from_secs(60)),
        )
        .version("2", Lifecycle::Stable)
        .build()
        .unwrap();
    let address = serve(Negotiation::new(set).build().unwrap()).await;
    let answer = send(address, "GET", "/orders", &[("api-version", "1")]).await;
    assert_eq!(answer.status, StatusCode::GONE, "{}", answer.body);
}

#[tokio::test]
async fn a_grpc_request_is_refused_with_a_grpc_status() {
    let address = serve(negotiation()).await;
    let headers = [("content-type", "application/grpc"), ("api-version", "9")];
    let answer = send(address, "GET", "/orders", &headers).await;
    assert_eq!(
        answer.status,
        StatusCode::OK,
        "gRPC carries errors in grpc-status"
    );
    assert_eq!(answer.headers["grpc-status"], "3");
    let message = answer.headers["grpc-message"].to_str().unwrap();
    assert!(
        message.contains("api-version metadata") && message.contains("supported: 1, 2, 3"),
        "{message}"
    );
    let removed = send(
        address,
        "GET",
        "/orders",
        &[("content-type", "application/grpc"), ("api-version", "0")],
    )
    .await;
    assert_eq!(removed.headers["grpc-status"], "12");
}

//! The chain layer in a real axum server on loopback, called over HTTP/1.1
//! with hyper: clients of versions 1, 2 and 3 against one set of handlers
//! written for version 3, every refusal as problem+json, and the bodies
//! that pass untouched.
#![allow(clippy::unwrap_used, reason = "tests unwrap what they set up")]

mod support;

use std::{
    collections::VecDeque,
    convert::Infallible,
    net::SocketAddr,
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use axum::{
    Json, Router,
    extract::Path,
    http::StatusCode,
    response::IntoResponse,
    routing::{get, post},
};
use bytes::Bytes;
use http::{Request, header};
use http_body::{Body, Frame};
use http_body_util::{BodyExt, Either, Full};
use hyper_util::{client::legacy::Client, rt::TokioExecutor};
use orch_versioning::{ChainLayer, Negotiation, VersioningLayer};
use serde_json::{Value, json};
use support::*;
use tower::Layer;

/// The handlers, written once for version 3.
fn router() -> Router {
    async fn create(Json(mut order): Json<OrderV3>) -> impl IntoResponse {
        order.id = Some("ord_1".to_owned());
        (StatusCode::CREATED, Json(order))
    }
    async fn show(Path(id): Path<String>) -> axum::response::Response {
        match id.as_str() {
            "ord_1" => Json(OrderV3 {
                id: Some(id),
                customer_id: "cus_1".into(),
                amount_cents: 1250,
                currency: "usd".into(),
                items: vec![Item {
                    sku: "A-1".into(),
                    qty: 2,
                }],
            })
            .into_response(),
            // A handler bug: no version-2 order can be made of this.
            "ord_bad" => {
                Json(json!({ "id": id, "customer_id": "cus_1", "amount_cents": "lots" })).into_response()
            }
            _ => (
                StatusCode::NOT_FOUND,
                [(header::CONTENT_TYPE, "application/problem+json")],
                json!({ "title": "No such order", "status": 404, "customer_id": null }).to_string(),
            )
                .into_response(),
        }
    }
    Router::new()
        .route("/orders", post(create))
        .route("/orders/{id}", get(show))
        .route(
            "/orders/{id}/receipt",
            get(|Path(id): Path<String>| async move { format!("receipt {id}") }),
        )
        .route("/notes", post(|note: String| async move { note }))
}

async fn serve(limit: usize) -> SocketAddr {
    let negotiation = Negotiation::new(numbered_set()).build().unwrap();
    let chain = ChainLayer::new(numbered_chain())
        .body_limit(limit)
        .operation(|parts| {
            let path = parts.uri.path();
            match path.strip_prefix("/orders/") {
                Some(id) if !id.contains('/') => format!("{} /orders/{{id}}", parts.method),
                _ => format!("{} {path}", parts.method),
            }
        });
    let app = Router::new().fallback_service(VersioningLayer::new(negotiation).layer(chain.layer(router())));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    address
}

/// A body of several chunks and no length: sent chunked.
struct Chunks(VecDeque<Bytes>);

impl Body for Chunks {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(self.0.pop_front().map(|chunk| Ok(Frame::data(chunk))))
    }
}

struct Answer {
    status: StatusCode,
    headers: http::HeaderMap,
    body: Bytes,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("{e}: {:?}", self.body))
    }

    fn problem(&self, status: StatusCode, kind: &str) -> Value {
        assert_eq!(self.status, status, "{:?}", self.body);
        assert_eq!(self.headers[header::CONTENT_TYPE], "application/problem+json");
        let body = self.json();
        assert_eq!(body["type"], format!("urn:orch:problem:{kind}"));
        assert_eq!(body["status"], status.as_u16());
        body
    }
}

type ClientBody = Either<Full<Bytes>, Chunks>;

async fn send(
    address: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: ClientBody,
) -> Answer {
    let client = Client::builder(TokioExecutor::new()).build_http::<ClientBody>();
    let mut request = Request::builder()
        .method(method)
        .uri(format!("http://{address}{path}"));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = tokio::time::timeout(
        Duration::from_secs(10),
        client.request(request.body(body).unwrap()),
    )
    .await
    .expect("an answer in time")
    .expect("an answer");
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    Answer {
        status,
        headers,
        body,
    }
}

fn json_body(value: &Value) -> ClientBody {
    Either::Left(Full::new(Bytes::from(value.to_string())))
}

fn empty() -> ClientBody {
    Either::Left(Full::new(Bytes::new()))
}

const JSON: (&str, &str) = ("content-type", "application/json");

#[tokio::test]
async fn clients_of_three_versions_share_one_handler() {
    let address = serve(ChainLayer::DEFAULT_BODY_LIMIT).await;
    let mut order_v2 = order_v1();
    order_v2["customer_id"] = order_v2["customer"].take();
    order_v2.as_object_mut().unwrap().remove("customer");
    let order_v3 = json!({
        "customer_id": "cus_1", "amount_cents": 1250, "currency": "usd",
        "items": [{ "sku": "A-1", "qty": 2 }, { "sku": "B-7", "qty": 1 }],
    });
    // Version 1 by header, 2 by path prefix, 3 by media type.
    let cases = [
        ("/orders", ("api-version", "1"), order_v1(), "1"),
        ("/v2/orders", ("x-client", "v2"), order_v2, "2"),
        (
            "/orders",
            ("accept", "application/vnd.orders.v3+json"),
            order_v3,
            "3",
        ),
    ];
    for (path, named, sent, version) in cases {
        let answer = send(address, "POST", path, &[JSON, named], json_body(&sent)).await;
        assert_eq!(
            answer.status,
            StatusCode::CREATED,
            "v{version}: {:?}",
            answer.body
        );
        let mut expected = sent.clone();
        expected["id"] = json!("ord_1");
        assert_eq!(answer.json(), expected, "v{version} gets its own shape back");
        assert_eq!(answer.headers["api-version"], version);
        assert_eq!(
            answer.headers[header::CONTENT_LENGTH],
            answer.body.len().to_string().as_str(),
            "v{version}: the length is the converted body's"
        );
    }
    let shown = send(address, "GET", "/orders/ord_1", &[("api-version", "1")], empty()).await;
    assert_eq!(
        shown.json(),
        json!({ "id": "ord_1", "customer": "cus_1", "amount": 12.5, "items": [{ "sku": "A-1", "qty": 2 }] })
    );
    // A chunked request body of an old version is buffered and upgraded too.
    let text = order_v1().to_string();
    let (head, tail) = text.split_at(text.len() / 2);
    let chunks = Chunks([Bytes::from(head.to_owned()), Bytes::from(tail.to_owned())].into());
    let chunked = send(
        address,
        "POST",
        "/orders",
        &[JSON, ("api-version", "1")],
        Either::Right(chunks),
    )
    .await;
    assert_eq!(chunked.status, StatusCode::CREATED, "{:?}", chunked.body);
    assert_eq!(chunked.json()["customer"], "cus_1");
}

#[tokio::test]
async fn what_is_not_a_json_success_passes_untouched() {
    let address = serve(ChainLayer::DEFAULT_BODY_LIMIT).await;
    let v1 = ("api-version", "1");
    let text = send(
        address,
        "POST",
        "/notes",
        &[("content-type", "text/plain"), v1],
        json_body(&json!("customer")),
    )
    .await;
    assert_eq!(
        (text.status, text.body.as_ref()),
        (StatusCode::OK, b"\"customer\"".as_ref())
    );
    let receipt = send(address, "GET", "/orders/ord_1/receipt", &[v1], empty()).await;
    assert_eq!(receipt.body, "receipt ord_1");
    let missing = send(address, "GET", "/orders/ord_9", &[v1], empty()).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(
        missing.json(),
        json!({ "title": "No such order", "status": 404, "customer_id": null }),
        "error documents are not downgraded"
    );
    // The latest version gets the handler's body as it is, bug included.
    let latest = send(
        address,
        "GET",
        "/orders/ord_bad",
        &[("api-version", "3")],
        empty(),
    )
    .await;
    assert_eq!(latest.json()["amount_cents"], "lots");
}

#[tokio::test]
async fn every_refusal_is_a_problem() {
    let address = serve(256).await;
    let v1 = ("api-version", "1");

    let mut bad_qty = order_v1();
    bad_qty["items"][0]["qty"] = json!(-1);
    let answer = send(address, "POST", "/orders", &[JSON, v1], json_body(&bad_qty)).await;
    let body = answer.problem(StatusCode::BAD_REQUEST, "request-not-upgradable");
    let detail = body["detail"].as_str().unwrap();
    assert!(
        detail.contains("version 1")
            && detail.contains("change of version 3")
            && detail.contains("`items[0].qty`"),
        "{detail}"
    );

    let not_json = Either::Left(Full::new(Bytes::from_static(b"{\"customer\": ")));
    let answer = send(address, "POST", "/orders", &[JSON, v1], not_json).await;
    answer.problem(StatusCode::BAD_REQUEST, "request-body-not-json");

    let mut large = order_v1();
    large["items"] = json!(vec![json!({ "sku": "A-1", "qty": 1 }); 20]);
    let answer = send(address, "POST", "/orders", &[JSON, v1], json_body(&large)).await;
    answer.problem(StatusCode::PAYLOAD_TOO_LARGE, "request-body-too-large");
    let text = large.to_string();
    let chunks = Chunks(text.as_bytes().chunks(100).map(Bytes::copy_from_slice).collect());
    let answer = send(address, "POST", "/orders", &[JSON, v1], Either::Right(chunks)).await;
    answer.problem(StatusCode::PAYLOAD_TOO_LARGE, "request-body-too-large");
    // The limit applies to what is converted only.
    let answer = send(
        address,
        "POST",
        "/notes",
        &[("content-type", "text/plain"), v1],
        json_body(&large),
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK);

    let answer = send(address, "GET", "/orders/ord_bad", &[v1], empty()).await;
    let body = answer.problem(StatusCode::INTERNAL_SERVER_ERROR, "response-not-downgradable");
    assert!(
        !body["detail"].as_str().unwrap().contains("amount_cents"),
        "internals are logged, not sent: {body}"
    );
}

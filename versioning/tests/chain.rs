//! Version-change chains without a server: walks over three numbered and
//! three dated versions, typed and untyped changes, scoped operations,
//! the changelog, and the layer's fast path for the latest version.
#![allow(clippy::unwrap_used, reason = "tests unwrap what they set up")]

mod support;

use std::{
    convert::Infallible,
    time::{Duration, UNIX_EPOCH},
};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Either, Full};
use orch_versioning::{
    ApiVersion, ChainError, ChainLayer, ChangeChain, Direction, Lifecycle, Negotiation, VersionChange,
    VersionSet, VersioningLayer,
};
use serde_json::{Value, json};
use support::*;
use tower::{Layer, ServiceExt, service_fn};

fn v(text: &str) -> ApiVersion {
    text.parse().unwrap()
}

#[test]
fn a_version_1_body_walks_up_through_2_and_3_and_back() {
    let chain = numbered_chain();
    let latest = chain.upgrade_request(v("1"), "POST /orders", order_v1()).unwrap();
    assert_eq!(
        latest,
        json!({
            "customer_id": "cus_1",
            "amount_cents": 1250,
            "currency": "usd",
            "items": [{ "sku": "A-1", "qty": 2 }, { "sku": "B-7", "qty": 1 }],
        })
    );
    // The handler answers in version 3; each client gets its own version.
    let mut answer = latest.clone();
    answer["id"] = json!("ord_1");
    let for_v1 = chain
        .downgrade_response(v("1"), "POST /orders", answer.clone())
        .unwrap();
    let mut expected = order_v1();
    expected["id"] = json!("ord_1");
    assert_eq!(for_v1, expected);
    let for_v2 = chain
        .downgrade_response(v("2"), "POST /orders", answer.clone())
        .unwrap();
    assert_eq!(for_v2["customer_id"], "cus_1");
    assert_eq!(for_v2["amount"], 12.5);
    assert!(for_v2.get("currency").is_none());
    let for_v3 = chain
        .downgrade_response(v("3"), "POST /orders", answer.clone())
        .unwrap();
    assert_eq!(for_v3, answer, "the latest version is not converted");
}

#[test]
fn a_scoped_change_leaves_other_operations_alone() {
    let chain = numbered_chain();
    let body = json!({ "customer": "cus_1", "amount": 3 });
    let up = chain.upgrade_request(v("1"), "POST /refunds", body).unwrap();
    assert_eq!(
        up,
        json!({ "customer_id": "cus_1", "amount": 3 }),
        "the rename applies to every operation, the split to orders only"
    );
}

#[test]
fn a_typed_change_names_the_field_it_cannot_read() {
    let chain = numbered_chain();
    let mut body = order_v1();
    body["items"][1]["qty"] = json!(-1);
    let error = chain.upgrade_request(v("1"), "POST /orders", body).unwrap_err();
    let ChainError::Conversion {
        version,
        direction,
        operation,
        source,
    } = &error
    else {
        panic!("{error:?}");
    };
    assert_eq!(
        (*version, *direction, operation.as_str()),
        (v("3"), Direction::Upgrade, "POST /orders")
    );
    assert_eq!(source.field(), Some("items[1].qty"), "{error}");
    assert!(
        error.to_string().starts_with(
            "the change of version 3 could not upgrade the request of POST /orders: `items[1].qty`:"
        ),
        "{error}"
    );
}

#[test]
fn dated_versions_walk_in_date_order() {
    let chain = dated_chain();
    let old = json!({ "status": "paid", "tags": "vip,gift" });
    let latest = chain
        .upgrade_request(v("2024-01-01"), "POST /payments", old.clone())
        .unwrap();
    assert_eq!(latest, json!({ "status": "succeeded", "tags": ["vip", "gift"] }));
    let middle = chain
        .upgrade_request(v("2024-06-20"), "POST /payments", old.clone())
        .unwrap();
    assert_eq!(
        middle,
        json!({ "status": "paid", "tags": ["vip", "gift"] }),
        "only the newer change"
    );
    assert_eq!(
        chain
            .downgrade_response(v("2024-01-01"), "GET /payments", latest)
            .unwrap(),
        old
    );
    let error = chain
        .upgrade_request(v("2024-06-20"), "POST /payments", json!({ "tags": 3 }))
        .unwrap_err();
    assert!(
        error
            .to_string()
            .contains("`tags`: expected a comma-separated string"),
        "{error}"
    );
}

#[test]
fn the_changelog_lists_versions_newest_first_with_their_changes() {
    let deprecated = UNIX_EPOCH + Duration::from_secs(1_719_878_400);
    let set = VersionSet::builder("orders")
        .version("0", Lifecycle::removed())
        .version(
            "1",
            Lifecycle::deprecated(deprecated)
                .sunset(deprecated + Duration::from_secs(86_400 * 182))
                .link("https://example.com/migrate"),
        )
        .version("2", Lifecycle::Stable)
        .version("3", Lifecycle::Stable)
        .version("4", Lifecycle::Stable)
        .build()
        .unwrap();
    let chain = ChangeChain::builder(&set)
        .change(VersionChange::new("2", "Renames `customer` to `customer_id`."))
        .change(
            VersionChange::new(
                "4",
                "Splits `amount` into `amount_cents` and `currency`.\n\nDecimals are gone.",
            )
            .operation("POST /orders")
            .operation("GET /orders/{id}"),
        )
        .change(VersionChange::new("4", "Lists are paginated."))
        .build()
        .unwrap();
    assert_eq!(
        chain.changelog(),
        "# orders API changelog

## 4 (latest)

- Splits `amount` into `amount_cents` and `currency`.

  Decimals are gone.
  Applies to `POST /orders`, `GET /orders/{id}`.
- Lists are paginated.

## 3

No changes to request or response bodies.

## 2

- Renames `customer` to `customer_id`.

## 1

*Deprecated since 2024-07-02; sunset on 2024-12-31.* [Migration notes](https://example.com/migrate).

No changes to request or response bodies.

## 0

*Removed.*

The first version.
"
    );
}

type Body = Either<Full<Bytes>, Full<Bytes>>;

/// Through the versioning and chain layers to a service that reports
/// whether its request body was buffered (`Either::Right`) and answers an
/// order of version 3.
async fn through_layers(version: &str, body: Value) -> (bool, Value) {
    let chain = numbered_chain();
    let negotiation = Negotiation::new(numbered_set()).build().unwrap();
    let service = service_fn(|request: Request<Body>| async move {
        let buffered = matches!(request.body(), Either::Right(_));
        let answer = json!({ "customer_id": "cus_1", "amount_cents": 1250, "currency": "usd", "items": [] });
        let response = Response::builder()
            .header(http::header::CONTENT_TYPE, "application/json")
            .header("x-buffered", buffered.to_string())
            .body(Full::new(Bytes::from(answer.to_string())))
            .unwrap();
        Ok::<_, Infallible>(response)
    });
    let service = VersioningLayer::new(negotiation).layer(
        ChainLayer::new(chain)
            .operation(|_| "GET /orders/{id}".to_owned())
            .layer(service),
    );
    let request = Request::post("/orders")
        .header("api-version", version)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap();
    let response = service.oneshot(request).await.unwrap();
    let buffered = response.headers()["x-buffered"] == "true";
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (buffered, serde_json::from_slice(&bytes).unwrap())
}

#[tokio::test]
async fn the_latest_version_is_not_buffered_and_older_ones_are() {
    let (buffered, answer) = through_layers("3", json!({ "customer_id": "cus_1" })).await;
    assert!(!buffered, "a request of the latest version passes as it is");
    assert_eq!(answer["amount_cents"], 1250, "and so does its answer");
    let (buffered, answer) = through_layers(
        "2",
        json!({ "customer_id": "cus_1", "amount": 12.5, "items": [] }),
    )
    .await;
    assert!(buffered);
    assert_eq!(answer["amount"], 12.5, "the answer is downgraded");
}

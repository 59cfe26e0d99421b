//! What API versioning costs a request: negotiating its version, and
//! converting its body through one change of a version-change chain, each
//! against a baseline in the same run.
//!
//! Groups:
//! - `negotiation`: `Negotiation::negotiate` on request parts naming the
//!   version by header, by path prefix (`/v2/orders/…`, stripped for the
//!   router), by media type (`Accept: application/vnd.orders.v2+json`),
//!   and naming none (the default). Baselines: building the request parts
//!   (what every server does per request before any layer runs), and a
//!   bare `headers.get("api-version")` plus `ApiVersion` parse (the least
//!   reading a version can cost). The parts of the negotiation lines are
//!   built outside the timing (`iter_batched`); the negotiation's own
//!   `SystemTime::now` (for sunsets) is in it.
//! - `chain_hop`: a 1 KiB JSON order (ten items, an address, metadata)
//!   parsed, walked through one change, and serialized, as the chain layer
//!   does for each body of an older version: an untyped change (a field
//!   rename on `serde_json::Value`) and a typed one (`OrderV2` → `OrderV3`
//!   through serde structs). Baseline: `serde_json` parse + serialize of
//!   the same bytes, the least any JSON conversion costs.
//! - `layers`: one whole request with that body through `VersioningLayer`
//!   and `ChainLayer` to a service answering the same order: a client at
//!   the latest version (no buffering) and one a version back (request
//!   upgraded, response downgraded), and the chain layer alone at the
//!   latest version (every request carries `Negotiated`, as the
//!   versioning layer leaves it). Baselines: the bare service, and the
//!   versioning layer alone. Calls are driven with a no-op waker (every
//!   future is ready at once), so no executor cost is in the numbers; the
//!   response body is collected in every line.
//!
//! Run: `cargo bench --bench versioning`.

use std::{
    convert::Infallible,
    future::{Future, Ready, ready},
    hint::black_box,
    pin::pin,
    task::{Context, Poll, Waker},
    time::Duration,
};

use bytes::Bytes;
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use http::{Request, Response, request::Parts};
use http_body_util::{BodyExt, Full};
use orch::versioning::{
    ApiVersion, ChainLayer, ChangeChain, Lifecycle, Negotiation, VersionChange, VersionSet, VersioningLayer,
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tower::{Layer, Service};

fn set(versions: &[&str]) -> VersionSet {
    versions
        .iter()
        .fold(VersionSet::builder("orders"), |b, v| {
            b.version(*v, Lifecycle::Stable)
        })
        .build()
        .expect("a valid set")
}

fn parts(uri: &str, header: Option<(&str, &str)>) -> Parts {
    let mut request = Request::get(uri)
        .header("host", "orders.internal")
        .header("user-agent", "bench/1");
    if let Some((name, value)) = header {
        request = request.header(name, value);
    }
    request.body(()).expect("a valid request").into_parts().0
}

fn negotiation(c: &mut Criterion) {
    let negotiation = Negotiation::new(set(&["1", "2", "3"]))
        .build()
        .expect("a valid negotiation");
    let mut g = c.benchmark_group("negotiation");
    g.bench_function("baseline: build parts", |b| {
        b.iter(|| black_box(parts(black_box("/orders/ord_1"), Some(("api-version", "2")))))
    });
    g.bench_function("baseline: header lookup + parse", |b| {
        b.iter_batched(
            || parts("/orders/ord_1", Some(("api-version", "2"))),
            |parts| {
                let version = parts
                    .headers
                    .get("api-version")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<ApiVersion>().ok());
                (black_box(version), parts)
            },
            BatchSize::SmallInput,
        )
    });
    type Line<'a> = (&'a str, &'a str, Option<(&'a str, &'a str)>);
    let lines: [Line<'_>; 4] = [
        ("header", "/orders/ord_1", Some(("api-version", "2"))),
        ("path prefix", "/v2/orders/ord_1?expand=items", None),
        (
            "media type",
            "/orders/ord_1",
            Some(("accept", "application/vnd.orders.v2+json")),
        ),
        ("default", "/orders/ord_1", None),
    ];
    for (name, uri, header) in lines {
        g.bench_function(name, |b| {
            b.iter_batched(
                || parts(uri, header),
                |mut parts| (black_box(negotiation.negotiate(&mut parts)), parts),
                BatchSize::SmallInput,
            )
        });
    }
    g.finish();
}

#[derive(Serialize, Deserialize)]
struct Item {
    sku: String,
    name: String,
    qty: u32,
    unit_price: f64,
}

#[derive(Serialize, Deserialize)]
struct OrderV2 {
    id: String,
    customer_id: String,
    amount: f64,
    status: String,
    items: Vec<Item>,
    shipping: Value,
    metadata: Value,
}

#[derive(Serialize, Deserialize)]
struct OrderV3 {
    id: String,
    customer_id: String,
    amount_cents: i64,
    currency: String,
    status: String,
    items: Vec<Item>,
    shipping: Value,
    metadata: Value,
}

/// A version 1 order (`customer`, decimal `amount`) of about 1 KiB.
fn order_v1() -> Value {
    let items: Vec<Value> = (0..10)
        .map(|i| json!({ "sku": format!("SKU-{i:04}"), "name": format!("Widget number {i}"), "qty": i + 1, "unit_price": 4.25 }))
        .collect();
    json!({
        "id": "ord_0190a1b2c3d47000",
        "customer": "cus_0190a1b2c3d47000",
        "amount": 153.0,
        "status": "paid",
        "items": items,
        "shipping": { "name": "Ada Lovelace", "line1": "12 St James's Square", "city": "London", "postcode": "SW1Y 4JH", "country": "GB" },
        "metadata": { "channel": "web", "campaign": "spring-sale", "note": "leave at the door" },
    })
}

fn rename_chain() -> ChangeChain {
    ChangeChain::builder(&set(&["1", "2"]))
        .change(
            VersionChange::new("2", "Renames `customer` to `customer_id`.").rename("customer", "customer_id"),
        )
        .build()
        .expect("a valid chain")
}

fn typed_chain() -> ChangeChain {
    let up = |o: OrderV2| OrderV3 {
        id: o.id,
        customer_id: o.customer_id,
        amount_cents: (o.amount * 100.0).round() as i64,
        currency: "usd".into(),
        status: o.status,
        items: o.items,
        shipping: o.shipping,
        metadata: o.metadata,
    };
    let down = |o: OrderV3| OrderV2 {
        id: o.id,
        customer_id: o.customer_id,
        amount: o.amount_cents as f64 / 100.0,
        status: o.status,
        items: o.items,
        shipping: o.shipping,
        metadata: o.metadata,
    };
    ChangeChain::builder(&set(&["2", "3"]))
        .change(VersionChange::new("3", "Splits `amount`.").typed(up, down))
        .build()
        .expect("a valid chain")
}

fn chain_hop(c: &mut Criterion) {
    let v1 = Bytes::from(order_v1().to_string());
    let mut v2 = order_v1();
    v2["customer_id"] = v2["customer"].take();
    v2.as_object_mut().expect("an object").remove("customer");
    let v2 = Bytes::from(v2.to_string());
    assert!(
        (900..1300).contains(&v1.len()),
        "the order is about 1 KiB: {}",
        v1.len()
    );
    let hop = |chain: &ChangeChain, from: ApiVersion, body: &[u8]| {
        let value: Value = serde_json::from_slice(body).expect("JSON");
        let value = chain
            .upgrade_request(from, "POST /orders", value)
            .expect("a conversion");
        serde_json::to_vec(&value).expect("serializable")
    };
    let (rename, typed) = (rename_chain(), typed_chain());
    let mut g = c.benchmark_group("chain_hop");
    g.bench_function("baseline: parse + serialize", |b| {
        b.iter(|| {
            let value: Value = serde_json::from_slice(black_box(&v1)).expect("JSON");
            black_box(serde_json::to_vec(&value).expect("serializable"))
        })
    });
    g.bench_function("untyped (rename)", |b| {
        b.iter(|| black_box(hop(&rename, ApiVersion::semantic(1, 0), black_box(&v1))))
    });
    g.bench_function("typed (serde structs)", |b| {
        b.iter(|| black_box(hop(&typed, ApiVersion::semantic(2, 0), black_box(&v2))))
    });
    g.finish();
}

fn done<T>(poll: Poll<T>) -> T {
    match poll {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("every future of the bench is ready at once"),
    }
}

/// One call driven to completion without an executor, its body collected.
fn call<S, B>(service: &mut S, request: Request<Full<Bytes>>) -> Bytes
where
    S: Service<Request<Full<Bytes>>, Response = Response<B>>,
    S::Error: std::fmt::Debug,
    B: http_body::Body<Data = Bytes>,
    B::Error: std::fmt::Debug,
{
    let mut cx = Context::from_waker(Waker::noop());
    done(service.poll_ready(&mut cx)).expect("ready");
    let response = done(pin!(service.call(request)).poll(&mut cx)).expect("a response");
    done(pin!(response.into_body().collect()).poll(&mut cx))
        .expect("a body")
        .to_bytes()
}

/// The handler: answers a version 3 order at once, whatever the request.
#[derive(Clone)]
struct Answer(Bytes);

impl<B> Service<Request<B>> for Answer {
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Request<B>) -> Self::Future {
        let response = Response::builder()
            .header("content-type", "application/json")
            .body(Full::new(self.0.clone()))
            .expect("a valid response");
        ready(Ok(response))
    }
}

fn layers(c: &mut Criterion) {
    let set = set(&["1", "2", "3"]);
    let chain = ChangeChain::builder(&set)
        .change(
            VersionChange::new("3", "Renames `customer` to `customer_id`.").rename("customer", "customer_id"),
        )
        .build()
        .expect("a valid chain");
    let negotiation = Negotiation::new(set).build().expect("a valid negotiation");
    let mut latest = order_v1();
    latest["customer_id"] = latest["customer"].take();
    latest.as_object_mut().expect("an object").remove("customer");
    let handler = Answer(Bytes::from(latest.to_string()));
    let bodies = [
        ("2", Bytes::from(order_v1().to_string())),
        ("3", Bytes::from(latest.to_string())),
    ];
    // Every request carries the negotiated version, as `VersioningLayer`
    // leaves it, so that the chain layer can also be measured alone.
    let negotiated = |version: &str| {
        let (mut parts, ()) = Request::get("/")
            .header("api-version", version)
            .body(())
            .expect("a valid request")
            .into_parts();
        negotiation.negotiate(&mut parts).expect("a supported version")
    };
    let negotiated = [negotiated("2"), negotiated("3")];
    let request = move |version: &str| {
        let index = usize::from(version == "3");
        Request::post("/orders")
            .header("content-type", "application/json")
            .header("api-version", version)
            .extension(negotiated[index].clone())
            .body(Full::new(bodies[index].1.clone()))
            .expect("a valid request")
    };
    let mut g = c.benchmark_group("layers");
    let mut bare = handler.clone();
    g.bench_function("baseline: bare service", |b| {
        b.iter(|| black_box(call(&mut bare, request("3"))))
    });
    let chain_layer = ChainLayer::new(chain);
    let mut chain_alone = chain_layer.layer(handler.clone());
    g.bench_function("chain alone, latest", |b| {
        b.iter(|| black_box(call(&mut chain_alone, request("3"))))
    });
    let mut versioning = VersioningLayer::new(negotiation.clone()).layer(handler.clone());
    g.bench_function("baseline: versioning only", |b| {
        b.iter(|| black_box(call(&mut versioning, request("3"))))
    });
    let mut chained = VersioningLayer::new(negotiation).layer(chain_layer.layer(handler));
    // The lines measure what they say: version 2 gets its own shape back.
    let answer = |body: Bytes| serde_json::from_slice::<Value>(&body).expect("JSON");
    assert!(answer(call(&mut chained, request("2"))).get("customer").is_some());
    assert!(
        answer(call(&mut chained, request("3")))
            .get("customer_id")
            .is_some()
    );
    for (name, version) in [
        ("versioning + chain, latest", "3"),
        ("versioning + chain, one back", "2"),
    ] {
        g.bench_function(name, |b| {
            b.iter(|| black_box(call(&mut chained, request(version))))
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    // Short samples, as in the other benches: lines are compared within
    // one run, and long runs buy little against a shared machine's noise.
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = negotiation, chain_hop, layers
}
criterion_main!(benches);

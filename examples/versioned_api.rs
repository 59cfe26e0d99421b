//! A versioned HTTP API: one handler, written against the latest version,
//! serves three versions, and clients pinned to an old one hear that it is
//! going away before it does.
//!
//! - **Versions:** `customers` has version 0 (removed: `410 Gone`), 1
//!   (deprecated, with a `Sunset` and a `Link` to the migration notes), 2
//!   and 3 (the latest), declared in a `VersionSet`.
//! - **Negotiation:** a `VersioningLayer` reads the version from the path
//!   prefix (`/v2/customers`), the `api-version` header or the media type
//!   (`Accept: application/vnd.customers.v1+json`), in that order, and
//!   falls back to the latest. A version it does not know gets `400`, a
//!   removed one `410`, both as `application/problem+json`.
//! - **Changes:** a `ChangeChain` of two `VersionChange`s (2 renamed `name`
//!   to `full_name`, 3 moved `email` into `contact`) upgrades older
//!   requests for the handler and downgrades its answers; the changelog is
//!   generated from the same chain and printed.
//! - **Client:** a hyper client under a `ClientVersioningLayer` pinned to
//!   version 1 logs one deprecation warning per operation (a `tracing`
//!   warning) and keeps what it saw in `Deprecations`.
//!
//! It ends by itself with a summary and exits non-zero if an answer was
//! not the expected one.
//!
//! ```text
//! cargo run --example versioned_api            # the tour, a pinned client, a summary
//! cargo run --example versioned_api -- --serve # then serve until Ctrl-C or SIGTERM
//! ```

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{Duration, UNIX_EPOCH},
};

use axum::{
    Extension, Json, Router,
    extract::{Path, State},
    http::StatusCode,
    routing::{get, post},
};
use bytes::Bytes;
use http::{Request, Response, header};
use http_body_util::{BodyExt, Full};
use hyper_util::{client::legacy::Client, client::legacy::connect::HttpConnector, rt::TokioExecutor};
use orch::core::shutdown_signal;
use orch::versioning::{
    ChainLayer, ChangeChain, ClientVersioningLayer, Lifecycle, Negotiated, Negotiation, Source,
    VersionChange, VersionSet, VersioningLayer,
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tower::{Layer, ServiceBuilder, ServiceExt};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

// ===== the API's versions =====

/// The versions of `customers` and the changes between them.
fn versions() -> Result<ChangeChain, orch::versioning::VersionError> {
    let day = |secs: u64| UNIX_EPOCH + Duration::from_secs(secs);
    let set = VersionSet::builder("customers")
        .version(
            "0",
            Lifecycle::removed().link("https://example.com/customers/migrate-to-v3"),
        )
        // Deprecated since 2025-01-01, answering until 2028-01-01.
        .version(
            "1",
            Lifecycle::deprecated(day(1_735_689_600))
                .sunset(day(1_830_297_600))
                .link("https://example.com/customers/migrate-to-v3"),
        )
        .version("2", Lifecycle::Stable)
        .version("3", Lifecycle::Stable)
        .build()?;
    ChangeChain::builder(&set)
        .change(VersionChange::new("2", "Renames `name` to `full_name`.").rename("name", "full_name"))
        .change(
            VersionChange::new("3", "Moves `email` into a `contact` object (`contact.email`).")
                .request(|body| {
                    if let Some(customer) = body.as_object_mut()
                        && let Some(email) = customer.remove("email")
                    {
                        customer.insert("contact".to_owned(), json!({ "email": email }));
                    }
                    Ok(())
                })
                .response(|body| {
                    if let Some(customer) = body.as_object_mut()
                        && let Some(mut contact) = customer.remove("contact")
                        && let Some(email) = contact.get_mut("email").map(Value::take)
                    {
                        customer.insert("email".to_owned(), email);
                    }
                    Ok(())
                }),
        )
        .build()
}

// ===== the server, written against version 3 =====

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Contact {
    email: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct NewCustomer {
    full_name: String,
    contact: Contact,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Customer {
    id: u64,
    full_name: String,
    contact: Contact,
}

/// The customers, and which version each request was served as.
#[derive(Default)]
struct Db {
    customers: Mutex<Vec<Customer>>,
    served: Mutex<BTreeMap<String, usize>>,
}

impl Db {
    fn count(&self, negotiated: &Negotiated) {
        if let Ok(mut served) = self.served.lock() {
            *served.entry(negotiated.version.to_string()).or_default() += 1;
        }
    }
}

async fn create(
    State(db): State<Arc<Db>>,
    Extension(negotiated): Extension<Negotiated>,
    Json(new): Json<NewCustomer>,
) -> Result<(StatusCode, Json<Customer>), StatusCode> {
    db.count(&negotiated);
    let mut customers = db
        .customers
        .lock()
        .map_err(|_| StatusCode::INTERNAL_SERVER_ERROR)?;
    let customer = Customer {
        id: customers.len() as u64 + 1,
        full_name: new.full_name,
        contact: new.contact,
    };
    customers.push(customer.clone());
    Ok((StatusCode::CREATED, Json(customer)))
}

async fn read(
    State(db): State<Arc<Db>>,
    Extension(negotiated): Extension<Negotiated>,
    Path(id): Path<u64>,
) -> Result<Json<Customer>, StatusCode> {
    db.count(&negotiated);
    let customers = db
        .customers
        .lock()
        .map_err(|_| StatusCode::INTERNAL_SERVER_ERROR)?;
    let found = customers.iter().find(|c| c.id == id).cloned();
    found.map(Json).ok_or(StatusCode::NOT_FOUND)
}

async fn serve(chain: ChangeChain, db: Arc<Db>) -> Result<SocketAddr, BoxError> {
    let negotiation = Negotiation::new(chain.set().clone())
        .precedence([Source::PathPrefix, Source::Header, Source::MediaType])
        .build()?;
    let app = Router::new()
        .route("/customers", post(create))
        .route("/customers/{id}", get(read))
        .with_state(db);
    // Negotiation outside the chain: the chain reads the negotiated version.
    let versioned = VersioningLayer::new(negotiation).layer(ChainLayer::new(chain).layer(app));
    let app = Router::new().fallback_service(versioned);
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, app).await {
            eprintln!("customers server failed: {error}");
        }
    });
    Ok(addr)
}

// ===== the clients =====

type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// One request of the tour: what it sends and what it must get.
struct Step {
    what: &'static str,
    request: Request<Full<Bytes>>,
    status: StatusCode,
    /// The version that must answer, and a field its body must have.
    expect: Option<(&'static str, &'static str)>,
}

fn step(
    what: &'static str,
    request: http::request::Builder,
    body: Option<Value>,
    status: StatusCode,
    expect: Option<(&'static str, &'static str)>,
) -> Result<Step, BoxError> {
    let request = match body {
        Some(body) => request
            .header(header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body.to_string())))?,
        None => request.body(Full::default())?,
    };
    Ok(Step {
        what,
        request,
        status,
        expect,
    })
}

fn tour(addr: SocketAddr) -> Result<Vec<Step>, BoxError> {
    let url = |path: &str| format!("http://{addr}{path}");
    let v3 = json!({ "full_name": "Ada Lovelace", "contact": { "email": "ada@example.com" } });
    let v2 = json!({ "full_name": "Grace Hopper", "email": "grace@example.com" });
    let v1 = json!({ "name": "Alan Turing", "email": "alan@example.com" });
    Ok(vec![
        step(
            "version 3 by header",
            Request::post(url("/customers")).header("api-version", "3"),
            Some(v3),
            StatusCode::CREATED,
            Some(("3", "contact")),
        )?,
        step(
            "version 2 by path prefix",
            Request::post(url("/v2/customers")),
            Some(v2),
            StatusCode::CREATED,
            Some(("2", "full_name")),
        )?,
        step(
            "version 1 by media type",
            Request::post(url("/customers")).header(header::ACCEPT, "application/vnd.customers.v1+json"),
            Some(v1),
            StatusCode::CREATED,
            Some(("1", "name")),
        )?,
        step(
            "customer 1 read as version 1",
            Request::get(url("/v1/customers/1")),
            None,
            StatusCode::OK,
            Some(("1", "email")),
        )?,
        step(
            "no version: the latest",
            Request::get(url("/customers/3")),
            None,
            StatusCode::OK,
            Some(("3", "contact")),
        )?,
        step(
            "an unknown version",
            Request::get(url("/customers/1")).header("api-version", "9"),
            None,
            StatusCode::BAD_REQUEST,
            None,
        )?,
        step(
            "a removed version",
            Request::get(url("/v0/customers/1")),
            None,
            StatusCode::GONE,
            None,
        )?,
    ])
}

/// The answer's headers of interest, one line.
fn describe(response: &Response<hyper::body::Incoming>) -> String {
    let names = ["api-version", "deprecation", "sunset", "link", "content-type"];
    names
        .iter()
        .filter_map(|name| {
            let value = response.headers().get(*name)?.to_str().ok()?;
            Some(format!("{name}: {value}"))
        })
        .collect::<Vec<_>>()
        .join(" | ")
}

/// Runs the tour; returns what went other than expected.
async fn run_tour(client: &HttpClient, addr: SocketAddr) -> Result<Vec<String>, BoxError> {
    let mut problems = Vec::new();
    for step in tour(addr)? {
        println!(
            "--- {}: {} {}",
            step.what,
            step.request.method(),
            step.request.uri().path()
        );
        let response = client.request(step.request).await?;
        let status = response.status();
        println!("    {status} {}", describe(&response));
        let version = response.headers().get("api-version").cloned();
        let body = response.into_body().collect().await?.to_bytes();
        println!("    {}", String::from_utf8_lossy(&body));
        if status != step.status {
            problems.push(format!("{}: {status}, expected {}", step.what, step.status));
        }
        if let Some((want, field)) = step.expect {
            let json: Value = serde_json::from_slice(&body).unwrap_or_default();
            if version.as_ref().is_none_or(|v| v != want) || json.get(field).is_none() {
                problems.push(format!(
                    "{}: not a version {want} answer with `{field}`",
                    step.what
                ));
            }
        }
    }
    Ok(problems)
}

/// A client written against version 1, and never updated: its layer warns
/// once per operation. Returns the operations it was warned about.
async fn run_pinned(client: &HttpClient, addr: SocketAddr) -> Result<Vec<String>, BoxError> {
    let versioning = ClientVersioningLayer::builder("customers", "1")
        // Name operations by route so `/customers/1` and `/2` warn once.
        .operation(|parts| match parts.uri.path().rsplit_once('/') {
            Some(("/customers", _)) => format!("{} /customers/{{id}}", parts.method),
            _ => format!("{} {}", parts.method, parts.uri.path()),
        })
        .build()?;
    let deprecations = versioning.deprecations();
    let pinned = ServiceBuilder::new().layer(versioning).service(client.clone());
    println!("--- a client pinned to version 1 creates and reads 3 customers");
    for n in 0..3 {
        let body = json!({ "name": format!("Pinned {n}"), "email": format!("pinned{n}@example.com") });
        let create = Request::post(format!("http://{addr}/customers"))
            .header(header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body.to_string())))?;
        let created = pinned.clone().oneshot(create).await?;
        let created: Value = serde_json::from_slice(&created.into_body().collect().await?.to_bytes())?;
        let id = created
            .get("id")
            .and_then(Value::as_u64)
            .ok_or("no id in the answer")?;
        let read = Request::get(format!("http://{addr}/customers/{id}")).body(Full::default())?;
        pinned.clone().oneshot(read).await?.into_body().collect().await?;
    }
    let seen = deprecations.snapshot();
    for (operation, notice) in &seen {
        let sunset = notice.sunset.map_or_else(|| "not set".to_owned(), days_until);
        println!(
            "    {operation}: version {} deprecated, {} answers, sunset {sunset}, see {}",
            notice.version,
            notice.responses,
            notice.link.as_deref().unwrap_or("-"),
        );
    }
    Ok(seen.into_keys().collect())
}

/// How far off `at` is, in whole days.
fn days_until(at: std::time::SystemTime) -> String {
    match at.duration_since(std::time::SystemTime::now()) {
        Ok(left) => format!("in {} days", left.as_secs() / 86_400),
        Err(_) => "passed".to_owned(),
    }
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let serve_flag = std::env::args().any(|a| a == "--serve");
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .init();
    let chain = versions()?;
    println!("{}", chain.changelog());
    let db = Arc::new(Db::default());
    let addr = serve(chain, Arc::clone(&db)).await?;
    println!("--- customers API on http://{addr}");
    let client: HttpClient = Client::builder(TokioExecutor::new()).build_http();
    let run = async {
        let problems = run_tour(&client, addr).await?;
        let warned = run_pinned(&client, addr).await?;
        Ok::<_, BoxError>((problems, warned))
    };
    let (mut problems, warned) = tokio::select! {
        outcome = run => outcome?,
        signal = shutdown_signal() => {
            println!("--- {} received", signal?);
            return Ok(());
        }
    };
    if warned != ["GET /customers/{id}", "POST /customers"] {
        problems.push(format!("the pinned client was warned about {warned:?}"));
    }
    let served = db.served.lock().map(|s| s.clone()).unwrap_or_default();
    println!("--- summary");
    println!("    requests served by version {served:?}");
    println!("    pinned client warned for   {warned:?}");
    for problem in &problems {
        println!("    problem: {problem}");
    }
    if serve_flag {
        println!("--- serving on http://{addr}; Ctrl-C or SIGTERM shuts down");
        println!("--- {} received", shutdown_signal().await?);
    }
    if !problems.is_empty() {
        return Err(format!("{} unexpected answers", problems.len()).into());
    }
    Ok(())
}

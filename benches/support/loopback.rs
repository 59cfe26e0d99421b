//! Loopback servers, the clients that call them, and the measurement loop
//! of `benches/client_stack.rs`.

use std::{
    future::Future,
    net::SocketAddr,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use http::{Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};
use tokio::net::TcpListener;

#[allow(clippy::all, missing_docs)]
pub mod payments {
    include!("../../examples/proto/orch.examples.payments.v1.rs");
}

use payments::{
    ChargeReply, ChargeRequest,
    payments_client::PaymentsClient,
    payments_server::{Payments, PaymentsServer},
};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
type BoxFuture = Pin<Box<dyn Future<Output = Result<(), BoxError>> + Send>>;

/// One client under test: a name and a way to make one call.
#[derive(Clone)]
pub struct Contender {
    pub name: &'static str,
    call: Arc<dyn Fn(u64) -> BoxFuture + Send + Sync>,
}

impl Contender {
    fn new<F, Fut>(name: &'static str, call: F) -> Self
    where
        F: Fn(u64) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), BoxError>> + Send + 'static,
    {
        Self {
            name,
            call: Arc::new(move |i| Box::pin(call(i))),
        }
    }
}

// ===== servers =====

async fn listener() -> (TcpListener, SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a loopback port");
    let addr = listener.local_addr().expect("a bound listener has an address");
    (listener, addr)
}

/// An axum server on a loopback port answering `POST /charge` with `ok`.
///
/// Accepted sockets get `TCP_NODELAY`, as orch's served children set it:
/// without it, Nagle's algorithm holding a small write back until the
/// peer's delayed ACK adds tens of milliseconds to some calls.
async fn http_server() -> SocketAddr {
    use axum::serve::ListenerExt;

    let (listener, addr) = listener().await;
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let router = axum::Router::new().route("/charge", axum::routing::post(|| async { "ok" }));
    tokio::spawn(async move { axum::serve(listener, router).await });
    addr
}

struct Charger;

#[tonic::async_trait]
impl Payments for Charger {
    async fn charge(
        &self,
        request: tonic::Request<ChargeRequest>,
    ) -> Result<tonic::Response<ChargeReply>, tonic::Status> {
        let order = request.into_inner().order_id;
        Ok(tonic::Response::new(ChargeReply {
            charge_id: order,
            served_by: String::new(),
        }))
    }
}

/// A tonic server on a loopback port serving `Payments`, its accepted
/// sockets with `TCP_NODELAY` (see [`http_server`]).
async fn grpc_server() -> SocketAddr {
    let (listener, addr) = listener().await;
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    let server = tonic::transport::Server::builder().add_service(PaymentsServer::new(Charger));
    tokio::spawn(server.serve_with_incoming(incoming));
    addr
}

// ===== HTTP/1.1 clients =====

type HttpClient = Client<HttpConnector, Full<Bytes>>;

fn http_request(authority: &str) -> Request<Full<Bytes>> {
    let uri = format!("http://{authority}/charge");
    Request::post(uri)
        .body(Full::new(Bytes::from_static(b"{}")))
        .expect("a valid request")
}

async fn read_http(response: Response<hyper::body::Incoming>) -> Result<(), BoxError> {
    if response.status() != StatusCode::OK {
        return Err(format!("status {}", response.status()).into());
    }
    response.into_body().collect().await?;
    Ok(())
}

/// The HTTP/1.1 contenders over `replicas` servers: `direct` takes them in
/// turn with a plain pooled client, `orch` and `tower` balance over them.
pub async fn http_contenders(replicas: usize) -> Vec<Contender> {
    let mut addrs = Vec::new();
    for _ in 0..replicas {
        addrs.push(http_server().await);
    }
    // With `TCP_NODELAY`, as orch's hyper connector and tonic's channels
    // connect: every client under test sends on the same kind of socket.
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client: HttpClient = Client::builder(TokioExecutor::new()).build(connector);

    let direct = {
        let client = client.clone();
        let authorities: Vec<String> = addrs.iter().map(ToString::to_string).collect();
        let next = AtomicUsize::new(0);
        Contender::new("direct", move |_| {
            let turn = next.fetch_add(1, Ordering::Relaxed) % authorities.len();
            let response = client.request(http_request(&authorities[turn]));
            async move { read_http(response.await?).await }
        })
    };
    let mut all = vec![direct, orch_http(&addrs), tower_http(&client, &addrs)];
    if replicas == 1 {
        all.extend([stack_http(&client, addrs[0]), balancer_http(&addrs)]);
    }
    all
}

/// orch's resilience stack as in `orch`, over `direct`'s client: what the
/// stack costs without the balancer.
fn stack_http(client: &HttpClient, addr: SocketAddr) -> Contender {
    use orch::resilience::{CircuitBreakerConfig, HttpClassifier, ResilienceLayer, RetryConfig};
    use tower::{Layer, ServiceExt};

    // Shared, so that cloning the stack for a call clones no pool handles
    // that `direct` does not clone either.
    let client = Arc::new(client.clone());
    let inner = tower::service_fn(move |request: Request<Full<Bytes>>| client.request(request));
    let stack = ResilienceLayer::builder()
        .classifier(HttpClassifier::default())
        .retry(RetryConfig::default().max_attempts(3))
        .circuit_breaker(CircuitBreakerConfig::default().name("bench-stack"))
        .attempt_timeout(Duration::from_secs(1))
        .build()
        .expect("a valid stack")
        .layer(inner);
    let authority = addr.to_string();
    Contender::new("orch stack only", move |_| {
        orch_http_call(stack.clone().oneshot(http_request(&authority)))
    })
}

/// orch's balancer and hyper connector as in `orch`, without the stack.
fn balancer_http(addrs: &[SocketAddr]) -> Contender {
    use orch::discovery::{balance::Balancer, connect::HyperConnector};
    use tower::ServiceExt;

    let balancer = Balancer::new(endpoints(addrs), HyperConnector::new()).into_shared();
    Contender::new("orch balancer only", move |_| {
        orch_http_call(balancer.clone().oneshot(http_request("replica")))
    })
}

/// The replicas as a discovery stream that stays open (a stream that ends
/// would be a closed registry).
fn endpoints(
    addrs: &[SocketAddr],
) -> impl futures_util::Stream<Item = orch::discovery::EndpointChange> + use<> {
    use futures_util::StreamExt;
    use orch::discovery::{Endpoint, EndpointChange};

    let inserts: Vec<_> = addrs
        .iter()
        .enumerate()
        .map(|(i, addr)| EndpointChange::Insert(Endpoint::new(format!("replica-{i}"), *addr)))
        .collect();
    futures_util::stream::iter(inserts).chain(futures_util::stream::pending())
}

/// orch's client: the shared balancer over the hyper connector, under the
/// resilience stack.
fn orch_http(addrs: &[SocketAddr]) -> Contender {
    use orch::discovery::{balance::Balancer, connect::HyperConnector};
    use orch::resilience::{CircuitBreakerConfig, HttpClassifier, ResilienceLayer, RetryConfig};
    use tower::{Layer, ServiceExt};

    let balancer = Balancer::new(endpoints(addrs), HyperConnector::new()).into_shared();
    let stack = ResilienceLayer::builder()
        .classifier(HttpClassifier::default())
        .retry(RetryConfig::default().max_attempts(3))
        .circuit_breaker(CircuitBreakerConfig::default().name("bench"))
        .attempt_timeout(Duration::from_secs(1))
        .build()
        .expect("a valid stack")
        .layer(balancer);
    Contender::new("orch", move |_| {
        orch_http_call(stack.clone().oneshot(http_request("replica")))
    })
}

async fn orch_http_call<E: Into<BoxError>>(
    call: impl Future<Output = Result<Response<hyper::body::Incoming>, E>>,
) -> Result<(), BoxError> {
    read_http(call.await.map_err(Into::into)?).await
}

/// tower's balancer over one service per replica, shared through `Buffer`,
/// with retry and an attempt timeout.
fn tower_http(client: &HttpClient, addrs: &[SocketAddr]) -> Contender {
    use tower::{ServiceBuilder, ServiceExt, balance::p2c::Balance, buffer::Buffer, discover::ServiceList};

    let replicas = addrs.iter().map(|addr| {
        let client = client.clone();
        let authority: http::uri::Authority = addr.to_string().parse().expect("an address is an authority");
        let service = tower::service_fn(move |mut request: Request<Full<Bytes>>| {
            let mut parts = request.uri().clone().into_parts();
            parts.authority = Some(authority.clone());
            *request.uri_mut() = Uri::from_parts(parts).expect("scheme, authority and path");
            client.request(request)
        });
        tower::load::PeakEwma::new(
            service,
            Duration::from_millis(30),
            10e9,
            tower::load::CompleteOnResponse::default(),
        )
    });
    let balance = Balance::new(ServiceList::new(replicas.collect::<Vec<_>>()));
    let shared = Buffer::new(balance, 1_024);
    let stack = ServiceBuilder::new()
        .retry(RetryServerErrors { left: 2 })
        .timeout(Duration::from_secs(1))
        .service(shared);
    Contender::new("tower", move |_| {
        tower_http_call(stack.clone().oneshot(http_request("replica")))
    })
}

/// One call of the tower HTTP peer, its error boxed outside the closure
/// (inside, the compiler cannot prove the boxed error `'static`).
async fn tower_http_call(
    call: impl Future<Output = Result<Response<hyper::body::Incoming>, tower::BoxError>>,
) -> Result<(), BoxError> {
    let response: Result<_, BoxError> = call.await;
    read_http(response?).await
}

/// tower's retry policy of the HTTP peer: up to `left` retries of errors
/// and 5xx, the request rebuilt from its parts and its full body.
#[derive(Clone)]
struct RetryServerErrors {
    left: usize,
}

impl<E> tower::retry::Policy<Request<Full<Bytes>>, Response<hyper::body::Incoming>, E> for RetryServerErrors {
    type Future = std::future::Ready<()>;

    fn retry(
        &mut self,
        _: &mut Request<Full<Bytes>>,
        result: &mut Result<Response<hyper::body::Incoming>, E>,
    ) -> Option<Self::Future> {
        let failed = result
            .as_ref()
            .map_or(true, |response| response.status().is_server_error());
        (failed && self.left > 0).then(|| {
            self.left -= 1;
            std::future::ready(())
        })
    }

    fn clone_request(&mut self, request: &Request<Full<Bytes>>) -> Option<Request<Full<Bytes>>> {
        let mut clone = Request::new(request.body().clone());
        *clone.method_mut() = request.method().clone();
        *clone.uri_mut() = request.uri().clone();
        *clone.headers_mut() = request.headers().clone();
        Some(clone)
    }
}

// ===== gRPC clients =====

fn charge(i: u64) -> ChargeRequest {
    ChargeRequest {
        order_id: format!("order-{i}"),
        amount_cents: 100,
    }
}

/// The gRPC contenders over `replicas` servers: `direct` takes one
/// `Channel` per server in turn, `orch` and `tower` balance over them.
pub async fn grpc_contenders(replicas: usize) -> Vec<Contender> {
    let mut addrs = Vec::new();
    for _ in 0..replicas {
        addrs.push(grpc_server().await);
    }
    let channel = |addr: SocketAddr| async move {
        tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
            .expect("a valid endpoint")
            .connect()
            .await
            .expect("the replica accepts connections")
    };
    let mut channels = Vec::new();
    for addr in &addrs {
        channels.push(channel(*addr).await);
    }

    let direct = {
        let clients: Vec<_> = channels.iter().cloned().map(PaymentsClient::new).collect();
        let next = AtomicUsize::new(0);
        Contender::new("direct", move |i| {
            let turn = next.fetch_add(1, Ordering::Relaxed) % clients.len();
            charge_with(clients[turn].clone(), i)
        })
    };
    let mut all = vec![direct, orch_grpc(&addrs), tower_grpc(channels.clone())];
    if replicas == 1 {
        all.extend([stack_grpc(channels[0].clone()), balancer_grpc(&addrs)]);
    }
    all
}

/// orch's gRPC stack as in `orch`, over `direct`'s channel: what the
/// stack costs without the balancer.
fn stack_grpc(channel: tonic::transport::Channel) -> Contender {
    use orch::resilience::{AlwaysSafe, CircuitBreakerConfig, ResilienceLayer, RetryConfig};
    use tower::Layer;

    let stack = ResilienceLayer::grpc(AlwaysSafe)
        .retry(RetryConfig::default().max_attempts(3))
        .circuit_breaker(CircuitBreakerConfig::default().name("bench-grpc-stack"))
        .attempt_timeout(Duration::from_secs(1))
        .build()
        .expect("a valid stack")
        .layer(channel);
    let client = PaymentsClient::new(stack);
    Contender::new("orch stack only", move |i| charge_with(client.clone(), i))
}

/// orch's balancer and tonic connector as in `orch`, without the stack.
fn balancer_grpc(addrs: &[SocketAddr]) -> Contender {
    use orch::discovery::{balance::Balancer, connect::TonicConnector};

    let template = tonic::transport::Endpoint::from_static("http://payments");
    let connector = TonicConnector::new(template).expect("a plain http template");
    let balancer = Balancer::new(endpoints(addrs), connector).into_shared();
    let client = PaymentsClient::new(balancer);
    Contender::new("orch balancer only", move |i| charge_with(client.clone(), i))
}

/// orch's client: the shared balancer over the tonic connector, under the
/// resilience stack's gRPC preset.
fn orch_grpc(addrs: &[SocketAddr]) -> Contender {
    use orch::discovery::{balance::Balancer, connect::TonicConnector};
    use orch::resilience::{AlwaysSafe, CircuitBreakerConfig, ResilienceLayer, RetryConfig};
    use tower::Layer;

    let template = tonic::transport::Endpoint::from_static("http://payments");
    let connector = TonicConnector::new(template).expect("a plain http template");
    let balancer = Balancer::new(endpoints(addrs), connector).into_shared();
    // Every charge in the benchmark is safe to repeat.
    let stack = ResilienceLayer::grpc(AlwaysSafe)
        .retry(RetryConfig::default().max_attempts(3))
        .circuit_breaker(CircuitBreakerConfig::default().name("bench-grpc"))
        .attempt_timeout(Duration::from_secs(1))
        .build()
        .expect("a valid stack")
        .layer(balancer);
    let client = PaymentsClient::new(stack);
    Contender::new("orch", move |i| charge_with(client.clone(), i))
}

/// tower's balancer over one tonic `Channel` per replica, shared through
/// `Buffer`, with retry and an attempt timeout.
fn tower_grpc(channels: Vec<tonic::transport::Channel>) -> Contender {
    use tower::{ServiceBuilder, balance::p2c::Balance, buffer::Buffer, discover::ServiceList};

    let replicas = channels.into_iter().map(|channel| {
        tower::load::PeakEwma::new(
            channel,
            Duration::from_millis(30),
            10e9,
            tower::load::CompleteOnResponse::default(),
        )
    });
    let balance = Balance::new(ServiceList::new(replicas.collect::<Vec<_>>()));
    let shared = Buffer::new(balance, 1_024);
    let stack = ServiceBuilder::new()
        .retry(NoReplay)
        .timeout(Duration::from_secs(1))
        .service(shared);
    let client = PaymentsClient::new(stack);
    Contender::new("tower", move |i| charge_with(client.clone(), i))
}

/// One `Charge` call through `client`.
async fn charge_with<T>(mut client: PaymentsClient<T>, i: u64) -> Result<(), BoxError>
where
    T: tonic::client::GrpcService<tonic::body::Body>,
    T::Error: Into<BoxError>,
    T::ResponseBody: tonic::codegen::Body<Data = Bytes> + Send + 'static,
    <T::ResponseBody as tonic::codegen::Body>::Error: Into<BoxError> + Send,
{
    client.charge(charge(i)).await?;
    Ok(())
}

/// tower's retry policy of the gRPC peer: a `tonic::body::Body` cannot be
/// cloned, so nothing is replayed.
#[derive(Clone)]
struct NoReplay;

impl<Res, E> tower::retry::Policy<Request<tonic::body::Body>, Res, E> for NoReplay {
    type Future = std::future::Ready<()>;

    fn retry(&mut self, _: &mut Request<tonic::body::Body>, _: &mut Result<Res, E>) -> Option<Self::Future> {
        None
    }

    fn clone_request(&mut self, _: &Request<tonic::body::Body>) -> Option<Request<tonic::body::Body>> {
        None
    }
}

// ===== measurement =====

/// p50, p99 and throughput of one run.
#[derive(Debug, Clone, Copy)]
struct Run {
    p50: Duration,
    p99: Duration,
    per_second: f64,
}

/// Sends `requests` calls through `contender`, `concurrency` at a time.
async fn run(contender: &Contender, concurrency: usize, requests: usize) -> Run {
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let workers = (0..concurrency).map(|_| {
        let next = Arc::clone(&next);
        let call = Arc::clone(&contender.call);
        tokio::spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= requests {
                    return latencies;
                }
                let sent = Instant::now();
                if let Err(error) = call(i as u64).await {
                    panic!("a benchmark call failed: {error}");
                }
                latencies.push(sent.elapsed());
            }
        })
    });
    let mut latencies = Vec::with_capacity(requests);
    for worker in workers.collect::<Vec<_>>() {
        latencies.extend(worker.await.expect("a benchmark worker panicked"));
    }
    let elapsed = started.elapsed();
    latencies.sort_unstable();
    let at = |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)];
    Run {
        p50: at(0.50),
        p99: at(0.99),
        per_second: requests as f64 / elapsed.as_secs_f64(),
    }
}

/// `contender` alone: a warm-up as `measure` does it, then `requests`
/// calls, for counting instructions (see the bench's module docs).
pub async fn run_one(contender: &Contender, concurrency: usize, requests: usize) {
    run(contender, concurrency, 500).await;
    run(contender, concurrency, requests).await;
}

/// One line of the table: a contender's median run.
struct Line {
    protocol: &'static str,
    concurrency: usize,
    contender: &'static str,
    run: Run,
}

/// The results, printed as Markdown.
#[derive(Default)]
pub struct Table {
    lines: Vec<Line>,
}

/// Runs every contender `rounds` times (rotating the order) after a warm-up,
/// and adds each one's medians to `table`.
pub async fn measure(
    table: &mut Table,
    protocol: &'static str,
    concurrency: usize,
    requests: usize,
    rounds: usize,
    contenders: &[Contender],
) {
    for contender in contenders {
        run(contender, concurrency, requests.min(500)).await;
    }
    let mut runs: Vec<Vec<Run>> = vec![Vec::new(); contenders.len()];
    for round in 0..rounds {
        for k in 0..contenders.len() {
            let index = (round + k) % contenders.len();
            runs[index].push(run(&contenders[index], concurrency, requests).await);
        }
    }
    for (contender, mut runs) in contenders.iter().zip(runs) {
        let median = |runs: &mut Vec<Run>, key: fn(&Run) -> f64| {
            runs.sort_by(|a, b| key(a).total_cmp(&key(b)));
            key(&runs[runs.len() / 2])
        };
        let p50 = median(&mut runs, |r| r.p50.as_secs_f64());
        let p99 = median(&mut runs, |r| r.p99.as_secs_f64());
        let per_second = median(&mut runs, |r| r.per_second);
        let run = Run {
            p50: Duration::from_secs_f64(p50),
            p99: Duration::from_secs_f64(p99),
            per_second,
        };
        table.lines.push(Line {
            protocol,
            concurrency,
            contender: contender.name,
            run,
        });
    }
}

impl Table {
    pub fn print(&self) {
        println!(
            "| protocol | concurrency | client | p50 | p99 | requests/s | p50 / direct | throughput / direct |"
        );
        println!("|---|---|---|---|---|---|---|---|");
        for line in &self.lines {
            let direct = self
                .lines
                .iter()
                .find(|d| {
                    d.protocol == line.protocol
                        && d.concurrency == line.concurrency
                        && d.contender == "direct"
                })
                .map_or(line.run, |d| d.run);
            println!(
                "| {} | {} | {} | {:.1} µs | {:.1} µs | {:.0} | {:.3} | {:.3} |",
                line.protocol,
                line.concurrency,
                line.contender,
                line.run.p50.as_secs_f64() * 1e6,
                line.run.p99.as_secs_f64() * 1e6,
                line.run.per_second,
                line.run.p50.as_secs_f64() / direct.p50.as_secs_f64(),
                line.run.per_second / direct.per_second,
            );
        }
    }
}

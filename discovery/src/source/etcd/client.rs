//! A small client of etcd's JSON gateway: the handful of calls the source
//! and the registration make, over one pooled hyper client, failing over
//! between etcd's client URLs in the order they were configured.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode, Uri, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::de::DeserializeOwned;
use serde_json::json;

use super::wire::{
    self, GatewayError, LeaseGrantResponse, LeaseKeepAliveResponse, RangeResponse, StreamItem, WatchResponse,
};
use super::{EtcdConfig, EtcdError};
use crate::ConfigError;

/// TCP keepalive on every connection: a watch is one long response, and
/// without it a peer that vanished (a partition, a host powered off) would
/// leave the source waiting on a dead connection for hours (the kernel's
/// default is two hours idle, then nine probes 75 s apart). With these, a
/// dead peer is noticed about a minute after it went quiet: 30 s idle,
/// then three probes 10 s apart.
const TCP_KEEPALIVE_IDLE: Duration = Duration::from_secs(30);
const TCP_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
const TCP_KEEPALIVE_RETRIES: u32 = 3;

/// A cheap-to-clone handle to etcd.
#[derive(Clone)]
pub(crate) struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    http: HttpClient<HttpConnector, Full<Bytes>>,
    endpoints: Vec<Uri>,
    /// The endpoint that answered last; tried first next time.
    preferred: AtomicUsize,
    timeout: Duration,
}

impl Client {
    /// A client of the config's endpoints; the config is validated.
    pub(crate) fn new(config: &EtcdConfig) -> Result<Self, ConfigError> {
        let endpoints = config.base_uris()?;
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_keepalive(Some(TCP_KEEPALIVE_IDLE));
        connector.set_keepalive_interval(Some(TCP_KEEPALIVE_INTERVAL));
        connector.set_keepalive_retries(Some(TCP_KEEPALIVE_RETRIES));
        connector.set_connect_timeout(Some(config.request_timeout));
        let http = HttpClient::builder(TokioExecutor::new()).build(connector);
        Ok(Self {
            inner: Arc::new(Inner {
                http,
                endpoints,
                preferred: AtomicUsize::new(0),
                timeout: config.request_timeout,
            }),
        })
    }

    /// Every key under `prefix`, with the revision they were read at.
    pub(crate) async fn range_prefix(&self, prefix: &str) -> Result<RangeResponse, EtcdError> {
        let body = json!({
            "key": wire::encode(prefix.as_bytes()),
            "range_end": wire::encode(&wire::prefix_range_end(prefix.as_bytes())),
        });
        self.unary("/v3/kv/range", &body).await
    }

    /// Writes `key`, attached to `lease` (0 for none).
    pub(crate) async fn put(&self, key: &str, value: &[u8], lease: i64) -> Result<(), EtcdError> {
        let body = json!({
            "key": wire::encode(key.as_bytes()),
            "value": wire::encode(value),
            "lease": lease.to_string(),
        });
        self.unary::<serde_json::Value>("/v3/kv/put", &body)
            .await
            .map(drop)
    }

    /// A new lease of `ttl` seconds; its id.
    pub(crate) async fn lease_grant(&self, ttl: u64) -> Result<i64, EtcdError> {
        let body = json!({ "TTL": ttl.to_string(), "ID": "0" });
        let (endpoint, grant) = self
            .unary_from::<LeaseGrantResponse>("/v3/lease/grant", &body)
            .await?;
        if grant.error.is_empty() && grant.id != 0 {
            Ok(grant.id)
        } else {
            Err(EtcdError::Refused {
                endpoint,
                status: StatusCode::OK.as_u16(),
                message: format!("lease grant failed: {}", grant.error),
            })
        }
    }

    /// Renews `lease`; its remaining TTL in seconds, 0 if etcd no longer has it.
    pub(crate) async fn lease_keepalive(&self, lease: i64) -> Result<i64, EtcdError> {
        let body = json!({ "ID": lease.to_string() });
        // A bidirectional stream through the gateway: one request in the
        // body, so exactly one answer line before the stream ends.
        let (endpoint, bytes) = self.call("/v3/lease/keepalive", &body).await?;
        let mut lines = LineReader::new(endpoint);
        lines.buffer.extend_from_slice(&bytes);
        match lines.next_buffered::<LeaseKeepAliveResponse>()? {
            Some(answer) => Ok(answer.ttl),
            None => Err(lines.protocol("the keepalive stream ended without an answer")),
        }
    }

    /// Revokes `lease`, deleting every key attached to it. A lease etcd no
    /// longer has counts as revoked.
    pub(crate) async fn lease_revoke(&self, lease: i64) -> Result<(), EtcdError> {
        let body = json!({ "ID": lease.to_string() });
        match self.unary::<serde_json::Value>("/v3/lease/revoke", &body).await {
            Err(EtcdError::Refused { message, .. }) if message.contains("lease not found") => Ok(()),
            other => other.map(drop),
        }
    }

    /// Watches every key under `prefix` from `start_revision` on. Returns
    /// once etcd has answered; the events follow on the stream.
    pub(crate) async fn watch_prefix(
        &self,
        prefix: &str,
        start_revision: i64,
    ) -> Result<WatchStream, EtcdError> {
        let body = json!({
            "create_request": {
                "key": wire::encode(prefix.as_bytes()),
                "range_end": wire::encode(&wire::prefix_range_end(prefix.as_bytes())),
                "start_revision": start_revision.to_string(),
            }
        });
        let body = Bytes::from(body.to_string());
        let mut last = None;
        for index in self.order() {
            let base = &self.inner.endpoints[index];
            let endpoint = base.to_string();
            let head = self.send(base, "/v3/watch", body.clone());
            let response = match within(self.inner.timeout, &endpoint, head).await {
                Ok(response) => response,
                Err(e) => {
                    last = Some(e);
                    continue;
                }
            };
            let status = response.status();
            if !status.is_success() {
                let bytes = tokio::time::timeout(self.inner.timeout, response.into_body().collect())
                    .await
                    .ok()
                    .and_then(Result::ok)
                    .map(|b| b.to_bytes())
                    .unwrap_or_default();
                last = Some(refused(endpoint, status, &bytes));
                continue;
            }
            self.inner.preferred.store(index, Ordering::Relaxed);
            return Ok(WatchStream {
                lines: LineReader::new(endpoint),
                body: response.into_body(),
            });
        }
        Err(last.unwrap_or_else(no_endpoint))
    }

    // ===== the plumbing =====

    async fn unary<T: DeserializeOwned>(&self, path: &str, body: &serde_json::Value) -> Result<T, EtcdError> {
        self.unary_from(path, body).await.map(|(_, answer)| answer)
    }

    /// A unary call's decoded answer, with the endpoint that gave it.
    async fn unary_from<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &serde_json::Value,
    ) -> Result<(String, T), EtcdError> {
        let (endpoint, bytes) = self.call(path, body).await?;
        match serde_json::from_slice(&bytes) {
            Ok(answer) => Ok((endpoint, answer)),
            Err(e) => Err(EtcdError::Protocol {
                endpoint,
                reason: format!("{path}: {e}"),
            }),
        }
    }

    /// One request and its whole answer, trying each endpoint in turn
    /// while they are unreachable or fail on their side (5xx: no leader,
    /// shutting down); an error etcd gives about the request itself is
    /// returned at once, as every member would give it too.
    async fn call(&self, path: &str, body: &serde_json::Value) -> Result<(String, Bytes), EtcdError> {
        let body = Bytes::from(body.to_string());
        let mut last = None;
        for index in self.order() {
            let base = &self.inner.endpoints[index];
            let endpoint = base.to_string();
            let exchange = async {
                let response = self.send(base, path, body.clone()).await?;
                let status = response.status();
                let bytes = response
                    .into_body()
                    .collect()
                    .await
                    .map_err(|e| EtcdError::Unavailable {
                        endpoint: endpoint.clone(),
                        reason: e.to_string(),
                    })?;
                Ok::<_, EtcdError>((status, bytes.to_bytes()))
            };
            let (status, bytes) = match within(self.inner.timeout, &endpoint, exchange).await {
                Ok(answer) => answer,
                Err(e) => {
                    last = Some(e);
                    continue;
                }
            };
            if status.is_server_error() {
                last = Some(refused(endpoint, status, &bytes));
                continue;
            }
            self.inner.preferred.store(index, Ordering::Relaxed);
            if !status.is_success() {
                return Err(refused(endpoint, status, &bytes));
            }
            return Ok((endpoint, bytes));
        }
        Err(last.unwrap_or_else(no_endpoint))
    }

    async fn send(
        &self,
        base: &Uri,
        path: &str,
        body: Bytes,
    ) -> Result<hyper::Response<Incoming>, EtcdError> {
        let unavailable = |reason: String| EtcdError::Unavailable {
            endpoint: base.to_string(),
            reason,
        };
        let mut parts = base.clone().into_parts();
        parts.path_and_query = Some(
            path.parse()
                .map_err(|e: http::uri::InvalidUri| unavailable(e.to_string()))?,
        );
        let uri = Uri::from_parts(parts).map_err(|e| unavailable(e.to_string()))?;
        let request = Request::post(uri)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Full::new(body))
            .map_err(|e| unavailable(e.to_string()))?;
        self.inner
            .http
            .request(request)
            .await
            .map_err(|e| unavailable(error_chain(&e)))
    }

    /// Endpoint indices, starting with the one that answered last.
    fn order(&self) -> impl Iterator<Item = usize> + use<> {
        let n = self.inner.endpoints.len();
        let first = self.inner.preferred.load(Ordering::Relaxed) % n.max(1);
        (0..n).map(move |i| (first + i) % n)
    }
}

/// A watch that etcd accepted: its answers, one per line.
pub(crate) struct WatchStream {
    lines: LineReader,
    body: Incoming,
}

impl WatchStream {
    /// The client URL that accepted the watch.
    pub(crate) fn endpoint(&self) -> &str {
        &self.lines.endpoint
    }

    /// The next answer; `None` once etcd closed the stream.
    pub(crate) async fn next(&mut self) -> Result<Option<WatchResponse>, EtcdError> {
        loop {
            if let Some(answer) = self.lines.next_buffered()? {
                return Ok(Some(answer));
            }
            match self.body.frame().await {
                None => return Ok(None),
                Some(Err(e)) => {
                    return Err(EtcdError::Unavailable {
                        endpoint: self.lines.endpoint.clone(),
                        reason: error_chain(&e),
                    });
                }
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        self.lines.buffer.extend_from_slice(&data);
                    }
                }
            }
        }
    }
}

/// Splits a streaming answer into its lines and decodes each.
struct LineReader {
    endpoint: String,
    buffer: Vec<u8>,
}

impl LineReader {
    fn new(endpoint: String) -> Self {
        Self {
            endpoint,
            buffer: Vec::new(),
        }
    }

    /// The next complete line's result, if a whole line is buffered.
    fn next_buffered<T: DeserializeOwned>(&mut self) -> Result<Option<T>, EtcdError> {
        while let Some(end) = self.buffer.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.buffer.drain(..=end).collect();
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let item: StreamItem<T> =
                serde_json::from_slice(&line).map_err(|e| self.protocol(&format!("stream line: {e}")))?;
            return match (item.result, item.error) {
                (_, Some(error)) => Err(EtcdError::Refused {
                    endpoint: self.endpoint.clone(),
                    status: StatusCode::OK.as_u16(),
                    message: error.text().to_owned(),
                }),
                (Some(result), None) => Ok(Some(result)),
                (None, None) => Err(self.protocol("stream line without result or error")),
            };
        }
        Ok(None)
    }

    fn protocol(&self, reason: &str) -> EtcdError {
        EtcdError::Protocol {
            endpoint: self.endpoint.clone(),
            reason: reason.to_owned(),
        }
    }
}

fn refused(endpoint: String, status: StatusCode, body: &[u8]) -> EtcdError {
    let message = serde_json::from_slice::<GatewayError>(body)
        .map(|e| e.text().to_owned())
        .unwrap_or_else(|_| String::from_utf8_lossy(body).into_owned());
    EtcdError::Refused {
        endpoint,
        status: status.as_u16(),
        message,
    }
}

/// `future`'s result, or `endpoint` unavailable when it takes longer than
/// `limit` (the config's `request_timeout`).
async fn within<T>(
    limit: Duration,
    endpoint: &str,
    future: impl Future<Output = Result<T, EtcdError>>,
) -> Result<T, EtcdError> {
    tokio::time::timeout(limit, future).await.unwrap_or_else(|_| {
        Err(EtcdError::Unavailable {
            endpoint: endpoint.to_owned(),
            reason: "no answer within request_timeout".to_owned(),
        })
    })
}

fn no_endpoint() -> EtcdError {
    EtcdError::Unavailable {
        endpoint: String::new(),
        reason: "no endpoint configured".to_owned(),
    }
}

/// An error with its sources: hyper's own message ("client error (Connect)")
/// hides the part that says what happened ("Connection refused").
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

//! An HTTP probe (Kubernetes' `httpGet`): healthy when a request to a path
//! on the instance's announced address answers with an expected status.

use std::fmt;
use std::net::SocketAddr;
use std::ops::{Bound, RangeBounds};

use bytes::Bytes;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Uri};
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use super::{Probe, ProbeOutcome, ProbeTarget};
use crate::SpecError;

/// How much of a response body is read so that the connection can go back
/// to the pool; Kubernetes reads 10 KiB of a probe's body too. A longer body
/// is dropped unread and its connection closed; the status still counts.
const BODY_LIMIT: usize = 10 * 1024;

/// Healthy when a request to `path` on the instance's announced address
/// answers with a status in the expected range (by default `200..400`, as
/// Kubernetes' `httpGet`); unhealthy on any other status, a connection
/// error, or no answer within the probe's timeout; unknown while the
/// instance has announced no address.
///
/// The timeout is the [`ProbeTiming::timeout`](crate::ProbeTiming::timeout)
/// of the [`ProbeSpec`](crate::ProbeSpec) that holds the probe: the
/// supervisor drops a check that outlives it, which cancels the request.
/// One probe holds one pooled hyper-util client (HTTP/1.1, keep-alive), so
/// checks of the same instance reuse their connection.
///
/// ```
/// use std::time::Duration;
/// use orch_core::{HttpProbe, ProbeSpec};
///
/// # fn main() -> Result<(), orch_core::SpecError> {
/// let ready = ProbeSpec::new(HttpProbe::get("/ready")?).timeout(Duration::from_millis(500));
/// let live = HttpProbe::builder("/healthz").header("x-probe", "liveness").status(200..300).build()?;
/// assert!(HttpProbe::get("healthz").is_err()); // no leading '/'
/// # let _ = (ready, live);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct HttpProbe {
    method: Method,
    path: String,
    headers: HeaderMap,
    /// Accepted statuses: `low <= status < high`.
    status: (u16, u16),
    fixed: Option<SocketAddr>,
    client: Client<HttpConnector, Empty<Bytes>>,
}

impl fmt::Debug for HttpProbe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpProbe")
            .field("method", &self.method)
            .field("path", &self.path)
            .field("headers", &self.headers)
            .field("status", &(self.status.0..self.status.1))
            .field("fixed", &self.fixed)
            .finish_non_exhaustive()
    }
}

impl HttpProbe {
    /// A `GET path` probe with the default status range (`200..400`).
    /// Errors as [`HttpProbeBuilder::build`] does.
    pub fn get(path: impl Into<String>) -> Result<Self, SpecError> {
        Self::builder(path).build()
    }

    /// Starts a probe of `path`, which must begin with `/` and may carry a
    /// query (`/ready?verbose=1`).
    pub fn builder(path: impl Into<String>) -> HttpProbeBuilder {
        HttpProbeBuilder {
            method: Method::GET,
            path: path.into(),
            headers: Vec::new(),
            status: (Bound::Included(200), Bound::Excluded(400)),
            fixed: None,
        }
    }

    /// The statuses this probe accepts, as `low..high`.
    pub fn status_range(&self) -> std::ops::Range<u16> {
        self.status.0..self.status.1
    }

    fn uri(&self, addr: SocketAddr) -> Result<Uri, http::Error> {
        Uri::builder()
            .scheme("http")
            .authority(addr.to_string())
            .path_and_query(self.path.as_str())
            .build()
    }

    async fn request(&self, addr: SocketAddr) -> Result<u16, Box<dyn std::error::Error + Send + Sync>> {
        let mut req = Request::builder()
            .method(self.method.clone())
            .uri(self.uri(addr)?);
        if let Some(headers) = req.headers_mut() {
            headers.extend(self.headers.clone());
        }
        let response = self.client.request(req.body(Empty::new())?).await?;
        let status = response.status().as_u16();
        // Reading the body (bounded) lets the connection return to the pool;
        // a body that fails or is too long costs the connection, not the verdict.
        let _ = Limited::new(response.into_body(), BODY_LIMIT).collect().await;
        Ok(status)
    }
}

#[async_trait::async_trait]
impl Probe for HttpProbe {
    async fn check(&self, target: &ProbeTarget) -> ProbeOutcome {
        let Some(addr) = self.fixed.or(target.address) else {
            return ProbeOutcome::Unknown;
        };
        match self.request(addr).await {
            Ok(status) if (self.status.0..self.status.1).contains(&status) => ProbeOutcome::Healthy,
            Ok(status) => {
                tracing::debug!(instance = %target.id, %addr, path = %self.path, status, "http probe: unexpected status");
                ProbeOutcome::Unhealthy
            }
            Err(e) => {
                tracing::debug!(instance = %target.id, %addr, path = %self.path, error = %e, "http probe failed");
                ProbeOutcome::Unhealthy
            }
        }
    }
}

/// Builds an [`HttpProbe`]; [`build`](Self::build) checks every field.
#[derive(Debug, Clone)]
pub struct HttpProbeBuilder {
    method: Method,
    path: String,
    headers: Vec<(String, String)>,
    status: (Bound<u16>, Bound<u16>),
    fixed: Option<SocketAddr>,
}

impl HttpProbeBuilder {
    /// Uses `method` instead of `GET` (for example `HEAD`).
    pub fn method(mut self, method: Method) -> Self {
        self.method = method;
        self
    }

    /// Adds a request header; may be called more than once for one name.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Accepts statuses in `range` instead of `200..400`.
    pub fn status(mut self, range: impl RangeBounds<u16>) -> Self {
        self.status = (range.start_bound().cloned(), range.end_bound().cloned());
        self
    }

    /// Probes `addr` whatever the instance announced.
    pub fn at(mut self, addr: SocketAddr) -> Self {
        self.fixed = Some(addr);
        self
    }

    /// The probe, or an [`InvalidField`](SpecError::InvalidField) naming
    /// `http.path` (no leading `/`, or not a valid path and query),
    /// `http.headers[NAME]` (a header name or value that HTTP forbids) or
    /// `http.status` (a range that accepts no status).
    pub fn build(self) -> Result<HttpProbe, SpecError> {
        if !self.path.starts_with('/') {
            return Err(SpecError::field("http.path", "must start with '/'"));
        }
        if http::uri::PathAndQuery::try_from(self.path.as_str()).is_err() {
            return Err(SpecError::field("http.path", "is not a valid path and query"));
        }
        let mut headers = HeaderMap::new();
        for (name, value) in &self.headers {
            let field = || format!("http.headers[{name}]");
            let name = HeaderName::try_from(name.as_str())
                .map_err(|_| SpecError::field(field(), "is not a valid header name"))?;
            let value = HeaderValue::try_from(value.as_str())
                .map_err(|_| SpecError::field(field(), "is not a valid header value"))?;
            headers.append(name, value);
        }
        let low = match self.status.0 {
            Bound::Included(n) => Some(n),
            Bound::Excluded(n) => n.checked_add(1),
            Bound::Unbounded => Some(0),
        };
        let high = match self.status.1 {
            Bound::Included(n) => n.checked_add(1),
            Bound::Excluded(n) => Some(n),
            // One past the largest three-digit status.
            Bound::Unbounded => Some(1000),
        };
        let status = match (low, high) {
            (Some(low), Some(high)) if low < high => (low, high),
            _ => return Err(SpecError::field("http.status", "must accept at least one status")),
        };
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .build_http();
        Ok(HttpProbe {
            method: self.method,
            path: self.path,
            headers,
            status,
            fixed: self.fixed,
            client,
        })
    }
}

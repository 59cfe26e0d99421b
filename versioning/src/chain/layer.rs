//! The chain as a `tower` layer over `http` types: JSON request bodies of
//! older versions are upgraded before the handler, its JSON answers
//! downgraded after it.

use std::{fmt, sync::Arc, task::Context, task::Poll};

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode, header, request::Parts};
use http_body::Body;
use http_body_util::{Either, Full};
use tower_layer::Layer;
use tower_service::Service;

use super::{ChainFuture, ChangeChain, Direction, future::Walk};
use crate::Negotiated;

/// Names a request's operation for scoped changes (`"POST /orders"`).
type NameFn = Arc<dyn Fn(&Parts) -> String + Send + Sync>;

/// Runs a [`ChangeChain`] around a service, for requests whose version a
/// [`VersioningLayer`](crate::VersioningLayer) put in their extensions
/// ([`Negotiated`]); place it inside that layer.
///
/// For a request of an older version, a JSON body (`application/json` or
/// any `+json` type) is buffered, upgraded to the latest version and
/// handed on with its `Content-Length` fixed; a successful (2xx) JSON
/// response is buffered, downgraded to the request's version and sent with
/// its new length. Other bodies, error responses (whose problem documents
/// do not change with versions) and empty bodies pass untouched. A request
/// of the latest version, or of any version no change lies after, is
/// passed on as it is: no buffering, no parsing. Bodies are converted as
/// JSON text, so (de)compression layers go outside this one.
///
/// Refusals are `application/problem+json` (RFC 9457): `413` for a request
/// body over the [limit](Self::body_limit), `400` for a request body that
/// is not JSON or that a change cannot upgrade (the detail names the
/// change and field), `500` for a response that cannot be downgraded (the
/// cause is logged with `tracing`, not sent) and for a request without
/// [`Negotiated`] in its extensions (the layer is misplaced). Refused and
/// failed conversions are counted in
/// `orch_api_chain_failures_total{api, direction}`.
///
/// ```
/// use axum::{Json, Router, routing::post};
/// use orch_versioning::{ChainLayer, ChangeChain, Lifecycle, Negotiation, VersionChange, VersionSet, VersioningLayer};
/// use serde_json::Value;
/// use tower::Layer;
///
/// let set = VersionSet::builder("orders")
///     .version("1", Lifecycle::Stable)
///     .version("2", Lifecycle::Stable)
///     .build()?;
/// let chain = ChangeChain::builder(&set)
///     .change(VersionChange::new("2", "Renames `customer` to `customer_id`.").rename("customer", "customer_id"))
///     .build()?;
/// // Written once, for version 2.
/// let router = Router::new().route("/orders", post(|Json(order): Json<Value>| async move { Json(order) }));
/// let service = VersioningLayer::new(Negotiation::new(set).build()?).layer(ChainLayer::new(chain).layer(router));
/// let app: Router = Router::new().fallback_service(service);
/// # let _ = app;
/// # Ok::<(), orch_versioning::VersionError>(())
/// ```
#[derive(Clone)]
pub struct ChainLayer {
    chain: Arc<ChangeChain>,
    name: Option<NameFn>,
    limit: usize,
}

impl fmt::Debug for ChainLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChainLayer")
            .field("chain", &self.chain)
            .field("body_limit", &self.limit)
            .finish_non_exhaustive()
    }
}

impl ChainLayer {
    /// The default request body limit: 2 MiB, axum's own default, so that
    /// the layer refuses nothing a plain axum `Json` extractor would take.
    pub const DEFAULT_BODY_LIMIT: usize = 2 * 1024 * 1024;

    /// Runs `chain`; operations are named `"METHOD /path"` and request
    /// bodies are limited to [`DEFAULT_BODY_LIMIT`](Self::DEFAULT_BODY_LIMIT).
    pub fn new(chain: ChangeChain) -> Self {
        Self {
            chain: Arc::new(chain),
            name: None,
            limit: Self::DEFAULT_BODY_LIMIT,
        }
    }

    /// Names each request's operation, as the chain's scoped changes name
    /// them; use it to map paths with identifiers to one name
    /// (`"GET /orders/{id}"`). The path is the one the router sees (a
    /// version prefix already stripped).
    pub fn operation(mut self, name: impl Fn(&Parts) -> String + Send + Sync + 'static) -> Self {
        self.name = Some(Arc::new(name));
        self
    }

    /// The largest request body buffered for an upgrade, in bytes; a larger
    /// one gets `413`.
    pub fn body_limit(mut self, bytes: usize) -> Self {
        self.limit = bytes;
        self
    }
}

impl<S> Layer<S> for ChainLayer {
    type Service = Chained<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Chained {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service [`ChainLayer`] makes.
#[derive(Clone)]
pub struct Chained<S> {
    inner: S,
    layer: ChainLayer,
}

impl<S: fmt::Debug> fmt::Debug for Chained<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Chained")
            .field("inner", &self.inner)
            .field("layer", &self.layer)
            .finish()
    }
}

impl<S> Chained<S> {
    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service, unwrapped.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Chained<S>
where
    S: Service<Request<Either<ReqBody, Full<Bytes>>>, Response = Response<ResBody>> + Clone,
    ReqBody: Body<Data = Bytes>,
    ResBody: Body<Data = Bytes>,
{
    type Response = Response<Either<ResBody, Full<Bytes>>>;
    type Error = S::Error;
    type Future = ChainFuture<S, ReqBody, ResBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let chain = &self.layer.chain;
        let Some(version) = request.extensions().get::<Negotiated>().map(|n| n.version) else {
            tracing::error!(
                api = chain.set().name(),
                "ChainLayer got a request without a negotiated version; place it inside VersioningLayer"
            );
            return ChainFuture::answered(problem(
                StatusCode::INTERNAL_SERVER_ERROR,
                "api-version-not-negotiated",
                "API version not negotiated",
                "the server could not tell which version of the API this request is for".to_owned(),
            ));
        };
        // The latest version's fast path: one extension lookup and one
        // comparison, then the inner service as if the layer were not there.
        if !chain.converts(version) {
            return ChainFuture::passing(self.inner.call(request.map(Either::Left)));
        }
        let (mut parts, body) = request.into_parts();
        let operation = match &self.layer.name {
            Some(name) => name(&parts),
            None => format!("{} {}", parts.method, parts.uri.path()),
        };
        let upgrade = chain.needs(version, &operation, Direction::Upgrade)
            && is_json(&parts.headers)
            && !body.is_end_stream();
        let downgrade = chain.needs(version, &operation, Direction::Downgrade);
        if !upgrade && !downgrade {
            return ChainFuture::passing(self.inner.call(Request::from_parts(parts, Either::Left(body))));
        }
        let walk = Walk {
            chain: Arc::clone(chain),
            version,
            operation,
            downgrade,
        };
        if !upgrade {
            let future = self.inner.call(Request::from_parts(parts, Either::Left(body)));
            return ChainFuture::calling(future, walk);
        }
        let limit = self.layer.limit;
        let declared = parts
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        if declared.is_some_and(|length| length > limit as u64) {
            return ChainFuture::answered(too_large(limit));
        }
        // The service polled ready is the one that will be called once the
        // body is in; the clone stays for the next request (tower's
        // "clone and swap").
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        parts.headers.remove(header::TRANSFER_ENCODING);
        ChainFuture::reading(body, parts, inner, walk, limit)
    }
}

/// `application/json` or any `application/…+json`, parameters ignored.
pub(crate) fn is_json(headers: &HeaderMap) -> bool {
    let Some(value) = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let essence = value.split(';').next().unwrap_or_default().trim();
    let Some((kind, subtype)) = essence.split_once('/') else {
        return false;
    };
    let suffix = subtype.len().checked_sub(5).and_then(|at| subtype.get(at..));
    kind.eq_ignore_ascii_case("application")
        && (subtype.eq_ignore_ascii_case("json") || suffix.is_some_and(|s| s.eq_ignore_ascii_case("+json")))
}

/// An RFC 9457 problem document.
pub(crate) fn problem(status: StatusCode, kind: &str, title: &str, detail: String) -> Response<Full<Bytes>> {
    let body = serde_json::json!({
        "type": format!("urn:orch:problem:{kind}"),
        "title": title,
        "status": status.as_u16(),
        "detail": detail,
    });
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/problem+json"),
    );
    response
}

pub(crate) fn too_large(limit: usize) -> Response<Full<Bytes>> {
    problem(
        StatusCode::PAYLOAD_TOO_LARGE,
        "request-body-too-large",
        "Request body too large",
        format!("a request body of an older API version is converted in memory, up to {limit} bytes"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_media_types() {
        let headers = |value: &'static str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::CONTENT_TYPE, http::HeaderValue::from_static(value));
            headers
        };
        for yes in [
            "application/json",
            "Application/JSON; charset=utf-8",
            "application/vnd.orders.v2+json",
            "application/merge-patch+json",
        ] {
            assert!(is_json(&headers(yes)), "{yes}");
        }
        for no in [
            "text/json",
            "application/jsonl",
            "application/x-ndjson",
            "json",
            "application/+jso",
        ] {
            assert!(!is_json(&headers(no)), "{no}");
        }
        assert!(!is_json(&HeaderMap::new()));
    }
}

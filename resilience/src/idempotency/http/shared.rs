//! What every service of one idempotency layer shares (store, settings,
//! user functions), and the few places where HTTP and gRPC differ: which
//! requests are protected, how a rejection is written, what an outcome
//! means, and how a saved response is replayed.

use std::{fmt, sync::Arc, time::Duration};

use bytes::Bytes;
use http::{
    HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode, header, request, response,
};

use super::{FingerprintFn, IdempotencyConfig, IdempotentBody, problem::Rejection};
use crate::{
    GrpcCode, grpc_status,
    idempotency::{IdempotencyStore, ResponseStatus, SavedResponse},
};

/// The header that marks a replayed response (Stripe's name).
pub const IDEMPOTENT_REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");

/// A user function naming the scope of a request's key (a tenant, an API
/// key), set with [`IdempotencyLayer::scope`](super::IdempotencyLayer::scope).
pub type ScopeFn = Arc<dyn Fn(&request::Parts) -> String + Send + Sync>;

/// Which wire protocol a layer speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Protocol {
    Http,
    #[cfg_attr(not(feature = "tonic"), allow(dead_code, reason = "made by the gRPC layer"))]
    Grpc,
}

/// How a handler's outcome is classed for [`SavedOutcomes`](super::SavedOutcomes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Class {
    Success,
    ClientError,
    ServerError,
    /// "Try again later" (408, 425, 429): never saved.
    Transient,
}

#[derive(Clone)]
pub(crate) struct Shared {
    pub(crate) store: Arc<dyn IdempotencyStore>,
    pub(crate) config: IdempotencyConfig,
    pub(crate) methods: Arc<[Method]>,
    pub(crate) scope: ScopeFn,
    pub(crate) fingerprint: FingerprintFn,
    pub(crate) name: Arc<str>,
    pub(crate) protocol: Protocol,
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared")
            .field("config", &self.config)
            .field("protocol", &self.protocol)
            .finish_non_exhaustive()
    }
}

impl Shared {
    /// Whether the layer protects `request` (else it passes through).
    pub(crate) fn covers<B>(&self, request: &Request<B>) -> bool {
        match self.protocol {
            Protocol::Http => self.methods.contains(request.method()),
            Protocol::Grpc => {
                let paths = &self.config.grpc_methods;
                paths.is_empty() || paths.iter().any(|p| p == request.uri().path())
            }
        }
    }

    /// Counts a request's outcome.
    pub(crate) fn count(&self, outcome: &'static str) {
        metrics::counter!(
            "orch_idempotency_requests_total",
            "name" => Arc::clone(&self.name),
            "outcome" => outcome,
        )
        .increment(1);
    }

    /// The answer to a request the layer refuses to run; nothing is stored.
    pub(crate) fn reject<B>(&self, rejection: Rejection) -> Response<IdempotentBody<B>> {
        self.count(rejection.outcome());
        tracing::debug!(
            name = %self.name,
            outcome = rejection.outcome(),
            detail = %rejection.detail(),
            "idempotency: request refused",
        );
        match self.protocol {
            Protocol::Http => rejection.into_http(),
            Protocol::Grpc => grpc_rejection(&rejection),
        }
    }

    /// The cap of the `Retry-After` of an in-progress key.
    pub(crate) fn in_progress_hint(&self, until_lease_end: Duration) -> Duration {
        until_lease_end.min(self.config.in_progress_retry_after)
    }

    /// How the call ended, and what class of outcome that is.
    pub(crate) fn classify(
        &self,
        parts: &response::Parts,
        trailers: Option<&HeaderMap>,
    ) -> (ResponseStatus, Class) {
        match self.protocol {
            Protocol::Http => {
                let code = parts.status.as_u16();
                let class = match code {
                    408 | 425 | 429 => Class::Transient,
                    400..=499 => Class::ClientError,
                    500.. => Class::ServerError,
                    _ => Class::Success,
                };
                (ResponseStatus::Http(code), class)
            }
            Protocol::Grpc => {
                // Trailers-only answers carry the status in the headers.
                let code = trailers
                    .and_then(grpc_status)
                    .or_else(|| grpc_status(&parts.headers))
                    .unwrap_or(GrpcCode::Unknown);
                let class = match code {
                    GrpcCode::Ok => Class::Success,
                    GrpcCode::InvalidArgument
                    | GrpcCode::NotFound
                    | GrpcCode::AlreadyExists
                    | GrpcCode::PermissionDenied
                    | GrpcCode::FailedPrecondition
                    | GrpcCode::OutOfRange
                    | GrpcCode::Unimplemented
                    | GrpcCode::Unauthenticated => Class::ClientError,
                    _ => Class::ServerError,
                };
                (ResponseStatus::Grpc(code as i32), class)
            }
        }
    }

    /// Whether an outcome of `class` is saved.
    pub(crate) fn saves(&self, class: Class) -> bool {
        let saved = &self.config.saved;
        match class {
            Class::Success => saved.success,
            Class::ClientError => saved.client_error,
            Class::ServerError => saved.server_error,
            Class::Transient => false,
        }
    }

    /// A saved response as this protocol replays it; a record this layer
    /// cannot replay (saved by the other protocol under the same key) is
    /// the key's reuse for another request.
    pub(crate) fn replay<B>(&self, saved: SavedResponse) -> Result<Response<IdempotentBody<B>>, Rejection> {
        let status = match (self.protocol, saved.status) {
            (Protocol::Http, ResponseStatus::Http(code)) => StatusCode::from_u16(code).ok(),
            (Protocol::Grpc, ResponseStatus::Grpc(_)) => Some(StatusCode::OK),
            _ => None,
        };
        let Some(status) = status else {
            tracing::warn!(name = %self.name, status = ?saved.status, "idempotency: saved response of another kind");
            return Err(Rejection::Mismatch);
        };
        let trailers = (!saved.trailers.is_empty()).then(|| header_map(&saved.trailers));
        let mut response = Response::new(IdempotentBody::whole(saved.body, trailers));
        *response.status_mut() = status;
        *response.headers_mut() = header_map(&saved.headers);
        response
            .headers_mut()
            .insert(IDEMPOTENT_REPLAYED, HeaderValue::from_static("true"));
        Ok(response)
    }
}

/// Headers a replay must not repeat: hop-by-hop (RFC 9110 §7.6.1), those
/// that describe one transfer or one moment (`Date`, `Content-Length` is
/// recomputed from the saved body), and the replay marker itself.
fn is_saved(name: &HeaderName) -> bool {
    !matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "transfer-encoding"
            | "upgrade"
            | "te"
            | "trailer"
            | "date"
            | "content-length"
            | "idempotent-replayed"
    )
}

/// The response to save: status, headers worth replaying, body, trailers.
pub(crate) fn saved_response(
    status: ResponseStatus,
    parts: &response::Parts,
    body: &Bytes,
    trailers: Option<&HeaderMap>,
) -> SavedResponse {
    let fields = |map: &HeaderMap| -> Vec<(String, Bytes)> {
        map.iter()
            .filter(|(name, _)| is_saved(name))
            .map(|(name, value)| (name.as_str().to_owned(), Bytes::copy_from_slice(value.as_bytes())))
            .collect()
    };
    let mut saved = SavedResponse::new(status, body.clone());
    saved.headers = fields(&parts.headers);
    saved.trailers = trailers.map(fields).unwrap_or_default();
    saved
}

/// Saved fields back as a map; a field that is no longer valid (a store
/// edited by hand) is skipped rather than failing the replay.
fn header_map(fields: &[(String, Bytes)]) -> HeaderMap {
    let mut map = HeaderMap::with_capacity(fields.len());
    for (name, value) in fields {
        match (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_maybe_shared(value.clone()),
        ) {
            (Ok(name), Ok(value)) => {
                map.append(name, value);
            }
            _ => tracing::debug!(field = %name, "idempotency: invalid saved header skipped"),
        }
    }
    map
}

// ===== gRPC rejections =====

/// A trailers-only gRPC answer: HTTP 200 with the status in the headers.
fn grpc_rejection<B>(rejection: &Rejection) -> Response<IdempotentBody<B>> {
    let code = match rejection {
        Rejection::KeyMissing | Rejection::BadKey(_) | Rejection::BodyUnreadable => GrpcCode::InvalidArgument,
        Rejection::InProgress { .. } => GrpcCode::Aborted,
        Rejection::Mismatch => GrpcCode::FailedPrecondition,
        Rejection::BodyTooLarge { .. } => GrpcCode::ResourceExhausted,
        Rejection::Unavailable { .. } => GrpcCode::Unavailable,
    };
    let message = format!("{}: {}", rejection.title(), rejection.detail());
    let mut response = Response::new(IdempotentBody::default());
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    headers.insert("grpc-status", HeaderValue::from(code as i32));
    if let Ok(message) = HeaderValue::from_str(&percent_encode(&message)) {
        headers.insert("grpc-message", message);
    }
    if let Some(after) = rejection.retry_after() {
        // gRPC's own retry policy reads the pushback (gRFC A6); people and
        // HTTP-minded clients read `retry-after`.
        headers.insert(
            "grpc-retry-pushback-ms",
            HeaderValue::from(after.as_millis() as u64),
        );
        headers.insert(
            "retry-after",
            HeaderValue::from(super::problem::whole_seconds(after)),
        );
    }
    response
}

/// `grpc-message` is percent-encoded: every byte outside printable ASCII,
/// and `%` itself (the gRPC HTTP/2 protocol spec).
fn percent_encode(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    for byte in message.bytes() {
        if (0x20..=0x7e).contains(&byte) && byte != b'%' {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_and_per_response_headers_are_not_saved() {
        let response = Response::builder()
            .header("date", "Tue, 01 Jul 2025 10:00:00 GMT")
            .header("connection", "keep-alive")
            .header("content-length", "2")
            .header("location", "/orders/7")
            .header("set-cookie", "a=1")
            .header("set-cookie", "b=2")
            .body(())
            .unwrap();
        let (parts, ()) = response.into_parts();
        let saved = saved_response(
            ResponseStatus::Http(201),
            &parts,
            &Bytes::from_static(b"{}"),
            None,
        );
        let names: Vec<_> = saved.headers.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["location", "set-cookie", "set-cookie"]);
    }

    #[test]
    fn grpc_messages_are_percent_encoded() {
        assert_eq!(percent_encode("50% done: é"), "50%25 done: %C3%A9");
    }
}

//! The response a store saves and replays, in a form neither HTTP nor gRPC
//! specific, so one store serves both layers.

use bytes::Bytes;

/// How the saved call ended: an HTTP status or a gRPC status code.
///
/// ```
/// use orch_resilience::idempotency::ResponseStatus;
///
/// assert!(ResponseStatus::Http(201).is_http());
/// assert_eq!(ResponseStatus::Grpc(5).code(), 5);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ResponseStatus {
    /// An HTTP status code (`201`, `404`).
    Http(u16),
    /// A gRPC status code as `tonic::Code` numbers it (`0` is `OK`, `5` is
    /// `NOT_FOUND`). Its message, if any, travels in the trailers.
    Grpc(i32),
}

impl ResponseStatus {
    /// Whether this is an HTTP status.
    pub const fn is_http(&self) -> bool {
        matches!(self, Self::Http(_))
    }

    /// The number, whichever protocol it belongs to.
    pub const fn code(&self) -> i32 {
        match *self {
            Self::Http(code) => code as i32,
            Self::Grpc(code) => code,
        }
    }
}

/// A response saved under an idempotency key and replayed to every repeat
/// of the request: status, headers, body and (for gRPC) trailers.
///
/// Headers keep their order and repeats; names are kept as given (HTTP
/// layers lower-case them). Which headers are worth saving is the layer's
/// choice: a `Date` or a per-connection header is better left out.
///
/// ```
/// use bytes::Bytes;
/// use orch_resilience::idempotency::{ResponseStatus, SavedResponse};
///
/// let response = SavedResponse::new(ResponseStatus::Http(201), Bytes::from_static(b"{\"id\":7}"))
///     .with_header("content-type", "application/json")
///     .with_header("location", "/orders/7");
/// assert_eq!(response.headers.len(), 2);
/// assert_eq!(response.size(), 8 + 12 + 16 + 8 + 9);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SavedResponse {
    /// How the call ended.
    pub status: ResponseStatus,
    /// Response headers (gRPC: the initial metadata), in order.
    pub headers: Vec<(String, Bytes)>,
    /// The body, whole.
    pub body: Bytes,
    /// Trailers (gRPC: the trailing metadata, `grpc-message` included);
    /// empty for most HTTP responses.
    pub trailers: Vec<(String, Bytes)>,
}

impl SavedResponse {
    /// A response with `status` and `body`, no headers and no trailers.
    pub fn new(status: ResponseStatus, body: Bytes) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body,
            trailers: Vec::new(),
        }
    }

    /// Appends a header.
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<Bytes>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Appends a trailer.
    pub fn with_trailer(mut self, name: impl Into<String>, value: impl Into<Bytes>) -> Self {
        self.trailers.push((name.into(), value.into()));
        self
    }

    /// The bytes the response holds: body plus every header and trailer
    /// name and value. Stores bound their memory with it and refuse a
    /// response above their per-response limit.
    pub fn size(&self) -> usize {
        let fields = |list: &[(String, Bytes)]| -> usize {
            list.iter().map(|(name, value)| name.len() + value.len()).sum()
        };
        self.body.len() + fields(&self.headers) + fields(&self.trailers)
    }
}

//! Deciding what a result means: success, a failure worth retrying, a failure
//! that is not, or a local rejection.
//!
//! `Err` is not the only failure: an HTTP 503 arrives as `Ok(response)`, and a
//! gRPC `UNAVAILABLE` in a trailers-only response is a status header. The
//! breaker, the retry layer and hedging all ask one [`Classify`] what a
//! result means, so they agree. Classifiers are generic parameters, not trait
//! objects, so the closed-breaker fast path stays inlined.

mod protocol;
mod sets;

use std::{any::Any, fmt, time::Duration};

use http::{HeaderMap, HeaderName, StatusCode};

use crate::error::ResilienceError;

pub use protocol::ProtocolClassifier;
use sets::{CodeSet, StatusSet};

/// What one result of the protected service means.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// The call did what was asked, or failed for a reason that says nothing
    /// about the service's health (an HTTP 404, a gRPC `INVALID_ARGUMENT`).
    Success,
    /// The service failed and another attempt may succeed (HTTP 503, gRPC
    /// `UNAVAILABLE`, a connection error, an attempt timeout).
    Retryable,
    /// The service failed and repeating the call will not help (HTTP 500,
    /// gRPC `INTERNAL`).
    Failure,
    /// A layer rejected the call before it reached the service (open circuit,
    /// full bulkhead, rate limit). Breakers record nothing for it and retries
    /// do not repeat it.
    Rejected,
}

impl Outcome {
    /// True for [`Retryable`](Self::Retryable) and [`Failure`](Self::Failure):
    /// the results a circuit breaker counts against the service.
    pub fn is_failure(self) -> bool {
        matches!(self, Self::Retryable | Self::Failure)
    }
}

/// What the server asked of the client's retry schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Pushback {
    /// The server said nothing; use the backoff.
    None,
    /// Wait this long before the next attempt instead of the backoff delay
    /// (`Retry-After`, a non-negative `grpc-retry-pushback-ms`).
    After(Duration),
    /// Do not retry (a negative or unparseable `grpc-retry-pushback-ms`).
    Stop,
}

/// Classifies the results of a service whose response type is `Res` and
/// error type is `E`.
///
/// Implemented by [`DefaultClassifier`], [`HttpClassifier`],
/// [`GrpcClassifier`], [`ProtocolClassifier`] and closures wrapped by
/// [`classify_fn`].
///
/// A classifier that cannot read the service's responses says so at
/// compile time:
///
/// ```compile_fail,E0277
/// use orch_resilience::{Classify, HttpClassifier};
///
/// fn needs<C: Classify<u32, std::io::Error>>(_: C) {}
/// // error: `HttpClassifier` cannot classify results of a service answering `u32`
/// needs(HttpClassifier::default());
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot classify results of a service answering `{Res}` (errors `{E}`)",
    label = "this classifier does not read `{Res}`",
    note = "`HttpClassifier`, `GrpcClassifier` and `ProtocolClassifier` read `http::Response`s; `DefaultClassifier` reads any response (every `Ok` is a success); `classify_fn(|result| ..)` decides with a closure",
    note = "a `ResilienceLayer` stack with the default `HttpSafety` classifies with `ProtocolClassifier`: over responses that are not `http::Response`s, choose `.classifier(DefaultClassifier)` or `.safety(AlwaysSafe)` (whose default classifier is `DefaultClassifier`)"
)]
pub trait Classify<Res, E>: Clone + Send + Sync + 'static {
    /// What `result` means.
    fn classify(&self, result: Result<&Res, &E>) -> Outcome;

    /// What the server asked of the retry schedule. The default reads nothing.
    fn pushback(&self, result: Result<&Res, &E>) -> Pushback {
        let _ = result;
        Pushback::None
    }
}

/// Every `Ok` is a success; every `Err` is retryable, except local rejections
/// and finished retry decisions from inner layers of this crate.
///
/// ```
/// use orch_resilience::{Classify, DefaultClassifier, Outcome, ResilienceError};
///
/// let io = std::io::Error::other("reset");
/// assert_eq!(Classify::<(), _>::classify(&DefaultClassifier, Err(&io)), Outcome::Retryable);
/// let limited = ResilienceError::RateLimited { name: "api".into(), wait: Default::default() };
/// assert_eq!(Classify::<(), _>::classify(&DefaultClassifier, Err(&limited)), Outcome::Rejected);
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct DefaultClassifier;

impl<Res, E: 'static> Classify<Res, E> for DefaultClassifier {
    #[inline]
    fn classify(&self, result: Result<&Res, &E>) -> Outcome {
        match result {
            Ok(_) => Outcome::Success,
            Err(error) => classify_error(error),
        }
    }
}

/// The default meaning of an error: our own errors by their kind, an error
/// caused by the request itself (an `io::Error` of kind `InvalidInput` in
/// its source chain, as orch-discovery's connectors report a malformed
/// address or an unsupported scheme) as rejected, any other error (a
/// connection reset, a transport error) as retryable.
pub fn classify_error<E: 'static>(error: &E) -> Outcome {
    let Some(own) = (error as &dyn Any).downcast_ref::<ResilienceError>() else {
        return Outcome::Retryable;
    };
    match own {
        ResilienceError::CircuitOpen { .. }
        | ResilienceError::BulkheadFull { .. }
        | ResilienceError::RateLimited { .. } => Outcome::Rejected,
        // The same request would fail the same way on every attempt, and
        // says nothing about the service's health.
        ResilienceError::Inner(inner) if is_invalid_input(inner.as_ref()) => Outcome::Rejected,
        ResilienceError::Timeout { .. } | ResilienceError::Inner(_) => Outcome::Retryable,
        // An inner retry layer already gave up; repeating its whole loop multiplies load.
        ResilienceError::BudgetExhausted { .. } | ResilienceError::NotRetried { .. } => Outcome::Failure,
    }
}

/// Whether `error` or one of its sources is an `io::Error` of kind
/// `InvalidInput`.
fn is_invalid_input(error: &(dyn std::error::Error + 'static)) -> bool {
    std::iter::successors(Some(error), |e| e.source()).any(|e| {
        e.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::InvalidInput)
    })
}

/// The pushback an error carries: a rate limiter's wait.
pub(crate) fn error_pushback<E: 'static>(error: &E) -> Pushback {
    match (error as &dyn Any).downcast_ref::<ResilienceError>() {
        Some(ResilienceError::RateLimited { wait, .. }) => Pushback::After(*wait),
        _ => Pushback::None,
    }
}

/// Classifies `http::Response`s by status code and honours `Retry-After`.
///
/// Retryable by default: 429, 502, 503, 504. Any other 5xx is a
/// non-retryable failure; everything else is a success. Errors are classified
/// as by [`DefaultClassifier`].
///
/// ```
/// use http::{Response, StatusCode};
/// use orch_resilience::{Classify, HttpClassifier, Outcome, Pushback};
///
/// let classifier = HttpClassifier::default();
/// let busy = Response::builder().status(503).header("retry-after", "2").body(()).unwrap();
/// let result: Result<_, std::io::Error> = Ok(busy);
/// assert_eq!(classifier.classify(result.as_ref()), Outcome::Retryable);
/// assert_eq!(classifier.pushback(result.as_ref()), Pushback::After(std::time::Duration::from_secs(2)));
///
/// let teapot = HttpClassifier::default().retry_on(StatusCode::IM_A_TEAPOT);
/// let response = Response::builder().status(418).body(()).unwrap();
/// assert_eq!(Classify::<_, std::io::Error>::classify(&teapot, Ok(&response)), Outcome::Retryable);
/// ```
#[derive(Clone)]
pub struct HttpClassifier {
    retryable: StatusSet,
}

/// The statuses [`HttpClassifier`] retries by default.
const DEFAULT_RETRYABLE_STATUSES: [StatusCode; 4] = [
    StatusCode::TOO_MANY_REQUESTS,
    StatusCode::BAD_GATEWAY,
    StatusCode::SERVICE_UNAVAILABLE,
    StatusCode::GATEWAY_TIMEOUT,
];

impl Default for HttpClassifier {
    fn default() -> Self {
        Self {
            retryable: DEFAULT_RETRYABLE_STATUSES.into_iter().collect(),
        }
    }
}

impl HttpClassifier {
    /// Also treats `status` as retryable.
    pub fn retry_on(mut self, status: StatusCode) -> Self {
        self.retryable.insert(status);
        self
    }

    /// Treats exactly `statuses` as retryable.
    pub fn retryable_statuses(mut self, statuses: impl IntoIterator<Item = StatusCode>) -> Self {
        self.retryable = statuses.into_iter().collect();
        self
    }

    fn classify_status(&self, status: StatusCode) -> Outcome {
        status_outcome(|status| self.retryable.contains(status), status)
    }
}

impl fmt::Debug for HttpClassifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpClassifier")
            .field("retryable", &self.retryable)
            .finish()
    }
}

impl<B: 'static, E: 'static> Classify<http::Response<B>, E> for HttpClassifier {
    fn classify(&self, result: Result<&http::Response<B>, &E>) -> Outcome {
        match result {
            Ok(response) => self.classify_status(response.status()),
            Err(error) => classify_error(error),
        }
    }

    fn pushback(&self, result: Result<&http::Response<B>, &E>) -> Pushback {
        match result {
            Ok(response) => retry_after(response.headers()).map_or(Pushback::None, Pushback::After),
            Err(error) => error_pushback(error),
        }
    }
}

/// `status` is retryable when listed, a failure when any other 5xx.
fn status_outcome(retryable: impl Fn(StatusCode) -> bool, status: StatusCode) -> Outcome {
    if retryable(status) {
        Outcome::Retryable
    } else if status.is_server_error() {
        Outcome::Failure
    } else {
        Outcome::Success
    }
}

/// Reads `Retry-After` as delay-seconds or an HTTP date (RFC 9110 §10.2.3).
/// A date in the past means "now"; an unparseable value is ignored.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(http::header::RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(
        at.duration_since(std::time::SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

/// gRPC status codes, as numbered on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(missing_docs)] // the names are gRPC's own
pub enum GrpcCode {
    Ok = 0,
    Cancelled = 1,
    Unknown = 2,
    InvalidArgument = 3,
    DeadlineExceeded = 4,
    NotFound = 5,
    AlreadyExists = 6,
    PermissionDenied = 7,
    ResourceExhausted = 8,
    FailedPrecondition = 9,
    Aborted = 10,
    OutOfRange = 11,
    Unimplemented = 12,
    Internal = 13,
    Unavailable = 14,
    DataLoss = 15,
    Unauthenticated = 16,
}

impl GrpcCode {
    /// The code for a wire number; unknown numbers are `Unknown`, as gRPC does.
    pub fn from_i32(code: i32) -> Self {
        use GrpcCode::*;
        const ALL: [GrpcCode; 17] = [
            Ok,
            Cancelled,
            Unknown,
            InvalidArgument,
            DeadlineExceeded,
            NotFound,
            AlreadyExists,
            PermissionDenied,
            ResourceExhausted,
            FailedPrecondition,
            Aborted,
            OutOfRange,
            Unimplemented,
            Internal,
            Unavailable,
            DataLoss,
            Unauthenticated,
        ];
        usize::try_from(code)
            .ok()
            .and_then(|i| ALL.get(i).copied())
            .unwrap_or(Unknown)
    }
}

/// Classifies gRPC-over-HTTP/2 responses by the `grpc-status` header of
/// trailers-only responses (how servers send immediate errors such as
/// `UNAVAILABLE`), and honours `grpc-retry-pushback-ms` as gRFC A6 says.
///
/// Retryable codes default to `UNAVAILABLE` (gRFC A6 leaves the list to the
/// service config; this is its usual choice). Failures that count against the
/// service: `UNKNOWN`, `DEADLINE_EXCEEDED`, `RESOURCE_EXHAUSTED`, `INTERNAL`,
/// `DATA_LOSS`. Every other code is a success: the service answered.
///
/// ```
/// use orch_resilience::{Classify, GrpcClassifier, GrpcCode, Outcome, Pushback};
///
/// let classifier = GrpcClassifier::default().retry_on(GrpcCode::ResourceExhausted);
/// let response = http::Response::builder()
///     .header("grpc-status", "8")
///     .header("grpc-retry-pushback-ms", "-1")
///     .body(())
///     .unwrap();
/// let result: Result<_, std::io::Error> = Ok(response);
/// assert_eq!(classifier.classify(result.as_ref()), Outcome::Retryable);
/// assert_eq!(classifier.pushback(result.as_ref()), Pushback::Stop);
/// ```
#[derive(Debug, Clone, Copy)]
pub struct GrpcClassifier {
    retryable: CodeSet,
}

impl Default for GrpcClassifier {
    fn default() -> Self {
        let retryable = CodeSet::default();
        Self { retryable }.retry_on(GrpcCode::Unavailable)
    }
}

impl GrpcClassifier {
    /// Also treats `code` as retryable.
    pub fn retry_on(mut self, code: GrpcCode) -> Self {
        self.retryable.insert(code);
        self
    }

    /// Classifies a gRPC status code.
    pub fn classify_code(&self, code: GrpcCode) -> Outcome {
        use GrpcCode::*;
        if self.retryable.contains(code) {
            Outcome::Retryable
        } else if matches!(
            code,
            Unknown | DeadlineExceeded | ResourceExhausted | Internal | Unavailable | DataLoss
        ) {
            Outcome::Failure
        } else {
            Outcome::Success
        }
    }
}

// Named once: a lookup by `&str` parses and checks the name on every call.
static GRPC_STATUS: HeaderName = HeaderName::from_static("grpc-status");
static GRPC_RETRY_PUSHBACK_MS: HeaderName = HeaderName::from_static("grpc-retry-pushback-ms");

/// The `grpc-status` of a trailers-only response; `None` while the status is
/// still to come in the trailers.
pub fn grpc_status(headers: &HeaderMap) -> Option<GrpcCode> {
    let code = headers
        .get(&GRPC_STATUS)?
        .to_str()
        .ok()?
        .trim()
        .parse::<i32>()
        .ok()?;
    Some(GrpcCode::from_i32(code))
}

/// Reads `grpc-retry-pushback-ms`: a non-negative integer is a delay; a
/// negative or unparseable value means "do not retry" (gRFC A6).
pub fn grpc_pushback(headers: &HeaderMap) -> Pushback {
    let Some(value) = headers.get(&GRPC_RETRY_PUSHBACK_MS) else {
        return Pushback::None;
    };
    match value.to_str().ok().and_then(|v| v.trim().parse::<i64>().ok()) {
        Some(ms) if ms >= 0 => Pushback::After(Duration::from_millis(ms.unsigned_abs())),
        _ => Pushback::Stop,
    }
}

impl<B: 'static, E: 'static> Classify<http::Response<B>, E> for GrpcClassifier {
    fn classify(&self, result: Result<&http::Response<B>, &E>) -> Outcome {
        match result {
            Ok(response) if !response.status().is_success() => {
                // A gRPC server answers 200; anything else is the HTTP layer failing.
                status_outcome(
                    |status| DEFAULT_RETRYABLE_STATUSES.contains(&status),
                    response.status(),
                )
            }
            Ok(response) => {
                grpc_status(response.headers()).map_or(Outcome::Success, |c| self.classify_code(c))
            }
            Err(error) => classify_error(error),
        }
    }

    fn pushback(&self, result: Result<&http::Response<B>, &E>) -> Pushback {
        match result {
            Ok(response) => grpc_pushback(response.headers()),
            Err(error) => error_pushback(error),
        }
    }
}

/// A classifier from a closure.
///
/// ```
/// use orch_resilience::{classify_fn, Classify, Outcome};
///
/// let classifier = classify_fn(|result: Result<&u16, &std::io::Error>| match result {
///     Ok(503) => Outcome::Retryable,
///     Ok(_) => Outcome::Success,
///     Err(_) => Outcome::Failure,
/// });
/// assert_eq!(classifier.classify(Ok(&503)), Outcome::Retryable);
/// ```
pub fn classify_fn<F>(f: F) -> ClassifyFn<F> {
    ClassifyFn(f)
}

/// The classifier made by [`classify_fn`].
#[derive(Clone, Copy)]
pub struct ClassifyFn<F>(F);

impl<F> fmt::Debug for ClassifyFn<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClassifyFn")
    }
}

impl<F, Res, E> Classify<Res, E> for ClassifyFn<F>
where
    F: Fn(Result<&Res, &E>) -> Outcome + Clone + Send + Sync + 'static,
    E: 'static,
{
    #[inline]
    fn classify(&self, result: Result<&Res, &E>) -> Outcome {
        (self.0)(result)
    }

    fn pushback(&self, result: Result<&Res, &E>) -> Pushback {
        match result {
            Ok(_) => Pushback::None,
            Err(error) => error_pushback(error),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(status: u16, headers: &[(&str, &str)]) -> http::Response<()> {
        let mut builder = http::Response::builder().status(status);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder.body(()).unwrap()
    }

    type R = Result<http::Response<()>, std::io::Error>;

    #[derive(Debug)]
    struct Wrapping(std::io::Error);

    impl std::fmt::Display for Wrapping {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("bad endpoint address")
        }
    }

    impl std::error::Error for Wrapping {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn an_error_caused_by_the_request_is_rejected_not_retried() {
        let inner = |kind| ResilienceError::Inner(Box::new(Wrapping(std::io::Error::new(kind, "x"))));
        assert_eq!(
            classify_error(&inner(std::io::ErrorKind::InvalidInput)),
            Outcome::Rejected
        );
        assert_eq!(
            classify_error(&inner(std::io::ErrorKind::ConnectionReset)),
            Outcome::Retryable
        );
    }

    #[test]
    fn http_statuses() {
        let c = HttpClassifier::default();
        for (status, outcome) in [
            (200, Outcome::Success),
            (404, Outcome::Success),
            (429, Outcome::Retryable),
            (500, Outcome::Failure),
            (503, Outcome::Retryable),
        ] {
            let r: R = Ok(response(status, &[]));
            assert_eq!(c.classify(r.as_ref()), outcome, "status {status}");
        }
    }

    #[test]
    fn retry_after_forms() {
        let c = HttpClassifier::default();
        let r: R = Ok(response(503, &[("retry-after", "Wed, 21 Oct 2015 07:28:00 GMT")]));
        assert_eq!(c.pushback(r.as_ref()), Pushback::After(Duration::ZERO));
        let r: R = Ok(response(503, &[("retry-after", "soon")]));
        assert_eq!(c.pushback(r.as_ref()), Pushback::None);
    }

    #[test]
    fn grpc_codes_and_pushback() {
        let c = GrpcClassifier::default();
        let r: R = Ok(response(
            200,
            &[("grpc-status", "14"), ("grpc-retry-pushback-ms", "250")],
        ));
        assert_eq!(c.classify(r.as_ref()), Outcome::Retryable);
        assert_eq!(
            c.pushback(r.as_ref()),
            Pushback::After(Duration::from_millis(250))
        );
        let r: R = Ok(response(
            200,
            &[("grpc-status", "13"), ("grpc-retry-pushback-ms", "x")],
        ));
        assert_eq!(c.classify(r.as_ref()), Outcome::Failure);
        assert_eq!(c.pushback(r.as_ref()), Pushback::Stop);
        let r: R = Ok(response(200, &[("grpc-status", "5")]));
        assert_eq!(c.classify(r.as_ref()), Outcome::Success);
        let r: R = Ok(response(200, &[]));
        assert_eq!(c.classify(r.as_ref()), Outcome::Success);
        assert_eq!(GrpcCode::from_i32(99), GrpcCode::Unknown);
    }

    #[test]
    fn errors_from_inner_layers() {
        let timeout = ResilienceError::Timeout {
            kind: crate::TimeoutKind::Attempt,
            after: Duration::from_secs(1),
        };
        assert_eq!(classify_error(&timeout), Outcome::Retryable);
        let limited = ResilienceError::RateLimited {
            name: "x".into(),
            wait: Duration::from_millis(3),
        };
        assert_eq!(
            Classify::<(), _>::pushback(&DefaultClassifier, Err(&limited)),
            Pushback::None
        );
        let c = HttpClassifier::default();
        let r: Result<http::Response<()>, _> = Err(limited);
        assert_eq!(c.pushback(r.as_ref()), Pushback::After(Duration::from_millis(3)));
    }
}

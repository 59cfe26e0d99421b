//! Deciding whether a response counts against its endpoint's load.
//!
//! A load balancer that only measures latency is fooled by an endpoint that
//! fails fast: a 503 returned in 1 ms makes it look like the best endpoint,
//! and it draws ever more traffic (a "black hole"). So every response is
//! classified, and a failure raises the endpoint's load estimate instead of
//! lowering it (see [`Algorithm`](super::Algorithm) for by how much).
//!
//! The default, [`ErrorsAreFailures`], needs no configuration for this
//! crate's connectors: it reads their `http::Response`s as
//! [`HttpFailures`] does, so a replica answering 503 over a
//! [`HyperConnector`](crate::connect::HyperConnector) loses traffic. Both
//! leave out the caller's input errors
//! ([`ConnectorError::is_invalid_input`]): a malformed request says
//! nothing about the replica it was picked for.
//!
//! This is deliberately smaller than `orch-resilience`'s `Classify` (the
//! balancer only needs "failure or not", and discovery does not depend on
//! resilience); wrap one in a [`FailureClassifier`] to reuse its rules.

use std::any::Any;

use http::{HeaderName, HeaderValue, StatusCode};

use super::BoxError;
use crate::connect::ConnectorError;

/// Says whether a result of an endpoint's service is a failure of that
/// endpoint.
///
/// The balancer clones the classifier into every response future, so it
/// should be cheap to clone (the ones here are zero-sized).
pub trait FailureClassifier<Res, E>: Clone {
    /// True when `result` should raise the endpoint's load.
    fn is_failure(&self, result: Result<&Res, &E>) -> bool;
}

/// The default: every `Err` is a failure, every `Ok` a success, except
/// that the responses of this crate's connectors are read as
/// [`HttpFailures`] reads them, and input errors are nobody's failure.
///
/// - An `Err` is a failure unless it is a [`ConnectorError`] (bare or
///   boxed) for which [`is_invalid_input`](ConnectorError::is_invalid_input)
///   holds: a request with an `https` URI fails before it is sent, and
///   counting it would eject a healthy replica after five such calls.
/// - An `Ok(http::Response<hyper::body::Incoming>)` (what a
///   `connect::HyperEndpoint` answers, feature
///   `hyper`) or `Ok(http::Response<tonic::body::Body>)` (a
///   `connect::TonicEndpoint`, feature `tonic`) is
///   a failure when it is a 5xx, a 429 or a trailers-only gRPC
///   `UNAVAILABLE`, as with [`HttpFailures`]: otherwise a replica that
///   answers 503 in a millisecond would look like the fastest one and draw
///   more traffic. The response type is recognised when the classifier is
///   compiled for it (one type comparison that the compiler folds away), so
///   other response types pay nothing.
/// - Any other `Ok` is a success. An `http::Response` with another body
///   type (a connector of your own, or one whose responses a layer
///   mapped) is not recognised: classify it with
///   [`classify_with(HttpFailures)`](super::Balancer::classify_with).
///
/// To count errors only, whatever the response, use
/// `failure_fn(|result| result.is_err())`.
///
/// ```
/// use orch_discovery::balance::{ErrorsAreFailures, FailureClassifier};
/// use orch_discovery::connect::ConnectorError;
///
/// let io = std::io::Error::other("reset");
/// assert!(FailureClassifier::<(), _>::is_failure(&ErrorsAreFailures, Err(&io)));
/// assert!(!FailureClassifier::<_, std::io::Error>::is_failure(&ErrorsAreFailures, Ok(&())));
///
/// // The caller's mistake is not the endpoint's failure.
/// let https = ConnectorError::UnsupportedScheme { field: "request.uri.scheme", scheme: "https".into() };
/// assert!(!FailureClassifier::<(), _>::is_failure(&ErrorsAreFailures, Err(&https)));
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ErrorsAreFailures;

impl<Res: 'static, E: 'static> FailureClassifier<Res, E> for ErrorsAreFailures {
    #[inline]
    fn is_failure(&self, result: Result<&Res, &E>) -> bool {
        match result {
            Ok(response) => connector_response_failed(response),
            Err(error) => !is_invalid_input(error),
        }
    }
}

/// Whether `response` is one of this crate's connectors' responses and a
/// failure by [`HttpFailures`]' rules. `Res` is known when this is
/// compiled, so each check is a constant and all but one branch vanish.
#[inline]
fn connector_response_failed<Res: 'static>(response: &Res) -> bool {
    let response = response as &dyn Any;
    #[cfg(feature = "hyper")]
    if let Some(response) = response.downcast_ref::<http::Response<hyper::body::Incoming>>() {
        return http_failed(response);
    }
    #[cfg(feature = "tonic")]
    if let Some(response) = response.downcast_ref::<http::Response<tonic::body::Body>>() {
        return http_failed(response);
    }
    let _ = response;
    false
}

/// Whether `error` is a connector's input error (bare, or boxed as
/// `tower` services box errors): the caller's mistake, not the endpoint's.
#[inline]
fn is_invalid_input<E: 'static>(error: &E) -> bool {
    let error = error as &dyn Any;
    let connector = match error.downcast_ref::<BoxError>() {
        Some(boxed) => boxed.downcast_ref::<ConnectorError>(),
        None => error.downcast_ref::<ConnectorError>(),
    };
    connector.is_some_and(ConnectorError::is_invalid_input)
}

/// For `http::Response`s: errors, any 5xx, 429 Too Many Requests, and a gRPC
/// `UNAVAILABLE` (`grpc-status: 14` in the response headers, as a
/// trailers-only gRPC response carries it) are failures. A connector's
/// input error ([`ConnectorError::is_invalid_input`]) is not.
///
/// 429 counts because an endpoint shedding load is exactly the one that
/// should get less traffic; other 4xx say something about the request, not
/// the endpoint. gRPC statuses in trailers are not seen (they arrive after
/// the response future completes); servers that fail before streaming send
/// trailers-only responses, which are.
///
/// The default [`ErrorsAreFailures`] already applies these rules to the
/// responses of this crate's connectors; choose `HttpFailures` for
/// `http::Response`s of any other body type.
///
/// ```
/// use http::Response;
/// use orch_discovery::balance::{FailureClassifier, HttpFailures};
///
/// let ok: Result<_, std::io::Error> = Ok(Response::new(()));
/// assert!(!HttpFailures.is_failure(ok.as_ref()));
///
/// let busy = Response::builder().status(429).body(()).unwrap();
/// assert!(FailureClassifier::<_, std::io::Error>::is_failure(&HttpFailures, Ok(&busy)));
///
/// let grpc = Response::builder().header("grpc-status", "14").body(()).unwrap();
/// assert!(FailureClassifier::<_, std::io::Error>::is_failure(&HttpFailures, Ok(&grpc)));
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HttpFailures;

/// gRPC's `UNAVAILABLE` status code, as its header value.
const GRPC_UNAVAILABLE: &[u8] = b"14";

// Named once: a lookup by `&str` parses and checks the name on every
// response (300 instructions a call, `benches/client_stack.rs` under
// callgrind).
static GRPC_STATUS: HeaderName = HeaderName::from_static("grpc-status");

impl<B, E: 'static> FailureClassifier<http::Response<B>, E> for HttpFailures {
    #[inline]
    fn is_failure(&self, result: Result<&http::Response<B>, &E>) -> bool {
        match result {
            Err(error) => !is_invalid_input(error),
            Ok(response) => http_failed(response),
        }
    }
}

/// [`HttpFailures`]' rules for a response.
#[inline]
fn http_failed<B>(response: &http::Response<B>) -> bool {
    let status = response.status();
    status.is_server_error()
        || status == StatusCode::TOO_MANY_REQUESTS
        || response
            .headers()
            .get(&GRPC_STATUS)
            .is_some_and(|v: &HeaderValue| v.as_bytes() == GRPC_UNAVAILABLE)
}

/// A classifier from a closure, for rules of your own.
///
/// ```
/// use orch_discovery::balance::{FailureClassifier, failure_fn};
///
/// let negative = failure_fn(|result: Result<&i32, &std::io::Error>| !matches!(result, Ok(n) if *n >= 0));
/// assert!(negative.is_failure(Ok(&-1)));
/// assert!(!negative.is_failure(Ok(&1)));
/// ```
pub fn failure_fn<F>(f: F) -> FailureFn<F> {
    FailureFn(f)
}

/// A [`FailureClassifier`] made by [`failure_fn`].
#[derive(Debug, Clone, Copy)]
pub struct FailureFn<F>(F);

impl<F, Res, E> FailureClassifier<Res, E> for FailureFn<F>
where
    F: Fn(Result<&Res, &E>) -> bool + Clone,
{
    fn is_failure(&self, result: Result<&Res, &E>) -> bool {
        (self.0)(result)
    }
}

#[cfg(test)]
mod tests {
    use http::Response;

    use super::*;

    fn http(status: u16, grpc: Option<&str>) -> bool {
        let mut builder = Response::builder().status(status);
        if let Some(code) = grpc {
            builder = builder.header("grpc-status", code);
        }
        let response = builder.body(()).unwrap();
        FailureClassifier::<_, ()>::is_failure(&HttpFailures, Ok(&response))
    }

    #[test]
    fn http_failures_are_server_errors_throttling_and_grpc_unavailable() {
        assert!(http(500, None));
        assert!(http(503, None));
        assert!(http(429, None));
        assert!(http(200, Some("14")));
        assert!(!http(200, None));
        assert!(!http(404, None));
        assert!(!http(200, Some("0")));
        assert!(!http(200, Some("5")), "NOT_FOUND says nothing about the endpoint");
        assert!(!http(200, Some("140")));
        assert!(FailureClassifier::<Response<()>, _>::is_failure(
            &HttpFailures,
            Err(&())
        ));
    }

    fn https() -> ConnectorError {
        ConnectorError::UnsupportedScheme {
            field: "request.uri.scheme",
            scheme: "https".into(),
        }
    }

    #[test]
    fn input_errors_are_nobodys_failure_bare_or_boxed() {
        let boxed: BoxError = https().into();
        assert!(!FailureClassifier::<(), _>::is_failure(
            &ErrorsAreFailures,
            Err(&https())
        ));
        assert!(!FailureClassifier::<(), _>::is_failure(
            &ErrorsAreFailures,
            Err(&boxed)
        ));
        assert!(!FailureClassifier::<Response<()>, _>::is_failure(
            &HttpFailures,
            Err(&https())
        ));
        assert!(!FailureClassifier::<Response<()>, _>::is_failure(
            &HttpFailures,
            Err(&boxed)
        ));

        let refused = ConnectorError::Connect {
            address: "127.0.0.1:9".parse().unwrap(),
            source: "refused".into(),
        };
        assert!(FailureClassifier::<(), _>::is_failure(
            &ErrorsAreFailures,
            Err(&refused)
        ));
        let boxed: BoxError = refused.into();
        assert!(FailureClassifier::<Response<()>, _>::is_failure(
            &HttpFailures,
            Err(&boxed)
        ));
    }

    #[test]
    fn the_default_reads_only_connector_responses_as_http() {
        // Not a connector's body type: an answer, whatever its status.
        let busy = Response::builder().status(503).body(()).unwrap();
        assert!(!FailureClassifier::<_, ()>::is_failure(
            &ErrorsAreFailures,
            Ok(&busy)
        ));
    }

    #[cfg(feature = "tonic")]
    #[test]
    fn the_default_reads_tonic_responses_as_http() {
        let response = |status: u16, grpc: &str| {
            Response::builder()
                .status(status)
                .header("grpc-status", grpc)
                .body(tonic::body::Body::empty())
                .unwrap()
        };
        let failed = |r: &Response<tonic::body::Body>| {
            FailureClassifier::<_, ()>::is_failure(&ErrorsAreFailures, Ok(r))
        };
        assert!(failed(&response(200, "14")), "trailers-only UNAVAILABLE");
        assert!(failed(&response(503, "0")));
        assert!(!failed(&response(200, "0")));
        assert!(!failed(&response(200, "5")), "NOT_FOUND is an answer");
    }
}

//! Deciding whether a response counts against its endpoint's load.
//!
//! A load balancer that only measures latency is fooled by an endpoint that
//! fails fast: a 503 returned in 1 ms makes it look like the best endpoint,
//! and it draws ever more traffic (a "black hole"). So every response is
//! classified, and a failure raises the endpoint's load estimate instead of
//! lowering it (see [`Algorithm`](super::Algorithm) for by how much).
//!
//! This is deliberately smaller than `orch-resilience`'s `Classify` (the
//! balancer only needs "failure or not", and discovery does not depend on
//! resilience); wrap one in a [`FailureClassifier`] to reuse its rules.

use http::{HeaderValue, StatusCode};

/// Says whether a result of an endpoint's service is a failure of that
/// endpoint.
///
/// The balancer clones the classifier into every response future, so it
/// should be cheap to clone (the ones here are zero-sized).
pub trait FailureClassifier<Res, E>: Clone {
    /// True when `result` should raise the endpoint's load.
    fn is_failure(&self, result: Result<&Res, &E>) -> bool;
}

/// Every `Err` is a failure, every `Ok` a success: the default.
///
/// ```
/// use orch_discovery::balance::{ErrorsAreFailures, FailureClassifier};
///
/// let io = std::io::Error::other("reset");
/// assert!(FailureClassifier::<(), _>::is_failure(&ErrorsAreFailures, Err(&io)));
/// assert!(!FailureClassifier::<_, std::io::Error>::is_failure(&ErrorsAreFailures, Ok(&())));
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ErrorsAreFailures;

impl<Res, E> FailureClassifier<Res, E> for ErrorsAreFailures {
    #[inline]
    fn is_failure(&self, result: Result<&Res, &E>) -> bool {
        result.is_err()
    }
}

/// For `http::Response`s: errors, any 5xx, 429 Too Many Requests, and a gRPC
/// `UNAVAILABLE` (`grpc-status: 14` in the response headers, as a
/// trailers-only gRPC response carries it) are failures.
///
/// 429 counts because an endpoint shedding load is exactly the one that
/// should get less traffic; other 4xx say something about the request, not
/// the endpoint. gRPC statuses in trailers are not seen (they arrive after
/// the response future completes); servers that fail before streaming send
/// trailers-only responses, which are.
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

impl<B, E> FailureClassifier<http::Response<B>, E> for HttpFailures {
    #[inline]
    fn is_failure(&self, result: Result<&http::Response<B>, &E>) -> bool {
        match result {
            Err(_) => true,
            Ok(response) => {
                let status = response.status();
                status.is_server_error()
                    || status == StatusCode::TOO_MANY_REQUESTS
                    || response
                        .headers()
                        .get("grpc-status")
                        .is_some_and(|v: &HeaderValue| v.as_bytes() == GRPC_UNAVAILABLE)
            }
        }
    }
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
}

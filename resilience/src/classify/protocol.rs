//! One classifier for HTTP and gRPC responses, told apart by content type.

use http::header::CONTENT_TYPE;

use super::{Classify, GrpcClassifier, HttpClassifier, Outcome, Pushback, classify_error, error_pushback};

/// Classifies gRPC responses as [`GrpcClassifier`] does and every other HTTP
/// response as [`HttpClassifier`] does, telling them apart by the
/// `content-type` header (`application/grpc`, with or without a `+format`
/// suffix, is gRPC, as the gRPC-over-HTTP/2 spec says).
///
/// This is the default classifier of a [`ResilienceLayer`](crate::ResilienceLayer)
/// stack over `http` types (with the default [`HttpSafety`](crate::HttpSafety)),
/// so one default is right for a hyper client and a tonic `Channel` alike: a
/// 503 and a trailers-only `UNAVAILABLE` are both retryable and both count
/// against the breaker; a 404 and an `INVALID_ARGUMENT` are both answers.
///
/// ```
/// use orch_resilience::{Classify, Outcome, ProtocolClassifier};
///
/// let classifier = ProtocolClassifier::default();
/// let busy = http::Response::builder().status(503).body(()).unwrap();
/// let unavailable = http::Response::builder()
///     .header("content-type", "application/grpc")
///     .header("grpc-status", "14")
///     .body(())
///     .unwrap();
/// let invalid = http::Response::builder()
///     .header("content-type", "application/grpc+proto")
///     .header("grpc-status", "3")
///     .body(())
///     .unwrap();
/// let outcome = |r: &http::Response<()>| Classify::<_, std::io::Error>::classify(&classifier, Ok(r));
/// assert_eq!(outcome(&busy), Outcome::Retryable);
/// assert_eq!(outcome(&unavailable), Outcome::Retryable);
/// assert_eq!(outcome(&invalid), Outcome::Success);
/// ```
#[derive(Debug, Clone, Default)]
pub struct ProtocolClassifier {
    http: HttpClassifier,
    grpc: GrpcClassifier,
}

impl ProtocolClassifier {
    /// Classifies HTTP responses with `http` instead of the default.
    pub fn http(mut self, http: HttpClassifier) -> Self {
        self.http = http;
        self
    }

    /// Classifies gRPC responses with `grpc` instead of the default.
    pub fn grpc(mut self, grpc: GrpcClassifier) -> Self {
        self.grpc = grpc;
        self
    }
}

/// True when `response` is a gRPC response (`application/grpc[+format]`).
fn is_grpc<B>(response: &http::Response<B>) -> bool {
    response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("application/grpc"))
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('+') || rest.starts_with(';'))
}

impl<B: 'static, E: 'static> Classify<http::Response<B>, E> for ProtocolClassifier {
    fn classify(&self, result: Result<&http::Response<B>, &E>) -> Outcome {
        match result {
            Ok(response) if is_grpc(response) => self.grpc.classify(Ok::<_, &E>(response)),
            Ok(response) => self.http.classify(Ok::<_, &E>(response)),
            Err(error) => classify_error(error),
        }
    }

    fn pushback(&self, result: Result<&http::Response<B>, &E>) -> Pushback {
        match result {
            Ok(response) if is_grpc(response) => self.grpc.pushback(Ok::<_, &E>(response)),
            Ok(response) => self.http.pushback(Ok::<_, &E>(response)),
            Err(error) => error_pushback(error),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(content_type: Option<&str>) -> http::Response<()> {
        let mut builder = http::Response::builder();
        if let Some(value) = content_type {
            builder = builder.header(CONTENT_TYPE, value);
        }
        builder.body(()).unwrap_or_default()
    }

    #[test]
    fn grpc_content_types() {
        assert!(is_grpc(&response(Some("application/grpc"))));
        assert!(is_grpc(&response(Some("application/grpc+proto"))));
        assert!(!is_grpc(&response(Some("application/grpcx"))));
        assert!(!is_grpc(&response(Some("application/json"))));
        assert!(!is_grpc(&response(None)));
    }

    #[test]
    fn a_grpc_status_outside_grpc_is_ignored() {
        let plain = http::Response::builder()
            .header("grpc-status", "14")
            .body(())
            .unwrap_or_default();
        let c = ProtocolClassifier::default();
        assert_eq!(
            Classify::<_, std::io::Error>::classify(&c, Ok(&plain)),
            Outcome::Success
        );
    }
}

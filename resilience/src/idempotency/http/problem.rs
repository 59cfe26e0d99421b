//! The answers the layers give instead of running a request, and their
//! HTTP form: `application/problem+json` (RFC 9457).
//!
//! Each problem has a stable `type` URI (`urn:orch:problem:idempotency-…`)
//! that clients can match on, a `title` that names the problem class, and
//! a `detail` that says what to do about this occurrence. Nothing is
//! stored when a request is rejected.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};

use super::{IdempotentBody, KeyError};

/// Why a request was answered by the layer rather than run.
#[derive(Debug)]
pub(crate) enum Rejection {
    /// The key is required and absent.
    KeyMissing,
    /// The key is malformed.
    BadKey(KeyError),
    /// The same key is still running.
    InProgress { retry_after: Duration },
    /// The same key was used for another request.
    Mismatch,
    /// The body is larger than the layer reads.
    BodyTooLarge { max: usize },
    /// The body failed while it was read.
    BodyUnreadable,
    /// The store failed, or the run could not be finished.
    Unavailable { retry_after: Duration },
}

impl Rejection {
    /// The `outcome` label of the request metric.
    pub(crate) fn outcome(&self) -> &'static str {
        match self {
            Self::KeyMissing => "missing_key",
            Self::BadKey(_) => "bad_key",
            Self::InProgress { .. } => "in_progress",
            Self::Mismatch => "mismatch",
            Self::BodyTooLarge { .. } => "body_too_large",
            Self::BodyUnreadable => "body_unreadable",
            Self::Unavailable { .. } => "store_unavailable",
        }
    }

    pub(crate) fn title(&self) -> &'static str {
        match self {
            Self::KeyMissing => "Idempotency-Key is missing",
            Self::BadKey(_) => "Idempotency-Key is invalid",
            Self::InProgress { .. } => "A request with this Idempotency-Key is still being processed",
            Self::Mismatch => "Idempotency-Key is already used for another request",
            Self::BodyTooLarge { .. } => "Request body is too large",
            Self::BodyUnreadable => "Request body could not be read",
            Self::Unavailable { .. } => "Idempotency is temporarily unavailable",
        }
    }

    pub(crate) fn detail(&self) -> String {
        match self {
            Self::KeyMissing => {
                "this endpoint requires an Idempotency-Key header; send a new random value (a UUID) with each new request, and the same value when retrying it".to_owned()
            }
            Self::BadKey(error) => error.to_string(),
            Self::InProgress { retry_after } => format!(
                "the first request with this key has not finished; retry after {} s to get its response",
                whole_seconds(*retry_after)
            ),
            Self::Mismatch => {
                "this key was used with a different method, path or body; use a new key for a new request".to_owned()
            }
            Self::BodyTooLarge { max } => {
                format!("requests with an Idempotency-Key may have bodies of at most {max} bytes")
            }
            Self::BodyUnreadable => "the request body ended with an error before it was complete".to_owned(),
            Self::Unavailable { retry_after } => format!(
                "the request was not processed because the idempotency store is unavailable; retry after {} s with the same key",
                whole_seconds(*retry_after)
            ),
        }
    }

    /// The `type` URI's last part.
    fn slug(&self) -> &'static str {
        match self {
            Self::KeyMissing => "idempotency-key-missing",
            Self::BadKey(_) => "idempotency-key-invalid",
            Self::InProgress { .. } => "idempotency-key-in-progress",
            Self::Mismatch => "idempotency-key-mismatch",
            Self::BodyTooLarge { .. } => "idempotency-body-too-large",
            Self::BodyUnreadable => "idempotency-body-unreadable",
            Self::Unavailable { .. } => "idempotency-unavailable",
        }
    }

    pub(crate) fn http_status(&self) -> StatusCode {
        match self {
            Self::KeyMissing | Self::BadKey(_) | Self::BodyUnreadable => StatusCode::BAD_REQUEST,
            Self::InProgress { .. } => StatusCode::CONFLICT,
            Self::Mismatch => StatusCode::UNPROCESSABLE_ENTITY,
            Self::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    pub(crate) fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::InProgress { retry_after } | Self::Unavailable { retry_after } => Some(*retry_after),
            _ => None,
        }
    }

    /// The problem document as an HTTP response.
    pub(crate) fn into_http<B>(self) -> Response<IdempotentBody<B>> {
        let status = self.http_status();
        let document = serde_json::json!({
            "type": format!("urn:orch:problem:{}", self.slug()),
            "title": self.title(),
            "status": status.as_u16(),
            "detail": self.detail(),
        });
        let mut response = Response::new(IdempotentBody::whole(Bytes::from(document.to_string()), None));
        *response.status_mut() = status;
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let Some(after) = self.retry_after() {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(whole_seconds(after)));
        }
        response
    }
}

/// `Retry-After` holds whole seconds: rounded up, at least 1.
pub(crate) fn whole_seconds(after: Duration) -> u64 {
    let secs = after.as_secs() + u64::from(after.subsec_nanos() > 0);
    secs.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_is_whole_seconds_rounded_up() {
        assert_eq!(whole_seconds(Duration::ZERO), 1);
        assert_eq!(whole_seconds(Duration::from_millis(1500)), 2);
        assert_eq!(whole_seconds(Duration::from_secs(3)), 3);
    }
}

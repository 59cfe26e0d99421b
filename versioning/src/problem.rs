//! How a refused version is answered: RFC 9457 `application/problem+json`
//! over HTTP, listing the supported versions; a gRPC status over gRPC.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use serde_json::json;

use crate::{Rejection, Source, VersionSet};

/// The response for `rejection`; `grpc` when the request was gRPC.
pub(crate) fn rejection_response(
    set: &VersionSet,
    header_name: &str,
    rejection: &Rejection,
    grpc: bool,
) -> Response<Bytes> {
    let supported: Vec<String> = set.supported().iter().map(ToString::to_string).collect();
    let name = set.name();
    let from = |source: &Source| match source {
        Source::Header if grpc => format!("the {header_name} metadata"),
        Source::Header => format!("the {header_name} header"),
        Source::PathPrefix => "the path".to_owned(),
        Source::MediaType => "the Accept header".to_owned(),
    };
    let (status, kind, title, detail, link) = match rejection {
        Rejection::Malformed {
            source,
            value,
            reason,
        } => (
            accept_aware(source),
            "malformed-api-version",
            "Malformed API version",
            format!(
                "{value:?} in {} is not a version of {name}: {reason}",
                from(source)
            ),
            None,
        ),
        Rejection::Unsupported { version, source } => (
            accept_aware(source),
            "unsupported-api-version",
            "Unsupported API version",
            format!(
                "{name} has no version {version} (asked for in {}); supported: {}",
                from(source),
                supported.join(", ")
            ),
            None,
        ),
        Rejection::Gone { version, link } => (
            StatusCode::GONE,
            "api-version-removed",
            "API version removed",
            format!(
                "version {version} of {name} was removed; supported: {}",
                supported.join(", ")
            ),
            link.clone(),
        ),
    };
    if grpc {
        // INVALID_ARGUMENT for a bad version, UNIMPLEMENTED for a removed
        // one: the method no longer exists in that version.
        let code = if status == StatusCode::GONE { 12 } else { 3 };
        let mut message = detail;
        if let Some(link) = &link {
            message.push_str(&format!(" (migration notes: {link})"));
        }
        let mut response = Response::new(Bytes::new());
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
        headers.insert("grpc-status", HeaderValue::from(code));
        if let Ok(value) = HeaderValue::from_str(&percent_encode(&message)) {
            headers.insert("grpc-message", value);
        }
        return response;
    }
    let mut body = json!({
        "type": format!("urn:orch:problem:{kind}"),
        "title": title,
        "status": status.as_u16(),
        "detail": detail,
        "supported": supported,
        "latest": set.latest().to_string(),
    });
    if let Some(link) = &link {
        body["migration"] = json!(link);
    }
    let mut response = Response::new(Bytes::from(body.to_string()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    response
}

/// 406 when the version came from `Accept` (content negotiation failed),
/// 400 otherwise.
fn accept_aware(source: &Source) -> StatusCode {
    if *source == Source::MediaType {
        StatusCode::NOT_ACCEPTABLE
    } else {
        StatusCode::BAD_REQUEST
    }
}

/// gRPC's `grpc-message` encoding: percent-encode everything outside
/// printable ASCII and `%` itself.
fn percent_encode(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    for byte in message.bytes() {
        if (0x20..0x7f).contains(&byte) && byte != b'%' {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

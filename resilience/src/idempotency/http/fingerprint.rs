//! What makes two requests "the same request": a SHA-256 over chosen
//! parts of it.
//!
//! The default covers method, path with query, and body, as the IETF draft
//! suggests: a repeat with the same key and another payload is a client
//! bug (`422`), not a retry. A service whose requests carry parts that
//! differ between retries (a timestamp in a JSON body, a tracing header
//! folded into the path) supplies its own function and hashes only what
//! matters, with [`FingerprintHasher`].

use std::sync::Arc;

use bytes::Bytes;
use http::request::Parts;
use sha2::{Digest, Sha256};

use crate::idempotency::Fingerprint;

/// A user function that fingerprints a request from its head and its whole
/// body, set with [`IdempotencyLayer::fingerprint`](super::IdempotencyLayer::fingerprint).
pub type FingerprintFn = Arc<dyn Fn(&Parts, &Bytes) -> Fingerprint + Send + Sync>;

/// Builds a [`Fingerprint`] from fields, SHA-256 over each field's length
/// and bytes, so that fields never run together (`"ab" + "c"` and
/// `"a" + "bc"` differ).
///
/// ```
/// use orch_resilience::idempotency::http::FingerprintHasher;
///
/// let a = FingerprintHasher::new().field(b"POST").field(b"/orders").finish();
/// let b = FingerprintHasher::new().field(b"POST").field(b"/orders").finish();
/// let c = FingerprintHasher::new().field(b"POST/").field(b"orders").finish();
/// assert_eq!(a, b);
/// assert_ne!(a, c);
/// ```
#[derive(Debug, Clone)]
pub struct FingerprintHasher(Sha256);

impl FingerprintHasher {
    /// A hasher with no field yet. Its state starts from a tag of this
    /// scheme, so a fingerprint never equals a bare SHA-256 of the same bytes.
    pub fn new() -> Self {
        let mut sha = Sha256::new();
        sha.update(b"orch-idempotency-fingerprint-v1");
        Self(sha)
    }

    /// Adds a field.
    pub fn field(mut self, bytes: &[u8]) -> Self {
        self.0.update((bytes.len() as u64).to_be_bytes());
        self.0.update(bytes);
        self
    }

    /// The fingerprint of the fields added so far.
    pub fn finish(self) -> Fingerprint {
        Fingerprint::from_bytes(self.0.finalize().into())
    }
}

impl Default for FingerprintHasher {
    fn default() -> Self {
        Self::new()
    }
}

/// The default fingerprint: method, path with query, body.
///
/// ```
/// use bytes::Bytes;
/// use orch_resilience::idempotency::http::default_fingerprint;
///
/// let (a, _) = http::Request::post("/orders?x=1").body(()).unwrap().into_parts();
/// let (b, _) = http::Request::post("/orders?x=2").body(()).unwrap().into_parts();
/// let body = Bytes::from_static(b"{}");
/// assert_ne!(default_fingerprint(&a, &body), default_fingerprint(&b, &body));
/// ```
pub fn default_fingerprint(parts: &Parts, body: &Bytes) -> Fingerprint {
    let path = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
    FingerprintHasher::new()
        .field(parts.method.as_str().as_bytes())
        .field(path.as_bytes())
        .field(body)
        .finish()
}

/// A scope of at most 64 bytes as it is; a longer one as `sha256:` and
/// its hex digest (71 bytes), so that record names stay short whatever a
/// scope function returns.
pub(crate) fn bounded_scope(scope: String) -> String {
    const MAX_SCOPE: usize = 64;
    if scope.len() <= MAX_SCOPE {
        return scope;
    }
    let digest = Sha256::digest(scope.as_bytes());
    let mut out = String::with_capacity(7 + 64);
    out.push_str("sha256:");
    for byte in digest {
        out.push(char::from(HEX[usize::from(byte >> 4)]));
        out.push(char::from(HEX[usize::from(byte & 0xf)]));
    }
    debug_assert!(out.len() == 71);
    out
}

const HEX: &[u8; 16] = b"0123456789abcdef";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_covers_method_path_and_body() {
        let parts = |method: &str, uri: &str| {
            http::Request::builder()
                .method(method)
                .uri(uri)
                .body(())
                .unwrap()
                .into_parts()
                .0
        };
        let body = Bytes::from_static(b"a");
        let base = default_fingerprint(&parts("POST", "/o"), &body);
        assert_eq!(base, default_fingerprint(&parts("POST", "/o"), &body));
        assert_ne!(base, default_fingerprint(&parts("PATCH", "/o"), &body));
        assert_ne!(base, default_fingerprint(&parts("POST", "/p"), &body));
        assert_ne!(
            base,
            default_fingerprint(&parts("POST", "/o"), &Bytes::from_static(b"b"))
        );
    }

    #[test]
    fn long_scopes_are_hashed() {
        assert_eq!(bounded_scope("tenant-1".into()), "tenant-1");
        let long = bounded_scope("x".repeat(65));
        assert!(long.starts_with("sha256:"));
        assert_eq!(long.len(), 71);
        assert_ne!(long, bounded_scope("y".repeat(65)));
    }
}

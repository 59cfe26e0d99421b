//! Which requests may be sent more than once.
//!
//! A retry or a hedged attempt repeats a request. Repeating a read is
//! harmless; repeating a payment is not, unless the server deduplicates it by
//! an idempotency key. The retry and hedging layers ask a [`RequestSafety`]
//! before they repeat anything. There is deliberately no default for
//! arbitrary request types: a layer over a non-HTTP service does not compile
//! until its user says which requests are safe ([`AlwaysSafe`] or
//! [`safety_fn`]).

use std::fmt;

use http::{HeaderName, HeaderValue, Method};

/// The header that carries an idempotency key (IETF draft
/// `draft-ietf-httpapi-idempotency-key-header`).
pub const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");

/// Decides whether a request may be repeated.
///
/// There is no rule for arbitrary request types, so a retry or hedging layer
/// over them does not compile until its user says which requests are safe:
///
/// ```compile_fail,E0277
/// use orch_resilience::{HttpSafety, RequestSafety};
///
/// fn needs<Q: RequestSafety<u32>>(_: Q) {}
/// // error: requests of type `u32` cannot be judged safe to repeat by `HttpSafety`
/// needs(HttpSafety::default());
/// ```
#[diagnostic::on_unimplemented(
    message = "requests of type `{Req}` cannot be judged safe to repeat by `{Self}`",
    label = "`{Self}` does not know whether a `{Req}` may be sent twice",
    note = "choose `.safety(AlwaysSafe)` when every request may be repeated (reads, or writes the server deduplicates), or `.safety(safety_fn(|request| ..))` to decide per request",
    note = "`HttpSafety` (the default) judges `http::Request`s: idempotent methods and requests with an `Idempotency-Key` are safe"
)]
pub trait RequestSafety<Req>: Clone + Send + Sync + 'static {
    /// True when sending `request` twice has the effect of sending it once.
    fn is_safe(&self, request: &Req) -> bool;

    /// Called once before the first attempt of an unsafe request; may change
    /// the request so that it becomes safe (add an idempotency key) and
    /// return true. The default changes nothing.
    fn make_safe(&self, request: &mut Req) -> bool {
        let _ = request;
        false
    }
}

/// HTTP rules: idempotent methods (`GET`, `HEAD`, `OPTIONS`, `TRACE`, `PUT`,
/// `DELETE`, RFC 9110 §9.2.2) and requests that carry an `Idempotency-Key`
/// header are safe.
///
/// With [`add_idempotency_key`](Self::add_idempotency_key), a request that is
/// neither gets a fresh UUID v7 `Idempotency-Key` (as an sf-string,
/// `"018f…"`) before its first attempt, so
/// a server that deduplicates by key (orch's idempotency stores) runs it once
/// however often it is retried.
///
/// ```
/// use orch_resilience::{HttpSafety, RequestSafety};
///
/// let get = http::Request::get("/orders").body(()).unwrap();
/// let mut post = http::Request::post("/orders").body(()).unwrap();
/// assert!(HttpSafety::default().is_safe(&get));
/// assert!(!HttpSafety::default().is_safe(&post));
///
/// let keyed = HttpSafety::default().add_idempotency_key(true);
/// assert!(keyed.make_safe(&mut post));
/// assert!(keyed.is_safe(&post));
/// ```
#[derive(Debug, Clone, Default)]
pub struct HttpSafety {
    add_key: bool,
}

impl HttpSafety {
    /// Adds a fresh UUID v7 `Idempotency-Key` to unsafe requests that have none.
    pub fn add_idempotency_key(mut self, enabled: bool) -> Self {
        self.add_key = enabled;
        self
    }
}

/// True for the methods RFC 9110 calls idempotent.
pub fn is_idempotent_method(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}

impl<B: 'static> RequestSafety<http::Request<B>> for HttpSafety {
    fn is_safe(&self, request: &http::Request<B>) -> bool {
        is_idempotent_method(request.method()) || request.headers().contains_key(IDEMPOTENCY_KEY)
    }

    fn make_safe(&self, request: &mut http::Request<B>) -> bool {
        if !self.add_key {
            return false;
        }
        // An sf-string, as the IETF draft makes the field (RFC 8941 Item
        // whose value is a String): servers that parse it strictly (orch's
        // idempotency layer does) accept it, lenient ones strip the quotes.
        let key = format!("\"{}\"", uuid::Uuid::now_v7().hyphenated());
        match HeaderValue::from_str(&key) {
            Ok(value) => {
                request.headers_mut().insert(IDEMPOTENCY_KEY, value);
                true
            }
            Err(_) => false,
        }
    }
}

/// Every request is safe to repeat: for services whose operations are all
/// idempotent (reads, or writes deduplicated by the server).
#[derive(Debug, Clone, Copy, Default)]
pub struct AlwaysSafe;

impl<Req> RequestSafety<Req> for AlwaysSafe {
    #[inline]
    fn is_safe(&self, _: &Req) -> bool {
        true
    }
}

/// Safety rules from a closure.
///
/// ```
/// use orch_resilience::{safety_fn, RequestSafety};
///
/// // gRPC requests are all POSTs; say which methods are idempotent.
/// let safety = safety_fn(|req: &http::Request<()>| req.uri().path().starts_with("/inventory.v1.Inventory/Get"));
/// let get = http::Request::post("/inventory.v1.Inventory/GetItem").body(()).unwrap();
/// assert!(safety.is_safe(&get));
/// ```
pub fn safety_fn<F>(f: F) -> SafetyFn<F> {
    SafetyFn(f)
}

/// The safety rules made by [`safety_fn`].
#[derive(Clone, Copy)]
pub struct SafetyFn<F>(F);

impl<F> fmt::Debug for SafetyFn<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SafetyFn")
    }
}

impl<F, Req> RequestSafety<Req> for SafetyFn<F>
where
    F: Fn(&Req) -> bool + Clone + Send + Sync + 'static,
{
    fn is_safe(&self, request: &Req) -> bool {
        (self.0)(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_added_only_when_enabled_and_are_uuid_v7() {
        let mut post = http::Request::post("/pay").body(()).unwrap();
        assert!(!HttpSafety::default().make_safe(&mut post));
        assert!(
            HttpSafety::default()
                .add_idempotency_key(true)
                .make_safe(&mut post)
        );
        let key = post.headers()[IDEMPOTENCY_KEY].to_str().unwrap();
        let unquoted = key.strip_prefix('"').and_then(|k| k.strip_suffix('"')).unwrap();
        let parsed = uuid::Uuid::parse_str(unquoted).unwrap();
        assert_eq!(parsed.get_version_num(), 7);
    }

    #[test]
    fn idempotent_methods() {
        for method in [Method::GET, Method::PUT, Method::DELETE, Method::HEAD] {
            assert!(is_idempotent_method(&method));
        }
        for method in [Method::POST, Method::PATCH, Method::CONNECT] {
            assert!(!is_idempotent_method(&method));
        }
    }
}

//! Taking a request's key for [`Algorithm::Maglev`](super::Algorithm::Maglev):
//! requests with the same key go to the same endpoint.
//!
//! A [`RequestKey`] turns a request into a 64-bit hash of its key, or
//! `None` when the request has none (such requests go to P2C over requests
//! in flight). The hash must be the same in every client for clients to
//! agree on the endpoint, so hash bytes with
//! [`stable_hash`](crate::pick::stable_hash), not `std`'s randomly seeded
//! hasher. The balancer asks only under Maglev, once per request.

use http::HeaderName;

use crate::pick::stable_hash;

/// Extracts the hash of a request's key, for Maglev; see
/// [`Balancer::hash_with`](super::Balancer::hash_with).
///
/// Any `Fn(&Req) -> Option<u64>` is one, and [`HeaderKey`] hashes an HTTP
/// header.
///
/// ```
/// use orch_discovery::{balance::RequestKey, pick::stable_hash};
///
/// let by_user = |request: &(String, u32)| Some(stable_hash(request.0.as_bytes(), 0));
/// let request = ("user-42".to_owned(), 7);
/// assert_eq!(by_user.key_hash(&request), Some(stable_hash(b"user-42", 0)));
/// ```
pub trait RequestKey<Req> {
    /// A hash of the request's key; `None` when the request has no key.
    fn key_hash(&self, request: &Req) -> Option<u64>;
}

/// No request has a key: the default, for algorithms that do not use one.
/// Under Maglev every request then goes to P2C over requests in flight.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NoKey;

impl<Req> RequestKey<Req> for NoKey {
    #[inline]
    fn key_hash(&self, _: &Req) -> Option<u64> {
        None
    }
}

impl<Req, F> RequestKey<Req> for F
where
    F: Fn(&Req) -> Option<u64>,
{
    #[inline]
    fn key_hash(&self, request: &Req) -> Option<u64> {
        self(request)
    }
}

/// The key of an `http::Request` is the value of one of its headers
/// (hashed with [`stable_hash`], seed 0); a request without the header has
/// no key. With several values, the first counts.
///
/// ```
/// use http::{HeaderName, Request};
/// use orch_discovery::{balance::{HeaderKey, RequestKey}, pick::stable_hash};
///
/// let key = HeaderKey::new(HeaderName::from_static("x-user-id"));
/// let request = Request::builder().header("x-user-id", "42").body(()).unwrap();
/// assert_eq!(key.key_hash(&request), Some(stable_hash(b"42", 0)));
/// assert_eq!(key.key_hash(&Request::new(())), None);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderKey {
    name: HeaderName,
}

impl HeaderKey {
    /// Keys requests by header `name`.
    pub fn new(name: HeaderName) -> Self {
        Self { name }
    }

    /// The header's name.
    pub fn name(&self) -> &HeaderName {
        &self.name
    }
}

impl<B> RequestKey<http::Request<B>> for HeaderKey {
    #[inline]
    fn key_hash(&self, request: &http::Request<B>) -> Option<u64> {
        let value = request.headers().get(&self.name)?;
        Some(stable_hash(value.as_bytes(), 0))
    }
}

//! What identifies a request's payload and a claim's ownership.
//!
//! A [`Fingerprint`] is the digest a layer computes over the parts of a
//! request that must match for a repeat to be the same request. A
//! [`FencingToken`] is what a successful claim hands its holder: the record's
//! name and the generation of the claim, so that [`complete`], [`release`]
//! and [`renew`] can be one compare-and-set on the backend (`WHERE scope = $1
//! AND key = $2 AND generation = $3` in SQL, one comparison inside a Redis
//! script).
//!
//! [`complete`]: super::IdempotencyStore::complete
//! [`release`]: super::IdempotencyStore::release
//! [`renew`]: super::IdempotencyStore::renew

use std::{fmt, sync::Arc};

/// A digest of the parts of a request that make it "the same request": by
/// default the HTTP layer hashes method, path and body.
///
/// The store only compares fingerprints for equality; it never computes
/// them. Whoever computes one must use a hash that is stable across
/// processes (SHA-256, not `std`'s randomly keyed hasher), because the
/// record may be read by another replica of the service.
///
/// ```
/// use orch_resilience::idempotency::Fingerprint;
///
/// let a = Fingerprint::from_bytes([7; 32]);
/// assert_eq!(a, Fingerprint::from_bytes([7; 32]));
/// assert_eq!(a.as_bytes()[0], 7);
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint([u8; 32]);

impl Fingerprint {
    /// A fingerprint from a 32-byte digest.
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The digest, to store it (a `BYTEA` column, a Redis hash field).
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The first eight bytes in hex are enough to tell two apart in logs.
        write!(f, "Fingerprint(")?;
        for byte in &self.0[..8] {
            write!(f, "{byte:02x}")?;
        }
        write!(f, "…)")
    }
}

/// Proof of a claim, handed to the holder with
/// [`Claim::Acquired`](super::Claim::Acquired): the record's scope and key
/// and the claim's generation.
///
/// Every claim that acquires a record gets a generation that the store has
/// never given to that scope and key before, including across releases and
/// expiries (the memory store counts per shard, PostgreSQL can take a
/// sequence, Redis a counter kept beside the record or the server's clock).
/// So a token whose generation is not the record's current one belongs to a
/// holder that lost the record, and every fenced operation with it is
/// refused with [`StoreError::StaleToken`](super::StoreError::StaleToken).
///
/// Cloning a token is cheap (one reference count).
///
/// ```
/// use orch_resilience::idempotency::FencingToken;
///
/// let token = FencingToken::new("tenant-1", "018f6b2e-0000-7000-8000-000000000000", 42);
/// assert_eq!(token.scope(), "tenant-1");
/// assert_eq!(token.key(), "018f6b2e-0000-7000-8000-000000000000");
/// assert_eq!(token.generation(), 42);
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct FencingToken {
    name: RecordName,
    generation: u64,
}

impl FencingToken {
    /// A token for the record `scope`/`key` at `generation`. Backends build
    /// tokens with it; holders only get them from a claim.
    pub fn new(scope: &str, key: &str, generation: u64) -> Self {
        Self::from_name(RecordName::new(scope, key), generation)
    }

    pub(crate) fn from_name(name: RecordName, generation: u64) -> Self {
        Self { name, generation }
    }

    /// The scope the record lives in (a tenant, an API key).
    pub fn scope(&self) -> &str {
        self.name.scope()
    }

    /// The idempotency key.
    pub fn key(&self) -> &str {
        self.name.key()
    }

    /// The generation of the claim this token proves.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    pub(crate) fn name(&self) -> &RecordName {
        &self.name
    }
}

impl fmt::Debug for FencingToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FencingToken")
            .field("scope", &self.scope())
            .field("key", &self.key())
            .field("generation", &self.generation)
            .finish()
    }
}

/// A record's scope and key in one shared allocation: the memory store's
/// map key, its expiry queue entries and the holder's token all point at
/// the same bytes.
///
/// Equality compares the scope's length as well as the text, so that
/// (`"ab"`, `"c"`) and (`"a"`, `"bc"`) are different records.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct RecordName {
    text: Arc<str>,
    scope_len: usize,
}

impl RecordName {
    pub(crate) fn new(scope: &str, key: &str) -> Self {
        let mut text = String::with_capacity(scope.len() + key.len());
        text.push_str(scope);
        text.push_str(key);
        Self {
            text: text.into(),
            scope_len: scope.len(),
        }
    }

    pub(crate) fn scope(&self) -> &str {
        &self.text[..self.scope_len]
    }

    pub(crate) fn key(&self) -> &str {
        &self.text[self.scope_len..]
    }

    /// Bytes of the name itself, counted against a store's byte bound.
    pub(crate) fn len(&self) -> usize {
        self.text.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_and_key_never_run_together() {
        assert_ne!(RecordName::new("ab", "c"), RecordName::new("a", "bc"));
        let name = RecordName::new("ab", "c");
        assert_eq!((name.scope(), name.key(), name.len()), ("ab", "c", 3));
        assert_ne!(FencingToken::new("a", "b", 1), FencingToken::new("a", "b", 2));
    }

    #[test]
    fn fingerprint_debug_is_short_hex() {
        let fp = Fingerprint::from_bytes([0xab; 32]);
        assert_eq!(format!("{fp:?}"), "Fingerprint(abababababababab…)");
    }
}

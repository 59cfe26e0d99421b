//! Maglev consistent hashing: a lookup table built from endpoint ids.

use std::{cmp::Reverse, collections::BinaryHeap, fmt, sync::Arc};

use crate::{EndpointId, Weight};

use super::hash::{mix64, scale, stable_hash};
use super::p2c::{Sampler, p2c};
use crate::balance::{endpoints::ReadyView, load::Now, rng::Rng};

/// Marks a table entry not yet filled while the table is built.
const EMPTY: u32 = u32::MAX;

/// How many table entries [`Maglev::lookup_where`] tries before it scans
/// the slots.
const PROBES: usize = 64;

/// A table size that cannot be used; the table is not built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MaglevError {
    /// The size is not a prime number. Maglev's permutations visit every
    /// entry only when the size is prime (with any other size the build
    /// would never finish for some ids).
    #[error("maglev table size {0} is not a prime number (65537 is the usual choice)")]
    NotPrime(usize),
    /// The size is not larger than the number of endpoints, so some
    /// endpoints would get no entry. (For an even spread it should be about
    /// 100 times larger.)
    #[error("maglev table size {table_size} must be larger than the number of endpoints ({endpoints})")]
    TooSmall {
        /// The table size asked for.
        table_size: usize,
        /// The number of endpoints.
        endpoints: usize,
    },
    /// The size is above [`Maglev::MAX_TABLE_SIZE`].
    #[error("maglev table size {0} is above the maximum of 5000011")]
    TooLarge(usize),
}

/// Maglev consistent hashing: maps a key's hash to one of slots `0..n`, so
/// that every client with the same endpoints maps the same key to the same
/// endpoint, and a change of endpoints moves few keys.
///
/// Built from the endpoints' ids (hashed with [`stable_hash`], the same in
/// every process) and weights; a lookup is one table read, O(1) whatever
/// the number of endpoints. Use it for affinity: caches, sessions, shards.
///
/// ```
/// use orch_discovery::{EndpointId, Weight, pick::{Maglev, stable_hash}};
///
/// let ids: Vec<EndpointId> = ["api-1", "api-2", "api-3"].map(EndpointId::from).into();
/// let maglev = Maglev::new(ids.iter().map(|id| (id, Weight::ONE))).unwrap();
///
/// let key = stable_hash(b"user-42", 0);
/// let slot = maglev.lookup(key).unwrap();
/// assert_eq!(maglev.lookup(key), Some(slot)); // always the same endpoint
///
/// // While that endpoint is ejected, its keys go elsewhere, deterministically.
/// let other = maglev.lookup_where(key, |s| s != slot).unwrap();
/// assert_ne!(other, slot);
/// assert_eq!(maglev.lookup_where(key, |s| s != slot), Some(other));
/// ```
///
/// # How it works
///
/// From Eisenbud et al., *Maglev: A Fast and Reliable Software Network Load
/// Balancer* (NSDI 2016), §3.4. The table has a prime number `M` of entries
/// (65 537 by default, as in Envoy). Each endpoint's id gives it an
/// `offset` and a `skip`, hence a permutation of the entries
/// (`offset + j·skip mod M`); endpoints take turns claiming the next free
/// entry of their permutation until the table is full. Every endpoint
/// ends up with `M/n` entries, give or take one, and removing one endpoint
/// reassigns mostly its own entries: a little more than `1/n` of the keys
/// move (the paper measures the excess; the tests here bound it by 2 %).
///
/// Weights follow Envoy's weighted Maglev: the turns are taken in rounds,
/// and an endpoint of weight `w` claims an entry only in the rounds where
/// its running share `round·w` has reached its next multiple of the
/// largest weight, so it ends up with entries in proportion to `w`.
/// Ids are hashed as XXH64 with seeds 0 (offset) and 1 (skip), as Envoy
/// hashes addresses, and endpoints take turns in the order of their ids
/// (Envoy: in host order), so which id a key maps to depends only on the
/// set of ids and weights, not on the order the balancer keeps its slots
/// in: two clients that list the same endpoints differently still agree.
///
/// A key hash is mixed ([`mix64`](super::mix64)) and scaled onto the
/// table with a multiply, not a division: keys that are small integers
/// still spread, and a lookup costs a few nanoseconds.
///
/// # Ineligible endpoints
///
/// [`lookup_where`](Self::lookup_where) rehashes the key until it lands on
/// an endpoint the check accepts. Only the refused endpoint's keys move,
/// they spread over the others in proportion to their weights, the same
/// key always goes to the same stand-in, and the keys come back when the
/// endpoint does. (Probing the next entries instead would be cheaper but
/// uneven: neighbouring entries of a Maglev table are not independent.)
#[derive(Clone)]
pub struct Maglev {
    /// The slot of every entry; empty when there are no endpoints.
    table: Box<[u32]>,
    table_size: usize,
    slots: usize,
}

// ===== impl Maglev =====

impl Maglev {
    /// The default table size, Envoy's: a prime, large enough for an even
    /// spread over hundreds of endpoints (256 KiB).
    pub const DEFAULT_TABLE_SIZE: usize = 65_537;

    /// The largest table size accepted (Envoy's limit).
    pub const MAX_TABLE_SIZE: usize = 5_000_011;

    /// A table of [`DEFAULT_TABLE_SIZE`](Self::DEFAULT_TABLE_SIZE) over the
    /// endpoints, given in slot order as `(id, weight)`.
    ///
    /// With no endpoints the table is empty and every lookup answers `None`.
    pub fn new<'a>(
        endpoints: impl IntoIterator<Item = (&'a EndpointId, Weight)>,
    ) -> Result<Self, MaglevError> {
        Self::with_table_size(endpoints, Self::DEFAULT_TABLE_SIZE)
    }

    /// A table of `table_size` entries: a prime, larger than the number of
    /// endpoints, at most [`MAX_TABLE_SIZE`](Self::MAX_TABLE_SIZE).
    ///
    /// Costs O(M log M) time for a table of `M` entries (expected; 3 to
    /// 5 ms for the default size and 16 to 1 000 endpoints, so rebuild on
    /// membership changes, not per request) and 4 bytes per entry.
    pub fn with_table_size<'a>(
        endpoints: impl IntoIterator<Item = (&'a EndpointId, Weight)>,
        table_size: usize,
    ) -> Result<Self, MaglevError> {
        if table_size > Self::MAX_TABLE_SIZE {
            return Err(MaglevError::TooLarge(table_size));
        }
        if !is_prime(table_size) {
            return Err(MaglevError::NotPrime(table_size));
        }
        let endpoints: Vec<(&EndpointId, Weight)> = endpoints.into_iter().collect();
        if endpoints.len() >= table_size {
            return Err(MaglevError::TooSmall {
                table_size,
                endpoints: endpoints.len(),
            });
        }
        let table = if endpoints.is_empty() {
            Box::default()
        } else {
            build(&endpoints, table_size)
        };
        Ok(Self {
            table,
            table_size,
            slots: endpoints.len(),
        })
    }

    /// The slot a key goes to, or `None` when there are no endpoints.
    ///
    /// `key_hash` should be a hash of the key that is the same in every
    /// client, such as [`stable_hash`] of its bytes.
    #[inline]
    pub fn lookup(&self, key_hash: u64) -> Option<usize> {
        // The first probe of `lookup_where` is the key's own entry.
        self.lookup_where(key_hash, |_| true)
    }

    /// The slot a key goes to among those `eligible` accepts, or `None`
    /// when it accepts none.
    ///
    /// Tries the key's own entry, then up to 63 more entries chosen by
    /// rehashing the key with the attempt number (as Envoy's Maglev rehashes
    /// on retries), until `eligible` accepts one; then scans the slots in
    /// order from the key's own, so the answer is `None` only if every slot
    /// is refused. For a given key and set of eligible slots the answer is
    /// always the same, and the keys of a refused slot spread over the
    /// others in proportion to their entries (their weights).
    pub fn lookup_where(&self, key_hash: u64, mut eligible: impl FnMut(usize) -> bool) -> Option<usize> {
        let len = self.table.len();
        if len == 0 {
            return None;
        }
        for attempt in 0..PROBES as u64 {
            // Attempt 0 is the plain lookup; the golden-ratio step makes the
            // rehashed keys unrelated to each other once mixed.
            let probe = key_hash.wrapping_add(attempt.wrapping_mul(0x9E37_79B9_7F4A_7C15));
            let slot = self.table[scale(mix64(probe), len)] as usize;
            if eligible(slot) {
                return Some(slot);
            }
        }
        let own = self.table[scale(mix64(key_hash), len)] as usize;
        (1..=self.slots)
            .map(|k| (own + k) % self.slots)
            .find(|&slot| eligible(slot))
    }

    /// The number of entries of the table (even when there are no
    /// endpoints and no entries are filled).
    pub fn table_size(&self) -> usize {
        self.table_size
    }

    /// The number of endpoints (slots).
    pub fn len(&self) -> usize {
        self.slots
    }

    /// Whether there are no endpoints.
    pub fn is_empty(&self) -> bool {
        self.slots == 0
    }

    /// The slot of every table entry, in table order; empty when there are
    /// no endpoints. For diagnostics and tests (each slot's share of keys
    /// is its share of entries).
    pub fn entries(&self) -> impl ExactSizeIterator<Item = usize> + '_ {
        self.table.iter().map(|&slot| slot as usize)
    }
}

impl fmt::Debug for Maglev {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Maglev")
            .field("table_size", &self.table_size)
            .field("slots", &self.slots)
            .finish()
    }
}

/// One endpoint's walk through the table while it is built.
struct Walk {
    /// The entry it claims next, if free: `offset + j·skip mod M`.
    position: u64,
    skip: u64,
    weight: u64,
    /// Entries claimed so far.
    claimed: u64,
}

/// Fills a table of `size` entries (a prime above `endpoints.len() > 0`).
///
/// Envoy's loop goes round after round over every endpoint, and an
/// endpoint claims an entry in round `r` if `r·w ≥ claimed·w_max` (at most
/// once per round). Here each endpoint's next claiming round is computed
/// directly and kept in a heap ordered by (round, rank by id), which visits
/// the endpoints in exactly the loop's order (over endpoints sorted by id)
/// without the rounds where light endpoints sit out.
fn build(endpoints: &[(&EndpointId, Weight)], size: usize) -> Box<[u32]> {
    let m = size as u64;
    let mut walks: Vec<Walk> = endpoints
        .iter()
        .map(|(id, weight)| {
            let bytes = id.as_str().as_bytes();
            Walk {
                position: stable_hash(bytes, 0) % m,
                skip: stable_hash(bytes, 1) % (m - 1) + 1,
                weight: u64::from(weight.get()),
                claimed: 0,
            }
        })
        .collect();
    let max_weight = walks.iter().map(|w| w.weight).max().unwrap_or(1);
    // Turns go in id order, not slot order, so the table maps keys to the
    // same ids whatever order each client keeps its slots in.
    let mut by_id: Vec<u32> = (0..endpoints.len() as u32).collect();
    by_id.sort_by(|&a, &b| endpoints[a as usize].0.cmp(endpoints[b as usize].0));
    let mut table = vec![EMPTY; size].into_boxed_slice();
    // Round 1 for everyone; the heap holds (round, turn), turn = rank by id.
    let mut turns: BinaryHeap<Reverse<(u64, u32)>> =
        (0..by_id.len() as u32).map(|t| Reverse((1, t))).collect();
    let mut filled = 0;
    while filled < size {
        let Some(Reverse((round, turn))) = turns.pop() else {
            break;
        };
        let slot = by_id[turn as usize];
        let walk = &mut walks[slot as usize];
        // The size is prime and 0 < skip < size, so the walk visits every
        // entry once per `size` steps: a free one is always found.
        loop {
            let entry = walk.position as usize;
            walk.position += walk.skip;
            if walk.position >= m {
                walk.position -= m;
            }
            if table[entry] == EMPTY {
                table[entry] = slot;
                break;
            }
        }
        filled += 1;
        walk.claimed += 1;
        let due = (walk.claimed * max_weight).div_ceil(walk.weight);
        turns.push(Reverse((due.max(round + 1), turn)));
    }
    debug_assert!(table.iter().all(|&s| s != EMPTY), "every entry is claimed");
    table
}

/// Whether `n` is prime, by trial division (`n` is at most
/// `MAX_TABLE_SIZE`, so at most ~1 100 divisions).
fn is_prime(n: usize) -> bool {
    if n < 4 {
        return n >= 2;
    }
    if n.is_multiple_of(2) {
        return false;
    }
    let mut d = 3;
    while d * d <= n {
        if n.is_multiple_of(d) {
            return false;
        }
        d += 2;
    }
    true
}

// ===== the balancer's Maglev =====

/// [`Algorithm::Maglev`](crate::balance::Algorithm::Maglev): a [`Maglev`]
/// table over the balancer's members (their ids and discovery weights),
/// looked up with the request's key hash.
///
/// The table is rebuilt only when membership or a discovery weight changes
/// (O(M log M): 3 to 5 ms at the default 65 537 entries). Slow start does
/// not apply: ramping a weight would move keys at every step (Envoy's slow
/// start likewise covers only round robin and least-request). A key whose
/// endpoint is not ready, or ejected outside panic mode, goes elsewhere by
/// [`Maglev::lookup_where`] (the same stand-in every time, in proportion to
/// weight) and comes back when its endpoint does. Requests without a key,
/// and every request while no table can be built (as many endpoints as
/// table entries or more), go to P2C over requests in flight.
#[derive(Debug)]
pub(crate) struct MaglevPicker {
    table_size: usize,
    /// `None` when the last build failed (too many endpoints).
    table: Option<Maglev>,
    /// The [`ReadyView::hash_version`] the table was built for.
    built_for: Option<u64>,
    /// P2C for requests without a key.
    fallback: Sampler,
    /// The balancer's name, for tracing.
    name: Arc<str>,
}

impl MaglevPicker {
    /// A picker with a validated table size.
    pub(crate) fn new(table_size: usize, name: Arc<str>) -> Self {
        Self {
            table_size,
            table: None,
            built_for: None,
            fallback: Sampler::default(),
            name,
        }
    }

    /// The ready position for the key `key` returns, or P2C's pick when
    /// there is no key or no table. Out of line: inlined into the
    /// balancer's `call`, it lengthened the P2C path (the default) by a
    /// tenth, and saved Maglev nothing measurable.
    #[inline(never)]
    pub(crate) fn pick<S>(
        &mut self,
        ready: &ReadyView<'_, S>,
        key: impl FnOnce() -> Option<u64>,
        rng: &mut Rng,
        now: &mut Now<'_>,
    ) -> Option<usize> {
        if self.built_for != Some(ready.hash_version) {
            self.rebuild(ready);
        }
        if let Some(table) = &self.table
            && let Some(hash) = key()
        {
            let mut chosen = None;
            let found = table.lookup_where(hash, |member| {
                chosen = ready.member_position(member);
                chosen.is_some()
            });
            if found.is_some() {
                return chosen;
            }
        }
        p2c(&mut self.fallback, ready, rng, now)
    }

    fn rebuild<S>(&mut self, ready: &ReadyView<'_, S>) {
        let members = ready.members.iter().map(|m| (&m.id, m.weight));
        let table = Maglev::with_table_size(members, self.table_size).inspect_err(|error| {
            tracing::warn!(
                balancer = &*self.name,
                %error,
                endpoints = ready.members.len(),
                "no Maglev table: requests go to P2C over requests in flight"
            );
        });
        self.table = table.ok();
        self.built_for = Some(ready.hash_version);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn primes() {
        let small: Vec<usize> = (0..30).filter(|&n| is_prime(n)).collect();
        assert_eq!(small, [2, 3, 5, 7, 11, 13, 17, 19, 23, 29]);
        assert!(is_prime(65_537));
        assert!(is_prime(Maglev::MAX_TABLE_SIZE));
        assert!(!is_prime(65_535));
        assert!(!is_prime(25));
    }

    /// Envoy's loop, literally: rounds over every endpoint.
    fn envoy(endpoints: &[(&EndpointId, Weight)], size: usize) -> Vec<u32> {
        let m = size as u64;
        let max = endpoints.iter().map(|(_, w)| u64::from(w.get())).max().unwrap();
        let mut entries: Vec<(u64, u64, u64)> = endpoints
            .iter()
            .map(|(id, _)| {
                let b = id.as_str().as_bytes();
                (stable_hash(b, 0) % m, stable_hash(b, 1) % (m - 1) + 1, 0)
            })
            .collect();
        let mut targets = vec![0_u64; endpoints.len()];
        let mut table = vec![EMPTY; size];
        let mut filled = 0;
        let mut round = 1_u64;
        while filled < size {
            for (i, (_, w)) in endpoints.iter().enumerate() {
                if filled == size {
                    break;
                }
                if round * u64::from(w.get()) < targets[i] {
                    continue;
                }
                targets[i] += max;
                let (offset, skip, next) = &mut entries[i];
                loop {
                    let c = ((*offset + *skip * *next) % m) as usize;
                    *next += 1;
                    if table[c] == EMPTY {
                        table[c] = i as u32;
                        break;
                    }
                }
                filled += 1;
            }
            round += 1;
        }
        table
    }

    #[test]
    fn heap_build_equals_envoys_rounds() {
        let ids: Vec<EndpointId> = (0..7).map(|i| EndpointId::from(format!("e{i}"))).collect();
        let weights = [3, 1, 7, 7, 2, 1, 5];
        let endpoints: Vec<_> = ids
            .iter()
            .zip(weights)
            .map(|(id, w)| (id, Weight::new(w).unwrap()))
            .collect();
        for size in [11, 101, 1_009] {
            assert_eq!(
                &*build(&endpoints, size),
                envoy(&endpoints, size).as_slice(),
                "size {size}"
            );
        }
    }
}

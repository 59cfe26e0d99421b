//! One shard of the memory store: its records, its expiry queue and its
//! share of the bounds, changed only under the shard's lock.
//!
//! Expiry is lazy, with no background task: a record past its expiry is
//! treated as absent by every operation, and each claim first frees the
//! records whose entries have come up at the front of the shard's expiry
//! queue (`expiry.rs`).

use std::{
    collections::{HashMap, hash_map::Entry},
    hash::{BuildHasherDefault, Hash, Hasher},
    mem::size_of,
    time::Duration,
};

use tokio::time::Instant;

use super::expiry::{Expiry, ExpiryQueue};
use crate::idempotency::{
    Capacity, Claim, FencingToken, Fingerprint, SavedResponse, StoreError, token::RecordName,
};

/// Bytes a record costs besides its name and response: the map entry, its
/// expiry queue entry and the name's reference counts. Counted against
/// `max_bytes`, so that the bound holds for many small records too.
pub(crate) const RECORD_OVERHEAD: usize =
    size_of::<Slot>() + size_of::<Record>() + size_of::<Expiry>() + 2 * size_of::<usize>();

/// A shard's share of the store's bounds, and the retention.
#[derive(Debug, Clone, Copy)]
pub(super) struct Limits {
    pub(super) max_records: usize,
    pub(super) max_bytes: usize,
    pub(super) retention: Duration,
}

/// A record's name with its hash, computed once per operation with the
/// store's keyed hasher; the map hashes the slot by that number alone.
#[derive(Clone, PartialEq, Eq)]
pub(super) struct Slot {
    pub(super) hash: u64,
    pub(super) name: RecordName,
}

impl Hash for Slot {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

/// Hands the map the slot's precomputed hash: the key was hashed once
/// already (with `RandomState`, so clients cannot aim keys at one bucket).
#[derive(Default)]
pub(super) struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is ever called (by `Slot::hash`); fold anything
        // else in rather than lose it.
        for &byte in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(byte);
        }
    }

    fn write_u64(&mut self, hash: u64) {
        self.0 = hash;
    }
}

#[derive(Debug)]
enum State {
    InProgress { lease_until: Instant },
    // Inline, not boxed: probes compare only the slot at the front of an
    // entry, so a larger entry costs them nothing, while a box costs every
    // record one more allocation, a free on another thread when it
    // expires, and a cache miss on the way (see benches/README.md).
    Completed(SavedResponse),
}

#[derive(Debug)]
struct Record {
    fingerprint: Fingerprint,
    generation: u64,
    /// When the record is forgotten. While in progress, never before its
    /// lease ends, so a running handler's record is never freed.
    expires_at: Instant,
    state: State,
    /// Bytes counted against the shard's bound for this record.
    bytes: usize,
    /// Sequence number of the record's entry in the expiry queue.
    expiry: u64,
}

type Records = HashMap<Slot, Record, BuildHasherDefault<PassThrough>>;

/// One shard. Generations are counted per shard: a name always lands in
/// the same shard, so no name ever sees a generation twice.
#[derive(Default)]
pub(super) struct Shard {
    records: Records,
    expiries: ExpiryQueue,
    bytes: usize,
    last_generation: u64,
}

// ===== impl Shard =====

impl Shard {
    pub(super) fn claim(
        &mut self,
        slot: Slot,
        fingerprint: Fingerprint,
        lease: Duration,
        now: Instant,
        limits: &Limits,
    ) -> Result<Claim, StoreError> {
        self.reap(now);
        let (len, bytes) = (self.records.len(), self.bytes);
        let fresh_bytes = RECORD_OVERHEAD + slot.name.len();
        // Lease is at most the retention (checked by the store), so the
        // record outlives its lease and the queue stays ordered.
        let expires_at = now + limits.retention;
        let fresh = |generation| Record {
            fingerprint,
            generation,
            expires_at,
            state: State::InProgress {
                lease_until: now + lease,
            },
            bytes: fresh_bytes,
            expiry: 0,
        };
        let (record, slot) = match self.records.entry(slot) {
            Entry::Occupied(mut entry) if entry.get().expires_at > now => {
                let record = entry.get_mut();
                if record.fingerprint != fingerprint {
                    return Ok(Claim::Mismatch);
                }
                match &record.state {
                    State::Completed(response) => {
                        return Ok(Claim::Completed(SavedResponse::clone(response)));
                    }
                    State::InProgress { lease_until } if *lease_until > now => {
                        return Ok(Claim::InProgress {
                            retry_after: *lease_until - now,
                        });
                    }
                    // The holder's lease ran out: this claim takes over
                    // under a new generation, which fences the old holder.
                    State::InProgress { .. } => {
                        self.last_generation += 1;
                        let bytes = record.bytes;
                        *record = Record {
                            bytes,
                            ..fresh(self.last_generation)
                        };
                    }
                }
                let slot = entry.key().clone();
                (entry.into_mut(), slot)
            }
            // Expired but not freed yet: the name is free, reuse the slot.
            Entry::Occupied(mut entry) => {
                self.last_generation += 1;
                self.bytes = self.bytes - entry.get().bytes + fresh_bytes;
                *entry.get_mut() = fresh(self.last_generation);
                let slot = entry.key().clone();
                (entry.into_mut(), slot)
            }
            Entry::Vacant(entry) => {
                if len >= limits.max_records {
                    return Err(full(&self.expiries, Capacity::Records, limits.max_records, now));
                }
                if bytes + fresh_bytes > limits.max_bytes {
                    return Err(full(&self.expiries, Capacity::Bytes, limits.max_bytes, now));
                }
                self.last_generation += 1;
                self.bytes += fresh_bytes;
                let slot = entry.key().clone();
                (entry.insert(fresh(self.last_generation)), slot)
            }
        };
        let generation = record.generation;
        let token = FencingToken::from_name(slot.name.clone(), generation);
        // A re-claimed or reused record's old entry stays behind, stale
        // (other generation); `compact_if_sparse` drops such entries.
        record.expiry = self.expiries.push(Expiry {
            at: expires_at,
            slot,
            generation,
        });
        self.compact_if_sparse();
        Ok(Claim::Acquired { token })
    }

    pub(super) fn complete(
        &mut self,
        slot: &Slot,
        generation: u64,
        response: SavedResponse,
        now: Instant,
        limits: &Limits,
    ) -> Result<(), StoreError> {
        let size = response.size();
        if self.bytes + size > limits.max_bytes {
            // Check the token first: a stale holder hears that it is stale.
            held(&mut self.records, slot, generation, now)?;
            self.reap(now);
            if self.bytes + size > limits.max_bytes {
                return Err(full(&self.expiries, Capacity::Bytes, limits.max_bytes, now));
            }
        }
        // Reaping never frees a record in progress within its expiry.
        let record = held(&mut self.records, slot, generation, now)?;
        record.state = State::Completed(response);
        record.expires_at = now + limits.retention;
        record.bytes += size;
        self.bytes += size;
        // Move the record's entry to its new deadline rather than push a
        // second one: one entry per record, one lookup when it comes up.
        if let Some(entry) = self.expiries.get_mut(record.expiry) {
            debug_assert!(entry.generation == generation && entry.slot == *slot);
            entry.at = record.expires_at;
        }
        Ok(())
    }

    pub(super) fn release(&mut self, slot: &Slot, generation: u64, now: Instant) -> Result<(), StoreError> {
        held(&mut self.records, slot, generation, now)?;
        if let Some(record) = self.records.remove(slot) {
            self.bytes -= record.bytes;
        }
        self.compact_if_sparse();
        Ok(())
    }

    pub(super) fn renew(
        &mut self,
        slot: &Slot,
        generation: u64,
        lease: Duration,
        now: Instant,
    ) -> Result<(), StoreError> {
        let record = held(&mut self.records, slot, generation, now)?;
        let lease_until = now + lease;
        record.state = State::InProgress { lease_until };
        // A record in progress lives at least until its lease ends; its
        // queue entry is moved when it comes up (see `reap`).
        record.expires_at = record.expires_at.max(lease_until);
        Ok(())
    }

    /// Frees every expired record whatever the queue order, returning how
    /// many.
    pub(super) fn purge(&mut self, now: Instant) -> usize {
        let before = self.records.len();
        let mut freed = 0;
        self.records.retain(|_, record| {
            let keep = record.expires_at > now;
            if !keep {
                freed += record.bytes;
            }
            keep
        });
        self.bytes -= freed;
        self.compact();
        before - self.records.len()
    }

    pub(super) fn len(&self) -> usize {
        self.records.len()
    }

    pub(super) fn bytes(&self) -> usize {
        self.bytes
    }

    #[cfg(test)]
    pub(super) fn queue_len(&self) -> usize {
        self.expiries.len()
    }

    /// Frees the records whose entries have come up at the queue's front.
    fn reap(&mut self, now: Instant) {
        while let Some(entry) = self.expiries.pop_due(now) {
            let Some(record) = self.records.get_mut(&entry.slot) else {
                continue;
            };
            if record.generation != entry.generation {
                continue; // a newer claim of the same name has its own entry
            }
            if record.expires_at <= now {
                self.bytes -= record.bytes;
                self.records.remove(&entry.slot);
            } else {
                // A lease renewed past the claim's retention, or a
                // completion after later claims: come back at the
                // record's deadline. Out of order, this delays freeing
                // the records behind it by at most a lease.
                record.expiry = self.expiries.push(Expiry {
                    at: record.expires_at,
                    ..entry
                });
            }
        }
    }

    /// Drops the entries of records released, re-claimed or reused once
    /// they outnumber the records, so that a client that claims and
    /// releases in a loop cannot grow the queue: amortised O(1).
    fn compact_if_sparse(&mut self) {
        if self.expiries.len() > 2 * self.records.len() + 64 {
            self.compact();
        }
    }

    fn compact(&mut self) {
        let records = &mut self.records;
        let current = |records: &Records, entry: &Expiry, seq: u64| {
            records
                .get(&entry.slot)
                .is_some_and(|record| record.generation == entry.generation && record.expiry == seq)
        };
        let mut kept = Vec::new();
        self.expiries.compact(
            |entry, seq| current(records, entry, seq),
            |entry, seq| kept.push((entry.slot.clone(), seq)),
        );
        for (slot, seq) in kept {
            if let Some(record) = records.get_mut(&slot) {
                record.expiry = seq;
            }
        }
    }
}

/// The error of a full shard, with the time until its next entry comes up.
fn full(expiries: &ExpiryQueue, capacity: Capacity, limit: usize, now: Instant) -> StoreError {
    tracing::debug!(?capacity, limit, "idempotency memory store shard full");
    StoreError::Full {
        capacity,
        limit,
        retry_after: expiries.next_at().map(|at| at.saturating_duration_since(now)),
    }
}

/// The record `slot` if `generation` holds it: current generation, in
/// progress and not expired. Otherwise the token is stale.
fn held<'a>(
    records: &'a mut Records,
    slot: &Slot,
    generation: u64,
    now: Instant,
) -> Result<&'a mut Record, StoreError> {
    match records.get_mut(slot) {
        Some(record)
            if record.generation == generation
                && record.expires_at > now
                && matches!(record.state, State::InProgress { .. }) =>
        {
            Ok(record)
        }
        _ => Err(StoreError::StaleToken),
    }
}

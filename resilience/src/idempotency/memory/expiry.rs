//! A shard's expiry queue: which record comes up for freeing next.
//!
//! Entries are pushed with "now plus retention", so the queue is in
//! deadline order and the shard frees expired records from its front in
//! amortised O(1) per claim. Each record has one entry, found again by its
//! sequence number when a completion moves the record's deadline (to its
//! completion plus retention: later than the claim's by the handler's run
//! time, which is the only disorder besides renewals, see `Shard::reap`).
//! Released and re-claimed records leave entries behind; `compact` drops
//! them when they outnumber the live ones.

use std::collections::VecDeque;

use tokio::time::Instant;

use super::shard::Slot;

/// When `slot`'s record at `generation` comes up for freeing.
pub(super) struct Expiry {
    pub(super) at: Instant,
    pub(super) slot: Slot,
    pub(super) generation: u64,
}

/// The queue, with the sequence number of its front entry.
#[derive(Default)]
pub(super) struct ExpiryQueue {
    entries: VecDeque<Expiry>,
    /// Sequence number of `entries[0]`: entries keep their number while
    /// they are in the queue, so a record can find its own.
    head: u64,
}

impl ExpiryQueue {
    /// Appends an entry and returns its sequence number.
    pub(super) fn push(&mut self, entry: Expiry) -> u64 {
        let seq = self.head + self.entries.len() as u64;
        self.entries.push_back(entry);
        seq
    }

    /// Removes and returns the front entry if it is due at `now`.
    pub(super) fn pop_due(&mut self, now: Instant) -> Option<Expiry> {
        if self.entries.front()?.at > now {
            return None;
        }
        self.head += 1;
        self.entries.pop_front()
    }

    /// The entry numbered `seq`, if it is still in the queue.
    pub(super) fn get_mut(&mut self, seq: u64) -> Option<&mut Expiry> {
        let index = usize::try_from(seq.checked_sub(self.head)?).ok()?;
        self.entries.get_mut(index)
    }

    /// When the front entry comes up.
    pub(super) fn next_at(&self) -> Option<Instant> {
        self.entries.front().map(|entry| entry.at)
    }

    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Keeps the entries for which `keep` returns true, in order, and calls
    /// `renumber` with each kept entry's new sequence number.
    pub(super) fn compact(
        &mut self,
        mut keep: impl FnMut(&Expiry, u64) -> bool,
        mut renumber: impl FnMut(&Expiry, u64),
    ) {
        let head = self.head;
        let mut index = 0;
        self.entries.retain(|entry| {
            let kept = keep(entry, head + index);
            index += 1;
            kept
        });
        for (seq, entry) in (head..).zip(&self.entries) {
            renumber(entry, seq);
        }
    }
}

//! What a permit remembers between admission and the outcome: a [`Ticket`].
//!
//! Admission returns a ticket in two registers, and the permits (and the
//! `tower` service's response future) carry it until the outcome is
//! recorded. A rejection is encoded as a ticket too, so the admitted path
//! never goes through memory. The word's layout: the state code in the low
//! byte ([`SETTLED`] once there is nothing more to record, [`REJECTED`] for a
//! rejection, whose kind is in the second byte), the clean-at-admission flag
//! in bit 16 and the thread's seed in bits 24..32 (see
//! [`Ticket::mark_clean`]), the epoch in the high 32 bits (as in a
//! [`StateWord`]).

use std::time::Duration;

use super::state::{BreakerState, StateWord};
use crate::error::CircuitRejection;

/// What a permit remembers: the state and epoch it was admitted in.
///
/// Two whole words, so that building one on the fast path and reading it
/// back never mixes narrow stores with wide loads (which stalls store
/// forwarding and cost more than the rest of the fast path together).
#[derive(Debug, Clone, Copy)]
pub(super) struct Ticket {
    /// The [`StateWord`] it was admitted in; the state byte is `SETTLED`
    /// once recorded, and for calls that record nothing (disabled), and
    /// `REJECTED` for a rejection (which never becomes a permit).
    word: u64,
    /// When the call started, in nanoseconds since the breaker's origin;
    /// read only with slow-call detection (0 without).
    pub(super) start: u64,
}

/// The state byte of a ticket with nothing (more) to record.
const SETTLED: u64 = 0xff;
/// The state byte of a rejection (see [`Ticket::rejection`]).
const REJECTED: u64 = 0xfe;
/// Set on a service call admitted while its thread's window was clean (see
/// [`Ticket::mark_clean`]); the thread's seed is in bits 24..32.
const CLEAN_AT_ADMISSION: u64 = 1 << 16;

impl Ticket {
    #[inline(always)]
    pub(super) fn new(word: StateWord, start: u64) -> Self {
        Self::from_packed(word.pack(), start)
    }

    /// A ticket for the packed [`StateWord`] `word`.
    #[inline(always)]
    pub(super) fn from_packed(word: u64, start: u64) -> Self {
        Self { word, start }
    }

    /// True when the packed [`StateWord`] `word` is of a closed or
    /// metrics-only breaker, whose calls are recorded in the window.
    #[inline(always)]
    pub(super) fn records_in_window(word: u64) -> bool {
        Self::from_packed(word, 0).in_window()
    }

    /// A rejection, carried in a ticket so that admission returns two words
    /// in registers: the kind in the word's second byte, the remaining open
    /// time in `start` (`u64::MAX` when unknown).
    #[inline(always)]
    pub(super) fn rejection(kind: CircuitRejection, remaining: Option<Duration>) -> Self {
        let kind = match kind {
            CircuitRejection::Open => 0,
            CircuitRejection::HalfOpenFull => 1,
            _ => 2,
        };
        Self {
            word: (kind << 8) | REJECTED,
            start: remaining.map_or(u64::MAX, |r| u64::try_from(r.as_nanos()).unwrap_or(u64::MAX - 1)),
        }
    }

    #[inline(always)]
    pub(super) fn is_rejection(&self) -> bool {
        self.word & 0xff == REJECTED
    }

    /// The kind and remaining time of a rejection ticket.
    pub(super) fn rejected(&self) -> (CircuitRejection, Option<Duration>) {
        let kind = match (self.word >> 8) & 0xff {
            0 => CircuitRejection::Open,
            1 => CircuitRejection::HalfOpenFull,
            _ => CircuitRejection::ForcedOpen,
        };
        let remaining = (self.start != u64::MAX).then(|| Duration::from_nanos(self.start));
        (kind, remaining)
    }

    #[inline(always)]
    pub(super) fn settled(epoch: u32) -> Self {
        Self {
            word: (u64::from(epoch) << 32) | SETTLED,
            start: 0,
        }
    }

    #[inline(always)]
    pub(super) fn epoch(&self) -> u32 {
        (self.word >> 32) as u32
    }

    #[inline(always)]
    pub(super) fn admitted_in(&self) -> Option<BreakerState> {
        match self.word & 0xff {
            SETTLED => None,
            code => Some(BreakerState::from_code(code as u8)),
        }
    }

    /// True for a closed or metrics-only call, recorded in the window.
    #[inline(always)]
    pub(super) fn in_window(&self) -> bool {
        let code = (self.word & 0xff) as u8;
        code == BreakerState::Closed.code() || code == BreakerState::MetricsOnly.code()
    }

    /// Marks a call admitted while the window of the shard of the thread with
    /// `seed` was clean (full, no failure, no slow call), with no failure
    /// streak counted and no slow-call detection. A success of such a call
    /// completed on a thread with the same seed needs no recording: it would
    /// go into that same window, where it can only push out one of the
    /// successes that made it clean, changing no count. (Only if a whole
    /// window of other outcomes were recorded while the call ran would the
    /// oldest entry be a newer one; the success is then not counted, which
    /// keeps a failure in the window for at most one call longer.)
    #[inline(always)]
    pub(super) fn mark_clean(&mut self, seed: usize) {
        self.word |= CLEAN_AT_ADMISSION | (((seed as u64) & 0xff) << 24);
    }

    /// Whether a success of this call, completed on the thread with `seed`,
    /// needs no recording (see [`mark_clean`](Self::mark_clean)).
    #[inline(always)]
    pub(super) fn success_needs_no_record(&self, seed: usize) -> bool {
        self.word & CLEAN_AT_ADMISSION != 0 && ((self.word >> 24) & 0xff) as usize == seed
    }

    /// The state it was admitted in; nothing is left to record afterwards.
    #[inline(always)]
    pub(super) fn settle(&mut self) -> Option<BreakerState> {
        let admitted_in = self.admitted_in();
        self.word |= SETTLED;
        admitted_in
    }
}

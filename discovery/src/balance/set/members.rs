//! The member list: every known endpoint, whatever its stage, numbered the
//! way table pickers and the outlier detector see them, with the weights
//! tables pick with (slow start ramps them).
//!
//! Membership changes only with discovery (an insert or a remove), so the
//! tables built over members are rebuilt rarely; a member's `ready` field
//! follows its endpoint in and out of the ready list, so readiness never
//! rebuilds a table.

use tokio::time::Instant;

use super::{EndpointSet, Stage};
use crate::{EndpointId, Weight};

/// A member of the set: one per known endpoint, in whatever stage, in the
/// order table pickers and the outlier detector number them.
#[derive(Debug)]
pub(crate) struct Member {
    /// The entry's key.
    pub(crate) key: u32,
    /// The endpoint's id (Maglev hashes it).
    pub(crate) id: EndpointId,
    /// The endpoint's weight, as discovery says (Maglev's).
    pub(crate) weight: Weight,
    /// The weight ramped by slow start (round robin's).
    pub(crate) table_weight: Weight,
    /// Its position in the ready list, or [`NOT_READY`].
    pub(crate) ready: u32,
}

/// Every known endpoint, in the order table pickers and the outlier
/// detector number them, and what its tables were built for.
#[derive(Debug, Default)]
pub(crate) struct Members {
    /// One per known endpoint.
    pub(crate) list: Vec<Member>,
    /// Bumped on every change of membership or of a table weight.
    pub(crate) version: u64,
    /// Bumped on every change of membership or of a discovery weight.
    pub(crate) hash_version: u64,
}

/// [`Member::ready`] of an endpoint that is not ready.
pub(crate) const NOT_READY: u32 = u32::MAX;

/// Where an endpoint is in its slow start.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Ramp {
    /// Full weight: slow start is off, the endpoint was in the first
    /// membership, or its ramp is over.
    Full,
    /// Ramps from when it is first ready.
    Waiting,
    /// Ramping since it was first ready.
    Since(Instant),
}

impl<S, F> EndpointSet<S, F> {
    /// Takes the entry out of the member list (it already left its stage).
    pub(super) fn remove_member(&mut self, key: u32) {
        let Some(index) = self.entries[key as usize].as_ref().map(|e| e.member as usize) else {
            return;
        };
        if index >= self.members.list.len() {
            return;
        }
        self.members.list.swap_remove(index);
        if let Some(moved) = self.members.list.get(index)
            && let Some(entry) = self.entries[moved.key as usize].as_mut()
        {
            entry.member = index as u32;
        }
        self.ramping.retain(|&k| k != key);
        self.members_changed(true);
    }

    /// Membership (`true`) or only a table weight changed: tables rebuild
    /// at the next pick, the detector learns membership in the next pass.
    pub(super) fn members_changed(&mut self, membership: bool) {
        self.members.version += 1;
        if membership {
            self.members.hash_version += 1;
            self.members_dirty = true;
        }
    }

    /// The ramp factor an entry's table weight has now.
    pub(super) fn factor(&self, key: u32) -> f64 {
        match self
            .entries
            .get(key as usize)
            .and_then(Option::as_ref)
            .map(|e| e.ramp)
        {
            Some(Ramp::Since(joined)) => self.health.ramp(joined, Instant::now()).0,
            _ => 1.0,
        }
    }

    /// Sets an entry's table weight from its weight and ramp factor, in
    /// its member and (if ready in `stage`) its slot and the weight counts.
    pub(super) fn set_table_weight(&mut self, key: u32, weight: Weight, factor: f64, stage: Stage) {
        let table_weight = self.health.table_weight(weight, factor);
        let Some(entry) = self.entries[key as usize].as_mut() else {
            return;
        };
        let old = std::mem::replace(&mut entry.table_weight, table_weight);
        let member = entry.member as usize;
        if old == table_weight {
            return;
        }
        if let Some(member) = self.members.list.get_mut(member) {
            member.table_weight = table_weight;
        }
        self.members_changed(false);
        if let Stage::Ready(pos) = stage {
            self.count_weight(old.get(), false);
            self.count_weight(table_weight.get(), true);
            let inv_weight = self.health.inv_weight(table_weight);
            if let Some(slot) = self.ready.get_mut(pos as usize) {
                slot.inv_weight = inv_weight;
            }
            self.version += 1;
        }
    }
}

//! The ready index: what a pick reads, and nothing else.
//!
//! Two lists that point at each other:
//!
//! - **Members**: every known endpoint, whatever its stage, in the order
//!   table pickers (round robin, Maglev) and the outlier detector number
//!   them, with the weights tables pick with. Membership changes only with
//!   discovery, so tables built over members are rebuilt rarely.
//! - **Ready slots**: a dense list of the endpoints that can be called now,
//!   each holding everything a request touches (load, weight, pick
//!   counter, the service), so a pick is two random positions and two slot
//!   reads, the same for 16 endpoints as for 1,000.
//!
//! A member's `ready` is its slot's position (or [`NOT_READY`]) and a
//! slot's `member` its member's index; moving an endpoint in or out of
//! the ready list is a swap-remove or a push that fixes the one entry that
//! moved. Readiness therefore never rebuilds a table. Pickers get a
//! read-only [`ReadyView`].

use std::{sync::Arc, task::Waker};

use metrics::Counter;

use crate::balance::load::EndpointLoad;
use crate::{EndpointId, Weight};

/// A ready endpoint: everything a request touches, so a request never
/// reads the slab. While an endpoint is ready its slot owns the service.
pub(crate) struct ReadySlot<S> {
    /// The endpoint's load and health. While the slot exists this is the
    /// second long-lived strong reference (see [`EndpointLoad`]).
    pub(crate) load: Arc<EndpointLoad>,
    /// `1 / weight`, with the weight ramped by slow start.
    pub(crate) inv_weight: f64,
    /// Its member's index.
    pub(crate) member: u32,
    /// The `orch_balancer_picks_total` handle of this endpoint.
    pub(crate) picks: Counter,
    /// The service, reserved by a `Ready` from its `poll_ready`.
    pub(crate) service: S,
    /// What the service is polled with (see `EndpointWaker` in `wake.rs`).
    pub(crate) waker: Waker,
}

impl<S> ReadySlot<S> {
    /// Requests in flight to this endpoint: strong references beyond the
    /// entry's and this slot's.
    #[inline]
    pub(crate) fn in_flight(&self) -> usize {
        Arc::strong_count(&self.load) - 2
    }
}

/// One known endpoint in table order.
#[derive(Debug)]
pub(crate) struct Member {
    /// The entry's key in the slab.
    pub(crate) key: u32,
    /// The endpoint's id (Maglev hashes it).
    pub(crate) id: EndpointId,
    /// The endpoint's weight, as discovery says (Maglev's).
    pub(crate) weight: Weight,
    /// The weight ramped by slow start (round robin's and P2C's).
    pub(crate) table_weight: Weight,
    /// Its position in the ready list, or [`NOT_READY`].
    pub(crate) ready: u32,
    /// Ejected by the outlier detector.
    pub(crate) ejected: bool,
}

/// [`Member::ready`] of an endpoint that is not ready.
pub(crate) const NOT_READY: u32 = u32::MAX;

/// The members and the ready slots. See the module docs.
pub(crate) struct ReadyIndex<S> {
    members: Vec<Member>,
    slots: Vec<ReadySlot<S>>,
    /// Bumped on every change of the ready list or of a ready weight.
    version: u64,
    /// Bumped on every change of membership or of a table weight.
    members_version: u64,
    /// Bumped on every change of membership or of a discovery weight.
    hash_version: u64,
    /// Membership changed since the outlier detector was told.
    members_dirty: bool,
}

impl<S> Default for ReadyIndex<S> {
    fn default() -> Self {
        Self {
            members: Vec::new(),
            slots: Vec::new(),
            version: 0,
            members_version: 0,
            hash_version: 0,
            members_dirty: false,
        }
    }
}

impl<S> ReadyIndex<S> {
    /// Endpoints that can be picked now.
    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.slots.len()
    }

    /// Requests in flight to the ready endpoints.
    pub(crate) fn in_flight(&self) -> usize {
        self.slots.iter().map(ReadySlot::in_flight).sum()
    }

    /// Ready endpoints that are not ejected, and all ready endpoints.
    pub(crate) fn healthy_of_ready(&self) -> (usize, usize) {
        let members = &self.members;
        let ejected = self.slots.iter().filter(|s| members[s.member as usize].ejected);
        (self.slots.len() - ejected.count(), self.slots.len())
    }

    /// The read-only view a picker works over.
    #[inline]
    pub(crate) fn view(&self) -> ReadyView<'_, S> {
        ReadyView {
            slots: &self.slots,
            version: self.version,
            members: &self.members,
            members_version: self.members_version,
            hash_version: self.hash_version,
        }
    }

    #[inline]
    pub(crate) fn slot_mut(&mut self, pos: usize) -> Option<&mut ReadySlot<S>> {
        self.slots.get_mut(pos)
    }

    pub(crate) fn members(&self) -> &[Member] {
        &self.members
    }

    pub(crate) fn member(&self, index: u32) -> Option<&Member> {
        self.members.get(index as usize)
    }

    /// Whether membership changed since the last call.
    pub(crate) fn take_members_dirty(&mut self) -> bool {
        std::mem::take(&mut self.members_dirty)
    }

    // ===== membership =====

    /// Adds a member that is not ready; its index.
    pub(crate) fn add_member(
        &mut self,
        key: u32,
        id: EndpointId,
        weight: Weight,
        table_weight: Weight,
    ) -> u32 {
        self.members.push(Member {
            key,
            id,
            weight,
            table_weight,
            ready: NOT_READY,
            ejected: false,
        });
        self.membership_changed();
        (self.members.len() - 1) as u32
    }

    /// Removes member `index` (no longer ready); the key of the member
    /// that took its index, whose entry must learn it.
    pub(crate) fn remove_member(&mut self, index: u32) -> Option<u32> {
        let index = index as usize;
        if index >= self.members.len() {
            return None;
        }
        debug_assert_eq!(
            self.members[index].ready, NOT_READY,
            "a removed member left the ready list"
        );
        self.members.swap_remove(index);
        self.membership_changed();
        let moved = self.members.get(index)?;
        if let Some(slot) = self.slots.get_mut(moved.ready as usize) {
            slot.member = index as u32;
        }
        Some(moved.key)
    }

    fn membership_changed(&mut self) {
        self.members_version += 1;
        self.hash_version += 1;
        self.members_dirty = true;
    }

    /// A new discovery weight for member `index` (Maglev's tables follow).
    pub(crate) fn set_weight(&mut self, index: u32, weight: Weight) {
        if let Some(member) = self.members.get_mut(index as usize) {
            member.weight = weight;
            self.hash_version += 1;
        }
    }

    /// A new table weight for member `index`, with `inv_weight` its P2C
    /// form: round robin's cycle and (if ready) P2C's draws follow.
    pub(crate) fn set_table_weight(&mut self, index: u32, table_weight: Weight, inv_weight: f64) {
        let Some(member) = self.members.get_mut(index as usize) else {
            return;
        };
        let old = std::mem::replace(&mut member.table_weight, table_weight);
        if old == table_weight {
            return;
        }
        self.members_version += 1;
        if let Some(slot) = self.slots.get_mut(member.ready as usize) {
            slot.inv_weight = inv_weight;
            self.version += 1;
        }
    }

    /// Marks member `index` ejected or not.
    pub(crate) fn set_ejected(&mut self, index: u32, ejected: bool) {
        if let Some(member) = self.members.get_mut(index as usize) {
            member.ejected = ejected;
        }
    }

    // ===== the ready list =====

    /// Makes `slot`'s member ready.
    pub(crate) fn push(&mut self, slot: ReadySlot<S>) {
        let pos = self.slots.len() as u32;
        let Some(member) = self.members.get_mut(slot.member as usize) else {
            return;
        };
        member.ready = pos;
        self.slots.push(slot);
        self.version += 1;
    }

    /// Takes the slot at `pos` out of the ready list.
    pub(crate) fn remove(&mut self, pos: usize) -> ReadySlot<S> {
        let slot = self.slots.swap_remove(pos);
        if let Some(moved) = self.slots.get(pos) {
            self.members[moved.member as usize].ready = pos as u32;
        }
        if let Some(member) = self.members.get_mut(slot.member as usize) {
            member.ready = NOT_READY;
        }
        self.version += 1;
        slot
    }
}

/// The ready endpoints as a picker sees them: read-only, so a pick cannot
/// change what the balancer knows.
pub(crate) struct ReadyView<'a, S> {
    slots: &'a [ReadySlot<S>],
    /// Changes whenever the ready list or a ready weight changes.
    pub(crate) version: u64,
    /// Every known endpoint, in table order.
    pub(crate) members: &'a [Member],
    /// Changes whenever membership or a table weight changes.
    pub(crate) members_version: u64,
    /// Changes whenever membership or a discovery weight changes.
    pub(crate) hash_version: u64,
}

impl<S> ReadyView<'_, S> {
    /// Number of ready endpoints.
    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.slots.len()
    }

    /// The ready endpoint at `pos`.
    #[inline]
    pub(crate) fn slot(&self, pos: usize) -> Option<&ReadySlot<S>> {
        self.slots.get(pos)
    }

    /// The endpoint at `pos`, if the position is valid and it may be
    /// picked: not ejected, or the balancer is in panic mode (which makes
    /// every endpoint available).
    #[inline]
    pub(crate) fn available(&self, pos: usize) -> Option<&ReadySlot<S>> {
        self.slot(pos).filter(|slot| slot.load.is_available())
    }

    /// The ready position of member `index`, if it may be picked now.
    #[inline]
    pub(crate) fn member_position(&self, index: usize) -> Option<usize> {
        let pos = self.members.get(index)?.ready as usize;
        self.available(pos).map(|_| pos)
    }
}

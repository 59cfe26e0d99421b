//! What the loop counts while it runs, shared by the services, the load
//! generator, the progress line and the report: plain atomics and two
//! ledgers, the evidence the invariants are checked against.

use std::{
    collections::HashMap,
    sync::{
        Mutex,
        atomic::{AtomicU64, Ordering},
    },
};

/// Counters of the whole run.
#[derive(Debug, Default)]
pub struct Stats {
    /// Orders sent by the load generator, each retry of an order included.
    pub requests: Counter,
    /// Of them, answered definitively (created, or refused for good).
    pub answered: Counter,
    /// Of them, answered without a definitive answer (409, 5xx, a transport
    /// error, an open breaker): the order is sent again.
    pub errors: Counter,
    /// Attempts the orders client made on the network (the stack's retries
    /// included).
    pub attempts: Counter,
    /// Answers that were replays of an earlier response (`Idempotent-Replayed`).
    pub order_replays: Counter,
    /// `Charge` calls the orders workers made.
    pub charges_asked: Counter,
    /// Of them, answered by a replay of the first charge.
    pub charge_replays: Counter,
    /// Jobs a crashed worker dropped.
    pub jobs_lost: Counter,
    /// Jobs whose order had stopped waiting before a worker took them.
    pub jobs_skipped: Counter,
    /// What payments charged, by order.
    pub ledger: Ledger,
    /// What orders confirmed, by order.
    pub book: Book,
}

/// A counter that any task increments.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds one.
    pub fn incr(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    /// The count.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// The charges payments made, by order id: the database a double charge
/// would show in. The `Charge` handler writes to it every time it runs.
#[derive(Debug, Default)]
pub struct Ledger {
    charges: ByOrder,
    next: AtomicU64,
}

impl Ledger {
    /// Charges `order_id` and returns the new charge's id.
    pub fn charge(&self, order_id: &str) -> String {
        let charge_id = format!("ch_{:06}", self.next.fetch_add(1, Ordering::Relaxed));
        self.charges.add(order_id, &charge_id);
        charge_id
    }

    /// Every charge, by order id.
    pub fn snapshot(&self) -> HashMap<String, Vec<String>> {
        self.charges.snapshot()
    }

    /// Charges made.
    pub fn len(&self) -> u64 {
        self.next.load(Ordering::Relaxed)
    }
}

/// The orders the `orders` handlers confirmed (answered `201` themselves,
/// not by replay), by order id, with the charge each confirmed.
#[derive(Debug, Default)]
pub struct Book {
    confirmed: ByOrder,
}

impl Book {
    /// Records that a handler confirmed `order_id` with `charge_id`.
    pub fn confirm(&self, order_id: &str, charge_id: &str) {
        self.confirmed.add(order_id, charge_id);
    }

    /// Every confirmation, by order id.
    pub fn snapshot(&self) -> HashMap<String, Vec<String>> {
        self.confirmed.snapshot()
    }
}

/// Charge ids by order id, every one kept: a second one for an order is
/// the evidence of a broken invariant.
#[derive(Debug, Default)]
struct ByOrder(Mutex<HashMap<String, Vec<String>>>);

impl ByOrder {
    fn add(&self, order_id: &str, charge_id: &str) {
        let mut by_order = self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        by_order
            .entry(order_id.to_owned())
            .or_default()
            .push(charge_id.to_owned());
    }

    fn snapshot(&self) -> HashMap<String, Vec<String>> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }
}

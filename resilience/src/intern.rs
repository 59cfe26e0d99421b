//! Process-wide tables of distinct values, each known by a small index.
//!
//! A response future that may need a value only on its slow path (a layer's
//! name, a retry plan) would otherwise carry a reference count: a write on
//! every call, to a counter every thread shares. An interned value is a
//! `u32` instead; it is `Copy`, so carrying it costs nothing, and it is
//! looked up only when needed. A table grows only with distinct values,
//! however many layers are built, and never shrinks, so an index stays valid.

use std::sync::{PoisonError, RwLock};

/// A table of distinct values (see the module docs).
pub(crate) struct Table<T>(RwLock<Vec<T>>);

impl<T> Table<T> {
    pub(crate) const fn new() -> Self {
        Self(RwLock::new(Vec::new()))
    }

    /// The index of the value `matches` finds, adding `make()` on first use.
    pub(crate) fn intern(&self, matches: impl Fn(&T) -> bool, make: impl FnOnce() -> T) -> u32 {
        if let Some(index) = self
            .0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .position(&matches)
        {
            return index as u32;
        }
        let mut values = self.0.write().unwrap_or_else(PoisonError::into_inner);
        // Another thread may have added it between the two locks.
        if let Some(index) = values.iter().position(&matches) {
            return index as u32;
        }
        values.push(make());
        (values.len() - 1) as u32
    }

    /// The value at `index`, which must come from this table's `intern`
    /// (the table never shrinks, so such an index is always in range).
    pub(crate) fn get(&self, index: u32) -> T
    where
        T: Clone,
    {
        self.0.read().unwrap_or_else(PoisonError::into_inner)[index as usize].clone()
    }
}

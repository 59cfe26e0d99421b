//! Layer names as a response future carries them: a 4-byte [`Label`].
//!
//! A future reports under its layer's name only when something goes wrong
//! (a retry, a give-up, a timeout). Carrying the name as an `Arc<str>` would
//! write its reference count twice on every call, on a cache line every
//! thread calling the layer shares: about 10 ns a call on the project's
//! machines, more than a whole retry layer without a budget costs (see
//! `benches/resilience.rs`, group `retry`). So names are kept once in a
//! process-wide list that grows only with distinct names (a service has a
//! handful) and a future carries the index, `Copy`, looked up on the slow
//! path. This is the crate's one process-wide table; layers' settings and
//! state are never kept in it.

use std::sync::{Arc, PoisonError, RwLock};

/// Every distinct name interned so far; never shrinks, so a label stays valid.
static NAMES: RwLock<Vec<Arc<str>>> = RwLock::new(Vec::new());

/// A layer's name, interned (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Label(u32);

impl Label {
    /// The label of `name`, interning it on first use.
    pub(crate) fn intern(name: &str) -> Self {
        let position = |names: &[Arc<str>]| names.iter().position(|n| &**n == name);
        if let Some(index) = position(&NAMES.read().unwrap_or_else(PoisonError::into_inner)) {
            return Self(index as u32);
        }
        let mut names = NAMES.write().unwrap_or_else(PoisonError::into_inner);
        // Another thread may have added it between the two locks.
        let index = position(&names).unwrap_or_else(|| {
            names.push(name.into());
            names.len() - 1
        });
        Self(index as u32)
    }

    /// The name.
    pub(crate) fn name(self) -> Arc<str> {
        let names = NAMES.read().unwrap_or_else(PoisonError::into_inner);
        Arc::clone(&names[self.0 as usize])
    }
}

#[cfg(test)]
mod tests {
    use super::Label;

    #[test]
    fn a_name_has_one_label_and_comes_back() {
        let a = Label::intern("label-test-a");
        let b = Label::intern("label-test-b");
        assert_ne!(a, b);
        assert_eq!(Label::intern("label-test-a"), a);
        assert_eq!(&*a.name(), "label-test-a");
        assert_eq!(&*b.name(), "label-test-b");
    }
}

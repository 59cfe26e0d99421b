//! Interned names for the labels of metrics and events.
//!
//! A response future that may report under its layer's name would
//! otherwise carry an `Arc<str>`: a reference count written on every call
//! and a drop to run, for a name read only when something goes wrong. A
//! [`Label`] is a number in a process-wide table of distinct names; it is
//! `Copy`, so carrying it costs nothing, and it is turned back into the name
//! only on the slow path.

use std::sync::{Arc, PoisonError, RwLock};

/// Every distinct name interned so far; a name's label is its index.
static NAMES: RwLock<Vec<Arc<str>>> = RwLock::new(Vec::new());

/// A name, interned (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Label(u32);

impl Label {
    /// The label of `name`, interning it on first use. The table grows only
    /// with distinct names, however many layers are built.
    pub(crate) fn intern(name: &str) -> Self {
        if let Some(index) = NAMES
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .position(|n| &**n == name)
        {
            return Self(index as u32);
        }
        let mut names = NAMES.write().unwrap_or_else(PoisonError::into_inner);
        // Another thread may have interned it between the two locks.
        if let Some(index) = names.iter().position(|n| &**n == name) {
            return Self(index as u32);
        }
        names.push(name.into());
        Self((names.len() - 1) as u32)
    }

    /// The name.
    pub(crate) fn name(self) -> Arc<str> {
        let names = NAMES.read().unwrap_or_else(PoisonError::into_inner);
        // Labels are made only by `intern`, and the table never shrinks.
        names
            .get(self.0 as usize)
            .cloned()
            .unwrap_or_else(|| Arc::from(""))
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

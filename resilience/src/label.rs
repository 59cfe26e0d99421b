//! Interned names for the labels of metrics and events.
//!
//! A response future that may report under its layer's name would
//! otherwise carry an `Arc<str>`: a reference count written on every call
//! and a drop to run, for a name read only when something goes wrong. A
//! [`Label`] is the name's index in a process-wide [`Table`]; it is `Copy`,
//! so carrying it costs nothing, and it is turned back into the name only on
//! the slow path.

use std::sync::Arc;

use crate::intern::Table;

/// Every distinct name interned so far.
static NAMES: Table<Arc<str>> = Table::new();

/// A name, interned (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Label(u32);

impl Label {
    /// The label of `name`, interning it on first use.
    pub(crate) fn intern(name: &str) -> Self {
        Self(NAMES.intern(|n| &**n == name, || name.into()))
    }

    /// The name.
    pub(crate) fn name(self) -> Arc<str> {
        NAMES.get(self.0)
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

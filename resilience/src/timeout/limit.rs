//! A timeout layer's name, kind and limit, interned together.
//!
//! The response future needs them only when its call times out, to name
//! the layer in the event and the metric and to say which limit passed.
//! Carried as three fields, they were four stores on every call that
//! `tower::timeout` does not make; interned (see [`intern`](crate::intern)),
//! they are one 4-byte id, looked up on the timed-out path.

use std::time::Duration;

use crate::{error::TimeoutKind, intern::Table, label::Label};

/// Every distinct (name, kind, limit) of a timeout layer.
static LIMITS: Table<(Label, TimeoutKind, Duration)> = Table::new();

/// A timeout layer's name, kind and limit (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limit(u32);

impl Limit {
    /// The id of (`name`, `kind`, `after`), interning it on first use.
    pub(crate) fn intern(name: &str, kind: TimeoutKind, after: Duration) -> Self {
        let entry = (Label::intern(name), kind, after);
        Self(LIMITS.intern(|e| *e == entry, || entry))
    }

    /// The name, kind and limit.
    pub(crate) fn get(self) -> (Label, TimeoutKind, Duration) {
        LIMITS.get(self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_limit_is_interned_once_and_comes_back() {
        let a = Limit::intern("limit-test", TimeoutKind::Attempt, Duration::from_millis(5));
        let b = Limit::intern("limit-test", TimeoutKind::Overall, Duration::from_millis(5));
        let c = Limit::intern("limit-test", TimeoutKind::Attempt, Duration::from_millis(6));
        assert_ne!(a, b);
        assert_ne!(a, c);
        assert_eq!(
            Limit::intern("limit-test", TimeoutKind::Attempt, Duration::from_millis(5)),
            a
        );
        let (label, kind, after) = a.get();
        assert_eq!(&*label.name(), "limit-test");
        assert_eq!((kind, after), (TimeoutKind::Attempt, Duration::from_millis(5)));
    }
}

//! A timeout layer's name, kind and limit, as its response future carries them.
//!
//! The future needs them only when its call times out, to name the layer in
//! the event and the metric and to say which limit passed. They are plain
//! `Copy` values, the name as its [`Label`], so carrying them writes no
//! shared memory.

use std::time::Duration;

use crate::{error::TimeoutKind, label::Label};

/// A timeout layer's name, kind and limit (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limit {
    label: Label,
    kind: TimeoutKind,
    after: Duration,
}

impl Limit {
    /// The limit `after` of `kind` for the layer called `name` (whose label
    /// is interned on first use).
    pub(crate) fn intern(name: &str, kind: TimeoutKind, after: Duration) -> Self {
        Self {
            label: Label::intern(name),
            kind,
            after,
        }
    }

    /// The name, kind and limit.
    pub(crate) fn get(self) -> (Label, TimeoutKind, Duration) {
        (self.label, self.kind, self.after)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_limit_keeps_its_name_kind_and_duration() {
        let a = Limit::intern("limit-test", TimeoutKind::Attempt, Duration::from_millis(5));
        let b = Limit::intern("limit-test", TimeoutKind::Overall, Duration::from_millis(5));
        assert_ne!(a, b);
        let (label, kind, after) = a.get();
        assert_eq!(&*label.name(), "limit-test");
        assert_eq!((kind, after), (TimeoutKind::Attempt, Duration::from_millis(5)));
    }
}

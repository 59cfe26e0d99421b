use std::fmt;

use serde::{
    Deserialize, Deserializer, Serialize, Serializer,
    de::{self, SeqAccess, Visitor},
    ser::SerializeSeq,
};

use crate::error::ErrorClass;

/// Every class, in declaration order.
const ALL: [ErrorClass; 7] = [
    ErrorClass::CircuitOpen,
    ErrorClass::Timeout,
    ErrorClass::BulkheadFull,
    ErrorClass::RateLimited,
    ErrorClass::BudgetExhausted,
    ErrorClass::NotRetried,
    ErrorClass::Inner,
];

/// The names of the classes in configs (what [`class_name`] returns), for
/// error messages.
const NAMES: [&str; 7] = [
    "circuit_open",
    "timeout",
    "bulkhead_full",
    "rate_limited",
    "budget_exhausted",
    "not_retried",
    "inner",
];

/// A set of [`ErrorClass`]es: the errors a [`FallbackLayer`](super::FallbackLayer)
/// answers.
///
/// In configs it is the word `"any"` or a list of class names:
/// `circuit_open`, `timeout`, `bulkhead_full`, `rate_limited`,
/// `budget_exhausted`, `not_retried`, `inner`.
///
/// ```
/// use orch_resilience::{ErrorClass, ErrorClasses};
///
/// let set = ErrorClasses::from_iter([ErrorClass::CircuitOpen, ErrorClass::Timeout]);
/// assert!(set.contains(ErrorClass::Timeout));
/// assert!(!set.contains(ErrorClass::Inner));
/// assert_eq!(serde_json::to_string(&set).unwrap(), r#"["circuit_open","timeout"]"#);
/// let any: ErrorClasses = serde_json::from_str(r#""any""#).unwrap();
/// assert_eq!(any, ErrorClasses::ANY);
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ErrorClasses(u16);

impl ErrorClasses {
    /// No class.
    pub const NONE: Self = Self(0);

    /// Every class, including any added to [`ErrorClass`] later.
    pub const ANY: Self = Self(u16::MAX);

    /// The local rejections: [`CircuitOpen`](ErrorClass::CircuitOpen),
    /// [`BulkheadFull`](ErrorClass::BulkheadFull) and
    /// [`RateLimited`](ErrorClass::RateLimited), the errors for which the
    /// service was never called.
    pub const LOCAL_REJECTIONS: Self = Self::NONE
        .with(ErrorClass::CircuitOpen)
        .with(ErrorClass::BulkheadFull)
        .with(ErrorClass::RateLimited);

    /// The set with `class` added.
    pub const fn with(self, class: ErrorClass) -> Self {
        Self(self.0 | bit(class))
    }

    /// True when `class` is in the set.
    pub const fn contains(self, class: ErrorClass) -> bool {
        self.0 & bit(class) != 0
    }

    /// True when the set holds no class.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The classes in the set, in declaration order.
    pub fn iter(self) -> impl Iterator<Item = ErrorClass> {
        ALL.into_iter().filter(move |class| self.contains(*class))
    }
}

/// The bit of one class. A new variant of `ErrorClass` fails to compile here
/// until it gets a bit (and an entry in `ALL` and `NAMES`).
const fn bit(class: ErrorClass) -> u16 {
    match class {
        ErrorClass::CircuitOpen => 1 << 0,
        ErrorClass::Timeout => 1 << 1,
        ErrorClass::BulkheadFull => 1 << 2,
        ErrorClass::RateLimited => 1 << 3,
        ErrorClass::BudgetExhausted => 1 << 4,
        ErrorClass::NotRetried => 1 << 5,
        ErrorClass::Inner => 1 << 6,
    }
}

/// The config and metric-label name of a class.
pub(crate) const fn class_name(class: ErrorClass) -> &'static str {
    match class {
        ErrorClass::CircuitOpen => "circuit_open",
        ErrorClass::Timeout => "timeout",
        ErrorClass::BulkheadFull => "bulkhead_full",
        ErrorClass::RateLimited => "rate_limited",
        ErrorClass::BudgetExhausted => "budget_exhausted",
        ErrorClass::NotRetried => "not_retried",
        ErrorClass::Inner => "inner",
    }
}

impl Default for ErrorClasses {
    /// [`ANY`](Self::ANY).
    fn default() -> Self {
        Self::ANY
    }
}

impl From<ErrorClass> for ErrorClasses {
    fn from(class: ErrorClass) -> Self {
        Self::NONE.with(class)
    }
}

impl FromIterator<ErrorClass> for ErrorClasses {
    fn from_iter<I: IntoIterator<Item = ErrorClass>>(iter: I) -> Self {
        iter.into_iter().fold(Self::NONE, Self::with)
    }
}

impl fmt::Debug for ErrorClasses {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if *self == Self::ANY {
            f.write_str("ErrorClasses(any)")
        } else {
            f.debug_set().entries(self.iter()).finish()
        }
    }
}

impl Serialize for ErrorClasses {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if *self == Self::ANY {
            return serializer.serialize_str("any");
        }
        let mut seq = serializer.serialize_seq(Some(self.iter().count()))?;
        for class in self.iter() {
            seq.serialize_element(class_name(class))?;
        }
        seq.end()
    }
}

impl<'de> Deserialize<'de> for ErrorClasses {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ClassesVisitor)
    }
}

struct ClassesVisitor;

impl ClassesVisitor {
    fn class<E: de::Error>(name: &str) -> Result<ErrorClass, E> {
        ALL.into_iter()
            .find(|class| class_name(*class) == name)
            .ok_or_else(|| E::unknown_variant(name, &NAMES))
    }
}

impl<'de> Visitor<'de> for ClassesVisitor {
    type Value = ErrorClasses;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(r#""any" or a list of error classes"#)
    }

    fn visit_str<E: de::Error>(self, word: &str) -> Result<Self::Value, E> {
        if word == "any" {
            Ok(ErrorClasses::ANY)
        } else {
            Err(E::invalid_value(de::Unexpected::Str(word), &self))
        }
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut set = ErrorClasses::NONE;
        while let Some(name) = seq.next_element::<String>()? {
            set = set.with(Self::class(&name)?);
        }
        Ok(set)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_bits_and_the_class_list_agree() {
        let mut seen = 0_u16;
        for (class, name) in ALL.into_iter().zip(NAMES) {
            assert_eq!(class_name(class), name);
            assert_eq!(seen & bit(class), 0, "{class:?} shares a bit");
            seen |= bit(class);
        }
        assert_eq!(ErrorClasses::ANY.iter().count(), ALL.len());
        assert!(ErrorClasses::NONE.is_empty());
    }
}

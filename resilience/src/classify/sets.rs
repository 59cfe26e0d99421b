//! The retryable statuses and codes of the HTTP and gRPC classifiers, as
//! sets that are cheap to clone.
//!
//! A circuit breaker clones its classifier into every response future. As
//! `Vec`s, the lists cost an allocation and a free per call (about 1% of a
//! loopback gRPC call, `benches/client_stack.rs`); as bit sets they are
//! copied with the future.

use std::{fmt, sync::Arc};

use http::StatusCode;

use super::GrpcCode;

/// The first status of the bitmap: 4xx and 5xx, where retryable statuses are.
const BITMAP_START: u16 = 400;

/// A set of HTTP statuses: 400 to 655 in a bitmap, any other status (rare
/// as a retryable one) in a shared list.
#[derive(Clone, Default, PartialEq, Eq)]
pub(super) struct StatusSet {
    bitmap: [u64; 4],
    others: Option<Arc<[StatusCode]>>,
}

impl StatusSet {
    /// The bitmap word and bit of `status`, if it is in the bitmap's range.
    fn bit(status: StatusCode) -> Option<(usize, u64)> {
        let offset = usize::from(status.as_u16().checked_sub(BITMAP_START)?);
        (offset < 256).then(|| (offset / 64, 1 << (offset % 64)))
    }

    pub(super) fn contains(&self, status: StatusCode) -> bool {
        match Self::bit(status) {
            Some((word, bit)) => self.bitmap[word] & bit != 0,
            None => self
                .others
                .as_deref()
                .is_some_and(|others| others.contains(&status)),
        }
    }

    pub(super) fn insert(&mut self, status: StatusCode) {
        match Self::bit(status) {
            Some((word, bit)) => self.bitmap[word] |= bit,
            None if !self.contains(status) => {
                let mut others = self.others.as_deref().unwrap_or_default().to_vec();
                others.push(status);
                self.others = Some(others.into());
            }
            None => {}
        }
    }

    fn iter(&self) -> impl Iterator<Item = StatusCode> + '_ {
        let bitmap = (0..256u16)
            .filter(|offset| self.bitmap[usize::from(offset / 64)] & (1 << (offset % 64)) != 0)
            .filter_map(|offset| StatusCode::from_u16(BITMAP_START + offset).ok());
        bitmap.chain(self.others.iter().flat_map(|others| others.iter().copied()))
    }
}

impl FromIterator<StatusCode> for StatusSet {
    fn from_iter<I: IntoIterator<Item = StatusCode>>(statuses: I) -> Self {
        let mut set = Self::default();
        for status in statuses {
            set.insert(status);
        }
        set
    }
}

impl fmt::Debug for StatusSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

/// A set of gRPC codes, one bit per code.
#[derive(Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct CodeSet(u32);

impl CodeSet {
    pub(super) fn contains(self, code: GrpcCode) -> bool {
        self.0 & (1 << code as u32) != 0
    }

    pub(super) fn insert(&mut self, code: GrpcCode) {
        self.0 |= 1 << code as u32;
    }
}

impl fmt::Debug for CodeSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let codes = (0..17)
            .map(GrpcCode::from_i32)
            .filter(|code| self.contains(*code));
        f.debug_set().entries(codes).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_in_and_out_of_the_bitmap_are_kept() {
        let set: StatusSet = [429, 503, 399, 656, 999, 200]
            .into_iter()
            .map(|code| StatusCode::from_u16(code).unwrap())
            .collect();
        for code in [429, 503, 399, 656, 999, 200] {
            assert!(set.contains(StatusCode::from_u16(code).unwrap()), "{code}");
        }
        for code in [400, 500, 502, 655, 100, 998] {
            assert!(!set.contains(StatusCode::from_u16(code).unwrap()), "{code}");
        }
        assert_eq!(format!("{set:?}"), "{429, 503, 399, 656, 999, 200}");
    }

    #[test]
    fn a_status_inserted_twice_is_listed_once() {
        let mut set = StatusSet::default();
        set.insert(StatusCode::OK);
        set.insert(StatusCode::OK);
        set.insert(StatusCode::BAD_GATEWAY);
        set.insert(StatusCode::BAD_GATEWAY);
        assert_eq!(format!("{set:?}"), "{502, 200}");
    }

    #[test]
    fn codes() {
        let mut set = CodeSet::default();
        set.insert(GrpcCode::Unavailable);
        set.insert(GrpcCode::Ok);
        set.insert(GrpcCode::Unauthenticated);
        assert!(set.contains(GrpcCode::Unavailable));
        assert!(!set.contains(GrpcCode::Internal));
        assert_eq!(format!("{set:?}"), "{Ok, Unavailable, Unauthenticated}");
    }
}

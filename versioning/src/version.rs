//! What a version is: `major[.minor]` (Kubernetes' `v1`, AIP-185's major
//! versions) or a date (Stripe's `2024-06-20`), parsed strictly, ordered,
//! and written back the way clients send it.

use std::{fmt, str::FromStr};

use serde::{Deserialize, Serialize};

/// One API version.
///
/// Semantic versions are written `2` or `2.1` (a leading `v` is accepted
/// when parsing, `2.0` reads as `2`); date versions `YYYY-MM-DD`. Versions
/// order by number or by date; a [`VersionSet`](crate::VersionSet) holds
/// versions of one kind only.
///
/// ```
/// use orch_versioning::ApiVersion;
///
/// let v2: ApiVersion = "v2".parse().unwrap();
/// assert_eq!(v2, ApiVersion::semantic(2, 0));
/// assert_eq!(v2.to_string(), "2");
/// assert!("2.1".parse::<ApiVersion>().unwrap() > v2);
///
/// let dated: ApiVersion = "2024-06-20".parse().unwrap();
/// assert!(dated < "2025-01-01".parse().unwrap());
/// assert!("2024-02-30".parse::<ApiVersion>().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum ApiVersion {
    /// `major.minor`; written without `.0`.
    Semantic {
        /// The major version.
        major: u32,
        /// The minor version (0 when not written).
        minor: u32,
    },
    /// A calendar date.
    Date(ApiDate),
}

/// A calendar date as a version: year, month, day, checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ApiDate {
    year: u16,
    month: u8,
    day: u8,
}

impl ApiDate {
    /// The date, if it exists (years 1 to 9999).
    pub fn new(year: u16, month: u8, day: u8) -> Option<Self> {
        let leap = year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400));
        let days = match month {
            1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
            4 | 6 | 9 | 11 => 30,
            2 if leap => 29,
            2 => 28,
            _ => return None,
        };
        ((1..=9999).contains(&year) && (1..=days).contains(&day)).then_some(Self { year, month, day })
    }

    /// The year.
    pub fn year(&self) -> u16 {
        self.year
    }

    /// The month, 1 to 12.
    pub fn month(&self) -> u8 {
        self.month
    }

    /// The day of the month.
    pub fn day(&self) -> u8 {
        self.day
    }
}

impl ApiVersion {
    /// `major.minor`.
    pub const fn semantic(major: u32, minor: u32) -> Self {
        Self::Semantic { major, minor }
    }

    /// A date version, if the date exists.
    pub fn date(year: u16, month: u8, day: u8) -> Option<Self> {
        ApiDate::new(year, month, day).map(Self::Date)
    }

    /// Whether this is a date version.
    pub const fn is_date(&self) -> bool {
        matches!(self, Self::Date(_))
    }

    /// The same kind as `other` (both semantic or both dates).
    pub const fn same_kind(&self, other: &Self) -> bool {
        self.is_date() == other.is_date()
    }
}

impl fmt::Display for ApiVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Semantic { major, minor: 0 } => write!(f, "{major}"),
            Self::Semantic { major, minor } => write!(f, "{major}.{minor}"),
            Self::Date(d) => write!(f, "{:04}-{:02}-{:02}", d.year, d.month, d.day),
        }
    }
}

/// Text that is not a version.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{input:?} is not an API version: {reason}")]
pub struct ParseVersionError {
    /// What was given (at most 64 characters of it).
    pub input: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl FromStr for ApiVersion {
    type Err = ParseVersionError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let fail = |reason| ParseVersionError {
            input: input.chars().take(64).collect(),
            reason,
        };
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        if input.len() == 10 && input.as_bytes()[4] == b'-' && input.as_bytes()[7] == b'-' {
            let (y, m, d) = (&input[..4], &input[5..7], &input[8..]);
            if !(digits(y) && digits(m) && digits(d)) {
                return Err(fail("a date version is YYYY-MM-DD"));
            }
            let parse = |s: &str| s.parse::<u16>().map_err(|_| fail("a date version is YYYY-MM-DD"));
            let (year, month, day) = (parse(y)?, parse(m)?, parse(d)?);
            return ApiVersion::date(year, month as u8, day as u8).ok_or_else(|| fail("no such date"));
        }
        let number = input.strip_prefix(['v', 'V']).unwrap_or(input);
        let (major, minor) = number.split_once('.').unwrap_or((number, "0"));
        if !digits(major) || !digits(minor) || major.len() > 9 || minor.len() > 9 {
            return Err(fail(
                "expected major[.minor] (`2`, `v2`, `2.1`) or a date (`2024-06-20`)",
            ));
        }
        let major = major.parse().map_err(|_| fail("major version out of range"))?;
        let minor = minor.parse().map_err(|_| fail("minor version out of range"))?;
        Ok(Self::Semantic { major, minor })
    }
}

impl TryFrom<String> for ApiVersion {
    type Error = ParseVersionError;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        value.parse()
    }
}

impl From<ApiVersion> for String {
    fn from(version: ApiVersion) -> Self {
        version.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_every_form() {
        for (text, printed) in [
            ("1", "1"),
            ("v3", "3"),
            ("V3", "3"),
            ("2.0", "2"),
            ("2.10", "2.10"),
            ("2024-02-29", "2024-02-29"),
        ] {
            assert_eq!(text.parse::<ApiVersion>().unwrap().to_string(), printed, "{text}");
        }
        for bad in [
            "",
            "v",
            "2.",
            ".1",
            "2.1.3",
            "two",
            "-1",
            "2023-02-29",
            "2024-13-01",
            "2024-1-01",
            "0000-01-01",
            "9999999999",
        ] {
            assert!(bad.parse::<ApiVersion>().is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn orders_by_number_then_by_date() {
        let v = |s: &str| s.parse::<ApiVersion>().unwrap();
        assert!(v("1") < v("1.1") && v("1.1") < v("2") && v("2") < v("10"));
        assert!(v("2023-12-31") < v("2024-01-01"));
    }
}

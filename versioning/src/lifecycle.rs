//! Where a version is in its life: stable, deprecated (with an optional
//! sunset and migration notes), or removed; and the response headers that
//! tell clients (RFC 9745 `Deprecation`, RFC 8594 `Sunset`, `Link`).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{HeaderMap, HeaderValue, header};

/// The state of a version (or of one operation in a version).
///
/// A deprecated version still works and says so in every response; after
/// its sunset it answers `410 Gone` like a removed one.
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
/// use orch_versioning::Lifecycle;
///
/// let v1 = Lifecycle::deprecated(UNIX_EPOCH + Duration::from_secs(1_719_878_400))
///     .sunset(UNIX_EPOCH + Duration::from_secs(1_735_689_599))
///     .link("https://example.com/migrate-to-v2");
/// assert!(v1.is_deprecated());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Lifecycle {
    /// Supported, nothing to say.
    #[default]
    Stable,
    /// Supported, going away.
    Deprecated(Deprecation),
    /// Gone: `410 Gone`, with a link to the migration notes if given.
    Removed {
        /// Where the migration notes are.
        link: Option<String>,
    },
}

/// When a version was deprecated, when it goes away, where to read why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deprecation {
    /// When it was (or will be) deprecated.
    pub at: SystemTime,
    /// When it stops working, if decided.
    pub sunset: Option<SystemTime>,
    /// Migration notes, sent as `Link: <…>; rel="deprecation"`.
    pub link: Option<String>,
}

impl Lifecycle {
    /// Deprecated at `at`, no sunset decided yet.
    pub fn deprecated(at: SystemTime) -> Self {
        Self::Deprecated(Deprecation {
            at,
            sunset: None,
            link: None,
        })
    }

    /// Removed.
    pub fn removed() -> Self {
        Self::Removed { link: None }
    }

    /// Sets the sunset of a deprecated version (no effect otherwise).
    pub fn sunset(mut self, sunset: SystemTime) -> Self {
        if let Self::Deprecated(d) = &mut self {
            d.sunset = Some(sunset);
        }
        self
    }

    /// Sets the link to the migration notes.
    pub fn link(mut self, url: impl Into<String>) -> Self {
        match &mut self {
            Self::Deprecated(d) => d.link = Some(url.into()),
            Self::Removed { link } => *link = Some(url.into()),
            Self::Stable => {}
        }
        self
    }

    /// Whether this is [`Lifecycle::Deprecated`].
    pub fn is_deprecated(&self) -> bool {
        matches!(self, Self::Deprecated(_))
    }

    /// Whether requests get `410 Gone` at `now`: removed, or past sunset.
    pub fn is_gone(&self, now: SystemTime) -> bool {
        match self {
            Self::Stable => false,
            Self::Deprecated(d) => d.sunset.is_some_and(|sunset| now >= sunset),
            Self::Removed { .. } => true,
        }
    }

    /// The migration notes' link, if any.
    pub fn link_url(&self) -> Option<&str> {
        match self {
            Self::Deprecated(d) => d.link.as_deref(),
            Self::Removed { link } => link.as_deref(),
            Self::Stable => None,
        }
    }

    /// `"stable"`, `"deprecated"` or `"removed"`, for metrics labels.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Stable => "stable",
            Self::Deprecated(_) => "deprecated",
            Self::Removed { .. } => "removed",
        }
    }

    /// A sunset before the deprecation is a contradiction, and an HTTP-date
    /// can only say years 1970 to 9999.
    pub(crate) fn check(&self) -> Result<(), &'static str> {
        match self {
            Self::Deprecated(Deprecation {
                at,
                sunset: Some(sunset),
                ..
            }) if sunset < at => Err("the sunset is earlier than the deprecation"),
            Self::Deprecated(Deprecation {
                sunset: Some(sunset), ..
            }) if *sunset < UNIX_EPOCH || *sunset >= UNIX_EPOCH + Duration::from_secs(LAST_HTTP_DATE) => {
                Err("the sunset must be a date from 1970 to 9999 (an HTTP-date)")
            }
            _ => Ok(()),
        }
    }

    /// Adds `Deprecation`, `Sunset` and `Link` to `headers` for a
    /// deprecated version.
    pub(crate) fn write_headers(&self, headers: &mut HeaderMap) {
        let Self::Deprecated(d) = self else {
            return;
        };
        headers.insert(DEPRECATION, deprecation_value(d.at));
        if let Some(sunset) = d.sunset
            && let Ok(value) = HeaderValue::from_str(&httpdate::fmt_http_date(sunset))
        {
            headers.insert(SUNSET, value);
        }
        if let Some(link) = &d.link
            && let Ok(value) =
                HeaderValue::from_str(&format!("<{link}>; rel=\"deprecation\"; type=\"text/html\""))
        {
            headers.append(header::LINK, value);
        }
    }
}

/// Seconds from the epoch to 10000-01-01: HTTP-dates end before it.
const LAST_HTTP_DATE: u64 = 253_402_300_800;

/// RFC 9745's `Deprecation` header.
pub const DEPRECATION: header::HeaderName = header::HeaderName::from_static("deprecation");
/// RFC 8594's `Sunset` header.
pub const SUNSET: header::HeaderName = header::HeaderName::from_static("sunset");

/// `@` and the seconds since the epoch: RFC 9745's structured-field date.
fn deprecation_value(at: SystemTime) -> HeaderValue {
    let seconds = match at.duration_since(UNIX_EPOCH) {
        Ok(after) => after.as_secs() as i64,
        Err(before) => -(before.duration().as_secs() as i64),
    };
    HeaderValue::from_str(&format!("@{seconds}")).unwrap_or_else(|_| HeaderValue::from_static("@0"))
}

/// Reads an RFC 9745 `Deprecation` value (`@1719878400`).
pub fn parse_deprecation(value: &HeaderValue) -> Option<SystemTime> {
    let seconds: i64 = value.to_str().ok()?.strip_prefix('@')?.parse().ok()?;
    if seconds >= 0 {
        UNIX_EPOCH.checked_add(Duration::from_secs(seconds as u64))
    } else {
        UNIX_EPOCH.checked_sub(Duration::from_secs(seconds.unsigned_abs()))
    }
}

/// Reads an RFC 8594 `Sunset` value (an HTTP-date).
pub fn parse_sunset(value: &HeaderValue) -> Option<SystemTime> {
    httpdate::parse_http_date(value.to_str().ok()?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_follow_the_rfc_grammars() {
        let at = UNIX_EPOCH + Duration::from_secs(1_719_878_400);
        let sunset = UNIX_EPOCH + Duration::from_secs(1_735_689_599);
        let lifecycle = Lifecycle::deprecated(at)
            .sunset(sunset)
            .link("https://example.com/v2");
        let mut headers = HeaderMap::new();
        lifecycle.write_headers(&mut headers);
        assert_eq!(headers[DEPRECATION], "@1719878400");
        assert_eq!(headers[SUNSET], "Tue, 31 Dec 2024 23:59:59 GMT");
        assert_eq!(
            headers[header::LINK],
            "<https://example.com/v2>; rel=\"deprecation\"; type=\"text/html\""
        );
        assert_eq!(parse_deprecation(&headers[DEPRECATION]), Some(at));
        assert_eq!(parse_sunset(&headers[SUNSET]), Some(sunset));
    }

    #[test]
    fn past_sunset_is_gone_and_a_sunset_before_deprecation_is_refused() {
        let at = UNIX_EPOCH + Duration::from_secs(1_000);
        let lifecycle = Lifecycle::deprecated(at).sunset(at + Duration::from_secs(10));
        assert!(!lifecycle.is_gone(at));
        assert!(lifecycle.is_gone(at + Duration::from_secs(10)));
        assert!(
            Lifecycle::deprecated(at)
                .sunset(at - Duration::from_secs(1))
                .check()
                .is_err()
        );
        let far = UNIX_EPOCH + Duration::from_secs(LAST_HTTP_DATE);
        assert!(
            Lifecycle::deprecated(at).sunset(far).check().is_err(),
            "no HTTP-date after 9999"
        );
    }
}

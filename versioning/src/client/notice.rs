//! What a client learns from deprecated answers: read from the headers,
//! warned once per operation, counted every time, kept for inspection.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex, PoisonError},
    time::{SystemTime, UNIX_EPOCH},
};

use http::{HeaderMap, header};

use super::layer::Shared;
use crate::{ApiVersion, DEPRECATION, SUNSET, parse_deprecation, parse_sunset};

/// What the answers to one operation said about its version's end.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeprecationNotice {
    /// The version that answered (the server's `api-version` echo, else
    /// the version the client sent).
    pub version: ApiVersion,
    /// `Deprecation` (RFC 9745): when the version was, or will be,
    /// deprecated; `None` when absent or unreadable.
    pub deprecation: Option<SystemTime>,
    /// `Sunset` (RFC 8594): when the version stops answering.
    pub sunset: Option<SystemTime>,
    /// The migration notes: the `Link` with `rel="deprecation"` (or, without
    /// one, `rel="sunset"`).
    pub link: Option<String>,
    /// How many deprecated answers this operation has had.
    pub responses: u64,
}

/// What one client has seen of deprecations, per operation: a cheap
/// `Clone` handle on state its layer's services update.
///
/// Each operation keeps the latest notice and the count of deprecated
/// answers. Tests assert on it; a service can report it on a status page.
///
/// ```
/// use orch_versioning::ClientVersioningLayer;
///
/// let layer = ClientVersioningLayer::builder("orders", "1").build()?;
/// let seen = layer.deprecations();
/// assert!(seen.is_empty(), "nothing answered yet");
/// assert_eq!(seen.get("GET /orders"), None);
/// # Ok::<(), orch_versioning::VersionError>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct Deprecations {
    seen: Arc<Mutex<BTreeMap<String, DeprecationNotice>>>,
}

impl Deprecations {
    /// Every operation that had a deprecated answer, with its latest
    /// notice.
    pub fn snapshot(&self) -> BTreeMap<String, DeprecationNotice> {
        self.lock().clone()
    }

    /// The latest notice for `operation`, if it had a deprecated answer.
    pub fn get(&self, operation: &str) -> Option<DeprecationNotice> {
        self.lock().get(operation).cloned()
    }

    /// Whether no answer so far was deprecated.
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    /// Keeps `notice` as the latest for `operation`; `true` the first time
    /// the operation is seen.
    fn record(&self, operation: &str, notice: DeprecationNotice) -> bool {
        let mut seen = self.lock();
        match seen.get_mut(operation) {
            Some(latest) => {
                let responses = latest.responses.saturating_add(notice.responses);
                *latest = DeprecationNotice { responses, ..notice };
                false
            }
            None => {
                seen.insert(operation.to_owned(), notice);
                true
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, DeprecationNotice>> {
        // A panic elsewhere while holding the lock leaves a map that is
        // still whole (every update is one insert or one assignment).
        self.seen.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Reads an answer's headers: a deprecated one is counted, recorded, and
/// warned about if it is the operation's first.
pub(super) fn observe(shared: &Shared, operation: String, headers: &HeaderMap) {
    let deprecation = headers.get(DEPRECATION);
    let sunset = headers.get(SUNSET);
    if deprecation.is_none() && sunset.is_none() {
        return;
    }
    let version = headers
        .get(&shared.header)
        .and_then(|v| v.to_str().ok())
        .and_then(|text| text.trim().parse().ok())
        .unwrap_or(shared.version);
    let notice = DeprecationNotice {
        version,
        deprecation: deprecation.and_then(parse_deprecation),
        sunset: sunset.and_then(parse_sunset),
        link: migration_link(headers),
        responses: 1,
    };
    metrics::counter!(
        "orch_api_deprecated_responses_total",
        "api" => shared.api.clone(),
        "version" => version.to_string(),
        "operation" => operation.clone()
    )
    .increment(1);
    let (deprecated, ends, link) = (
        notice.deprecation.map(date),
        notice.sunset.map(date),
        notice.link.clone(),
    );
    if shared.seen.record(&operation, notice) {
        tracing::warn!(
            api = %shared.api,
            operation = %operation,
            version = %version,
            deprecation = deprecated.as_deref(),
            sunset = ends.as_deref(),
            link = link.as_deref(),
            "the API version this client calls is deprecated"
        );
    }
}

/// An HTTP-date for people; `@seconds` (RFC 9745's form) for the dates
/// `httpdate` cannot write: before 1970 or after 9999, which a server
/// may send and must not crash its client.
fn date(at: SystemTime) -> String {
    match at.duration_since(UNIX_EPOCH) {
        Ok(after) if after.as_secs() < 253_402_300_800 => httpdate::fmt_http_date(at),
        Ok(after) => format!("@{}", after.as_secs()),
        Err(before) => format!("@-{}", before.duration().as_secs()),
    }
}

/// The target of the first `Link` with `rel="deprecation"`, else of the
/// first with `rel="sunset"` (RFC 8288 syntax: `<uri>; rel="a b", …`).
fn migration_link(headers: &HeaderMap) -> Option<String> {
    let mut sunset = None;
    for value in headers.get_all(header::LINK) {
        let Ok(mut text) = value.to_str() else {
            continue;
        };
        loop {
            text = text.trim_start_matches([' ', '\t', ',']);
            let Some((target, rest)) = text.strip_prefix('<').and_then(|rest| rest.split_once('>')) else {
                break;
            };
            let (params, next) = split_unquoted(rest, ',');
            let rels = relations(params);
            if rels.iter().any(|rel| rel.eq_ignore_ascii_case("deprecation")) {
                return Some(target.to_owned());
            }
            if sunset.is_none() && rels.iter().any(|rel| rel.eq_ignore_ascii_case("sunset")) {
                sunset = Some(target.to_owned());
            }
            text = next;
        }
    }
    sunset
}

/// The relation types of one link's parameters (`rel="deprecation sunset"`).
fn relations(mut params: &str) -> Vec<&str> {
    let mut rels = Vec::new();
    while !params.is_empty() {
        let (param, rest) = split_unquoted(params.trim_start_matches([' ', '\t', ';']), ';');
        if let Some((key, value)) = param.split_once('=')
            && key.trim().eq_ignore_ascii_case("rel")
        {
            rels.extend(value.trim().trim_matches('"').split_ascii_whitespace());
        }
        params = rest;
    }
    rels
}

/// Splits at the first `separator` outside double quotes.
fn split_unquoted(text: &str, separator: char) -> (&str, &str) {
    let mut quoted = false;
    for (i, c) in text.char_indices() {
        match c {
            '"' => quoted = !quoted,
            c if c == separator && !quoted => return (&text[..i], &text[i + c.len_utf8()..]),
            _ => {}
        }
    }
    (text, "")
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    fn links(values: &[&'static str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append(header::LINK, HeaderValue::from_static(value));
        }
        headers
    }

    #[test]
    fn the_deprecation_link_wins_over_the_sunset_link() {
        let headers = links(&[
            "<https://example.com/a,b>; rel=\"next\"; title=\"x, y; z\", <https://example.com/sunset>; rel=sunset",
            "<https://example.com/notes>; rel=\"alternate deprecation\"; type=\"text/html\"",
        ]);
        assert_eq!(
            migration_link(&headers).as_deref(),
            Some("https://example.com/notes")
        );
        let only_sunset = links(&["<https://example.com/sunset>; rel=\"sunset\""]);
        assert_eq!(
            migration_link(&only_sunset).as_deref(),
            Some("https://example.com/sunset")
        );
        assert_eq!(migration_link(&links(&["garbage", "<x"])), None);
    }

    #[test]
    fn dates_outside_what_http_dates_can_say_do_not_panic() {
        use std::time::Duration;
        assert_eq!(date(UNIX_EPOCH - Duration::from_secs(5)), "@-5");
        assert_eq!(
            date(UNIX_EPOCH + Duration::from_secs(253_402_300_800)),
            "@253402300800"
        );
        assert_eq!(
            date(UNIX_EPOCH + Duration::from_secs(1_719_878_400)),
            "Tue, 02 Jul 2024 00:00:00 GMT"
        );
    }
}

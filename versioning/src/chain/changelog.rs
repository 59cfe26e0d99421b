//! The changelog of an API, generated from its chain so that what clients
//! read is what the server converts.

use std::{
    fmt::Write as _,
    time::{SystemTime, UNIX_EPOCH},
};

use super::ChangeChain;
use crate::Lifecycle;

impl ChangeChain {
    /// The API's changelog in Markdown: one section per declared version,
    /// newest first, each with its lifecycle and the description of every
    /// change it introduced (with the operations a scoped change is
    /// limited to).
    ///
    /// ```
    /// use orch_versioning::{ChangeChain, Lifecycle, VersionChange, VersionSet};
    ///
    /// let set = VersionSet::builder("orders")
    ///     .version("1", Lifecycle::Stable)
    ///     .version("2", Lifecycle::Stable)
    ///     .build()?;
    /// let chain = ChangeChain::builder(&set)
    ///     .change(VersionChange::new("2", "Renames `customer` to `customer_id`.").operation("POST /orders"))
    ///     .build()?;
    /// let changelog = chain.changelog();
    /// assert!(changelog.starts_with("# orders API changelog\n\n## 2 (latest)\n\n- Renames"));
    /// assert!(changelog.ends_with("## 1\n\nThe first version.\n"));
    /// # Ok::<(), orch_versioning::VersionError>(())
    /// ```
    ///
    /// gives
    ///
    /// ```markdown
    /// # orders API changelog
    ///
    /// ## 2 (latest)
    ///
    /// - Renames `customer` to `customer_id`.
    ///   Applies to `POST /orders`.
    ///
    /// ## 1
    ///
    /// The first version.
    /// ```
    pub fn changelog(&self) -> String {
        let set = self.set();
        let mut out = format!("# {} API changelog\n", set.name());
        let versions: Vec<_> = set.versions().collect();
        let first = versions.first().map(|(v, _)| *v);
        for (version, lifecycle) in versions.iter().rev() {
            out.push_str(&format!("\n## {version}"));
            if *version == set.latest() {
                out.push_str(" (latest)");
            }
            out.push_str("\n\n");
            if let Some(note) = lifecycle_note(lifecycle) {
                out.push_str(&note);
                out.push_str("\n\n");
            }
            let changes: Vec<_> = self.steps().iter().filter(|s| s.version == *version).collect();
            if Some(*version) == first {
                out.push_str("The first version.\n");
            } else if changes.is_empty() {
                out.push_str("No changes to request or response bodies.\n");
            }
            for change in changes {
                // A list item's continuation lines are indented to stay in
                // the item, so multi-paragraph descriptions render whole.
                let mut lines = change.description.trim().lines();
                let _ = writeln!(out, "- {}", lines.next().unwrap_or_default());
                for line in lines {
                    if line.trim().is_empty() {
                        out.push('\n');
                    } else {
                        let _ = writeln!(out, "  {line}");
                    }
                }
                if !change.operations.is_empty() {
                    let list: Vec<String> = change.operations.iter().map(|o| format!("`{o}`")).collect();
                    let _ = writeln!(out, "  Applies to {}.", list.join(", "));
                }
            }
        }
        out
    }
}

/// A sentence on a version that is not simply stable.
fn lifecycle_note(lifecycle: &Lifecycle) -> Option<String> {
    let notes = |link: Option<&str>| link.map(|l| format!(" [Migration notes]({l})."));
    match lifecycle {
        Lifecycle::Stable => None,
        Lifecycle::Deprecated(d) => {
            let mut note = format!("*Deprecated since {}", date(d.at));
            if let Some(sunset) = d.sunset {
                let _ = write!(note, "; sunset on {}", date(sunset));
            }
            note.push_str(".*");
            note.push_str(&notes(d.link.as_deref()).unwrap_or_default());
            Some(note)
        }
        Lifecycle::Removed { link } => Some(format!(
            "*Removed.*{}",
            notes(link.as_deref()).unwrap_or_default()
        )),
    }
}

/// `YYYY-MM-DD` of `at` in UTC (times before 1970 print as 1970-01-01).
fn date(at: SystemTime) -> String {
    let days = at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() / 86_400) as i64;
    // Howard Hinnant's `civil_from_days`: the proleptic Gregorian date of a
    // day count, with March as the first month so leap days come last.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn dates_are_utc_calendar_days() {
        let at = |secs| UNIX_EPOCH + Duration::from_secs(secs);
        assert_eq!(date(at(0)), "1970-01-01");
        assert_eq!(date(at(1_719_878_400)), "2024-07-02");
        assert_eq!(date(at(1_735_689_599)), "2024-12-31");
        assert_eq!(date(at(951_782_400)), "2000-02-29");
        assert_eq!(date(at(4_107_542_400)), "2100-03-01");
    }
}

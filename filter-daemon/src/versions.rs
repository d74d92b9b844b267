//! A rule list's version as its publisher states it: read from the list's header, and two
//! versions compared, for the rule set's identity and the refusal of a rollback.

use std::cmp::Ordering;

/// Comment lines read at the top of a list for its version, at most: list headers are a
/// few dozen lines (title, version, expiry, homepage, licence).
const HEADER_LINES_MAX: usize = 100;

/// The publisher's version in a list's header: `! Version: X` (`AdGuard`, `uBlock`) or
/// `# Version: X` (hosts files), among the comment lines the list opens with.
pub fn list_version(text: &str) -> Option<String> {
    for line in text.lines().take(HEADER_LINES_MAX) {
        let line = line.trim();
        if line.is_empty() || line.starts_with('[') {
            // Blank lines and `[Adblock Plus 2.0]` sit among the header's comments.
            continue;
        }
        let comment = line.strip_prefix('!').or_else(|| line.strip_prefix('#'))?;
        let comment = comment.trim_start();
        if let Some((key, value)) = comment.split_once(':')
            && key.trim().eq_ignore_ascii_case("version")
        {
            let value = value.trim();
            return (!value.is_empty()).then(|| value.to_owned());
        }
    }
    None
}

/// Compares two versions on their runs of digits, one by one as numbers:
/// `2026.12.10` > `2026.12.9`, `1.10` > `1.9`, `2.0.1` > `2.0`. Versions that carry the same
/// numbers are equal whatever else they say.
pub fn compare_versions(a: &str, b: &str) -> Ordering {
    let (a, b) = (numeric_runs(a), numeric_runs(b));
    for (x, y) in a.iter().zip(&b) {
        // Without leading zeros, a longer run is a larger number: no overflow whatever
        // the length.
        let order = x.len().cmp(&y.len()).then_with(|| x.cmp(y));
        if order != Ordering::Equal {
            return order;
        }
    }
    a.len().cmp(&b.len())
}

/// Whether a version carries digits to compare.
pub fn comparable(version: &str) -> bool {
    !numeric_runs(version).is_empty()
}

fn numeric_runs(version: &str) -> Vec<&str> {
    version
        .split(|c: char| !c.is_ascii_digit())
        .filter(|run| !run.is_empty())
        .map(|run| {
            let digits = run.trim_start_matches('0');
            if digits.is_empty() { "0" } else { digits }
        })
        .collect()
}

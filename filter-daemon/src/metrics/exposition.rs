//! The Prometheus text format's pieces (format 0.0.4): a family's HELP and TYPE, its
//! samples, label sets with their values escaped, numbers as the format writes them.

use std::fmt::Write as _;

/// A count as a gauge's value: exact below 2^53, far beyond any table or queue here.
#[allow(clippy::cast_precision_loss)]
pub(super) fn real(n: u64) -> f64 {
    n as f64
}

/// The one sample of a family without labels.
pub(super) fn one<T>(v: T) -> [(String, T); 1] {
    [(String::new(), v)]
}

/// `{a="x",b="y"}` with values escaped as the exposition format wants (`\`, `"`, newline).
pub(super) fn labels(pairs: &[(&str, &str)]) -> String {
    let mut out = String::from("{");
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let v = v
            .replace('\\', r"\\")
            .replace('"', "\\\"")
            .replace('\n', r"\n");
        let _ = write!(out, "{k}=\"{v}\"");
    }
    out.push('}');
    out
}

/// HELP (escaped as the format wants: `\` and newline) and TYPE of a family.
pub(super) fn head(out: &mut String, name: &str, help: &str, kind: &str) {
    let help = help.replace('\\', r"\\").replace('\n', r"\n");
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// One counter family: HELP, TYPE and a sample per label set.
pub(super) fn counter(
    out: &mut String,
    name: &str,
    help: &str,
    samples: impl IntoIterator<Item = (String, u64)>,
) {
    debug_assert!(name.ends_with("_total"), "counter {name} without _total");
    head(out, name, help, "counter");
    for (labels, v) in samples {
        let _ = writeln!(out, "{name}{labels} {v}");
    }
}

/// One gauge family: HELP, TYPE and a sample per label set.
pub(super) fn gauge(
    out: &mut String,
    name: &str,
    help: &str,
    samples: impl IntoIterator<Item = (String, f64)>,
) {
    debug_assert!(!name.ends_with("_total"), "gauge {name} named as a counter");
    head(out, name, help, "gauge");
    for (labels, v) in samples {
        let v = match v {
            v if v.is_nan() => "NaN".to_owned(),
            f64::INFINITY => "+Inf".to_owned(),
            f64::NEG_INFINITY => "-Inf".to_owned(),
            v => v.to_string(),
        };
        let _ = writeln!(out, "{name}{labels} {v}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_and_help_are_escaped() {
        assert_eq!(
            labels(&[("app", "a\"b\\c\nd"), ("x", "y")]),
            r#"{app="a\"b\\c\nd",x="y"}"#
        );
        let mut out = String::new();
        counter(
            &mut out,
            "m_total",
            "Help \\ x.",
            [(labels(&[("k", "v")]), 3)],
        );
        assert_eq!(
            out,
            "# HELP m_total Help \\\\ x.\n# TYPE m_total counter\nm_total{k=\"v\"} 3\n"
        );
    }
}

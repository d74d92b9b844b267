//! What a benchmark run produces: tables (markdown), the same figures as JSON, the checks
//! that make a quick run fail, and the targets of the benchmark issue.

use std::fmt::Write as _;

use serde_json::{Value, json};

/// One markdown table with a title and notes under it.
pub struct Table {
    pub title: String,
    pub headers: Vec<String>,
    pub rows: Vec<Vec<String>>,
    pub notes: Vec<String>,
}

impl Table {
    pub fn new(title: impl Into<String>, headers: &[&str]) -> Self {
        Self {
            title: title.into(),
            headers: headers.iter().map(|h| (*h).to_owned()).collect(),
            rows: Vec::new(),
            notes: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub fn note(&mut self, note: impl Into<String>) {
        self.notes.push(note.into());
    }

    pub fn markdown(&self) -> String {
        let mut s = format!("### {}\n\n", self.title);
        let line = |cells: &[String]| format!("| {} |\n", cells.join(" | "));
        s.push_str(&line(&self.headers));
        s.push_str(&line(
            &self
                .headers
                .iter()
                .map(|_| "---".to_owned())
                .collect::<Vec<_>>(),
        ));
        for r in &self.rows {
            s.push_str(&line(r));
        }
        for n in &self.notes {
            let _ = write!(s, "\n{n}\n");
        }
        s
    }
}

/// A check of correctness (a counter that must have risen by exactly so much): the only
/// thing that fails the command.
pub struct Check {
    pub what: String,
    pub ok: bool,
    pub detail: String,
}

/// Everything a run reports.
#[derive(Default)]
pub struct Report {
    pub tables: Vec<Table>,
    pub json: serde_json::Map<String, Value>,
    pub checks: Vec<Check>,
}

impl Report {
    /// Records that `reason` rose by `got` where `want` was expected.
    pub fn counter_check(&mut self, what: &str, reason: &str, want: u64, got: u64, others: u64) {
        let ok = got == want && others == 0;
        let detail = if others == 0 {
            format!("{reason} +{got} (expected +{want})")
        } else {
            format!("{reason} +{got} (expected +{want}); {others} packets counted elsewhere")
        };
        self.checks.push(Check {
            what: what.to_owned(),
            ok,
            detail,
        });
    }

    pub fn fail(&mut self, what: &str, detail: String) {
        self.checks.push(Check {
            what: what.to_owned(),
            ok: false,
            detail,
        });
    }

    pub fn set(&mut self, key: &str, value: Value) {
        self.json.insert(key.to_owned(), value);
    }

    pub fn push(&mut self, key: &str, value: Value) {
        let entry = self.json.entry(key).or_insert_with(|| json!([]));
        if let Value::Array(a) = entry {
            a.push(value);
        }
    }
}

/// A target of the benchmark issue, evaluated: the cell of the last column.
pub struct Target {
    pub ok: bool,
    pub text: String,
}

impl Target {
    /// `value` must be at most `limit` (`unit` after the numbers).
    pub fn at_most(value: f64, limit: f64, unit: &str) -> Self {
        let ok = value <= limit;
        let text = if ok {
            format!("✓ ≤ {limit}{unit}: {} under", num(limit - value))
        } else {
            format!(
                "✗ > {limit}{unit}: {}{unit} over ({:.1}× the target)",
                num(value - limit),
                value / limit
            )
        };
        Self { ok, text }
    }

    /// `value` must be at least `limit`.
    pub fn at_least(value: f64, limit: f64, unit: &str) -> Self {
        let ok = value >= limit;
        let text = if ok {
            format!("✓ ≥ {limit}{unit}: {}{unit} over", num(value - limit))
        } else {
            format!(
                "✗ < {limit}{unit}: short by {}{unit} ({:.0} % of the target)",
                num(limit - value),
                value / limit * 100.0
            )
        };
        Self { ok, text }
    }

    /// `ratio` (new / old) must not exceed 1 + `limit_pct` / 100.
    pub fn increase(ratio: f64, limit_pct: f64) -> Self {
        let pct = (ratio - 1.0) * 100.0;
        let ok = pct <= limit_pct;
        let text = if ok {
            format!("✓ {pct:+.1} % (limit +{limit_pct} %)")
        } else {
            format!(
                "✗ {pct:+.1} % (limit +{limit_pct} %: {:.1} points over)",
                pct - limit_pct
            )
        };
        Self { ok, text }
    }

    pub fn json(&self) -> Value {
        json!({ "met": self.ok, "text": self.text })
    }
}

fn num(v: f64) -> String {
    if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

/// A nanosecond figure for a table cell.
pub fn ns(v: f64) -> String {
    if v.abs() >= 1000.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

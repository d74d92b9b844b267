//! What became of each technique: the session run against the daemon, the reasons its
//! counters moved (from `sni-filter stats --json`), whether the server answered the banned
//! hello, the verdict drawn from both, and the table printed from the rows.

use std::{collections::BTreeMap, fmt::Write as _};

use sni_filter_lab::{
    Daemon,
    craft::{self, Wire},
};

use super::hellos::Hellos;
use super::techniques::TECHNIQUES;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Verdict {
    Blocked,
    ByPolicy,
    Bypass,
}

impl Verdict {
    pub fn name(self) -> &'static str {
        match self {
            Self::Blocked => "blocked",
            Self::ByPolicy => "uninspectable-by-policy",
            Self::Bypass => "bypass",
        }
    }
}

pub struct Row {
    pub technique: &'static str,
    pub verdict: Verdict,
    pub reasons: String,
    pub answered: bool,
}

/// Packets counted so far by reason, from `sni-filter stats --json`.
pub fn counters(daemon: &Daemon) -> BTreeMap<String, u64> {
    let out = daemon
        .command(["stats", "--json"])
        .output()
        .expect("stats runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("stats --json");
    v["reasons"]
        .as_object()
        .expect("reasons")
        .iter()
        .map(|(k, c)| (k.clone(), c["packets"].as_u64().unwrap_or(0)))
        .collect()
}

/// The reasons that matter to the table whose counters moved between two reads.
pub fn moved(before: &BTreeMap<String, u64>, after: &BTreeMap<String, u64>) -> Vec<String> {
    after
        .iter()
        .filter(|(k, _)| {
            k.starts_with("uninspectable_") || k.starts_with("hello_") || *k == "blocked_flow"
        })
        .filter(|(k, v)| before.get(*k).copied().unwrap_or(0) < **v)
        .map(|(k, v)| format!("{k}+{}", v - before.get(k).copied().unwrap_or(0)))
        .collect()
}

pub fn run_suite(wire: &Wire, daemon: &Daemon, h: &Hellos, port_base: u16) -> Vec<Row> {
    let banned_sessions = [
        craft::client_hello_session(&h.banned),
        craft::client_hello_session(&h.small),
        craft::client_hello_session(&h.mixed_case),
        craft::client_hello_session(&h.trailing_dot),
        craft::client_hello_session(&h.padded),
        craft::client_hello_session(&h.post_quantum),
    ];
    let mut rows = Vec::new();
    for (i, t) in TECHNIQUES.iter().enumerate() {
        let port = port_base + i as u16;
        let mut plan = (t.plan)(h);
        plan.ipv6 = t.ipv6;
        let before = counters(daemon);
        let answer = wire.session(port, &plan).expect("the session runs");
        let reasons = moved(&before, &counters(daemon));
        // Records re-cut from the handshake keep its session id; so do the variants.
        let answered = answer
            .server_hello_session
            .as_ref()
            .is_some_and(|s| banned_sessions.iter().flatten().any(|b| b == s));
        let by_policy = reasons.iter().any(|r| r.starts_with("uninspectable_"));
        let verdict = match (answered, by_policy) {
            (_, true) => Verdict::ByPolicy,
            (true, false) => Verdict::Bypass,
            (false, false) => Verdict::Blocked,
        };
        rows.push(Row {
            technique: t.name,
            verdict,
            reasons: if reasons.is_empty() {
                "-".into()
            } else {
                reasons.join(" ")
            },
            answered,
        });
    }
    rows
}

pub fn table(heading: &str, rows: &[Row]) -> String {
    let mut out = format!(
        "evasion suite, {heading}\n{:<66} {:<24} {:<8} {}\n",
        "technique", "result", "served", "counted (reason+packets)"
    );
    for r in rows {
        let _ = writeln!(
            out,
            "{:<66} {:<24} {:<8} {}",
            r.technique,
            r.verdict.name(),
            if r.answered { "yes" } else { "no" },
            r.reasons
        );
    }
    out
}

//! What the program tests share: the compiled program loaded with a configuration's rules,
//! frames run through `BPF_PROG_TEST_RUN` with the counters they moved, and the one table
//! runner that TCP and QUIC cases alike go through.

use std::path::Path;

use filter_common::{Counter, Reason};
use sni_filter::{config::Config, filter::Filter, rules::RuleSet};

// Not every binary that includes this module runs frames.
#[allow(unused_imports)]
pub use filter_common::wire::{XDP_DROP, XDP_PASS, XDP_TX};

/// The program loaded for the configuration `text` (named `name` in messages), its rules
/// installed; with the configuration and the compiled rules for callers that need them.
pub fn load_with(name: &str, text: &str) -> (Filter, Config, RuleSet) {
    let path = Path::new("/nonexistent").join(format!("{name}.toml"));
    let config = Config::parse(&path, text).expect("the test's configuration parses");
    let set = RuleSet::compile(&config).expect("the test's rules compile");
    let mut filter = Filter::load_for(&config).expect("the program loads (run as root)");
    filter.install(&set).expect("rules install");
    (filter, config, set)
}

/// The reasons whose packet counts rose between two reads, with how much, in
/// [`Reason::ALL`] order.
pub fn reasons_moved(before: &[Counter], after: &[Counter]) -> Vec<(Reason, u64)> {
    Reason::ALL
        .iter()
        .filter_map(|&r| {
            let d = after[r as usize].packets - before[r as usize].packets;
            (d > 0).then_some((r, d))
        })
        .collect()
}

/// Runs `frames` in order: the action of the last one (0 for none) and the reasons that
/// rose.
pub fn run_frames(filter: &Filter, frames: &[Vec<u8>]) -> (u32, Vec<(Reason, u64)>) {
    let before = filter.counters().expect("counters readable");
    let mut last = 0;
    for frame in frames {
        last = filter.run_frame(frame).expect("test run");
    }
    let after = filter.counters().expect("counters readable");
    (last, reasons_moved(&before, &after))
}

/// The frames of a case, sent in order.
pub type Frames = Vec<Vec<u8>>;

/// One row of a table: a name, the frames sent in order, the action expected for the last
/// frame and the reasons expected to rise (all others stay).
pub struct Case {
    pub name: &'static str,
    pub frames: Frames,
    /// Run with `uninspectable = "drop"` (else "pass"), for tables that load both.
    pub strict: bool,
    pub action: u32,
    /// Reasons expected to rise, with the number of packets.
    pub counted: Vec<(Reason, u64)>,
}

pub fn case(name: &'static str, frames: Frames, action: u32, counted: &[(Reason, u64)]) -> Case {
    Case {
        name,
        frames,
        strict: false,
        action,
        counted: counted.to_vec(),
    }
}

/// A case run with `uninspectable = "drop"`.
pub fn strict(name: &'static str, frames: Frames, action: u32, counted: &[(Reason, u64)]) -> Case {
    Case {
        strict: true,
        ..case(name, frames, action, counted)
    }
}

/// What went differently than `case` expects when its frames ran through `filter`.
fn problems(filter: &Filter, case: &Case) -> Vec<String> {
    let (action, moved) = run_frames(filter, &case.frames);
    let mut problems = Vec::new();
    if action != case.action {
        problems.push(format!("action {action}, expected {}", case.action));
    }
    let count = |list: &[(Reason, u64)], r: Reason| {
        list.iter()
            .filter(|(w, _)| *w == r)
            .map(|(_, n)| *n)
            .next()
            .unwrap_or(0)
    };
    for r in Reason::ALL {
        let (delta, want) = (count(&moved, r), count(&case.counted, r));
        if delta != want {
            problems.push(format!("{} rose by {delta}, expected {want}", r.name()));
        }
    }
    problems
}

/// Runs every case through the filter `pick` gives it, prints a line per case and fails
/// once at the end with every case that went wrong.
pub fn run_table<'f>(cases: Vec<Case>, pick: impl Fn(&Case) -> &'f Filter) {
    let mut failures = Vec::new();
    for c in cases {
        let problems = problems(pick(&c), &c);
        println!(
            "{:<55} {}",
            c.name,
            if problems.is_empty() { "ok" } else { "FAILED" }
        );
        if !problems.is_empty() {
            failures.push(format!("{}: {}", c.name, problems.join("; ")));
        }
    }
    assert!(
        failures.is_empty(),
        "{} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

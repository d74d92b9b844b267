//! Per-packet cost of each kind of packet through `BPF_PROG_TEST_RUN`, next to
//! `bench_pass` timed in the same run, with the counter each class exercises checked.
//!
//! State persists between the repeats of one call, so each class is set up to measure what
//! its name says: a packet of a blocked flow after the flow's hello was blocked once; a
//! blocked hello flagged SYN, which ends the previous repeat's verdict; the classes that
//! need fresh per-flow state each repeat (the first and second segments of a split hello,
//! a blocked hello on a new flow) are timed one packet per call on distinct flows instead.

mod classes;
mod shots;

use std::path::Path;

use anyhow::{Context as _, Result};
use filter_common::{Counter, Reason};
use serde_json::json;
use sni_filter::{config::Config, filter::Filter, rules::RuleSet};

use super::bpf::{self, Floors, XDP_PASS};
use super::frames;
use super::report::{Report, Table, Target, ns};
use classes::classes;
use shots::single_shots;

/// How much each measurement repeats.
#[derive(Clone, Copy)]
pub struct Plan {
    /// Repeats per `BPF_PROG_TEST_RUN` call.
    pub repeat: u32,
    /// Calls per class; the median is reported.
    pub runs: usize,
    /// Flows timed one packet per call, for the classes that need fresh state.
    pub shots: usize,
}

/// A filter with the benchmark's configuration, loaded and filled.
pub fn filter_for(text: &str, dir: &Path) -> Result<(Filter, RuleSet)> {
    let config = Config::parse(&dir.join("bench.toml"), text).context("benchmark configuration")?;
    let set = RuleSet::compile(&config).context("benchmark rules")?;
    let mut filter = Filter::load_for(&config).context("loading the filter (run as root)")?;
    filter.install(&set).context("installing the rules")?;
    Ok((filter, set))
}

/// Counters summed over CPUs.
pub fn counters(filter: &Filter) -> Result<Vec<Counter>> {
    filter.counters().context("reading the counters")
}

/// How many packets each reason gained between two snapshots.
pub fn delta(before: &[Counter], after: &[Counter]) -> Vec<u64> {
    before
        .iter()
        .zip(after)
        .map(|(b, a)| a.packets.saturating_sub(b.packets))
        .collect()
}

/// Checks that `reason` rose by `want` and nothing else moved but `also` (reasons of
/// untimed set-up packets, with their counts).
pub fn check_counts(
    report: &mut Report,
    what: &str,
    d: &[u64],
    reason: Reason,
    want: u64,
    also: &[(Reason, u64)],
) {
    let got = d[reason as usize];
    let mut others = 0;
    for (i, &n) in d.iter().enumerate() {
        if i == reason as usize {
            continue;
        }
        let expected: u64 = also
            .iter()
            .filter(|(r, _)| *r as usize == i)
            .map(|(_, n)| n)
            .sum();
        others += n.abs_diff(expected);
    }
    report.counter_check(what, reason.name(), want, got, others);
}

/// What `time_repeated` measured of one class.
pub struct Repeated {
    /// ns per packet of each run, of the filter and of `bench_pass`.
    pub values: Vec<f64>,
    pub floor: Vec<f64>,
    /// How much each reason rose over all runs, and how much the class's reason should.
    pub d: Vec<u64>,
    pub want: u64,
}

/// Times `frame` through the filter and `bench_pass` back to back, `plan.runs` calls of
/// `plan.repeat` each; checks each call's action and that `reason` (and nothing else) rose
/// by every repeat. `class` is (key, frame, expected action, reason).
pub fn time_repeated(
    filter: &Filter,
    floors: &Floors,
    plan: Plan,
    report: &mut Report,
    class: (&str, &[u8], u32, Reason),
) -> Result<Repeated> {
    let (key, frame, action, reason) = class;
    let before = counters(filter)?;
    let mut values = Vec::new();
    let mut floor = Vec::new();
    for _ in 0..plan.runs {
        let f = bpf::time(floors.pass(), frame, plan.repeat)?;
        let v = bpf::time(filter.program(), frame, plan.repeat)?;
        if v.action != action || f.action != XDP_PASS {
            report.fail(
                key,
                format!(
                    "action {} (expected {action}), bench_pass {}",
                    v.action, f.action
                ),
            );
        }
        values.push(v.ns);
        floor.push(f.ns);
    }
    let d = delta(&before, &counters(filter)?);
    let want = u64::from(plan.repeat) * plan.runs as u64;
    check_counts(report, key, &d, reason, want, &[]);
    Ok(Repeated {
        values,
        floor,
        d,
        want,
    })
}

/// Times every class; one table row and one JSON entry each.
pub fn run(plan: Plan, floors: &Floors, dir: &Path, report: &mut Report) -> Result<()> {
    let (filter, _) = filter_for(frames::CONFIG, dir)?;
    let mut table = Table::new(
        format!(
            "Per packet: BPF_PROG_TEST_RUN, repeat {}, median of {} runs, one CPU",
            plan.repeat, plan.runs
        ),
        &[
            "class",
            "counter checked",
            "ns/packet",
            "bench_pass",
            "net ns",
            "target (net)",
        ],
    );
    for class in classes() {
        for frame in &class.prime {
            filter.run_frame(frame).context("priming")?;
        }
        let Repeated {
            values,
            floor,
            d,
            want,
        } = time_repeated(
            &filter,
            floors,
            plan,
            report,
            (class.key, &class.frame, class.action, class.reason),
        )?;
        let net: Vec<f64> = values.iter().zip(&floor).map(|(v, f)| v - f).collect();
        let (v, f, n) = (bpf::median(&values), bpf::median(&floor), bpf::median(&net));
        let target = class.target.map(|limit| Target::at_most(n, limit, " ns"));
        table.row(vec![
            class.label.to_owned(),
            format!("{} +{}", class.reason.name(), d[class.reason as usize]),
            ns(v),
            ns(f),
            ns(n),
            target.as_ref().map_or_else(String::new, |t| t.text.clone()),
        ]);
        report.push(
            "per_packet",
            json!({
                "class": class.key, "label": class.label, "counter": class.reason.name(),
                "counted": d[class.reason as usize], "expected": want,
                "ns": v, "floor_ns": f, "net_ns": n,
                "runs_ns": values, "runs_floor_ns": floor,
                "target": target.as_ref().map(Target::json),
            }),
        );
    }
    table.note(
        "ns/packet is the kernel's figure (average over the repeats of one call); net is the \
         median over runs of (class - bench_pass) timed back to back on the same frame. \
         Targets are compared with the net figure.",
    );
    table.note(
        "Blocked hellos carry SYN (a TCP Fast Open hello): a SYN ends the standing verdict of \
         its 5-tuple, so every repeat is a fresh verdict, at the price of removing the \
         previous one. The ring of flow events fills early in a run, so these repeats time \
         a failed event reservation, not a written event. Hellos are sent in one frame \
         (1.8 KB, as a GSO super-packet or a jumbo frame carries them).",
    );
    report.tables.push(table);
    single_shots(plan, floors, &filter, report)
}

//! The hello classes with 10 to 1M rules loaded, queried with many distinct names:
//! `BPF_PROG_TEST_RUN` repeats one frame, so each name gets a share of the repeats and the
//! figures are averaged over the names. A second measure sends each of thousands of
//! names once per call, so the rule table is not warm in the cache from the previous repeat.

use std::fmt::Write as _;
use std::fs;
use std::path::Path;
use std::time::Instant;

use anyhow::{Context as _, Result};
use filter_common::Reason;
use serde_json::json;
use sni_filter::{config::Config, filter::Filter, rules::RuleSet};

use super::Mode;
use super::bpf::{self, Floors, XDP_PASS};
use super::frames;
use super::packet::{check_counts, counters, delta};
use super::report::{Report, Table, Target, ns};

/// Names per class in the repeated measure.
const NAMES: usize = 16;

const TLDS: [&str; 3] = ["com", "net", "org"];

/// The `i`th rule of a generated list: two labels, like most entries of real lists.
pub fn rule_name(i: usize) -> String {
    format!("r{i:07x}-bench.{}", TLDS[i % TLDS.len()])
}

/// A name under the `i`th rule.
fn matched_name(i: usize) -> String {
    format!("www.{}", rule_name(i))
}

/// A name of the same shape and length that no rule matches.
fn allowed_name(i: usize) -> String {
    format!("www.a{i:07x}-bench.{}", TLDS[i % TLDS.len()])
}

/// Writes a list of `n` rules and returns the configuration text using it, with room for
/// `rules_max` rules.
pub fn rule_config(dir: &Path, n: usize, rules_max: usize, action: &str) -> Result<String> {
    let list = dir.join(format!("rules-{n}.txt"));
    let mut text = String::with_capacity(n * 20);
    for i in 0..n {
        text.push_str(&rule_name(i));
        text.push('\n');
    }
    fs::write(&list, text).with_context(|| format!("writing {}", list.display()))?;
    Ok(format!(
        "[filter]\ninspected_ports = [443]\nrules_max = {}\n\n[apps.bench]\naction = \"{action}\"\nlists = [\"{}\"]\n",
        rules_max.max(16),
        list.display()
    ))
}

struct Class {
    key: &'static str,
    label: &'static str,
    first: bool,
    matched: bool,
}

const CLASSES: [Class; 4] = [
    Class {
        key: "allowed_first",
        label: "hello, SNI first, allowed",
        first: true,
        matched: false,
    },
    Class {
        key: "allowed_last",
        label: "hello, SNI last, allowed",
        first: false,
        matched: false,
    },
    Class {
        key: "matched_first",
        label: "hello, SNI first, matched",
        first: true,
        matched: true,
    },
    Class {
        key: "matched_last",
        label: "hello, SNI last, matched",
        first: false,
        matched: true,
    },
];

/// Net ns per class (repeated), per class (one per call), for one rule count.
struct Size {
    rules: usize,
    warm: Vec<f64>,
    cold: Vec<f64>,
}

/// Compiles, loads and installs `n` generated rules in `monitor` mode with `rules_max = n`;
/// if the table cannot hold them at that size, with twice the room (and says so). Returns
/// the seconds of each step and the `rules_max` used.
fn load_rules(dir: &Path, n: usize) -> Result<(Filter, RuleSet, [f64; 3], usize)> {
    let mut rules_max = n;
    loop {
        let text = rule_config(dir, n, rules_max, "monitor")?;
        let t = Instant::now();
        let config = Config::parse(&dir.join("bench.toml"), &text)?;
        let set = RuleSet::compile(&config)?;
        let compile = t.elapsed().as_secs_f64();
        let t = Instant::now();
        let mut filter = Filter::load_for(&config).context("loading the filter")?;
        let load = t.elapsed().as_secs_f64();
        let t = Instant::now();
        match filter.install(&set) {
            Ok(()) => {
                let install = t.elapsed().as_secs_f64();
                return Ok((filter, set, [compile, load, install], rules_max));
            }
            Err(e) if rules_max == n && e.to_string().contains("rules_max") => {
                println!("   {n} rules with rules_max = {n}: {e}; trying twice the room");
                rules_max = 2 * n;
            }
            Err(e) => return Err(e).context("installing the rules"),
        }
    }
}

pub fn run(
    mode: &Mode,
    floors: &Floors,
    dir: &Path,
    cpu: usize,
    report: &mut Report,
) -> Result<()> {
    let mut sizes = Vec::new();
    let mut loads = Table::new(
        "Loading rule sets (in the benchmark process)",
        &[
            "rules",
            "read + compile",
            "load the program (verifier)",
            "fill the rule map",
        ],
    );
    for &n in mode.rule_counts {
        let (filter, set, times, rules_max) = load_rules(dir, n)?;
        let [compile, load, install] = times;
        if rules_max != n {
            let msg = format!(
                "{n} rules did not fit a rule table sized for rules_max = {n}; measured with rules_max = {rules_max}"
            );
            loads.note(msg.clone());
            report.fail(&format!("loading {n} rules"), msg);
        }
        let count = set.rule_count();
        drop(set);
        loads.row(vec![
            count.to_string(),
            format!("{compile:.2} s"),
            format!("{load:.2} s"),
            format!("{install:.2} s"),
        ]);
        report.push(
            "rule_loading",
            json!({
                "rules": count, "rules_max": rules_max, "compile_s": compile, "load_s": load,
                "install_s": install,
            }),
        );
        bpf::pin(Some(cpu))?;
        let measured = measure(mode, floors, &filter, n, report);
        bpf::pin(None)?;
        sizes.push(measured?);
    }
    loads.note(
        "The benchmark binary is a debug build: these load times are upper bounds; the \
         daemon's (release build) are in the daemon table.",
    );

    let mut headers: Vec<String> = vec!["class".into()];
    headers.extend(sizes.iter().map(|s| format!("{} rules", s.rules)));
    let (first, last) = (&sizes[0], &sizes[sizes.len() - 1]);
    headers.push(format!("{}/{}", last.rules, first.rules));
    headers.push("target".into());
    let header_refs: Vec<&str> = headers.iter().map(String::as_str).collect();
    let mut table = Table::new(
        format!(
            "Rule scaling: net ns per hello over bench_pass; repeated: {} names per class sharing repeat {}, median of {} runs; one per call: {} names, median",
            NAMES, mode.scaling_repeat, mode.scaling_runs, mode.packet.shots
        ),
        &header_refs,
    );
    for (c, class) in CLASSES.iter().enumerate() {
        for (kind, pick) in [("repeated", 0), ("one per call", 1)] {
            if pick == 1 && class.first {
                continue;
            }
            let get = |s: &Size| if pick == 0 { s.warm[c] } else { s.cold[c] };
            let ratio = get(last) / get(first);
            let target = Target::increase(ratio, 20.0);
            let mut row = vec![format!("{} ({kind})", class.label)];
            row.extend(sizes.iter().map(|s| ns(get(s))));
            row.push(format!("{ratio:.2}×"));
            row.push(target.text.clone());
            table.row(row);
            report.push(
                "rule_scaling",
                json!({
                    "class": class.key, "measure": kind,
                    "net_ns": sizes.iter().map(|s| json!({ "rules": s.rules, "net_ns": get(s) })).collect::<Vec<_>>(),
                    "ratio": ratio, "target": target.json(),
                }),
            );
        }
    }
    let mut note = String::from(
        "Matched names fall under an app in `monitor` mode, so that every repeat reads and \
         matches the name (a `drop` verdict would stick to the flow). Rules are two labels \
         (`r0001234-bench.com`); names have three (`www.r0001234-bench.com`). Target: the \
         largest rule set costs at most 20 % more than 10 rules.",
    );
    if mode.quick {
        let _ = write!(note, " Quick mode loads 10 and 1k rules only.");
    }
    table.note(note);
    report.tables.push(table);
    report.tables.push(loads);
    Ok(())
}

fn measure(
    mode: &Mode,
    floors: &Floors,
    filter: &Filter,
    n: usize,
    report: &mut Report,
) -> Result<Size> {
    let per_name = (mode.scaling_repeat / NAMES as u32).max(1);
    let mut warm = Vec::new();
    let mut cold = Vec::new();
    for class in &CLASSES {
        let reason = if class.matched {
            Reason::HelloMonitored
        } else {
            Reason::HelloAllowed
        };
        let name = |i: usize| {
            if class.matched {
                // Spread over the whole set.
                matched_name((i * n / NAMES.max(1) + i) % n)
            } else {
                allowed_name(i)
            }
        };
        let hellos: Vec<Vec<u8>> = (0..NAMES)
            .map(|i| frames::hello_frame(31000 + i as u16, &name(i), class.first))
            .collect();
        let before = counters(filter)?;
        let mut nets = Vec::new();
        for _ in 0..mode.scaling_runs {
            // Every call costs a switch of the kernel's XDP dispatcher (milliseconds), so
            // the floor is timed once per run: it is the same for every name.
            let floor = bpf::time(floors.pass(), &hellos[0], per_name)?.ns;
            let mut v = 0.0;
            for h in &hellos {
                let t = bpf::time(filter.program(), h, per_name)?;
                if t.action != XDP_PASS {
                    report.fail(class.key, format!("{n} rules: action {}", t.action));
                }
                v += t.ns;
            }
            nets.push(v / NAMES as f64 - floor);
        }
        let d = delta(&before, &counters(filter)?);
        let want = u64::from(per_name) * NAMES as u64 * mode.scaling_runs as u64;
        check_counts(
            report,
            &format!("scaling {n} rules {}", class.key),
            &d,
            reason,
            want,
            &[],
        );
        warm.push(bpf::median(&nets));

        // One per call, thousands of names: SNI last only (the first-position rows would
        // say the same).
        if class.first {
            cold.push(0.0);
            continue;
        }
        let before = counters(filter)?;
        let shots = mode.packet.shots;
        let mut values = Vec::with_capacity(shots);
        for i in 0..shots {
            let nm = if class.matched {
                matched_name((i * 7919) % n)
            } else {
                allowed_name(1000 + i)
            };
            let h = frames::hello_frame(32000 + (i % 20000) as u16, &nm, false);
            let fl = bpf::time(floors.pass(), &h, 1)?;
            let t = bpf::time(filter.program(), &h, 1)?;
            values.push(t.ns - fl.ns);
        }
        let d = delta(&before, &counters(filter)?);
        check_counts(
            report,
            &format!("scaling {n} rules {} one per call", class.key),
            &d,
            reason,
            shots as u64,
            &[],
        );
        cold.push(bpf::median(&values));
    }
    Ok(Size {
        rules: n,
        warm,
        cold,
    })
}

//! Group: program tests (the compiled program through `BPF_PROG_TEST_RUN`, no namespaces;
//! see `filter-daemon/tests/README.md`).
//!
//! Differential test of the compiled XDP program: seeded, generated `ClientHello`s cut into TLS
//! records and TCP segments at random are judged by the program and by parsers of this test's
//! own (tls-parser for the hello, etherparse for the frames). Every disagreement fails it.
//!
//! Needs root (loading BPF programs). A disagreement prints the seed of its case;
//! `SNI_FILTER_DIFF_SEED=<seed>` runs that case alone and prints its frames, and
//! `SNI_FILTER_DIFF_CASES=<n>` runs more (or fewer) cases than the default.
//!
//! This file runs the comparison; the cases are made by `generate.rs` (with the names of
//! `names.rs`), read by the test's own parsers in `oracle.rs`, compared in `compare.rs`,
//! and mutated for the fuzzer in `fuzz.rs`.

#[path = "../common/mod.rs"]
mod common;

mod compare;
mod fuzz;
mod generate;
mod names;
mod oracle;

use std::{fmt::Write as _, time::Instant};

use filter_common::Note;
use rand::{RngCore, SeedableRng, rngs::SmallRng};
use sni_filter::filter::Filter;

use common::program::load_with;
use compare::{Tally, run_case};
use generate::generate_shaped;
use oracle::oracle;

/// Cases per run: a few hundred keep the run well under half a minute.
const CASES: u64 = 600;
/// Seed of the generator of case seeds: the same cases on every run.
const MASTER_SEED: u64 = 0x5e1f_d1ff_0000_0001;
/// Client ports of the cases count up from here, so that each case is a flow of its own
/// (a blocked flow stays blocked).
const FIRST_PORT: u16 = 2000;

/// The one banned domain: the name itself and every name below it.
const BANNED: &[u8] = b"tiktok.com";
const RULES: &str = "[filter]\nuninspectable = \"drop\"\n\n\
                     [apps.tiktok]\naction = \"drop\"\ndomains = [\"tiktok.com\"]\n";

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// The program loaded with the test's rules, every judged hello traced; and the banned
/// app's id.
fn differential_filter() -> (Filter, u16) {
    let (mut filter, _, set) = load_with("differential", RULES);
    let banned_app = set
        .apps
        .iter()
        .position(|a| a.name == "tiktok")
        .expect("the banned app") as u16;
    filter.set_trace_all(true).expect("trace_all");
    (filter, banned_app)
}

/// The two ways the program reads a hello: the fast path where it can (as deployed), and
/// the walker alone. Every case runs through both, each with maps of its own.
fn both_paths() -> ([(&'static str, Filter); 2], u16) {
    let (fast, banned_app) = differential_filter();
    let (mut walker, _) = differential_filter();
    walker.set_walker_only(true).expect("walker_only");
    ([("fast path", fast), ("walker only", walker)], banned_app)
}

#[test]
fn program_agrees_with_independent_parsers() {
    let started = Instant::now();
    let (mut paths, banned_app) = both_paths();
    for (_, filter) in &mut paths {
        let _ = filter.drain_events().expect("events readable");
    }

    let only = std::env::var("SNI_FILTER_DIFF_SEED").ok().map(|s| {
        let s = s.trim();
        s.strip_prefix("0x")
            .map_or_else(|| s.parse(), |h| u64::from_str_radix(h, 16))
            .expect("SNI_FILTER_DIFF_SEED: a number")
    });
    let cases = std::env::var("SNI_FILTER_DIFF_CASES")
        .ok()
        .map_or(CASES, |n| {
            n.trim().parse().expect("SNI_FILTER_DIFF_CASES: a number")
        });
    let mut seeds = SmallRng::seed_from_u64(MASTER_SEED);
    let seeds: Vec<u64> = match only {
        Some(seed) => vec![seed],
        None => (0..cases).map(|_| seeds.next_u64()).collect(),
    };

    let mut tally = Tally::default();
    // Each seed twice: as drawn, and whole in one record (most of those take the fast path).
    let shaped = seeds.iter().flat_map(|&seed| [(seed, false), (seed, true)]);
    for (i, (seed, whole)) in shaped.enumerate() {
        // Distinct ports, and past 2^16 cases distinct random addresses, keep flows apart.
        let case = generate_shaped(seed, FIRST_PORT.wrapping_add(i as u16), whole);
        if only.is_some() {
            println!("case {seed:#018x}: {}", case.describe());
            for (n, frame) in case.frames.iter().enumerate() {
                println!("frame {n}: {}", hex(frame));
            }
            println!("data after the hello: {}", hex(&case.after));
        }
        tally.cases += 1;
        let problems = match oracle(&case, banned_app) {
            Ok(expected) => {
                tally.count(&case, &expected);
                // Each path must agree with the parsers, and so with the other.
                paths
                    .iter_mut()
                    .flat_map(|(path, filter)| {
                        run_case(filter, &case, &expected)
                            .into_iter()
                            .map(move |p| format!("{path}: {p}"))
                    })
                    .collect()
            }
            Err(e) => vec![format!("the test's own parsers failed: {e}")],
        };
        if !problems.is_empty() {
            tally.disagree(&problems);
            println!(
                "case {i} seed {seed:#018x}{}: {}\n    ({})",
                if whole { " (whole)" } else { "" },
                problems.join("\n    "),
                case.describe()
            );
        }
    }
    println!("{}", tally.summary(started.elapsed().as_secs_f64()));
    let fast = paths[0].1.notes().expect("notes readable")[Note::HelloReadFast as usize];
    println!("{fast} of the hellos took the fast path");
    // Of the whole hellos, those above the MSS, with several names or with a decoy are
    // split or handed over: about 40 % remain.
    assert!(
        only.is_some() || fast >= seeds.len() as u64 / 4,
        "the fast path read {fast} of {} cases: the comparison would test little",
        2 * seeds.len()
    );
    assert_eq!(
        tally.disagreements, 0,
        "of {} cases, some disagree (each printed above with its seed)",
        tally.cases,
    );
}

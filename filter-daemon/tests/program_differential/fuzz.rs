//! The mutation fuzzer: generated cases whose frames are changed as a fuzzer would (bits
//! flipped, frames cut, repeated, swapped, lost), run through both paths of the program,
//! which must never fail, agree with each other, and drop a banned hello the oracle still
//! reads.

use std::time::Instant;

use filter_common::Reason;
use rand::{Rng, RngCore, SeedableRng, rngs::SmallRng};
use sni_filter::filter::Filter;

use super::common::program::XDP_DROP;
use super::compare::observe;
use super::generate::{Case, generate_shaped};
use super::oracle::{oracle, parse_frame};
use super::{differential_filter, hex};

/// Mutated cases by default; `SNI_FILTER_FUZZ_CASES` runs more.
pub const FUZZ_CASES: u64 = 400;
pub const FUZZ_SEED: u64 = 0xf022_5eed_0000_0001;
/// Mutated cases take ports from here (the generated ones from `FIRST_PORT`).
pub const FUZZ_FIRST_PORT: u16 = 30_000;

/// Where a frame's TCP payload starts (its length when the frame no longer parses).
pub fn payload_offset(frame: &[u8]) -> usize {
    parse_frame(frame).map_or(frame.len(), |(_, _, _, p)| {
        p.as_ptr() as usize - frame.as_ptr() as usize
    })
}

/// One mutation of a case's frames, as a fuzzer would make it, and whether a sender could
/// put the result on the wire as it is (payload bytes changed, frames repeated, reordered
/// or lost: yes; headers broken, lengths that no longer agree: no, a receiver drops those).
pub fn mutate(rng: &mut SmallRng, frames: &mut Vec<Vec<u8>>) -> (String, bool) {
    let i = rng.gen_range(0..frames.len());
    let payload = payload_offset(&frames[i]).min(frames[i].len().saturating_sub(1));
    match rng.gen_range(0..8) {
        0 => {
            let n = rng.gen_range(1..=8);
            for _ in 0..n {
                let at = rng.gen_range(payload..frames[i].len());
                frames[i][at] ^= 1 << rng.gen_range(0..8);
            }
            (format!("{n} payload bits flipped in frame {i}"), true)
        }
        1 => {
            // Anywhere: Ethernet, VLAN, IP and TCP headers too.
            let n = rng.gen_range(1..=4);
            for _ in 0..n {
                let at = rng.gen_range(0..frames[i].len());
                frames[i][at] ^= 1 << rng.gen_range(0..8);
            }
            (format!("{n} bits flipped anywhere in frame {i}"), false)
        }
        2 => {
            let at = rng.gen_range(14..frames[i].len().max(15));
            frames[i].truncate(at);
            (format!("frame {i} cut at {at}"), false)
        }
        3 => {
            let f = frames[i].clone();
            frames.insert(i, f);
            (format!("frame {i} twice"), true)
        }
        4 if frames.len() > 1 => {
            let j = (i + 1) % frames.len();
            frames.swap(i, j);
            (format!("frames {i} and {j} swapped"), true)
        }
        5 if frames.len() > 1 => {
            frames.remove(i);
            (format!("frame {i} lost"), true)
        }
        6 => {
            // The IP and TCP lengths no longer agree with the frame.
            let at = rng.gen_range(payload..=frames[i].len());
            frames[i].insert(at, rng.r#gen::<u8>());
            (format!("a byte inserted in frame {i} at {at}"), false)
        }
        _ => {
            // A length field of the hello set to an extreme.
            let at = rng.gen_range(payload..frames[i].len());
            frames[i][at] = if rng.r#gen::<bool>() { 0xff } else { 0 };
            (
                format!("payload byte {at} of frame {i} set to an extreme"),
                true,
            )
        }
    }
}

/// What the program counted for a mutated case, and the case (`SNI_FILTER_FUZZ_ONLY`).
pub fn show_mutated(
    filter: &Filter,
    before: &[filter_common::Counter],
    case: &Case,
    mutations: &[String],
) {
    let after = filter.counters().expect("counters");
    for r in Reason::ALL {
        let d = after[r as usize].packets - before[r as usize].packets;
        if d > 0 {
            println!("{}: {d}", r.name());
        }
    }
    println!("mutations: {mutations:?}; {}", case.describe());
    for (n, frame) in case.frames.iter().enumerate() {
        println!("frame {n}: {}", hex(frame));
    }
}

/// Mutated packets and packet sequences through the real program: it never fails (an error
/// or an action other than pass, drop or transmit), never counts an internal error, and
/// where the mutation left frames a sender could send with a hello the independent parsers
/// still read with a banned name, the program dropped some frame of it.
#[test]
pub fn mutated_packets_never_fail_the_program_nor_pass_a_banned_hello_still_readable() {
    let started = Instant::now();
    let (mut filter, banned_app) = differential_filter();
    let (mut walker, _) = differential_filter();
    walker.set_walker_only(true).expect("walker_only");
    let cases = std::env::var("SNI_FILTER_FUZZ_CASES")
        .ok()
        .map_or(FUZZ_CASES, |n| {
            n.trim().parse().expect("SNI_FILTER_FUZZ_CASES: a number")
        });
    // SNI_FILTER_FUZZ_ONLY=N: only case N, with what the program counted.
    let only: Option<u64> = std::env::var("SNI_FILTER_FUZZ_ONLY").ok().map(|n| {
        n.trim()
            .parse()
            .expect("SNI_FILTER_FUZZ_ONLY: a case number")
    });
    let mut rng = SmallRng::seed_from_u64(FUZZ_SEED);
    let (mut frames_run, mut still_readable, mut stricter, mut failures) =
        (0usize, 0usize, 0usize, Vec::new());
    for i in 0..cases {
        let seed = rng.next_u64();
        // Every other case whole in one record, so that mutations reach the fast path too.
        let mut case = generate_shaped(seed, FUZZ_FIRST_PORT.wrapping_add(i as u16), i % 2 == 1);
        let mut mrng = SmallRng::seed_from_u64(seed);
        let (mutations, sendable): (Vec<String>, Vec<bool>) = (0..mrng.gen_range(1..=3))
            .map(|_| mutate(&mut mrng, &mut case.frames))
            .unzip();
        let sendable = sendable.iter().all(|&s| s);
        if only.is_some_and(|n| n != i) {
            continue;
        }
        // The walker alone must do exactly what the fast path and the walker did.
        let frames: Vec<&Vec<u8>> = case.frames.iter().chain([&case.after]).collect();
        let by_walker = observe(&mut walker, &frames);
        let internal = Reason::InternalError as usize;
        let all_before = filter.counters().expect("counters");
        let before = all_before[internal].packets;
        let _ = filter.drain_events();
        let mut problems = Vec::new();
        frames_run += frames.len();
        let observed = observe(&mut filter, &frames);
        let actions = match &observed {
            Ok(o) => o.actions.clone(),
            Err(e) => {
                problems.push(e.clone());
                Vec::new()
            }
        };
        if let Some(action) = actions.iter().find(|a| !(1..=3).contains(*a)) {
            problems.push(format!("action {action}"));
        }
        if observed != by_walker {
            problems.push(format!(
                "the paths differ: fast path {observed:?}, walker only {by_walker:?}"
            ));
        }
        // Where the parsers still read a hello with a banned name, some frame of it must
        // have been dropped. Header bits the parsers do not model (TCP flags, lengths) may
        // make the program stricter than they are: counted, not a finding.
        if let (true, Ok(expected)) = (sendable, oracle(&case, banned_app))
            && expected.record_major_max < 0x10
        {
            still_readable += 1;
            let banned = expected
                .frames
                .iter()
                .any(|(_, r)| *r == Reason::HelloBlocked);
            let dropped = actions
                .iter()
                .take(case.frames.len())
                .any(|&a| a == XDP_DROP);
            if banned && !dropped {
                problems.push(format!(
                    "a banned hello the parsers read passed: actions {actions:?}, expected {:?}",
                    expected.frames
                ));
            } else if !banned && dropped {
                stricter += 1;
            }
        }
        if only.is_some() {
            show_mutated(&filter, &all_before, &case, &mutations);
        }
        if filter.counters().expect("counters")[internal].packets != before {
            problems.push("internal_error counted".into());
        }
        if !problems.is_empty() {
            failures.push(format!(
                "case {i} seed {seed:#018x} ({}): {}",
                mutations.join(", "),
                problems.join("; ")
            ));
        }
    }
    println!(
        "{cases} mutated cases ({frames_run} frames, {still_readable} sendable and still readable by the independent parsers, {stricter} of them dropped where the parsers saw no banned name) in {:.1} s: {} findings",
        started.elapsed().as_secs_f64(),
        failures.len()
    );
    for f in &failures {
        println!("{f}");
    }
    assert!(
        failures.is_empty(),
        "{} findings (printed above)",
        failures.len()
    );
}

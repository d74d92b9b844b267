//! Per-packet cost of each kind of packet through `BPF_PROG_TEST_RUN`, next to
//! `bench_pass` timed in the same run, with the counter each class exercises checked.
//!
//! State persists between the repeats of one call, so each class is set up to measure what
//! its name says: a packet of a blocked flow after the flow's hello was blocked once; a
//! blocked hello flagged SYN, which ends the previous repeat's verdict; the classes that
//! need fresh per-flow state each repeat (the first and second segments of a split hello,
//! a blocked hello on a new flow) are timed one packet per call on distinct flows instead.

use std::path::Path;

use anyhow::{Context as _, Result};
use filter_common::{Counter, Reason};
use serde_json::json;
use sni_filter::{config::Config, filter::Filter, rules::RuleSet};

use super::bpf::{self, Floors, XDP_DROP, XDP_PASS};
use super::frames::{self, ALLOWED, BANNED, WATCHED};
use super::report::{Report, Table, Target, ns};

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

struct Class {
    key: &'static str,
    label: &'static str,
    reason: Reason,
    action: u32,
    /// Sent once before the timing (untimed), on the class's own flow.
    prime: Vec<Vec<u8>>,
    frame: Vec<u8>,
    /// The target for the net cost, in ns.
    target: Option<f64>,
}

// One table of classes: long by nature.
#[allow(clippy::too_many_lines)]
fn classes() -> Vec<Class> {
    let blocked = frames::split_hello(30000, BANNED, false);
    let allowed_split = frames::split_hello(30001, ALLOWED, false);
    let retrans = frames::split_hello(30002, ALLOWED, false);
    let [syn, hello, first_data, data] = frames::connection_past_hello(30003, ALLOWED);
    vec![
        Class {
            key: "not_ip",
            label: "not IP (ARP)",
            reason: Reason::NotIp,
            action: XDP_PASS,
            prime: vec![],
            frame: frames::arp(),
            target: None,
        },
        Class {
            key: "udp",
            label: "UDP, not QUIC (DNS)",
            reason: Reason::Udp,
            action: XDP_PASS,
            prime: vec![],
            frame: frames::udp_dns(),
            target: None,
        },
        Class {
            key: "tcp_port_not_inspected",
            label: "TCP to a port not inspected (8080)",
            reason: Reason::TcpPortNotInspected,
            action: XDP_PASS,
            prime: vec![],
            frame: frames::tcp(30010, 8080).frame(&frames::app_data(1448)),
            target: Some(5.0),
        },
        Class {
            key: "tcp_not_handshake",
            label: "TCP data on 443, not a hello (1448 B)",
            reason: Reason::TcpNotHandshake,
            action: XDP_PASS,
            prime: vec![],
            frame: frames::tcp(30011, 443).frame(&frames::app_data(1448)),
            target: Some(30.0),
        },
        Class {
            key: "tcp_data_known_flow",
            label: "TCP data on 443 after the connection's SYN and hello (1448 B)",
            reason: Reason::TcpNotHandshake,
            action: XDP_PASS,
            prime: vec![syn, hello, first_data],
            frame: data,
            target: Some(30.0),
        },
        Class {
            key: "blocked_flow",
            label: "packet of a blocked flow",
            reason: Reason::BlockedFlow,
            action: XDP_DROP,
            prime: vec![blocked[0].clone(), blocked[1].clone()],
            frame: blocked[2].clone(),
            target: Some(35.0),
        },
        Class {
            key: "hello_allowed_first",
            label: "hello 1.8 KB, SNI first, allowed",
            reason: Reason::HelloAllowed,
            action: XDP_PASS,
            prime: vec![],
            frame: frames::hello_frame(30020, ALLOWED, true),
            target: None,
        },
        Class {
            key: "hello_allowed_last",
            label: "hello 1.8 KB, SNI last, allowed",
            reason: Reason::HelloAllowed,
            action: XDP_PASS,
            prime: vec![],
            frame: frames::hello_frame(30021, ALLOWED, false),
            target: Some(150.0),
        },
        Class {
            key: "hello_matched_first",
            label: "hello 1.8 KB, SNI first, matched (monitor rule)",
            reason: Reason::HelloMonitored,
            action: XDP_PASS,
            prime: vec![],
            frame: frames::hello_frame(30022, WATCHED, true),
            target: None,
        },
        Class {
            key: "hello_matched_last",
            label: "hello 1.8 KB, SNI last, matched (monitor rule)",
            reason: Reason::HelloMonitored,
            action: XDP_PASS,
            prime: vec![],
            frame: frames::hello_frame(30023, WATCHED, false),
            target: None,
        },
        Class {
            key: "hello_blocked_first",
            label: "hello 1.8 KB, SNI first, blocked (SYN-flagged: fresh verdict each repeat)",
            reason: Reason::HelloBlocked,
            action: XDP_DROP,
            prime: vec![],
            frame: frames::syn_hello_frame(30024, BANNED, true),
            target: None,
        },
        Class {
            key: "hello_blocked_last",
            label: "hello 1.8 KB, SNI last, blocked (SYN-flagged: fresh verdict each repeat)",
            reason: Reason::HelloBlocked,
            action: XDP_DROP,
            prime: vec![],
            frame: frames::syn_hello_frame(30025, BANNED, false),
            target: None,
        },
        Class {
            key: "split_first_resent",
            label: "split hello, 1st segment (1448 B) resent: compared with the kept copy",
            reason: Reason::HelloRetransmit,
            action: XDP_PASS,
            prime: vec![retrans[0].clone()],
            frame: retrans[0].clone(),
            target: Some(300.0),
        },
        Class {
            key: "split_second_resent",
            label: "split hello, 2nd segment resent after the hello concluded",
            reason: Reason::HelloRetransmit,
            action: XDP_PASS,
            prime: vec![allowed_split[0].clone(), allowed_split[1].clone()],
            frame: allowed_split[1].clone(),
            target: None,
        },
        Class {
            key: "header_malformed",
            label: "malformed: IPv4 header cut short",
            reason: Reason::HeaderMalformed,
            action: XDP_PASS,
            prime: vec![],
            frame: frames::truncated_ip(),
            target: None,
        },
    ]
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

/// Set-up frames, the timed frames (their times added up), clean-up frames.
type ShotFrames = (Vec<Vec<u8>>, Vec<Vec<u8>>, Vec<Vec<u8>>);

/// A class timed one packet per call, each on a flow of its own: `setup` frames go first
/// (untimed), the timed frames follow (their times added up; the action checked is the
/// last one's), `cleanup` frames leave no state behind.
struct Shot {
    key: &'static str,
    label: &'static str,
    reason: Reason,
    action: u32,
    /// Frames of flow `sport`.
    frames: fn(u16) -> ShotFrames,
    /// Reasons of the untimed frames, per shot.
    untimed: &'static [(Reason, u64)],
}

fn shots() -> Vec<Shot> {
    vec![
        Shot {
            key: "shot_hello_allowed_last",
            label: "hello 1.8 KB, SNI last, allowed (stateless: as above, one per call)",
            reason: Reason::HelloAllowed,
            action: XDP_PASS,
            frames: |p| (vec![], vec![frames::hello_frame(p, ALLOWED, false)], vec![]),
            untimed: &[],
        },
        Shot {
            key: "shot_hello_blocked_last",
            label: "hello 1.8 KB, SNI last, blocked, new flow",
            reason: Reason::HelloBlocked,
            action: XDP_DROP,
            frames: |p| {
                (
                    vec![],
                    vec![frames::hello_frame(p, BANNED, false)],
                    vec![frames::syn(p)],
                )
            },
            untimed: &[(Reason::TcpNoPayload, 1)],
        },
        Shot {
            key: "shot_split_first",
            label: "split hello, 1st segment (1448 B): state created",
            reason: Reason::HelloIncomplete,
            action: XDP_PASS,
            frames: |p| {
                let [a, b, c] = frames::split_hello(p, ALLOWED, false);
                (vec![], vec![a], vec![b, c])
            },
            untimed: &[(Reason::HelloAllowed, 1), (Reason::TcpNotHandshake, 1)],
        },
        Shot {
            key: "shot_split_second_allowed",
            label: "split hello, 2nd segment: SNI read, allowed",
            reason: Reason::HelloAllowed,
            action: XDP_PASS,
            frames: |p| {
                let [a, b, c] = frames::split_hello(p, ALLOWED, false);
                (vec![a], vec![b], vec![c])
            },
            untimed: &[(Reason::HelloIncomplete, 1), (Reason::TcpNotHandshake, 1)],
        },
        Shot {
            key: "shot_split_second_blocked",
            label: "split hello, 2nd segment: SNI read, blocked",
            reason: Reason::HelloBlocked,
            action: XDP_DROP,
            frames: |p| {
                let [a, b, _] = frames::split_hello(p, BANNED, false);
                (vec![a], vec![b], vec![frames::syn(p)])
            },
            untimed: &[(Reason::HelloIncomplete, 1), (Reason::TcpNoPayload, 1)],
        },
        Shot {
            key: "shot_split_both",
            label: "split Chrome hello, both segments (1448 B + rest, SNI in the 2nd), allowed",
            reason: Reason::HelloAllowed,
            action: XDP_PASS,
            frames: |p| {
                let [a, b, c] = frames::split_hello(p, ALLOWED, false);
                (vec![], vec![a, b], vec![c])
            },
            untimed: &[(Reason::HelloIncomplete, 1), (Reason::TcpNotHandshake, 1)],
        },
        Shot {
            key: "shot_worst_packet",
            label: "worst packet: 1st segment (1448 B) of a hello in 1-byte TLS records",
            reason: Reason::HelloIncomplete,
            action: XDP_PASS,
            frames: |p| {
                (
                    vec![],
                    vec![frames::one_byte_records_segment(p, ALLOWED)],
                    vec![frames::syn(p)],
                )
            },
            untimed: &[(Reason::TcpNoPayload, 1)],
        },
    ]
}

/// Times the classes that need fresh state: one packet per call, `plan.shots` flows each.
fn single_shots(plan: Plan, floors: &Floors, filter: &Filter, report: &mut Report) -> Result<()> {
    let mut table = Table::new(
        format!(
            "Per packet, fresh state: one packet per BPF_PROG_TEST_RUN call, {} flows, median",
            plan.shots
        ),
        &[
            "class",
            "counter checked",
            "ns/packet",
            "bench_pass",
            "net ns",
        ],
    );
    for shot in shots() {
        let before = counters(filter)?;
        let mut values = Vec::with_capacity(plan.shots);
        let mut floor = Vec::with_capacity(plan.shots);
        for i in 0..plan.shots {
            let port = 40000 + (i % 20000) as u16;
            let (setup, timed, cleanup) = (shot.frames)(port);
            for f in &setup {
                filter.run_frame(f)?;
            }
            let (mut v, mut fl, mut action) = (0.0, 0.0, None);
            for frame in &timed {
                fl += bpf::time(floors.pass(), frame, 1)?.ns;
                let t = bpf::time(filter.program(), frame, 1)?;
                v += t.ns;
                action = Some(t.action);
            }
            if action != Some(shot.action) {
                report.fail(
                    shot.key,
                    format!("action {action:?} (expected {})", shot.action),
                );
                break;
            }
            for f in &cleanup {
                filter.run_frame(f)?;
            }
            values.push(v);
            floor.push(fl);
        }
        let d = delta(&before, &counters(filter)?);
        let n = plan.shots as u64;
        let untimed: Vec<(Reason, u64)> = shot.untimed.iter().map(|(r, k)| (*r, k * n)).collect();
        let want = n + untimed
            .iter()
            .filter(|(r, _)| *r == shot.reason)
            .map(|(_, k)| k)
            .sum::<u64>();
        let also: Vec<(Reason, u64)> = untimed
            .into_iter()
            .filter(|(r, _)| *r != shot.reason)
            .collect();
        check_counts(report, shot.key, &d, shot.reason, want, &also);
        let (v, f) = (bpf::median(&values), bpf::median(&floor));
        table.row(vec![
            shot.label.to_owned(),
            format!("{} +{}", shot.reason.name(), d[shot.reason as usize]),
            ns(v),
            ns(f),
            ns(v - f),
        ]);
        report.push(
            "per_packet_fresh",
            json!({
                "class": shot.key, "label": shot.label, "counter": shot.reason.name(),
                "counted": d[shot.reason as usize], "expected": want,
                "ns": v, "floor_ns": f, "net_ns": v - f, "shots": plan.shots,
            }),
        );
    }
    table.note(
        "Each flow gets its set-up segments untimed, then one timed call (repeat 1) of \
         bench_pass and of the filter on the timed frame, then clean-up segments (the data \
         after the hello, or a SYN that ends a blocked verdict). A call of one repeat \
         includes the kernel's clock reads, which bench_pass pays too; the first row \
         repeats a stateless class to show how this method compares with the one above.",
    );
    report.tables.push(table);
    Ok(())
}

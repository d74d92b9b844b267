//! The classes that need fresh per-flow state every time (the segments of a split hello, a
//! blocked hello on a new flow): timed one packet per call, each on a flow of its own.

use anyhow::Result;
use filter_common::Reason;
use serde_json::json;
use sni_filter::filter::Filter;

use super::{Plan, check_counts, counters, delta};
use crate::bench::bpf::{self, Floors, XDP_DROP, XDP_PASS};
use crate::bench::frames::{self, ALLOWED, BANNED};
use crate::bench::report::{Report, Table, ns};

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
pub(super) fn single_shots(
    plan: Plan,
    floors: &Floors,
    filter: &Filter,
    report: &mut Report,
) -> Result<()> {
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

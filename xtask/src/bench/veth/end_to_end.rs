//! The filter against `bench_drop` on their veth pairs, both native, fed the same frames
//! in alternating rounds: what the filter costs over the cheapest possible XDP program.

use std::path::Path;

use anyhow::{Context as _, Result};
use aya::programs::XdpMode as AyaXdpMode;
use filter_common::Reason;
use serde_json::json;
use sni_filter::config::XdpMode;
use sni_filter_lab::run_in_netns;

use super::topo::{Amount, BLAST_SECS, Topo, blast};
use crate::bench::bpf::{self, Floors};
use crate::bench::frames::{self, ALLOWED, BANNED};
use crate::bench::packet::{check_counts, counters, delta, filter_for};
use crate::bench::report::{Report, Table, Target, ns};

/// Rounds per case; the median is reported.
const ROUNDS: usize = 5;

/// One kind of traffic on one pair.
struct Case {
    key: &'static str,
    label: &'static str,
    /// `1`: the filter; `2`: `bench_drop`.
    pair: u8,
    frame: Vec<u8>,
    /// The filter's counter that must take every frame.
    reason: Option<Reason>,
    /// Index of the `bench_drop` case it is compared with.
    floor: usize,
}

/// What the rounds measured for one case.
#[derive(Default)]
struct Measured {
    mpps: Vec<f64>,
    mpps_wall: Vec<f64>,
    mpps_kernel: Vec<f64>,
    sent: u64,
    handled: u64,
    xmit_errors: u64,
}

fn cases() -> Vec<Case> {
    // A flow whose hello was blocked (primed below): its later packets.
    let [_, _, data] = frames::split_hello(35000, BANNED, false);
    let hello = frames::syn_hello_frame(35001, BANNED, false);
    vec![
        Case {
            key: "drop_data",
            label: "bench_drop, 154 B data frame",
            pair: 2,
            frame: data.clone(),
            reason: None,
            floor: 0,
        },
        Case {
            key: "blocked_flow",
            label: "sni-filter, packet of a blocked flow (154 B)",
            pair: 1,
            frame: data,
            reason: Some(Reason::BlockedFlow),
            floor: 0,
        },
        Case {
            key: "drop_hello",
            label: "bench_drop, 1.8 KB hello frame",
            pair: 2,
            frame: hello.clone(),
            reason: None,
            floor: 2,
        },
        Case {
            key: "hello_blocked",
            label: "sni-filter, hello SNI last, blocked (SYN-flagged: judged each time)",
            pair: 1,
            frame: hello,
            reason: Some(Reason::HelloBlocked),
            floor: 2,
        },
        Case {
            key: "hello_allowed",
            label: "sni-filter, hello SNI last, allowed (passed on to the stack)",
            pair: 1,
            frame: frames::hello_frame(35002, ALLOWED, false),
            reason: Some(Reason::HelloAllowed),
            floor: 2,
        },
    ]
}

/// The filter on `x1` and `bench_drop` on `x2`, both native, fed alternately.
pub(super) fn end_to_end(
    topo: &Topo,
    floors: &mut Floors,
    dir: &Path,
    cpu: usize,
    report: &mut Report,
) -> Result<()> {
    let (mut filter, _) = filter_for(frames::CONFIG, dir)?;
    run_in_netns(topo.gw.name(), || -> Result<()> {
        filter
            .attach("x1", XdpMode::Native, false)
            .context("attaching the filter natively on veth")?;
        floors
            .drop_mut()
            .attach("x2", AyaXdpMode::Driver)
            .context("attaching bench_drop natively on veth")?;
        Ok(())
    })??;
    let [first, second, _] = frames::split_hello(35000, BANNED, false);
    for f in [&first, &second] {
        blast(topo, 1, f, Amount::Frames(1), cpu)?;
    }
    if counters(&filter)?[Reason::HelloBlocked as usize].packets == 0 {
        report.fail(
            "veth prime",
            "the blocked flow's hello did not arrive".into(),
        );
    }
    let cases = cases();
    let mut measured: Vec<Measured> = cases.iter().map(|_| Measured::default()).collect();
    for _ in 0..ROUNDS {
        for (case, m) in cases.iter().zip(&mut measured) {
            let xdp = format!("x{}", case.pair);
            let before_c = counters(&filter)?;
            let before_x = topo.stat(true, &xdp, "rx_queue_0_xdp_packets")?;
            let b = blast(topo, case.pair, &case.frame, Amount::Secs(BLAST_SECS), cpu)?;
            let handled = topo
                .stat(true, &xdp, "rx_queue_0_xdp_packets")?
                .saturating_sub(before_x);
            if let Some(reason) = case.reason {
                let d = delta(&before_c, &counters(&filter)?);
                check_counts(
                    report,
                    &format!("veth {}", case.key),
                    &d,
                    reason,
                    handled,
                    &[],
                );
            }
            let h = handled as f64 / 1e6;
            m.mpps.push(h / b.busy_secs.max(1e-3));
            m.mpps_wall.push(h / b.secs);
            m.mpps_kernel.push(h / b.kernel_secs.max(1e-3));
            m.sent += b.sent;
            m.handled += handled;
            m.xmit_errors += b.xmit_errors;
        }
    }
    drop(filter);
    let table = end_to_end_table(&cases, &measured, report);
    report.tables.push(table);
    Ok(())
}

fn end_to_end_table(cases: &[Case], measured: &[Measured], report: &mut Report) -> Table {
    let mut table = Table::new(
        format!(
            "End to end on veth: XDP native, in-kernel generator (live frames), one CPU, median of {ROUNDS} runs of {BLAST_SECS} s"
        ),
        &[
            "program, traffic",
            "Mpps",
            "ns/packet",
            "vs bench_drop",
            "sent / handled",
            "target",
        ],
    );
    let med: Vec<f64> = measured.iter().map(|m| bpf::median(&m.mpps)).collect();
    for ((case, m), &mpps) in cases.iter().zip(measured).zip(&med) {
        let ratio = mpps / med[case.floor];
        let target =
            (case.key == "blocked_flow").then(|| Target::at_least(ratio * 100.0, 80.0, " %"));
        table.row(vec![
            case.label.to_owned(),
            format!("{mpps:.2}"),
            ns(1e3 / mpps),
            format!("{:.0} %", ratio * 100.0),
            format!("{} / {}", m.sent, m.handled),
            target.as_ref().map_or_else(String::new, |t| t.text.clone()),
        ]);
        report.push(
            "veth",
            json!({
                "case": case.key, "label": case.label, "mpps": mpps, "runs_mpps": m.mpps,
                "runs_mpps_wall_time": m.mpps_wall, "runs_mpps_kernel_time": m.mpps_kernel,
                "ns_per_packet": 1e3 / mpps, "vs_bench_drop": ratio,
                "sent": m.sent, "handled": m.handled, "xmit_errors": m.xmit_errors,
                "target": target.as_ref().map(Target::json),
            }),
        );
    }
    table.note(
        "A four-instruction XDP program redirects each frame into the veth with \
         BPF_PROG_TEST_RUN in live-frames mode (batches of 64); the peer's NAPI runs the \
         attached program on the same CPU. Rates are handled frames (the peer's XDP packet \
         count) per second of that CPU's busy time (/proc/stat), which leaves out the \
         milliseconds each call spends switching the kernel's XDP dispatcher, and include \
         the generator's own cost, the same for both programs. MTU 9000 on the pairs so the \
         1.8 KB hello travels as one frame. An allowed hello is passed, so its rate includes \
         building an skb and the stack's receive path (up to dropping it: not for this host).",
    );
    table
}

//! QUIC: the program's per-packet cost on UDP 443, the time from an Initial's arrival to
//! its verdict in the table (the daemon's worker thread, really started), and a flood of
//! junk Initials: what it costs the worker, whether memory stays bounded and whether genuine
//! Initials are still judged meanwhile.

use std::{
    fs,
    path::Path,
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};
use filter_common::{QUIC_INITIALS_PER_FLOW, Reason, wire::QUIC_V1};
use serde_json::json;
use sni_filter::{
    config::Config,
    filter::Filter,
    quic::{
        Matcher,
        worker::{Judge, Policy, Worker},
    },
    shutdown::Shutdown,
};
use sni_filter_lab::hello::{ClientHelloBuilder, IpPair, UdpDatagram};
use sni_filter_lab::quic_craft::{crypto_frame, seal_client_initial};

use super::bpf::{self, Floors, XDP_DROP, XDP_PASS};
use super::frames::{self, ALLOWED, BANNED};
use super::packet::{self, Plan, check_counts, counters, delta};
use super::report::{Report, Table, ns};

/// Size of the client Initial datagrams (Chromium's, 1250 bytes).
const INITIAL_LEN: usize = 1250;

/// A client Initial of `name` from client port `sport`, DCID derived from the port.
fn initial(sport: u16, name: &str) -> Vec<u8> {
    let hello = ClientHelloBuilder::chrome(name).build();
    let mut dcid = [0x5a; 8];
    dcid[..2].copy_from_slice(&sport.to_be_bytes());
    let payload = seal_client_initial(
        QUIC_V1,
        &dcid,
        &dcid,
        0,
        &crypto_frame(0, &hello),
        INITIAL_LEN,
    );
    UdpDatagram::new(IpPair::v4_example(), sport, 443).frame(&payload)
}

/// Bytes that look like a client Initial (long header, version 1, 1250 bytes) and are not
/// one: what a flood of junk on UDP 443 is made of.
fn junk(sport: u16, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut p = vec![0xc3, 0, 0, 0, 1, 8];
    p.extend((0..8).map(|_| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x as u8
    }));
    p.extend_from_slice(&[0, 0, 0x44, 0xd0]);
    while p.len() < INITIAL_LEN {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        p.extend_from_slice(&x.to_le_bytes());
    }
    p.truncate(INITIAL_LEN);
    UdpDatagram::new(IpPair::v4_example(), sport, 443).frame(&p)
}

/// A short-header (1-RTT) packet of 1200 bytes: most of a QUIC connection's traffic.
fn short_packet(sport: u16) -> Vec<u8> {
    let mut p = vec![0x43];
    p.resize(1200, 0x17);
    UdpDatagram::new(IpPair::v4_example(), sport, 443).frame(&p)
}

fn policy() -> Policy {
    Policy {
        uninspectable_drop: false,
        trace_all: false,
        monitor: false,
    }
}

/// Per-packet cost of the QUIC classes, as the per-packet table measures TCP's.
// One measurement after another: long by nature.
#[allow(clippy::too_many_lines)]
pub fn per_packet(plan: Plan, floors: &Floors, dir: &Path, report: &mut Report) -> Result<()> {
    let (filter, set) = packet::filter_for(frames::CONFIG, dir)?;
    let matcher = Matcher::new(&set).context("matcher")?;
    let mut judge = Judge::new(&filter).context("opening the QUIC maps")?;
    judge.beat(true)?;
    // An allowed flow and a blocked one, judged once before the timing.
    let (allowed, blocked) = (initial(31000, ALLOWED), initial(31001, BANNED));
    filter.run_frame(&allowed)?;
    filter.run_frame(&blocked)?;
    let judged = judge.drain(&matcher, policy());
    if judged.len() != 2 {
        report.fail("quic_setup", format!("{} of 2 flows judged", judged.len()));
    }
    let mut table = Table::new(
        format!(
            "QUIC per packet: BPF_PROG_TEST_RUN, repeat {}, median of {} runs, one CPU",
            plan.repeat, plan.runs
        ),
        &[
            "class",
            "counter checked",
            "ns/packet",
            "bench_pass",
            "net ns",
        ],
    );
    let repeated = [
        (
            "quic_short_header",
            "UDP 443, short header (1-RTT), 1200 B",
            short_packet(31002),
            Reason::QuicNotInitial,
            XDP_PASS,
        ),
        (
            "quic_initial_allowed_flow",
            "Initial (1250 B) of a flow judged allowed",
            allowed,
            Reason::QuicFlowAllowed,
            XDP_PASS,
        ),
        (
            "quic_blocked_flow",
            "packet of a blocked QUIC flow",
            short_packet(31001),
            Reason::BlockedFlow,
            XDP_DROP,
        ),
    ];
    for (key, label, frame, reason, action) in repeated {
        let r =
            packet::time_repeated(&filter, floors, plan, report, (key, &frame, action, reason))?;
        let net: Vec<f64> = r.values.iter().zip(&r.floor).map(|(v, f)| v - f).collect();
        row(
            &mut table, report, key, label, reason, &r.d, &r.values, &r.floor, &net,
        );
    }
    // A new flow's Initial copied into the ring: one per call, each on a flow of its own,
    // the ring read (untimed) between calls so that it never fills.
    let before = counters(&filter)?;
    let (mut values, mut floor, mut net) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..plan.shots {
        if i % 256 == 0 {
            judge.beat(true)?;
        }
        let frame = initial(32000 + (i % 30000) as u16, ALLOWED);
        let f = bpf::time(floors.pass(), &frame, 1)?;
        let v = bpf::time(filter.program(), &frame, 1)?;
        judge.drain(&matcher, policy());
        values.push(v.ns);
        floor.push(f.ns);
        net.push(v.ns - f.ns);
    }
    let d = delta(&before, &counters(&filter)?);
    let key = "quic_initial_queued";
    check_counts(
        report,
        key,
        &d,
        Reason::QuicInitialQueued,
        plan.shots as u64,
        &[],
    );
    row(
        &mut table,
        report,
        key,
        "Initial (1250 B) of a new flow, copied to the daemon (one per call)",
        Reason::QuicInitialQueued,
        &d,
        &values,
        &floor,
        &net,
    );
    table.note(
        "An Initial of a new flow is one call of repeat 1 per flow (the kernel's clock reads \
         are in both figures); the copy into the ring is most of its cost.",
    );
    report.tables.push(table);
    Ok(())
}

// The cells of one row, as the other per-packet tables show them.
#[allow(clippy::too_many_arguments)]
fn row(
    table: &mut Table,
    report: &mut Report,
    key: &str,
    label: &str,
    reason: Reason,
    d: &[u64],
    values: &[f64],
    floor: &[f64],
    net: &[f64],
) {
    let (v, f, n) = (bpf::median(values), bpf::median(floor), bpf::median(net));
    table.row(vec![
        label.to_owned(),
        format!("{} +{}", reason.name(), d[reason as usize]),
        ns(v),
        ns(f),
        ns(n),
    ]);
    report.push(
        "quic_per_packet",
        json!({"class": key, "label": label, "counter": reason.name(),
               "counted": d[reason as usize], "ns": v, "floor_ns": f, "net_ns": n}),
    );
}

/// The sizes of the daemon-side QUIC runs.
#[derive(Clone, Copy)]
pub struct Load {
    /// Initials sent at a steady pace for the latency figures.
    pub paced: usize,
    /// How long the junk flood lasts.
    pub flood: Duration,
}

/// Verdict latency under a steady pace, then under a junk flood, with the daemon's real
/// worker thread.
// One measurement after another: long by nature.
#[allow(clippy::too_many_lines)]
pub fn daemon_side(load: &Load, dir: &Path, report: &mut Report) -> Result<()> {
    let config =
        Config::parse(&dir.join("bench.toml"), frames::CONFIG).context("bench configuration")?;
    let set = sni_filter::rules::RuleSet::compile(&config)?;
    let mut filter = Filter::load_for(&config).context("loading the filter (run as root)")?;
    filter.install(&set)?;
    let mut worker = Worker::start(&filter, Matcher::new(&set)?, policy(), Shutdown::new())?;
    let mut table = Table::new(
        "QUIC in the daemon: Initial arrival to verdict in the table (the worker thread)",
        &["load", "Initials judged", "p50", "p99", "worker CPU", "RSS"],
    );
    let rss_start = rss_kib()?;

    // A steady pace: one Initial per millisecond, each a new flow, half of them banned.
    for i in 0..load.paced {
        let name = if i % 2 == 0 { ALLOWED } else { BANNED };
        filter.run_frame(&initial(33000 + i as u16, name))?;
        thread::sleep(Duration::from_millis(1));
    }
    let paced = wait_for_verdicts(&worker, load.paced as u64)?;
    let cpu_paced = worker_cpu_secs()?;
    push_row(
        &mut table,
        report,
        "paced",
        &format!("{} Initials, 1 per ms", load.paced),
        &paced,
        load.paced as u64,
        cpu_paced,
        rss_kib()?,
    );

    // A flood: junk Initials on new flows as fast as one CPU sends them, with a genuine
    // (banned) Initial every 1000. A worker of its own, so that its figures are the flood's.
    drop(worker);
    worker = Worker::start(&filter, Matcher::new(&set)?, policy(), Shutdown::new())?;
    let before = counters(&filter)?;
    let start = Instant::now();
    let (mut junk_sent, mut genuine) = (0u64, 0u64);
    let stats_before = worker
        .shared()
        .stats
        .lock()
        .map(|s| s.clone())
        .unwrap_or_default();
    while start.elapsed() < load.flood {
        for _ in 0..1000 {
            let port = 1024 + (junk_sent % 30000) as u16;
            filter.run_frame(&junk(port, junk_sent.wrapping_mul(0x9e37_79b9_7f4a_7c15)))?;
            junk_sent += 1;
        }
        filter.run_frame(&initial(60000 + (genuine % 5000) as u16, BANNED))?;
        genuine += 1;
    }
    let secs = start.elapsed().as_secs_f64();
    let flood = wait_for_verdicts(
        &worker,
        stats_before.blocked + stats_before.allowed + genuine,
    )?;
    let d = delta(&before, &counters(&filter)?);
    let cpu_flood = worker_cpu_secs()?;
    let rss_end = rss_kib()?;
    let offered = junk_sent as f64 / secs;
    let processed = flood.reassembly.datagrams - stats_before.reassembly.datagrams;
    let judged_real =
        (flood.blocked + flood.allowed) - (stats_before.blocked + stats_before.allowed);
    push_row(
        &mut table,
        report,
        "flood",
        &format!(
            "junk flood {:.0}k/s for {secs:.0} s + 1 genuine per 1000",
            offered / 1000.0
        ),
        &flood,
        genuine,
        cpu_flood,
        rss_end,
    );
    // How many real Initials find room in the ring depends on speed, which is reported,
    // not checked; that the worker judged any at all during the flood is checked.
    if judged_real == 0 {
        report.fail(
            "quic_flood",
            format!("none of {genuine} real Initials judged during the flood"),
        );
    }
    table.note(format!(
        "Flood: {junk_sent} junk datagrams offered ({offered:.0}/s) through BPF_PROG_TEST_RUN on \
         one CPU while the worker ran on the other; {} reached the worker ({:.0}/s), {} were \
         counted uninspectable_quic_queue (ring full), {} uninspectable_quic_budget; the \
         worker kept no state for them (undecryptable). RSS of the whole process: {} KiB \
         before, {} KiB after. Real Initials judged: {judged_real} of {genuine} (the others \
         met a full ring: uninspectable, so under the default policy dropped, and their \
         clients retransmit).",
        processed,
        processed as f64 / secs,
        d[Reason::UninspectableQuicQueueFull as usize],
        d[Reason::UninspectableQuicBudget as usize],
        rss_start,
        rss_end,
    ));
    table.note(format!(
        "This process is a {} build. Latency is from the program's bpf_ktime_get_ns at the Initial's arrival to the \
         worker's clock read after its map write; the worker wakes on the ring's epoll \
         notification (the ring wakes it when it has caught up: an isolated Initial pays the \
         wake-up, about 9 µs of the copy's cost here, a busy ring does not). At most \
         {QUIC_INITIALS_PER_FLOW} Initials per flow are copied.",
        if cfg!(debug_assertions) { "debug" } else { "release" }
    ));
    report.set(
        "quic_flood",
        json!({"offered": junk_sent, "offered_per_s": offered, "processed": processed,
               "queue_full": d[Reason::UninspectableQuicQueueFull as usize],
               "genuine": genuine, "real_judged": judged_real,
               "rss_kib_before": rss_start, "rss_kib_after": rss_end,
               "worker_cpu_s": cpu_flood, "secs": secs}),
    );
    report.tables.push(table);
    drop(worker);
    Ok(())
}

// One row with its JSON twin.
#[allow(clippy::too_many_arguments)]
fn push_row(
    table: &mut Table,
    report: &mut Report,
    key: &str,
    label: &str,
    stats: &sni_filter::quic::worker::QuicStats,
    expected: u64,
    cpu: f64,
    rss: u64,
) {
    let us = |p| {
        stats
            .latency_percentile(p)
            .map_or(0.0, |v| v as f64 / 1000.0)
    };
    table.row(vec![
        label.to_owned(),
        format!("{} of {expected}", stats.blocked + stats.allowed),
        format!("{:.0} µs", us(50)),
        format!("{:.0} µs", us(99)),
        format!("{cpu:.2} s"),
        format!("{} MiB", rss / 1024),
    ]);
    report.push(
        "quic_latency",
        json!({"load": key, "p50_us": us(50), "p99_us": us(99),
               "judged": stats.blocked + stats.allowed, "cpu_s": cpu, "rss_kib": rss}),
    );
}

/// Waits (up to 5 s) until the worker has judged `n` flows in all; returns its figures.
fn wait_for_verdicts(worker: &Worker, n: u64) -> Result<sni_filter::quic::worker::QuicStats> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let s = worker
            .shared()
            .stats
            .lock()
            .map(|s| s.clone())
            .map_err(|_| anyhow::anyhow!("worker stats poisoned"))?;
        if s.blocked + s.allowed >= n || Instant::now() > deadline {
            return Ok(s);
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// CPU seconds of the thread named `quic` in this process.
fn worker_cpu_secs() -> Result<f64> {
    for task in fs::read_dir("/proc/self/task")?.flatten() {
        let comm = fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if comm.trim() == "quic" {
            return super::daemon::stat_cpu_secs(&fs::read_to_string(task.path().join("stat"))?);
        }
    }
    anyhow::bail!("no thread named quic")
}

fn rss_kib() -> Result<u64> {
    let status = fs::read_to_string("/proc/self/status")?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .context("no VmRSS")
}

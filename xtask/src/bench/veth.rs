//! End to end on veth pairs between two namespaces, fed by the in-kernel generator of
//! `live.rs`: the filter attached natively next to `bench_drop` attached the same way;
//! iptables' string match (what administrators use today) on the forwarding path of the
//! same hellos; and nDPI's reader on a capture of them.
//!
//! Every pair runs on one CPU: the generator's call, the veth's NAPI poll and what the
//! receiving side does all happen on the CPU this thread is pinned to, so frames handled
//! per second of that CPU's busy time is the rate at 100 % of one CPU (generator included,
//! which the comparison with `bench_drop` or with zero iptables rules takes out).

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use aya::programs::XdpMode as AyaXdpMode;
use filter_common::Reason;
use serde_json::json;
use sni_filter::config::XdpMode;
use sni_filter_lab::{Netns, hello::TcpSegment, run_in_netns};

use super::Mode;
use super::bpf::{self, Floors};
use super::frames::{self, ALLOWED, BANNED};
use super::live;
use super::packet::{check_counts, counters, delta, filter_for};
use super::report::{Report, Table, Target, ns};
use crate::shell::{self, cmd};

/// Frames per flush of the generator: within one NAPI budget, so the veth's ring of 256
/// never overflows.
const BATCH: u32 = 64;

/// Two namespaces: `sender` sends, `gw` receives on three veth pairs: `x1` with the filter,
/// `x2` with `bench_drop`, `x3` with nothing (the stack and iptables).
struct Topo {
    sender: Netns,
    gw: Netns,
    /// MAC address of `x3`, the destination of forwarded frames.
    x3_mac: [u8; 6],
}

impl Topo {
    fn new() -> Result<Self> {
        let pid = std::process::id();
        let sender = Netns::new(&format!("sfbench-{pid}-0-cl"))?;
        let gw = Netns::new(&format!("sfbench-{pid}-0-gw"))?;
        let (g, w) = (sender.name().to_owned(), gw.name().to_owned());
        // No IPv6: its router and listener messages would be counted among the frames.
        for ns in [&sender, &gw] {
            shell::output(ns.exec("sysctl").args([
                "-qw",
                "net.ipv6.conf.all.disable_ipv6=1",
                "net.ipv6.conf.default.disable_ipv6=1",
            ]))?;
        }
        let ip = |args: &[&str]| shell::output(&mut cmd("ip", args)).map(drop);
        for i in 1..=3 {
            let (a, x) = (format!("g{i}"), format!("x{i}"));
            ip(&[
                "-n", &g, "link", "add", &a, "mtu", "9000", "type", "veth", "peer", "name", &x,
                "mtu", "9000", "netns", &w,
            ])?;
            ip(&["-n", &g, "link", "set", &a, "up"])?;
            ip(&["-n", &w, "link", "set", &x, "up"])?;
        }
        ip(&[
            "-n", &w, "link", "add", "o1", "mtu", "9000", "type", "veth", "peer", "name", "o2",
            "mtu", "9000",
        ])?;
        for dev in ["o1", "o2"] {
            ip(&["-n", &w, "link", "set", dev, "up"])?;
        }
        ip(&["-n", &w, "addr", "add", "192.0.2.254/24", "dev", "x3"])?;
        ip(&["-n", &w, "addr", "add", "198.51.100.254/24", "dev", "o1"])?;
        shell::output(gw.exec("sysctl").args([
            "-qw",
            "net.ipv4.ip_forward=1",
            "net.ipv4.conf.all.rp_filter=0",
            "net.ipv4.conf.x3.rp_filter=0",
        ]))?;
        // GRO off: it would merge the identical hellos into one super-packet.
        shell::output(gw.exec("ethtool").args(["-K", "x3", "gro", "off"]))?;
        let link = shell::output(&mut cmd("ip", ["-n", &w, "-o", "link", "show", "x3"]))?;
        let mac = link
            .split_whitespace()
            .skip_while(|t| *t != "link/ether")
            .nth(1)
            .context("no MAC address on x3")?;
        let mut x3_mac = [0u8; 6];
        for (b, part) in x3_mac.iter_mut().zip(mac.split(':')) {
            *b = u8::from_str_radix(part, 16).context("MAC address")?;
        }
        Ok(Self { sender, gw, x3_mac })
    }

    /// A number from `ethtool -S` of an interface.
    fn stat(&self, gw_side: bool, dev: &str, key: &str) -> Result<u64> {
        let ns = if gw_side { &self.gw } else { &self.sender };
        let out = shell::output(ns.exec("ethtool").args(["-S", dev]))?;
        out.lines()
            .find_map(|l| {
                let (k, v) = l.trim().split_once(':')?;
                (k.trim() == key).then(|| v.trim().parse().ok())?
            })
            .with_context(|| format!("no {key} in ethtool -S {dev}"))
    }
}

/// What one blast sent and how long it took.
struct Blast {
    sent: u64,
    /// Wall time of the calls.
    secs: f64,
    /// The kernel's time for them (without the set-up of each call).
    kernel_secs: f64,
    /// Time the CPU was busy (user, system, interrupts), whoever it was busy for: the
    /// generator, the NAPI poll in softirq or ksoftirqd.
    busy_secs: f64,
    /// Frames the generator's side could not hand to the peer (its ring was full).
    xmit_errors: u64,
}

/// How much a blast sends.
#[derive(Clone, Copy)]
enum Amount {
    /// For about this many seconds.
    Secs(f64),
    /// Exactly this many frames.
    Frames(u32),
}

/// Sends `frame` from `g{pair}`, pinned to `cpu`.
fn blast(topo: &Topo, pair: u8, frame: &[u8], amount: Amount, cpu: usize) -> Result<Blast> {
    let dev = format!("g{pair}");
    let errors_before = topo.stat(false, &dev, "tx_queue_0_xdp_xmit_errors")?;
    let busy_before = cpu_busy_secs(cpu)?;
    let (sent, secs, kernel_secs) =
        run_in_netns(topo.sender.name(), || -> Result<(u64, f64, f64)> {
            bpf::pin(Some(cpu))?;
            let name = std::ffi::CString::new(dev.clone())?;
            // SAFETY: a NUL-terminated name.
            let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
            if ifindex == 0 {
                bail!("no interface {dev}");
            }
            let program = live::redirect_program(ifindex)?;
            let (mut chunk, limit) = match amount {
                Amount::Frames(n) => (n, 0.0),
                Amount::Secs(s) => (BATCH, s),
            };
            let (mut sent, mut kernel) = (0u64, 0.0);
            let start = Instant::now();
            loop {
                let t = Instant::now();
                let per_frame = live::send(&program, frame, chunk, BATCH)?;
                sent += u64::from(chunk);
                kernel += f64::from(per_frame) * f64::from(chunk) / 1e9;
                if start.elapsed().as_secs_f64() >= limit {
                    break;
                }
                // Each call switches the kernel's XDP dispatcher (milliseconds): make
                // calls long enough for that to vanish.
                if t.elapsed() < Duration::from_millis(250) && chunk < 1 << 24 {
                    chunk *= 2;
                }
            }
            Ok((sent, start.elapsed().as_secs_f64(), kernel))
        })??;
    let busy_secs = cpu_busy_secs(cpu)? - busy_before;
    let xmit_errors = topo
        .stat(false, &dev, "tx_queue_0_xdp_xmit_errors")?
        .saturating_sub(errors_before);
    Ok(Blast {
        sent,
        secs,
        kernel_secs,
        busy_secs,
        xmit_errors,
    })
}

/// Seconds CPU `cpu` has spent busy since boot (/proc/stat: user, nice, system, irq,
/// softirq; not idle, I/O wait or time stolen by the hypervisor).
fn cpu_busy_secs(cpu: usize) -> Result<f64> {
    let stat = std::fs::read_to_string("/proc/stat")?;
    let label = format!("cpu{cpu}");
    let line = stat
        .lines()
        .find(|l| l.split_whitespace().next() == Some(label.as_str()))
        .with_context(|| format!("no {label} in /proc/stat"))?;
    let f: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    let busy = f[0] + f[1] + f[2] + f[5] + f[6];
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1);
    Ok(busy as f64 / hz as f64)
}

pub fn run(
    mode: &Mode,
    floors: &mut Floors,
    dir: &Path,
    cpu: usize,
    report: &mut Report,
) -> Result<()> {
    if mode.quick {
        let mut t = Table::new("iptables, nDPI and end to end on veth", &["part", "result"]);
        for part in [
            "iptables string match (bm, kmp)",
            "nDPI (ndpiReader)",
            "end to end on veth",
        ] {
            t.row(vec![part.into(), "not run: quick mode".into()]);
        }
        report.tables.push(t);
        report.set("veth", json!("not run: quick mode"));
        report.set("iptables", json!("not run: quick mode"));
        report.set("ndpi", json!("not run: quick mode"));
        return Ok(());
    }
    let topo = Topo::new()?;
    let failed = |part: &str, r: Result<()>, report: &mut Report| {
        if let Err(e) = r {
            let mut t = Table::new(part, &["result"]);
            t.row(vec![format!("failed: {e:#}")]);
            report.tables.push(t);
            report.fail(part, format!("{e:#}"));
        }
    };
    let r = end_to_end(&topo, floors, dir, cpu, report);
    failed("end to end on veth", r, report);
    let r = iptables(&topo, dir, cpu, report);
    failed("iptables", r, report);
    drop(topo);
    let r = ndpi(dir, report);
    failed("nDPI", r, report);
    Ok(())
}

const ROUNDS: usize = 5;
const BLAST_SECS: f64 = 1.0;

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
fn end_to_end(
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

/// The rule counts of the iptables comparison.
const IPT_RULES: [usize; 4] = [1, 10, 100, 1000];

/// iptables' string match on the forwarding path of `x3`: ns per hello at 100 % of one CPU
/// with 0..1000 rules, none of which matches (the hello is allowed: all rules are tried).
fn iptables(topo: &Topo, dir: &Path, cpu: usize, report: &mut Report) -> Result<()> {
    let mut seg = TcpSegment::new(sni_filter_lab::hello::IpPair::v4_example(), 36000, 443);
    seg.link.dst_mac = topo.x3_mac;
    let hello = seg.frame(&frames::hello(ALLOWED, false));
    // A veth takes frames sent with XDP only with NAPI, which an XDP program (or GRO, which
    // would merge the identical hellos) turns on: one that undoes forwarding's TTL
    // decrement, since the generator's pages are recycled as they are.
    let _link = run_in_netns(topo.gw.name(), || -> Result<_> {
        let program = live::restore_ttl_program(hello[22], [hello[24], hello[25]])?;
        // SAFETY: a NUL-terminated name.
        let ifindex = unsafe { libc::if_nametoindex(c"x3".as_ptr()) };
        live::attach_native(&program, ifindex)
    })??;
    let version = shell::output(&mut cmd("iptables", ["-V"])).unwrap_or_default();
    let mut rows: Vec<(String, usize, f64, u64)> = Vec::new();
    let measure = |algo: &str, n: usize| -> Result<(f64, u64)> {
        load_rules(topo, algo, n)?;
        let b = blast(topo, 3, &hello, Amount::Secs(BLAST_SECS), cpu)?;
        let handled = final_rule_packets(topo)?;
        if handled == 0 {
            bail!("iptables: no packet reached the end of FORWARD");
        }
        Ok((b.busy_secs * 1e9 / handled as f64, handled))
    };
    // Zero rules first and last: the stack's own cost, and a check of drift.
    let (base_a, h) = measure("bm", 0)?;
    rows.push(("none".into(), 0, base_a, h));
    for algo in ["bm", "kmp"] {
        for n in IPT_RULES {
            let (v, h) = measure(algo, n)?;
            rows.push((algo.into(), n, v, h));
        }
    }
    let (base_b, h) = measure("bm", 0)?;
    rows.push(("none".into(), 0, base_b, h));
    load_rules(topo, "none", 0)?;
    shell::output(topo.gw.exec("iptables").args(["-F", "FORWARD"]))?;
    let base = f64::midpoint(base_a, base_b);

    let ours = match report.json.get("per_packet").and_then(|v| {
        v.as_array()?
            .iter()
            .find(|c| c["class"] == "hello_allowed_last")?
            .get("net_ns")?
            .as_f64()
    }) {
        Some(v) => Some(v),
        // The per-packet part did not run (`--only`): time that class here.
        None => Some(hello_net_ns(dir, cpu)?),
    };
    let mut table = Table::new(
        "iptables string match vs sni-filter, same 1.8 KB hello (allowed: every rule is tried), one CPU",
        &[
            "rules",
            "algo",
            "ns/packet (stack + iptables)",
            "string match ns (over 0 rules)",
            "sni-filter net ns (hello SNI last)",
            "sni-filter cheaper by",
            "target",
        ],
    );
    for (algo, n, v, handled) in &rows {
        let marginal = v - base;
        let ratio = ours.map(|o| marginal / o);
        let target = (algo == "bm" && *n == 100)
            .then(|| ratio.map(|r| Target::at_least(r, 300.0, "×")))
            .flatten();
        table.row(vec![
            n.to_string(),
            algo.clone(),
            ns(*v),
            if *n == 0 { "—".into() } else { ns(marginal) },
            ours.map_or_else(|| "?".into(), ns),
            match (ratio, *n) {
                (_, 0) | (None, _) => "—".into(),
                (Some(r), _) if r < 10.0 => format!("{r:.1}×"),
                (Some(r), _) => format!("{r:.0}×"),
            },
            target.as_ref().map_or_else(String::new, |t| t.text.clone()),
        ]);
        report.push(
            "iptables",
            json!({
                "algo": algo, "rules": n, "ns_per_packet": v, "string_match_ns": marginal,
                "handled": handled, "sni_filter_net_ns": ours, "ratio": ratio,
                "target": target.as_ref().map(Target::json),
            }),
        );
    }
    table.note(format!(
        "{}: `iptables -A FORWARD -m string --algo ALGO --string NAME -j DROP` for N names \
         that are not in the hello, then `-j DROP` for all, on the gateway side of a veth \
         pair fed by the same in-kernel generator; ns/packet is the CPU's busy time over the \
         packets counted by the last rule (forwarding's TTL decrement is undone by a \
         two-store XDP program on the receiving veth, which also gives it NAPI; GRO off). The string match's cost is ns/packet minus the same \
         with no string rule (mean of a run before and after). sni-filter's figure is its \
         net per-packet cost for the same hello from the first table.",
        version.trim()
    ));
    report.tables.push(table);
    Ok(())
}

/// The net cost of the allowed 1.8 KB hello with the SNI last, as the per-packet part
/// measures it (median of 5 runs of 200k repeats).
fn hello_net_ns(dir: &Path, cpu: usize) -> Result<f64> {
    let (filter, _) = filter_for(frames::CONFIG, dir)?;
    let floors = Floors::load()?;
    let frame = frames::hello_frame(36001, ALLOWED, false);
    bpf::pin(Some(cpu))?;
    let mut nets = Vec::new();
    for _ in 0..5 {
        let f = bpf::time(floors.pass(), &frame, 200_000);
        let v = bpf::time(filter.program(), &frame, 200_000);
        nets.push(v?.ns - f?.ns);
    }
    bpf::pin(None)?;
    Ok(bpf::median(&nets))
}

/// Replaces FORWARD with `n` string rules of `algo` and a final drop.
fn load_rules(topo: &Topo, algo: &str, n: usize) -> Result<()> {
    let mut text = String::from("*filter\n:FORWARD ACCEPT [0:0]\n");
    for i in 0..n {
        let _ = writeln!(
            text,
            "-A FORWARD -m string --algo {algo} --string \"{}\" -j DROP",
            super::scaling::rule_name(i)
        );
    }
    if algo != "none" {
        text.push_str("-A FORWARD -j DROP\n");
    }
    text.push_str("COMMIT\n");
    let mut child = topo
        .gw
        .exec("iptables-restore")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot start iptables-restore")?;
    child
        .stdin
        .take()
        .context("stdin")?
        .write_all(text.as_bytes())?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!(
            "iptables-restore failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Packets counted by the last rule of FORWARD (the catch-all drop).
fn final_rule_packets(topo: &Topo) -> Result<u64> {
    let out = shell::output(
        topo.gw
            .exec("iptables")
            .args(["-L", "FORWARD", "-v", "-x", "-n"]),
    )?;
    let mut matched_early = 0u64;
    let mut last = 0u64;
    let rules: Vec<&str> = out.lines().skip(2).collect();
    for (i, line) in rules.iter().enumerate() {
        let pkts: u64 = line
            .split_whitespace()
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or(0);
        if i + 1 == rules.len() {
            last = pkts;
        } else {
            matched_early += pkts;
        }
    }
    if matched_early != 0 {
        bail!("iptables: {matched_early} packets matched a string rule (none should)");
    }
    Ok(last)
}

/// Hellos in the capture nDPI reads.
const PACKETS: usize = 50_000;

/// nDPI's reader on a capture of the same hellos, each on a flow of its own.
fn ndpi(dir: &Path, report: &mut Report) -> Result<()> {
    let mut table = Table::new(
        "nDPI (ndpiReader) on a capture of the same hellos",
        &["", ""],
    );
    if let Err(e) = ensure_ndpi() {
        table.row(vec!["not run".into(), format!("{e:#}")]);
        report.set("ndpi", json!(format!("not run: {e:#}")));
        report.tables.push(table);
        return Ok(());
    }
    let pcap = dir.join("hellos.pcap");
    let mut data = Vec::with_capacity(PACKETS * 1900);
    // Global header: magic, v2.4, UTC, accuracy, snaplen 65535, Ethernet.
    data.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    data.extend_from_slice(&2u16.to_le_bytes());
    data.extend_from_slice(&4u16.to_le_bytes());
    data.extend_from_slice(&[0; 8]);
    data.extend_from_slice(&65535u32.to_le_bytes());
    data.extend_from_slice(&1u32.to_le_bytes());
    let payload = frames::hello(ALLOWED, false);
    for i in 0..PACKETS {
        let src = std::net::Ipv4Addr::new(10, (i >> 16) as u8, (i >> 8) as u8, i as u8);
        let ip = sni_filter_lab::hello::IpPair::V4 {
            src,
            dst: std::net::Ipv4Addr::new(198, 51, 100, 1),
        };
        let frame = TcpSegment::new(ip, 40000 + (i % 20000) as u16, 443).frame(&payload);
        let us = i as u32;
        data.extend_from_slice(&1_700_000_000u32.wrapping_add(us / 1_000_000).to_le_bytes());
        data.extend_from_slice(&(us % 1_000_000).to_le_bytes());
        data.extend_from_slice(&(frame.len() as u32).to_le_bytes());
        data.extend_from_slice(&(frame.len() as u32).to_le_bytes());
        data.extend_from_slice(&frame);
    }
    std::fs::write(&pcap, &data)?;
    let start = Instant::now();
    let mut child = Command::new("ndpiReader")
        .arg("-i")
        .arg(&pcap)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("cannot start ndpiReader")?;
    let mut stdout = String::new();
    std::io::Read::read_to_string(child.stdout.as_mut().context("stdout")?, &mut stdout)?;
    let (status, cpu) = wait_with_cpu(child.id())?;
    let wall = start.elapsed().as_secs_f64();
    if !status {
        report.fail("ndpi", "ndpiReader failed".into());
    }
    let tls = stdout
        .lines()
        .find(|l| l.trim_start().starts_with("TLS"))
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "));
    let cpu_ns = cpu * 1e9 / PACKETS as f64;
    table.row(vec![
        "packets (each a new flow's 1.8 KB hello)".into(),
        PACKETS.to_string(),
    ]);
    table.row(vec!["CPU ns per packet (user + system)".into(), ns(cpu_ns)]);
    table.row(vec!["wall time".into(), format!("{wall:.2} s")]);
    table.row(vec![
        "TLS line of its report".into(),
        tls.clone().unwrap_or_else(|| "none".into()),
    ]);
    table.note(
        "ndpiReader reads a pcap in user space, so its figure includes reading the file and \
         its flow table; it is the cost of classifying these hellos with nDPI, not a \
         packet-path cost like the others.",
    );
    report.set(
        "ndpi",
        json!({ "packets": PACKETS, "cpu_ns_per_packet": cpu_ns, "wall_s": wall, "tls": tls }),
    );
    report.tables.push(table);
    Ok(())
}

/// Installs Debian's `libndpi-bin` unless `ndpiReader` is there.
fn ensure_ndpi() -> Result<()> {
    if Command::new("ndpiReader")
        .arg("-h")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
    {
        return Ok(());
    }
    println!("   installing libndpi-bin for ndpiReader");
    let install = || {
        shell::output(
            cmd("apt-get", ["install", "-y", "-q", "libndpi-bin"])
                .env("DEBIAN_FRONTEND", "noninteractive"),
        )
    };
    if install().is_err() {
        shell::output(&mut cmd("apt-get", ["update", "-q"]))?;
        install()?;
    }
    Ok(())
}

/// Waits for a child and returns whether it succeeded and its CPU seconds (user + system).
fn wait_with_cpu(pid: u32) -> Result<(bool, f64)> {
    let mut status = 0;
    // SAFETY: a zeroed rusage is a valid out-parameter.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waits for our own child; both pointers are valid.
    let rc = unsafe { libc::wait4(pid.cast_signed(), &raw mut status, 0, &raw mut usage) };
    if rc < 0 {
        return Err(std::io::Error::last_os_error()).context("wait4");
    }
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    Ok((
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        secs(usage.ru_utime) + secs(usage.ru_stime),
    ))
}

//! `cargo xtask bench`: what the filter costs per packet, how that changes with the rule
//! count, against iptables' string match and nDPI, end to end on veth, and the daemon's own
//! CPU and memory. Prints a markdown table and writes it with a JSON twin to the out folder.
//!
//! Timings never fail the command: the targets are reported with ✓ or ✗. What
//! fails it is a class that did not run or whose counter did not rise by exactly the number
//! of packets sent, so `--quick` doubles as a test of the measuring itself.

// Counts and nanoseconds become floats for averages and rates; they stay far below 2^52.
#![allow(clippy::cast_precision_loss)]

mod bpf;
mod daemon;
mod frames;
mod live;
mod packet;
mod quic;
mod report;
mod scaling;
mod veth;

use std::fmt::Write as _;
use std::fs;
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use serde_json::{Value, json};

use crate::shell;
use report::Report;

use crate::bench_args::Args;

/// The sizes of one mode.
#[derive(Clone, Copy)]
pub struct Mode {
    pub quick: bool,
    pub packet: packet::Plan,
    /// Rule counts of the scaling runs.
    pub rule_counts: &'static [usize],
    /// Repeats per call and runs of the scaling classes.
    pub scaling_repeat: u32,
    pub scaling_runs: usize,
    /// Rules the daemon loads.
    pub daemon_rules: usize,
    pub quic: quic::Load,
}

const QUICK: Mode = Mode {
    quick: true,
    packet: packet::Plan {
        repeat: 10_000,
        runs: 3,
        shots: 200,
    },
    rule_counts: &[10, 1_000],
    scaling_repeat: 10_000,
    scaling_runs: 3,
    daemon_rules: 10_000,
    quic: quic::Load {
        paced: 100,
        flood: Duration::from_secs(1),
    },
};

const FULL: Mode = Mode {
    quick: false,
    packet: packet::Plan {
        repeat: 1_000_000,
        runs: 10,
        shots: 10_000,
    },
    rule_counts: &[10, 1_000, 100_000, 1_000_000],
    scaling_repeat: 320_000,
    scaling_runs: 5,
    daemon_rules: 1_000_000,
    quic: quic::Load {
        paced: 2000,
        flood: Duration::from_secs(10),
    },
};

pub fn run(args: &Args) -> Result<ExitCode> {
    Ok(if execute(args)? {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Runs the benchmarks and fails when a class did not run or was not counted as intended.
pub fn check(args: &Args) -> Result<()> {
    if !execute(args)? {
        anyhow::bail!("benchmark checks failed (see above)");
    }
    Ok(())
}

/// Runs the benchmarks; whether every check held.
fn execute(args: &Args) -> Result<bool> {
    let start = Instant::now();
    let mode = if args.quick { QUICK } else { FULL };
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| shell::target_dir().join("bench"));
    fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
    if !sni_filter_lab::is_root() {
        anyhow::bail!("the benchmarks load BPF programs and create namespaces: run as root");
    }
    // Namespaces left by a run that was killed (this one's are named like a lab's).
    if let Ok(deleted) = sni_filter_lab::Lab::cleanup_stale_labs()
        && !deleted.is_empty()
    {
        println!("removed namespaces of dead runs: {}", deleted.join(" "));
    }
    let work = tempfile::Builder::new()
        .prefix("sni-filter-bench")
        .tempdir()
        .context("cannot create a temporary folder")?;
    let mut report = Report::default();
    let command = command_line();
    let machine = machine();
    report.set("date", json!(date()));
    report.set("machine", machine.clone());
    report.set("mode", json!(if mode.quick { "quick" } else { "full" }));
    report.set("command", json!(command));
    report.set("cpu", json!(bpf::bench_cpu()));

    let cpu = bpf::bench_cpu();
    let mut floors = bpf::Floors::load()?;
    stage(args, "packet", "per packet", &mut report, |report| {
        bpf::pin(Some(cpu))?;
        let r = packet::run(mode.packet, &floors, work.path(), report);
        bpf::pin(None)?;
        r
    });
    stage(args, "quic", "QUIC", &mut report, |report| {
        bpf::pin(Some(cpu))?;
        let r = quic::per_packet(mode.packet, &floors, work.path(), report);
        bpf::pin(None)?;
        r?;
        quic::daemon_side(&mode.quic, work.path(), report)
    });
    stage(args, "scaling", "rule scaling", &mut report, |report| {
        scaling::run(&mode, &floors, work.path(), cpu, report)
    });
    stage(
        args,
        "veth",
        "iptables, nDPI and veth",
        &mut report,
        |report| veth::run(&mode, &mut floors, work.path(), cpu, report),
    );
    stage(args, "daemon", "daemon", &mut report, |report| {
        daemon::run(&mode, work.path(), report)
    });

    report.set("seconds", json!(start.elapsed().as_secs_f64()));
    let markdown = render(
        &report,
        &command,
        &machine,
        mode,
        start.elapsed().as_secs_f64(),
    );
    println!("\n{markdown}");
    write_outputs(&out, &markdown, &report)?;

    let failed: Vec<_> = report.checks.iter().filter(|c| !c.ok).collect();
    if failed.is_empty() {
        println!(
            "all {} checks held ({} s)",
            report.checks.len(),
            start.elapsed().as_secs()
        );
        Ok(true)
    } else {
        for c in &failed {
            println!("check failed: {}: {}", c.what, c.detail);
        }
        println!("{} of {} checks failed", failed.len(), report.checks.len());
        Ok(false)
    }
}

/// The command as the user typed it.
fn command_line() -> String {
    let args: Vec<String> = std::env::args().collect();
    args.iter().skip_while(|a| *a != "bench").skip(1).fold(
        "cargo xtask bench".to_owned(),
        |mut s, a| {
            s.push(' ');
            s.push_str(a);
            s
        },
    )
}

/// `bench.md` and `bench.json` (the figures and every check) in `out`.
fn write_outputs(out: &Path, markdown: &str, report: &Report) -> Result<()> {
    let md_path = out.join("bench.md");
    let json_path = out.join("bench.json");
    fs::write(&md_path, markdown).with_context(|| format!("writing {}", md_path.display()))?;
    let mut json = report.json.clone();
    json.insert(
        "checks".into(),
        Value::Array(
            report
                .checks
                .iter()
                .map(|c| json!({ "what": c.what, "ok": c.ok, "detail": c.detail }))
                .collect(),
        ),
    );
    fs::write(
        &json_path,
        serde_json::to_string_pretty(&Value::Object(json))? + "\n",
    )
    .with_context(|| format!("writing {}", json_path.display()))?;
    println!("wrote {} and {}", md_path.display(), json_path.display());
    Ok(())
}

/// Runs one part unless `--only` leaves it out, saying how long it took. A part that fails
/// is reported (a table and a failed check) and the others still run.
fn stage(
    args: &Args,
    key: &str,
    name: &str,
    report: &mut Report,
    f: impl FnOnce(&mut Report) -> Result<()>,
) {
    if !args.only.is_empty() && !args.only.iter().any(|o| o == key) {
        return;
    }
    println!("== bench: {name}");
    let start = Instant::now();
    if let Err(e) = f(report) {
        println!("   {name} failed: {e:#}");
        let mut t = report::Table::new(format!("{name}: failed"), &["error"]);
        t.row(vec![format!("{e:#}").replace('\n', " ")]);
        report.tables.push(t);
        report.fail(name, format!("{e:#}"));
    }
    println!("   {name}: {:.1} s", start.elapsed().as_secs_f64());
}

fn render(report: &Report, command: &str, machine: &Value, mode: Mode, secs: f64) -> String {
    let mut s = format!(
        "## sni-filter benchmarks ({} mode)\n\n- date: {}\n- machine: {}, {} CPUs, {} MiB, kernel {}, BPF JIT {}, spectre_v2: {}\n- command: `{}`\n- timed on CPU {} (pinned); took {:.0} s\n\n",
        if mode.quick { "quick" } else { "full" },
        date(),
        machine["cpu"].as_str().unwrap_or("?"),
        machine["cpus"],
        machine["memory_mib"],
        machine["kernel"].as_str().unwrap_or("?"),
        if machine["bpf_jit_enable"] == "1" {
            "on"
        } else {
            "off"
        },
        machine["spectre_v2"].as_str().unwrap_or("?"),
        command,
        bpf::bench_cpu(),
        secs,
    );
    for t in &report.tables {
        s.push_str(&t.markdown());
        s.push('\n');
    }
    let failed = report.checks.iter().filter(|c| !c.ok).count();
    let _ = writeln!(
        s,
        "Counter checks: {} of {} held.",
        report.checks.len() - failed,
        report.checks.len()
    );
    for c in report.checks.iter().filter(|c| !c.ok) {
        let _ = writeln!(s, "- FAILED {}: {}", c.what, c.detail);
    }
    s
}

/// CPU model, CPU count and kernel release.
fn machine() -> Value {
    let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|l| l.split_once(':'))
        .map_or_else(|| "unknown CPU".to_owned(), |(_, m)| m.trim().to_owned());
    let kernel = fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap_or_default()
        .trim()
        .to_owned();
    let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let mem_kib = fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|l| l.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .unwrap_or(0);
    let read = |p: &str| fs::read_to_string(p).unwrap_or_default().trim().to_owned();
    json!({
        "cpu": cpu, "cpus": cpus, "kernel": kernel, "memory_mib": mem_kib / 1024,
        "bpf_jit_enable": read("/proc/sys/net/core/bpf_jit_enable"),
        "spectre_v2": read("/sys/devices/system/cpu/vulnerabilities/spectre_v2"),
    })
}

/// Today's date and time (UTC), RFC 3339.
fn date() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let days = secs / 86_400;
    let rem = secs % 86_400;
    // Civil from days (H. Hinnant's algorithm).
    let z = days.cast_signed() + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

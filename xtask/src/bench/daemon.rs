//! The daemon's own cost: `sni-filter run` with a large rule list attached natively to a
//! veth in a namespace — how long it takes to start filtering, its memory (RSS from /proc,
//! and the kernel memory its maps hold) and its CPU while idle and while a flood of
//! blocked hellos fills its event ring.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use serde_json::json;
use sni_filter_lab::{ChildGuard, Netns, run_in_netns};

use super::Mode;
use super::bpf;
use super::frames;
use super::live;
use super::report::{Report, Table};
use crate::shell::{self, cmd};

/// How long the daemon gets to compile, load and attach.
const START_TIMEOUT: Duration = Duration::from_mins(4);

/// What was measured of the daemon.
struct Figures {
    start_s: f64,
    start_cpu_s: f64,
    rss_kib: u64,
    rss_peak_kib: u64,
    maps_kib: Option<u64>,
    window_s: f64,
    idle_pct: f64,
    flood_pct: f64,
    flood_s: f64,
    flood_handled: u64,
    /// Lines the daemon logged during the flood (flow records, rate-limited).
    flood_log_lines: usize,
    rss_after_kib: u64,
    /// How the flood was sent: live frames, or a packet socket where they are refused.
    generator: &'static str,
}

pub fn run(mode: &Mode, dir: &Path, report: &mut Report) -> Result<()> {
    let bin = build(mode.quick)?;
    let n = mode.daemon_rules;
    let pid = std::process::id();
    let sender = Netns::new(&format!("sfbench-{pid}-1-cl"))?;
    let gw = Netns::new(&format!("sfbench-{pid}-1-gw"))?;
    let ip = |args: &[&str]| shell::output(&mut cmd("ip", args)).map(drop);
    let (s, g) = (sender.name(), gw.name());
    ip(&[
        "-n", s, "link", "add", "d1", "mtu", "9000", "type", "veth", "peer", "name", "d0", "mtu",
        "9000", "netns", g,
    ])?;
    ip(&["-n", s, "link", "set", "d1", "up"])?;
    ip(&["-n", g, "link", "set", "d0", "up"])?;

    let log = dir.join("daemon.stderr");
    let mut rules_max = n;
    let (mut child, start_s) = loop {
        match start(&bin, &gw, dir, n, rules_max, &log)? {
            Ok(started) => break started,
            Err(log_text) if rules_max == n && log_text.contains("rules_max") => {
                let msg = format!(
                    "sni-filter run refused {n} rules with rules_max = {n}; measured with rules_max = {}: {}",
                    2 * n,
                    log_text.lines().last().unwrap_or("").trim()
                );
                println!("   {msg}");
                report.fail(&format!("daemon with {n} rules"), msg);
                rules_max = 2 * n;
            }
            Err(log_text) => bail!("sni-filter run exited before filtering:\n{log_text}"),
        }
    };
    let figures = measure(mode, child.id(), start_s, &sender, &gw, &log)?;
    if child.try_wait()?.is_some() {
        report.fail(
            "daemon",
            "sni-filter run died during the measurement".into(),
        );
    }
    drop(child);
    drop((sender, gw));
    tabulate(mode, n, rules_max, &figures, report);
    Ok(())
}

/// Starts `sni-filter run` with `n` rules and room for `rules_max` on `d0` and waits until
/// it filters: the process and the seconds that took, or what it printed before exiting.
fn start(
    bin: &Path,
    gw: &Netns,
    dir: &Path,
    n: usize,
    rules_max: usize,
    log: &Path,
) -> Result<std::result::Result<(ChildGuard, f64), String>> {
    let list_config = super::scaling::rule_config(dir, n, rules_max, "drop")?;
    let config = dir.join(format!("daemon-{n}.toml"));
    fs::write(
        &config,
        format!("{list_config}\n[logging]\ndestination = \"none\"\n"),
    )?;
    let begin = Instant::now();
    let mut command = gw.exec(bin);
    command
        .args([
            "--instance",
            &format!("sfbench-{}", std::process::id()),
            "run",
            "--config",
        ])
        .arg(&config)
        .args(["--interface", "d0"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(fs::File::create(log)?);
    let mut child =
        ChildGuard::spawn(&mut command)?.graceful(libc::SIGTERM, Duration::from_secs(10));
    loop {
        let text = fs::read_to_string(log).unwrap_or_default();
        if text.contains("rules in") {
            return Ok(Ok((child, begin.elapsed().as_secs_f64())));
        }
        if child.try_wait()?.is_some() {
            return Ok(Err(text));
        }
        if begin.elapsed() > START_TIMEOUT {
            bail!("sni-filter run did not start filtering within {START_TIMEOUT:?}:\n{text}");
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// Memory after the start, CPU idle, CPU under a flood of blocked hellos.
fn measure(
    mode: &Mode,
    daemon: u32,
    start_s: f64,
    sender: &Netns,
    gw: &Netns,
    log: &Path,
) -> Result<Figures> {
    let start_cpu_s = cpu_secs(daemon)?;
    // Keep the daemon off the CPU the flood runs on.
    // SAFETY: a zeroed set with CPU 0 added.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(0, &mut set);
        libc::sched_setaffinity(
            daemon.cast_signed(),
            size_of::<libc::cpu_set_t>(),
            &raw const set,
        );
    }
    let (rss_kib, rss_peak_kib) = memory_kib(daemon)?;
    let maps_kib = map_memlock_kib(daemon);

    let window_s = if mode.quick { 2.0 } else { 10.0 };
    let c0 = cpu_secs(daemon)?;
    thread::sleep(Duration::from_secs_f64(window_s));
    let idle_pct = (cpu_secs(daemon)? - c0) / window_s * 100.0;

    // A flood of blocked hellos, each judged afresh (SYN-flagged), each an event.
    let cpu = bpf::bench_cpu();
    let banned = format!("www.{}", super::scaling::rule_name(7));
    let frame = frames::syn_hello_frame(37000, &banned, false);
    let handled_before = xdp_packets(gw)?;
    let lines_before = fs::read_to_string(log).unwrap_or_default().lines().count();
    let c0 = cpu_secs(daemon)?;
    let t0 = Instant::now();
    let by_socket = run_in_netns(sender.name(), || -> Result<bool> {
        bpf::pin(Some(cpu))?;
        // SAFETY: a NUL-terminated name.
        let ifindex = unsafe { libc::if_nametoindex(c"d1".as_ptr()) };
        let program = live::redirect_program(ifindex)?;
        let mut by_socket = false;
        while t0.elapsed().as_secs_f64() < window_s {
            if by_socket {
                live::send_by_socket(ifindex, &frame, 1024)?;
            } else if let Err(e) = live::send(&program, &frame, 1 << 16, 64) {
                if !live::refused(&e) {
                    return Err(e);
                }
                by_socket = true;
            }
        }
        Ok(by_socket)
    })??;
    let flood_s = t0.elapsed().as_secs_f64();
    let generator = if by_socket {
        "a packet socket (this host refuses live frames)"
    } else {
        "live frames"
    };
    let flood_pct = (cpu_secs(daemon)? - c0) / flood_s * 100.0;
    let flood_handled = xdp_packets(gw)?.saturating_sub(handled_before);
    // The daemon drains events on its own schedule: give it a moment to log the last ones.
    thread::sleep(Duration::from_millis(500));
    let flood_log_lines = fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .count()
        .saturating_sub(lines_before);
    let (rss_after_kib, _) = memory_kib(daemon)?;
    Ok(Figures {
        start_s,
        start_cpu_s,
        rss_kib,
        rss_peak_kib,
        maps_kib,
        window_s,
        idle_pct,
        flood_pct,
        flood_s,
        flood_handled,
        flood_log_lines,
        rss_after_kib,
        generator,
    })
}

fn tabulate(mode: &Mode, rules: usize, rules_max: usize, f: &Figures, report: &mut Report) {
    let build_kind = if mode.quick { "debug" } else { "release" };
    let mib = |k: u64| format!("{:.0} MiB", k as f64 / 1024.0);
    let flood_rate = f.flood_handled as f64 / f.flood_s / 1e6;
    let mut table = Table::new(
        format!(
            "Daemon: `sni-filter run` ({build_kind} build) with {rules} rules (rules_max = {rules_max}), attached natively to a veth"
        ),
        &["measure", "value"],
    );
    let rows = [
        (
            "start until filtering (read, compile, load, fill maps, attach)".to_owned(),
            format!("{:.2} s", f.start_s),
        ),
        (
            "CPU time spent starting".to_owned(),
            format!("{:.2} s", f.start_cpu_s),
        ),
        (
            "RSS after start (peak)".to_owned(),
            format!("{} ({})", mib(f.rss_kib), mib(f.rss_peak_kib)),
        ),
        (
            "kernel memory of its maps (memlock)".to_owned(),
            f.maps_kib.map_or_else(|| "?".into(), mib),
        ),
        (
            format!("CPU while idle ({:.0} s)", f.window_s),
            format!("{:.2} %", f.idle_pct),
        ),
        (
            format!(
                "CPU during a flood of blocked hellos ({flood_rate:.2} M/s for {:.0} s, one event each, sent by {})",
                f.flood_s, f.generator
            ),
            format!("{:.2} %", f.flood_pct),
        ),
        (
            "lines it logged during the flood (flow records, rate-limited)".to_owned(),
            f.flood_log_lines.to_string(),
        ),
        ("RSS after the flood".to_owned(), mib(f.rss_after_kib)),
    ];
    for (k, v) in rows {
        table.row(vec![k, v]);
    }
    table.note(
        "CPU is the daemon's user + system time from /proc/PID/stat over the window; the \
         flood runs on the other CPU (the daemon is pinned to CPU 0). The kernel's map memory \
         is the sum of `memlock` over the daemon's BPF map descriptors (/proc/PID/fdinfo).",
    );
    report.tables.push(table);
    report.set(
        "daemon",
        json!({
            "build": build_kind, "rules": rules, "rules_max": rules_max, "start_s": f.start_s,
            "start_cpu_s": f.start_cpu_s, "rss_kib": f.rss_kib, "rss_peak_kib": f.rss_peak_kib,
            "maps_memlock_kib": f.maps_kib, "idle_cpu_pct": f.idle_pct,
            "flood_cpu_pct": f.flood_pct, "flood_hellos_per_s": flood_rate * 1e6,
            "rss_after_flood_kib": f.rss_after_kib, "flood_log_lines": f.flood_log_lines,
            "flood_generator": f.generator,
        }),
    );
}

/// Builds `sni-filter` (release for the full run, debug for the quick one).
fn build(quick: bool) -> Result<PathBuf> {
    let mut args = vec![
        "build",
        "--quiet",
        "-p",
        "filter-daemon",
        "--bin",
        "sni-filter",
    ];
    if !quick {
        args.push("--release");
    }
    let mut cargo = cmd("cargo", &args);
    cargo.current_dir(shell::workspace_root());
    shell::run(&mut cargo)?;
    let bin = shell::target_dir()
        .join(if quick { "debug" } else { "release" })
        .join("sni-filter");
    if !bin.exists() {
        bail!("no binary at {}", bin.display());
    }
    Ok(bin)
}

/// Frames the program on `d0` has seen.
fn xdp_packets(gw: &Netns) -> Result<u64> {
    let out = shell::output(gw.exec("ethtool").args(["-S", "d0"]))?;
    out.lines()
        .find_map(|l| l.trim().strip_prefix("rx_queue_0_xdp_packets:"))
        .and_then(|v| v.trim().parse().ok())
        .context("no rx_queue_0_xdp_packets in ethtool -S d0")
}

/// User + system seconds of a process.
fn cpu_secs(pid: u32) -> Result<f64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("process {pid} is gone"))?;
    stat_cpu_secs(&stat)
}

/// User + system seconds in a `/proc/.../stat` text (of a process or a thread).
pub fn stat_cpu_secs(stat: &str) -> Result<f64> {
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state is field 3; utime and stime are fields 14 and 15.
    let ticks: u64 = f
        .get(11..13)
        .context("short /proc/PID/stat")?
        .iter()
        .filter_map(|v| v.parse::<u64>().ok())
        .sum();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1);
    Ok(ticks as f64 / hz as f64)
}

/// `VmRSS` and `VmHWM` of a process, in KiB.
fn memory_kib(pid: u32) -> Result<(u64, u64)> {
    let status = fs::read_to_string(format!("/proc/{pid}/status"))?;
    let get = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    };
    Ok((get("VmRSS:"), get("VmHWM:")))
}

/// Sum of `memlock` over the BPF maps a process holds open, in KiB.
fn map_memlock_kib(pid: u32) -> Option<u64> {
    let mut total = 0u64;
    for entry in fs::read_dir(format!("/proc/{pid}/fdinfo")).ok()?.flatten() {
        let Ok(info) = fs::read_to_string(entry.path()) else {
            continue;
        };
        if !info.contains("map_type:") {
            continue;
        }
        if let Some(v) = info
            .lines()
            .find_map(|l| l.strip_prefix("memlock:"))
            .and_then(|v| v.trim().parse::<u64>().ok())
        {
            total += v;
        }
    }
    Some(total / 1024)
}

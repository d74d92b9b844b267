//! `cargo xtask matrix`: the XDP program on the distribution kernels gateways run — Debian's
//! stock 6.1 and 6.12 booted under QEMU, and the host's own — through `sni-filter doctor` and
//! the tests that need only `BPF_PROG_TEST_RUN`; a table of the verifier's figures and the
//! test counts per kernel.
//!
//! It fails when a kernel cannot be fetched or booted, when a program is refused, over its
//! instruction bound or slow to verify, when doctor gives no figures, or when a test fails.
//! Guests share the host's root read-only over virtiofs, so every path is the host's.

mod cpio;
mod guest;
mod initramfs;
mod kernels;
mod parse;
mod process;
mod report;
mod suite;

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use signal_hook::consts::{SIGINT, SIGTERM};

use crate::shell::{self, cmd};
use kernels::SERIES;
use report::Row;
use suite::Suite;

/// Boot and the whole suite under software emulation: 6.12 took about 3 minutes when
/// measured; a hung guest is killed after this.
const GUEST_TIMEOUT_SECS: u64 = 600;
/// Boots of a guest whose kernel dies before the suite starts (see `guest_row`).
const BOOTS_MAX: u32 = 2;
/// The host runs the suite natively: well under a minute.
const HOST_TIMEOUT_SECS: u64 = 300;

#[derive(clap::Args)]
pub struct Args {
    /// Kill a guest (boot and suite) that has not powered off after this many seconds.
    #[arg(long, default_value_t = GUEST_TIMEOUT_SECS)]
    timeout_secs: u64,
    /// Run only these kernel series (6.1, 6.12); all of them by default.
    #[arg(long = "kernel", value_name = "SERIES")]
    kernels: Vec<String>,
}

impl Default for Args {
    fn default() -> Self {
        Self {
            timeout_secs: GUEST_TIMEOUT_SECS,
            kernels: Vec::new(),
        }
    }
}

pub fn run(args: &Args) -> Result<ExitCode> {
    for kernel in &args.kernels {
        if !SERIES.iter().any(|s| s.name == kernel) {
            bail!("no kernel series {kernel}: the matrix has 6.1 and 6.12");
        }
    }
    check_tools()?;
    // A guest or suite in flight is stopped through its guard, not left to run on.
    let interrupted = Arc::new(AtomicBool::new(false));
    for signal in [SIGINT, SIGTERM] {
        signal_hook::flag::register(signal, Arc::clone(&interrupted))
            .context("cannot install the signal handler")?;
    }
    let suite = Suite::build()?;
    let logs = shell::target_dir().join("kernel-matrix").join("logs");
    std::fs::create_dir_all(&logs).with_context(|| format!("cannot create {}", logs.display()))?;

    let mut rows = vec![host_row(&suite, &logs, &interrupted)?];
    for series in SERIES {
        if !args.kernels.is_empty() && !args.kernels.iter().any(|k| k == series.name) {
            continue;
        }
        let row = guest_row(series, &suite, &logs, args, &interrupted);
        rows.push(row);
        if interrupted.load(std::sync::atomic::Ordering::SeqCst) {
            bail!("interrupted");
        }
    }

    println!("\n== kernel matrix");
    report::print(&rows);
    let problems: Vec<String> = rows.iter().flat_map(Row::problems).collect();
    println!("logs: {}", logs.display());
    if problems.is_empty() {
        println!("every kernel loads both programs within bounds and passes the tests");
        return Ok(ExitCode::SUCCESS);
    }
    println!("{} problems:", problems.len());
    for problem in &problems {
        println!("  - {problem}");
    }
    bail!("the kernel matrix failed: {} problems", problems.len())
}

/// The tools `cargo xtask setup` installs for the matrix, checked before anything is built.
fn check_tools() -> Result<()> {
    let mut missing = Vec::new();
    for tool in [guest::QEMU, "depmod", "xz", "dpkg", "apt-get"] {
        if shell::output(&mut cmd("sh", ["-c", &format!("command -v {tool}")])).is_err() {
            missing.push(tool);
        }
    }
    for file in [guest::VIRTIOFSD, "/bin/busybox"] {
        if !Path::new(file).exists() {
            missing.push(file);
        }
    }
    if !missing.is_empty() {
        bail!(
            "missing {}: `cargo xtask setup` installs them",
            missing.join(", ")
        );
    }
    if !sni_filter_lab::is_root() {
        bail!("the matrix needs root: the host's run loads BPF programs");
    }
    Ok(())
}

/// The suite on the host's own kernel, the row the guests are read against.
fn host_row(suite: &Suite, logs: &Path, interrupted: &AtomicBool) -> Result<Row> {
    let release = shell::output(&mut cmd("uname", ["-r"]))?.trim().to_owned();
    println!("\n== matrix: host kernel {release}");
    let start = Instant::now();
    let log = logs.join("host.log");
    let run = process::Logged::spawn(&mut cmd("sh", [&suite.script]), "host", &log)?;
    let deadline = start + Duration::from_secs(HOST_TIMEOUT_SECS);
    let (status, text) = run.finish(deadline, interrupted);
    Ok(Row {
        kernel: format!("{release} (host)"),
        boot_secs: None,
        run_secs: start.elapsed().as_secs_f64(),
        console: parse::console(&text),
        error: status.err().map(|e| format!("{e:#}")),
    })
}

/// Fetches, boots and reads one kernel; every failure becomes the row's error, so the table
/// still shows the other kernels.
fn guest_row(
    series: &kernels::Series,
    suite: &Suite,
    logs: &Path,
    args: &Args,
    interrupted: &AtomicBool,
) -> Row {
    println!("\n== matrix: Debian kernel {}", series.name);
    let mut row = Row {
        kernel: format!("{} (not fetched)", series.name),
        boot_secs: None,
        run_secs: 0.0,
        console: parse::Console::default(),
        error: None,
    };
    let outcome = (|| -> Result<guest::Outcome> {
        let kernel = kernels::fetch(series)?;
        row.kernel.clone_from(&kernel.release);
        let initramfs = initramfs::build(&kernel, &suite.script)?;
        let log = logs.join(format!("{}.log", kernel.release));
        let start = Instant::now();
        let deadline = start + Duration::from_secs(args.timeout_secs);
        let mut boots = 0;
        let outcome = loop {
            boots += 1;
            let outcome = guest::run(&kernel, &initramfs, &log, deadline, interrupted);
            // A kernel that dies before the suite starts, under software emulation (seen:
            // an int3 oops in early text patching, in one of eight boots of 6.12), says nothing
            // of the program: it is booted once more, and fails the stage if it dies again.
            let Ok(o) = &outcome else { break outcome };
            if boots == BOOTS_MAX
                || interrupted.load(std::sync::atomic::Ordering::SeqCst)
                || parse::console(&o.console).ready_at.is_some()
            {
                break outcome;
            }
            let kept = log.with_extension("boot-failed.log");
            let _ = std::fs::rename(&log, &kept);
            println!(
                "  [{}] the kernel died before the suite began (console in {}); booting it once more",
                kernel.release,
                kept.display()
            );
        };
        row.run_secs = start.elapsed().as_secs_f64();
        outcome.map(|mut o| {
            o.error = o
                .error
                .map(|e| anyhow::anyhow!("{e:#}; console in {}", log.display()));
            o
        })
    })();
    match outcome {
        Ok(guest::Outcome { console, error }) => {
            row.console = parse::console(&console);
            row.boot_secs = row.console.ready_at;
            row.error = error.map(|e| format!("{e:#}"));
            if row.boot_secs.is_none() && row.console.init_failure.is_none() && row.error.is_none()
            {
                row.error = Some("the guest never reached the suite".into());
            }
        }
        Err(err) => row.error = Some(format!("{err:#}")),
    }
    row
}

//! `cargo xtask test`: every check the project has, in order, stopping at the first failure —
//! setup, formatting, clippy, then the unit, BPF and namespace tests, the Debian package
//! installed and purged in a throwaway root, the program on Debian's kernels under QEMU (the
//! kernel matrix), and last the quick benchmark run (every class
//! measured and counted as intended; timings never fail it).
//!
//! A test binary killed by Ctrl-C cannot drop its labs, so namespaces of dead test runs are
//! removed before the tests and again after them.

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use signal_hook::consts::{SIGINT, SIGTERM};
use sni_filter_lab::Lab;

use crate::shell::{self, cmd};

#[derive(clap::Args)]
pub struct Args {
    /// Skip `cargo xtask setup`.
    #[arg(long)]
    no_setup: bool,
}

enum Stage {
    Setup,
    Cargo(&'static [&'static str]),
    /// `cargo xtask matrix`.
    Matrix,
    /// `cargo xtask deb --install-test`.
    Package,
    /// `cargo xtask bench --quick`.
    BenchQuick,
}

const STAGES: &[(&str, Stage)] = &[
    ("setup", Stage::Setup),
    ("format", Stage::Cargo(&["fmt", "--all", "--", "--check"])),
    // The default members: everything built for the host, the benchmarks included.
    (
        "clippy",
        Stage::Cargo(&[
            "clippy",
            "--all-targets",
            "--features",
            "xtask/bench",
            "--",
            "-D",
            "warnings",
        ]),
    ),
    // The XDP program, built for the BPF target as filter-daemon's build.rs builds it.
    (
        "clippy-bpf",
        Stage::Cargo(&[
            "+nightly",
            "clippy",
            "--package",
            "filter-ebpf",
            "--target",
            "bpfel-unknown-none",
            "-Z",
            "build-std=core",
            "--",
            "-D",
            "warnings",
        ]),
    ),
    ("tests", Stage::Cargo(&["test"])),
    ("package", Stage::Package),
    ("matrix", Stage::Matrix),
    ("bench-quick", Stage::BenchQuick),
];

pub fn run(args: &Args) -> Result<ExitCode> {
    // Children get the terminal's Ctrl-C themselves; this process waits for them to end,
    // then cleans up and reports instead of dying first.
    let interrupted = Arc::new(AtomicBool::new(false));
    for signal in [SIGINT, SIGTERM] {
        signal_hook::flag::register(signal, Arc::clone(&interrupted))
            .context("cannot install the signal handler")?;
    }
    let root = shell::workspace_root();
    let mut results: Vec<(&str, Duration, bool)> = Vec::new();
    let mut failure = None;
    for (name, stage) in STAGES {
        if matches!(stage, Stage::Setup) && args.no_setup {
            continue;
        }
        println!("\n== test stage: {name}");
        let start = Instant::now();
        let outcome = match stage {
            Stage::Setup => crate::setup::run(&crate::setup::Args::default()).map(|_| ()),
            Stage::Cargo(cargo_args) => {
                remove_stale_labs();
                if *name == "tests" {
                    let _ = std::fs::remove_file(evasion_table());
                }
                let mut cargo = cmd("cargo", *cargo_args);
                cargo.current_dir(&root);
                shell::run(&mut cargo)
            }
            Stage::Matrix => crate::matrix::run(&crate::matrix::Args::default()).map(|_| ()),
            Stage::Package => crate::deb::check(),
            Stage::BenchQuick => {
                remove_stale_labs();
                crate::bench_launch::quick_check()
            }
        };
        let ok = outcome.is_ok();
        if *name == "tests" {
            print_evasion_table();
        }
        results.push((name, start.elapsed(), ok));
        if let Err(err) = outcome {
            failure = Some((*name, err));
            break;
        }
        if interrupted.load(Ordering::SeqCst) {
            break;
        }
    }
    remove_stale_labs();

    println!("\n== summary");
    for (name, took, ok) in &results {
        let verdict = if *ok { "ok" } else { "FAILED" };
        println!("  {name:<11} {verdict:<7} {:>6.1} s", took.as_secs_f64());
    }
    if interrupted.load(Ordering::SeqCst) {
        println!("interrupted");
        return Ok(ExitCode::from(130));
    }
    if let Some((name, err)) = failure {
        println!("stopped at stage {name}: {err:#}");
        return Ok(ExitCode::FAILURE);
    }
    println!("all {} stages passed", results.len());
    Ok(ExitCode::SUCCESS)
}

/// Where the evasion suite (`filter-daemon/tests/lab_evasion.rs`) writes its table.
fn evasion_table() -> std::path::PathBuf {
    shell::target_dir().join("tmp").join("evasion-table.txt")
}

/// The technique table of the evasion suite, as the tests stage wrote it.
fn print_evasion_table() {
    match std::fs::read_to_string(evasion_table()) {
        Ok(table) => println!("\n== evasion techniques against the gateway\n{table}"),
        Err(_) => println!("\n(the evasion suite wrote no table)"),
    }
}

/// Deletes the namespaces of labs whose process is gone (a test binary killed mid-run).
fn remove_stale_labs() {
    if !sni_filter_lab::is_root() {
        return;
    }
    match Lab::cleanup_stale_labs() {
        Ok(deleted) if !deleted.is_empty() => {
            println!(
                "removed namespaces of dead test runs: {}",
                deleted.join(" ")
            );
        }
        Ok(_) => {}
        Err(err) => println!("warning: cannot look for stale namespaces: {err:#}"),
    }
}

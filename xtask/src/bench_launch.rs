//! How `cargo xtask bench` reaches the benchmarks. They link filter-daemon, which embeds
//! the XDP program; building that needs the tools `cargo xtask setup` installs. So plain
//! xtask builds without them and, for `bench`, installs what is missing and then runs itself
//! again built with the `bench` feature.

use std::process::ExitCode;

use anyhow::Result;

use crate::{bench_args::Args, shell};

#[cfg(feature = "bench")]
pub fn run(args: &Args) -> Result<ExitCode> {
    crate::bench::run(args)
}

#[cfg(not(feature = "bench"))]
pub fn run(args: &Args) -> Result<ExitCode> {
    crate::setup::run(&crate::setup::Args::default())?;
    shell::run(&mut with_benchmarks(args))?;
    Ok(ExitCode::SUCCESS)
}

/// The last stage of `cargo xtask test`: the quick run into `target/bench/test-quick`,
/// failing when a class did not run or was not counted as intended.
pub fn quick_check() -> Result<()> {
    let args = Args {
        quick: true,
        out: Some(shell::target_dir().join("bench").join("test-quick")),
        only: Vec::new(),
    };
    #[cfg(feature = "bench")]
    {
        crate::bench::check(&args)
    }
    #[cfg(not(feature = "bench"))]
    {
        shell::run(&mut with_benchmarks(&args))
    }
}

/// `cargo run -p xtask --features bench -- bench ARGS`: this command again, benchmarks
/// included.
#[cfg(not(feature = "bench"))]
fn with_benchmarks(args: &Args) -> std::process::Command {
    let mut cargo = shell::cmd(
        "cargo",
        [
            "run",
            "--quiet",
            "--package",
            "xtask",
            "--features",
            "bench",
        ],
    );
    if !args.quick {
        // The daemon-side figures (QUIC's worker runs in this process) are those of an
        // optimised build, as the daemon ships.
        cargo.arg("--release");
    }
    cargo.args(["--", "bench"]);
    cargo.current_dir(shell::workspace_root());
    if args.quick {
        cargo.arg("--quick");
    }
    if let Some(out) = &args.out {
        cargo.arg("--out").arg(out);
    }
    if !args.only.is_empty() {
        cargo.arg("--only").arg(args.only.join(","));
    }
    cargo
}

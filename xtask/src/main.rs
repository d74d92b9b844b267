//! `cargo xtask`: the project's tasks — installing the tools, the demo lab, the test suites,
//! the kernel matrix, the benchmarks, the Debian package.
//! This file parses arguments and dispatches; each task lives in a file of its own.

#[cfg(feature = "bench")]
mod bench;
mod bench_args;
mod bench_launch;
mod deb;
mod demo;
#[cfg(test)]
mod layout;
mod matrix;
mod setup;
mod shell;
mod test;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Tasks of the sni-filter project.
#[derive(Parser)]
#[command(name = "cargo xtask", bin_name = "cargo xtask", version)]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install what building, the tests and the demo need: nightly rust-src, bpf-linker built
    /// against nightly's LLVM, and Debian packages (nginx, curl, openssl, iproute2, ...).
    ///
    /// Safe to run again: what is present is skipped, and each step says what it did.
    ///
    /// Example: cargo xtask setup
    Setup(setup::Args),
    /// Show the filter at work: a client, a gateway and a server in network namespaces; both
    /// names served without the filter, then www.tiktok.com blocked and www.example.org
    /// served once `sni-filter` runs on the gateway. Needs root. Ctrl-C cleans up.
    ///
    /// Example (as root): cargo xtask demo
    Demo(demo::Args),
    /// Run every check in order, stopping at the first failure: formatting, clippy, the
    /// unit, BPF and namespace tests, the Debian package's install test, the kernel matrix and a quick
    /// benchmark run. Needs root.
    ///
    /// Example (as root): cargo xtask test
    Test(test::Args),
    /// Load the XDP program on the distribution kernels gateways run: Debian 12's newest 6.1
    /// and 6.12 cloud kernels, each booted under QEMU with the host's files shared read-only,
    /// and the host's own kernel. On each: `sni-filter doctor lo` (the verifier's figures per
    /// program) and the table, replay and lab-capture tests. Prints kernel x program; fails on
    /// a kernel that cannot be fetched or booted, a program refused, over 200 000 processed
    /// instructions or 1 s to verify, missing figures, or a failed test. Needs root.
    ///
    /// Example (as root): cargo xtask matrix --kernel 6.12
    Matrix(matrix::Args),
    /// Measure the filter: per-packet cost through `BPF_PROG_TEST_RUN` next to an empty XDP
    /// program, rule scaling (10 to 1M rules), iptables string match and nDPI on the same
    /// hellos, end to end on veth, and the daemon's CPU, memory and load time. Writes
    /// bench.md and bench.json. Timings never fail it; a class whose counter did not move
    /// as intended does. Needs root.
    ///
    /// Example (as root): cargo xtask bench --quick
    Bench(bench_args::Args),
    /// Build the Debian package target/debian/sni-filter_VERSION_ARCH.deb: the release
    /// binary in /usr/sbin, the configuration and lists as conffiles in /etc/sni-filter, the
    /// systemd unit, bash/zsh/fish completions and man pages written by the binary.
    /// `--install-test` then installs it in a throwaway copy of this system, checks it and
    /// purges it. Needs dpkg-dev; the install test needs root.
    ///
    /// Example: cargo xtask deb --install-test
    Deb(deb::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.task {
        Task::Setup(args) => setup::run(&args),
        Task::Demo(args) => demo::run(&args),
        Task::Test(args) => test::run(&args),
        Task::Matrix(args) => matrix::run(&args),
        Task::Bench(args) => bench_launch::run(&args),
        Task::Deb(args) => deb::run(&args),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

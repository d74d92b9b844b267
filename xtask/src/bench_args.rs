//! The arguments of `cargo xtask bench` (`bench_launch.rs` says how they reach the
//! benchmarks).

use std::path::PathBuf;

#[derive(clap::Args, Default)]
pub struct Args {
    /// Small repeat counts and rule sets (about a minute): checks that every class runs
    /// and is counted as intended; skips iptables, nDPI and the veth runs.
    #[arg(long)]
    pub quick: bool,
    /// Folder for bench.md and bench.json [default: target/bench].
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Run only these parts: packet, quic, scaling, veth (iptables, nDPI, end to end), daemon.
    #[arg(long, value_delimiter = ',', value_name = "PART")]
    pub only: Vec<String>,
}

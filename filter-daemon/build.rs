//! Builds the XDP program (filter-ebpf) for the BPF target so that `include_bytes_aligned!`
//! can embed it: a plain `cargo build` builds everything.

use anyhow::Context as _;
use aya_build::{Package, Toolchain};

fn main() -> anyhow::Result<()> {
    let ebpf = Package {
        name: "filter-ebpf",
        root_dir: concat!(env!("CARGO_MANIFEST_DIR"), "/../filter-ebpf"),
        ..Default::default()
    };
    println!("cargo:rerun-if-changed=../filter-common/src");
    aya_build::build_ebpf([ebpf], Toolchain::default()).context(
        "building the XDP program needs nightly with rust-src and bpf-linker: run `cargo xtask setup`",
    )
}

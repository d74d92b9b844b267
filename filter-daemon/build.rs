//! Builds the XDP program (filter-ebpf) for the BPF target so that `include_bytes_aligned!`
//! can embed it: a plain `cargo build` builds everything. Also records the commit the binary
//! is built from (`SNI_FILTER_COMMIT`), for `--version`, `status` and `/metrics`.

use anyhow::Context as _;
use aya_build::{Package, Toolchain};

fn main() -> anyhow::Result<()> {
    let ebpf = Package {
        name: "filter-ebpf",
        root_dir: concat!(env!("CARGO_MANIFEST_DIR"), "/../filter-ebpf"),
        ..Default::default()
    };
    println!("cargo:rerun-if-changed=../filter-common/src");
    record_commit();
    aya_build::build_ebpf([ebpf], Toolchain::default()).context(
        "building the XDP program needs nightly with rust-src and bpf-linker: run `cargo xtask setup`",
    )
}

/// The commit of the source tree (`git describe --always --dirty`), or "unknown" when it is
/// not a git checkout (a source tarball); rebuilt when HEAD moves.
fn record_commit() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let commit = std::process::Command::new("git")
        .args(["-C", root, "describe", "--always", "--dirty", "--abbrev=12"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=SNI_FILTER_COMMIT={commit}");
    if let Ok(out) = std::process::Command::new("git")
        .args(["-C", root, "rev-parse", "--git-dir"])
        .output()
        && out.status.success()
    {
        let dir = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        let dir = std::path::Path::new(root).join(dir);
        println!("cargo:rerun-if-changed={}", dir.join("HEAD").display());
        println!("cargo:rerun-if-changed={}", dir.join("index").display());
    }
}

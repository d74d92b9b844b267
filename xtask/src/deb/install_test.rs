//! The package's install test: `dpkg -i` into a copy-on-write root of this very system (an
//! overlay over `/` on a tmpfs, in private mount, network and PID namespaces, chrooted), the
//! checks of `package_checks.sh` there, then a check that the host's own files and dpkg
//! records are as they were. Mounts and processes end with the namespaces, on failure too.

use std::path::Path;

use anyhow::{Context as _, Result, bail};

use super::package::VERSION;
use crate::shell::{self, cmd};

/// Builds the throwaway root and runs the checks in it.
const FRESH_ROOT: &str = include_str!("fresh_root.sh");
/// The checks, run chrooted.
const CHECKS: &str = include_str!("package_checks.sh");

/// Host paths the package would create: each must be as present (or absent) afterwards as
/// before.
const HOST_TRACES: &[&str] = &[
    "/usr/sbin/sni-filter",
    "/etc/sni-filter",
    "/lib/systemd/system/sni-filter.service",
    "/usr/share/doc/sni-filter",
    "/usr/share/man/man8/sni-filter.8.gz",
    "/var/lib/dpkg/info/sni-filter.list",
];

/// A stuck dpkg or chroot must not hold `cargo xtask test` for ever.
const TIMEOUT_SECS: &str = "600";

pub fn run(deb: &Path) -> Result<()> {
    if !sni_filter_lab::is_root() {
        bail!("the install test mounts an overlay and runs dpkg: run it as root");
    }
    let before = host_state();
    let scripts = tempfile::tempdir().context("cannot create a temporary folder")?;
    let fresh_root = scripts.path().join("fresh_root.sh");
    let checks = scripts.path().join("package_checks.sh");
    std::fs::write(&fresh_root, FRESH_ROOT)?;
    std::fs::write(&checks, CHECKS)?;
    // The tmpfs is mounted on it inside the namespace only; here it stays an empty folder.
    let scratch = tempfile::Builder::new()
        .prefix("sni-filter-deb-root.")
        .tempdir()
        .context("cannot create a temporary folder")?;
    let mut unshare = cmd(
        "timeout",
        [
            TIMEOUT_SECS,
            "unshare",
            "--mount",
            "--net",
            "--pid",
            "--fork",
            "--kill-child",
            "--propagation",
            "private",
            "sh",
        ],
    );
    unshare
        .arg(&fresh_root)
        .arg(scratch.path())
        .arg(deb)
        .arg(&checks)
        .arg(VERSION);
    let outcome = shell::run(&mut unshare);
    let after = host_state();
    if after != before {
        bail!("the install test changed the host: before {before:?}, after {after:?}");
    }
    outcome.context("the package's install test failed (its last line says which check)")
}

/// What the package would change on the host: its paths present or not, and dpkg's record.
fn host_state() -> (Vec<(&'static str, bool)>, String) {
    let paths = HOST_TRACES
        .iter()
        .map(|p| (*p, Path::new(p).symlink_metadata().is_ok()))
        .collect();
    let dpkg = shell::output(&mut cmd(
        "dpkg-query",
        ["-W", "-f=${Status} ${Version}", "sni-filter"],
    ))
    .unwrap_or_else(|_| "not known to dpkg".to_owned());
    (paths, dpkg)
}

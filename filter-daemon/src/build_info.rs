//! What this binary is: the package version and the commit it was built from, as shown by
//! `--version`, `status` and the `sni_filter_build_info` metric.

/// The package version (Cargo.toml).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// `git describe --always --dirty` of the source tree at build time, or "unknown".
pub const COMMIT: &str = env!("SNI_FILTER_COMMIT");
/// "VERSION (commit COMMIT)", the text of `--version`.
pub const LONG_VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("SNI_FILTER_COMMIT"),
    ")"
);

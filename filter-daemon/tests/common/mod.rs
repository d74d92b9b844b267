//! What the end-to-end tests share: the names the lab serves, the binary under test and
//! the shipped configuration. Each test binary uses a part of it.
#![allow(dead_code)]

use std::path::PathBuf;

use sni_filter_lab::{Status, TlsServer};

/// A name `config/filter.toml` blocks, and one it lets through.
pub const BANNED: &str = "www.tiktok.com";
pub const ALLOWED: &str = "www.example.org";

/// The `sni-filter` binary built for these tests.
pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_sni-filter"))
}

/// The shipped configuration.
pub fn repo_config() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../config/filter.toml"
    ))
}

/// A copy of the shipped configuration and its rule lists in `dir`, with `replace.0`
/// replaced by `replace.1` (which must be in it; `("", "")` copies it as it is).
pub fn config_copy(dir: &std::path::Path, replace: (&str, &str)) -> PathBuf {
    config_copy_with(dir, &[replace])
}

/// As [`config_copy`], with several replacements.
pub fn config_copy_with(dir: &std::path::Path, replace: &[(&str, &str)]) -> PathBuf {
    let shipped = repo_config();
    std::fs::create_dir_all(dir.join("lists")).unwrap();
    for f in ["lists/tiktok.txt", "lists/bytedance.txt"] {
        std::fs::copy(shipped.parent().unwrap().join(f), dir.join(f)).unwrap();
    }
    let mut text = std::fs::read_to_string(&shipped).unwrap();
    for (from, to) in replace {
        assert!(
            text.contains(from),
            "{from} not in the shipped configuration"
        );
        text = text.replacen(from, to, 1);
    }
    let path = dir.join("filter.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Requests the server answered for `host` (its access log names the SNI).
pub fn requests_for(server: &TlsServer, host: &str) -> usize {
    server.access_log().matches(&format!("sni={host} ")).count()
}

/// How much a reason's packets moved between two `status` reads.
pub fn moved(before: &Status, after: &Status, reason: &str) -> u64 {
    after.reason_packets(reason) - before.reason_packets(reason)
}

/// The allowed name was served: HTTP 200 with the server's body for it.
pub fn assert_served(outcome: &sni_filter_lab::CurlOutcome, host: &str, context: &str) {
    assert_eq!(
        outcome.http_status,
        Some(200),
        "{context} {host}: {}",
        outcome.summary()
    );
    assert_eq!(
        outcome.body,
        sni_filter_lab::response_body(host),
        "{context} {host}"
    );
}

/// The server never answered a request for `host` (its access log names the SNI).
pub fn assert_never_served(server: &TlsServer, host: &str) {
    assert_eq!(requests_for(server, host), 0, "{}", server.access_log());
}

//! What the test binaries of both groups share: the names the shipped configuration bans
//! and allows, the binary under test and copies of that configuration. [`lab`] holds what
//! only the end-to-end lab tests use, [`program`] the frame runner of the program tests.
//! Each test binary uses a part of it.
#![allow(dead_code)]

pub mod fleet;
pub mod lab;
pub mod minisign;
pub mod program;
pub mod prometheus;

use std::path::PathBuf;

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

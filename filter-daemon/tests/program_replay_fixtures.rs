//! Group: program tests (the compiled program through `BPF_PROG_TEST_RUN`, no namespaces;
//! see `filter-daemon/tests/README.md`).
//!
//! Captures made in the lab, kept as fixtures in `tests/fixtures/`: each is one connection's
//! `ClientHello` to www.tiktok.com spread over two TCP segments (Chromium's post-quantum
//! hello; a crafted hello padded past one segment). `sni-filter replay` must read the name
//! across the segments and drop the flow with the repository's configuration.
//!
//! `cargo run -p filter-daemon --example regenerate_lab_captures` (root) makes them again;
//! see `tests/fixtures/README.md`. Replaying needs root (`BPF_PROG_TEST_RUN`).

mod common;

#[allow(clippy::wildcard_imports)]
use common::*;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use sni_filter_lab::HTTPS_PORT;
use sni_filter_lab::capture::{Stand, client_segments, read_pcap, segment_of};

const BIN: &str = env!("CARGO_BIN_EXE_sni-filter");
const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures");
/// Chromium fetching `https://www.tiktok.com/`.
const CHROMIUM: &str = "chromium-tiktok.pcap";
/// A crafted hello padded to 2000 bytes with the name after the padding, over a real TCP
/// connection.
const PADDED: &str = "padded-hello-tiktok.pcap";
/// Fixtures stay small: only the handshake packets up to the end of the hello.
const FIXTURE_MAX_BYTES: u64 = 8 * 1024;

fn fixture(name: &str) -> PathBuf {
    Path::new(FIXTURES).join(name)
}

/// The flows `sni-filter replay --json [--config CONFIG] CAPTURE` prints.
fn replay(capture: &Path, config: Option<&Path>) -> Vec<Value> {
    let mut cmd = Command::new(BIN);
    cmd.args(["replay", "--json"]);
    if let Some(config) = config {
        cmd.arg("--config").arg(config);
    }
    let out = cmd.arg(capture).output().expect("sni-filter runs");
    assert!(
        out.status.success(),
        "replay {} failed ({}): {}",
        capture.display(),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("UTF-8 output")
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

/// The hello offers the X25519MLKEM768 key share (group 0x11ec, 1216 bytes).
fn has_post_quantum_share(segments: &[Vec<u8>]) -> bool {
    segments
        .concat()
        .windows(4)
        .any(|w| w == [0x11, 0xec, 0x04, 0xc0])
}

#[test]
fn lab_captures_yield_the_banned_name_and_the_flow_is_dropped() {
    let stand = Stand::default();
    for name in [CHROMIUM, PADDED] {
        let path = fixture(name);
        let size = fs::metadata(&path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            .len();
        assert!(size <= FIXTURE_MAX_BYTES, "{name} is {size} bytes");
        let (_, records) = read_pcap(&fs::read(&path).unwrap()).unwrap();
        let segments = client_segments(&records);
        let sizes: Vec<usize> = segments.iter().map(Vec::len).collect();
        assert!(
            sizes.len() == 2 && sizes.iter().sum::<usize>() > 1500,
            "{name}: the hello should span two segments: {sizes:?}"
        );
        // The name is only in the second segment: the program must carry the first over.
        assert_eq!(
            segment_of(&segments, BANNED.as_bytes()),
            Some(2),
            "{name}: {sizes:?}"
        );
        if name == CHROMIUM {
            assert!(
                has_post_quantum_share(&segments),
                "{name}: no X25519MLKEM768 share"
            );
        }

        let flows = replay(&path, Some(&repo_config()));
        assert_eq!(flows.len(), 1, "{name}: {flows:?}");
        let flow = &flows[0];
        println!("{name}: client segments {sizes:?}: {flow}");
        assert_eq!(flow["sni"], BANNED, "{name}: {flow}");
        assert_eq!(flow["action"], "drop", "{name}: {flow}");
        assert_eq!(flow["app"], "tiktok", "{name}: {flow}");
        assert_eq!(flow["transport"], "tcp", "{name}: {flow}");
        assert_eq!(flow["reason"], "hello_blocked", "{name}: {flow}");
        assert_eq!(
            flow["client"],
            format!("{}:{}", stand.client_v4, stand.client_port),
            "{name}: {flow}"
        );
        assert_eq!(
            flow["server"],
            format!("{}:{HTTPS_PORT}", stand.server_v4),
            "{name}: {flow}"
        );

        // Without rules the name is read all the same, and the flow passes.
        let flows = replay(&path, None);
        assert_eq!(flows.len(), 1, "{name}: {flows:?}");
        assert_eq!(flows[0]["sni"], BANNED, "{name}: {}", flows[0]);
        assert_eq!(flows[0]["action"], "pass", "{name}: {}", flows[0]);
    }
}

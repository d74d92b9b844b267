//! Group: end-to-end lab tests (network namespaces, real servers, clients and daemons; see
//! `filter-daemon/tests/README.md`).
//!
//! The evasion suite: the techniques of DPI-evasion tools (`GoodbyeDPI`, zapret, byedpi...)
//! put on the wire, one by one and combined, from the lab's client through the real gateway
//! and its daemon to a real TLS server (nginx), each in a session of its own.
//!
//! Each technique ends as one of:
//! - `blocked`: the server never answered the banned name's hello;
//! - `uninspectable-by-policy`: the program could not read the hello, the `uninspectable`
//!   policy decided, and the packets were counted under an `uninspectable_*` reason;
//! - `bypass`: the server answered the banned name's hello (its ServerHello echoes that
//!   hello's session id).
//!
//! With `uninspectable = "drop"` there must be no bypass; with `"pass"` every hello the
//! server answered must have been counted under an `uninspectable_*` reason. The table is
//! written to `target/tmp/evasion-table.txt`, which `cargo xtask test` prints. Needs root.
//!
//! This file runs the suite under each policy; the hellos and session builders are in
//! `hellos.rs`, the table of techniques in `techniques.rs`, and the running of each
//! technique, its verdict and the printed table in `outcome.rs`.

#[path = "../common/mod.rs"]
mod common;

mod hellos;
mod outcome;
mod techniques;

use std::path::Path;

use sni_filter_lab::{
    Daemon, Lab, TlsServer,
    craft::{self, Segment, Session, Wire},
};

use common::{ALLOWED, BANNED, bin, config_copy_with};
use hellos::{Hellos, session};
use outcome::{Verdict, run_suite, table};

/// The shipped configuration with `uninspectable` set, and the hello fast path on or
/// off, in a folder of its own.
fn config(dir: &Path, policy: &str, fast_path: bool) -> std::path::PathBuf {
    config_copy_with(
        &dir.join(format!("{policy}-{fast_path}")),
        &[
            (
                "uninspectable = \"drop\"",
                &format!("uninspectable = \"{policy}\""),
            ),
            (
                "hello_fast_path = true",
                &format!("hello_fast_path = {fast_path}"),
            ),
        ],
    )
}

#[test]
fn no_evasion_technique_gets_the_banned_name_through() {
    let lab = Lab::new("evade").expect("lab");
    let _server = TlsServer::start(&lab, &[BANNED, ALLOWED]).expect("nginx");
    let wire = Wire::open(&lab).expect("the crafter's socket");
    let h = Hellos::new();

    // Without the filter the crafter's hellos are answered: a blocked row means the filter.
    for (ipv6, port) in [(false, 20_000), (true, 20_001)] {
        let plan = Session {
            ipv6,
            ..session(vec![Segment::data(0, &h.banned)])
        };
        let answer = wire.session(port, &plan).unwrap();
        assert_eq!(
            answer.server_hello_session,
            craft::client_hello_session(&h.banned),
            "the server does not answer the crafted hello without the filter (ipv6 {ipv6}): {answer:?}"
        );
    }

    let dir = tempfile::tempdir().unwrap();
    let mut report = String::new();
    // Every technique through both ways the program reads a hello: the fast path where it
    // can (as shipped), and the general walker alone.
    for (policy, fast_path, port_base) in [
        ("drop", true, 30_000),
        ("drop", false, 35_000),
        ("pass", true, 40_000),
        ("pass", false, 45_000),
    ] {
        let daemon = Daemon::start(
            &lab,
            &bin(),
            &config(dir.path(), policy, fast_path),
            Vec::<String>::new(),
        )
        .expect("daemon");
        let rows = run_suite(&wire, &daemon, &h, port_base);
        let path = if fast_path {
            "hello fast path on"
        } else {
            "walker only"
        };
        let text = table(&format!("uninspectable = \"{policy}\", {path}"), &rows);
        println!("{text}");
        report.push_str(&text);
        report.push('\n');
        drop(daemon);
        // The next daemon adopts this one's filter; its blocked flows are on other ports.
        if policy == "drop" {
            let bypasses: Vec<&str> = rows
                .iter()
                .filter(|r| r.verdict == Verdict::Bypass || r.answered)
                .map(|r| r.technique)
                .collect();
            assert!(
                bypasses.is_empty(),
                "banned name served under drop: {bypasses:?}\n{text}"
            );
        } else {
            let uncounted: Vec<&str> = rows
                .iter()
                .filter(|r| r.verdict == Verdict::Bypass)
                .map(|r| r.technique)
                .collect();
            assert!(
                uncounted.is_empty(),
                "passes not counted by reason: {uncounted:?}\n{text}"
            );
        }
    }
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("evasion-table.txt");
    std::fs::write(&out, &report).unwrap();
}

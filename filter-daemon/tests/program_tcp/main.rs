//! Group: program tests (the compiled program through `BPF_PROG_TEST_RUN`, no namespaces;
//! see `filter-daemon/tests/README.md`).
//!
//! Table tests of the real compiled XDP program through `BPF_PROG_TEST_RUN`: each case is a
//! name, the frames sent in order, the rules, the action expected for the last frame and
//! the counters expected to move. Needs root (loading BPF programs).
//!
//! This file holds the rules and the fixtures every part shares, and runs the table; the
//! table's rows are in `cases_*.rs`, the frame rewriters they use in `frames.rs`, and the
//! program's behaviour around the table in `reload.rs`, `reading.rs`, `actions.rs`,
//! `monitor.rs` and `cpu_cache.rs`.

#[path = "../common/mod.rs"]
mod common;

mod actions;
mod cases_hellos;
mod cases_packets;
mod cases_segments;
mod cpu_cache;
mod frames;
mod monitor;
mod reading;
mod reload;

use std::sync::atomic::{AtomicU16, Ordering};

use common::program::{XDP_DROP, load_with, run_table};

use filter_common::Counter;
use sni_filter::filter::Filter;
use sni_filter_lab::hello::{ClientHelloBuilder, IpPair, SniPosition, TcpSegment, tls_records};

const RULES: &str = r#"
[apps.tiktok]
action = "drop"
domains = ["tiktok.com", "|exact-only.example^", "||p16-tiktok-*.ibyteimg.com^", "*-sign-va.ibyteimg.com"]

[apps.watch]
action = "monitor"
domains = ["watched.example"]

[apps.off]
action = "drop"
enabled = false
domains = ["disabled.example"]
"#;

fn filter(rules: &str) -> Filter {
    load_with("table", rules).0
}

/// The table's rules with `uninspectable = "pass"` or `"drop"`.
fn table_filter(strict: bool) -> Filter {
    let policy = if strict { "drop" } else { "pass" };
    filter(&format!("[filter]\nuninspectable = \"{policy}\"\n{RULES}"))
}

fn counters(f: &Filter) -> Vec<Counter> {
    f.counters().expect("counters readable")
}

/// `name`'s hello in one record, on a new IPv4 flow.
fn hello_frame(name: &str) -> Vec<u8> {
    hello_frame_on(&tcp(IpPair::v4_example()), name)
}

/// `name`'s hello on the flow of `seg`, in one record.
fn hello_frame_on(seg: &TcpSegment, name: &str) -> Vec<u8> {
    seg.frame(&tls_records(
        &ClientHelloBuilder::minimal(name).build(),
        16384,
    ))
}

/// A Chrome-size hello (post-quantum key share) for `name` in one record, the name's
/// extension last.
fn chrome_name_last(name: &str) -> Vec<u8> {
    tls_records(
        &ClientHelloBuilder::chrome(name)
            .sni_position(SniPosition::Last)
            .build(),
        16384,
    )
}

/// A segment of a new flow: each call takes the next client port, so that the verdict of
/// one case (a blocked flow stays blocked) never leaks into another.
fn tcp(ip: IpPair) -> TcpSegment {
    static NEXT_PORT: AtomicU16 = AtomicU16::new(20000);
    TcpSegment::new(ip, NEXT_PORT.fetch_add(1, Ordering::Relaxed), 443)
}

/// A new flow whose hello the filter blocks (asserted): the flow's segment, and its next
/// one after the hello.
fn blocked_flow(f: &Filter) -> (TcpSegment, TcpSegment) {
    let (s, hello, later) = banned_flow(IpPair::v4_example());
    assert_eq!(f.run_frame(&s.frame(&hello)).unwrap(), XDP_DROP);
    (s, later)
}

/// A new flow of `ip`: its segment, the records of a banned hello (`www.tiktok.com`) to send
/// in it, and the flow's next segment after them.
fn banned_flow(ip: IpPair) -> (TcpSegment, Vec<u8>, TcpSegment) {
    let s = tcp(ip);
    let hello = tls_records(
        &ClientHelloBuilder::minimal("www.tiktok.com").build(),
        16384,
    );
    let later = TcpSegment {
        seq: s.seq + hello.len() as u32,
        ..s.clone()
    };
    (s, hello, later)
}

#[test]
fn table() {
    let (lenient, strict) = (table_filter(false), table_filter(true));
    let mut cases = cases_packets::cases();
    cases.extend(cases_hellos::cases());
    cases.extend(cases_segments::cases());
    run_table(cases, |c| if c.strict { &strict } else { &lenient });
}

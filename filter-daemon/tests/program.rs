//! Table tests of the real compiled XDP program through `BPF_PROG_TEST_RUN`: each case is a
//! name, the frames sent in order, the rules, the action expected for the last frame and
//! the counters expected to move. Needs root (loading BPF programs).

use std::{
    path::Path,
    sync::atomic::{AtomicU16, Ordering},
};

use filter_common::{Counter, REASON_COUNT, Reason, names};
use sni_filter::{config::Config, filter::Filter, rules::RuleSet};
use sni_filter_lab::hello::{
    ClientHelloBuilder, IpPair, Link, SniPosition, TcpFlags, TcpSegment, UdpDatagram, VlanTag,
    tls_records,
};

const XDP_DROP: u32 = 1;
const XDP_PASS: u32 = 2;

const RULES: &str = r#"
[apps.tiktok]
action = "drop"
domains = ["tiktok.com", "|exact-only.example^"]

[apps.watch]
action = "monitor"
domains = ["watched.example"]

[apps.off]
action = "drop"
enabled = false
domains = ["disabled.example"]
"#;

fn filter(rules: &str) -> Filter {
    let config = Config::parse(Path::new("/nonexistent/table.toml"), rules).expect("table config");
    let set = RuleSet::compile(&config).expect("table rules");
    let mut f = Filter::load(1024).expect("the program loads (run as root)");
    f.install(&set).expect("rules install");
    f
}

fn counters(f: &Filter) -> Vec<Counter> {
    f.counters().expect("counters readable")
}

fn hello_frame(name: &str) -> Vec<u8> {
    tcp(IpPair::v4_example()).frame(&tls_records(
        &ClientHelloBuilder::minimal(name).build(),
        16384,
    ))
}

/// A segment of a new flow: each call takes the next client port, so that the verdict of
/// one case (a blocked flow stays blocked) never leaks into another.
fn tcp(ip: IpPair) -> TcpSegment {
    static NEXT_PORT: AtomicU16 = AtomicU16::new(20000);
    TcpSegment::new(ip, NEXT_PORT.fetch_add(1, Ordering::Relaxed), 443)
}

struct Case {
    name: &'static str,
    frames: Vec<Vec<u8>>,
    action: u32,
    /// Reasons expected to rise, with the number of packets; all others stay.
    counted: Vec<(Reason, u64)>,
}

fn case(name: &'static str, frames: Vec<Vec<u8>>, action: u32, counted: &[(Reason, u64)]) -> Case {
    Case {
        name,
        frames,
        action,
        counted: counted.to_vec(),
    }
}

// One table: long by nature.
#[allow(clippy::too_many_lines)]
fn cases() -> Vec<Case> {
    let v4 = IpPair::v4_example();
    let v6 = IpPair::v6_example();
    let chrome = tls_records(&ClientHelloBuilder::chrome("www.tiktok.com").build(), 16384);
    let chrome_ok = tls_records(
        &ClientHelloBuilder::chrome("www.example.org").build(),
        16384,
    );
    let small_records = tls_records(&ClientHelloBuilder::minimal("www.tiktok.com").build(), 40);
    let mut syn = tcp(v4);
    syn.flags = TcpFlags::SYN;
    let mut fragment = hello_frame("www.tiktok.com");
    // IPv4 flags/fragment offset (bytes 20-21 of the frame): offset 185 (x8 bytes).
    fragment[20] = 0x00;
    fragment[21] = 185;
    let chrome_sni_last = tls_records(
        &ClientHelloBuilder::chrome("www.tiktok.com")
            .sni_position(SniPosition::Last)
            .build(),
        16384,
    );
    let split = tcp(v4).frames_split(&chrome_sni_last, &[600]);
    let mut server_hello = ClientHelloBuilder::minimal("www.tiktok.com").build();
    server_hello[0] = 2;
    let mut malformed = ClientHelloBuilder::minimal("www.tiktok.com").build();
    // The session-id length (after type 1, length 3, version 2, random 32) made too long.
    malformed[38] = 200;
    let qinq = TcpSegment {
        link: Link::with_vlans(&[VlanTag::dot1ad(100), VlanTag::dot1q(42)]),
        ..tcp(v4)
    };
    let dot1q = TcpSegment {
        link: Link::with_vlans(&[VlanTag::dot1q(7)]),
        ..tcp(v4)
    };
    let arp = {
        let mut f = vec![0xff; 6];
        f.extend_from_slice(&[2, 0, 0, 0, 0, 1, 0x08, 0x06]);
        f.extend_from_slice(&[0; 28]);
        f
    };
    vec![
        case(
            "ARP passes untouched",
            vec![arp],
            XDP_PASS,
            &[(Reason::NotIp, 1)],
        ),
        case(
            "UDP passes",
            vec![UdpDatagram::new(v4, 5353, 53).frame(b"dns?")],
            XDP_PASS,
            &[(Reason::Udp, 1)],
        ),
        case(
            "SYN without payload passes",
            vec![syn.frame(&[])],
            XDP_PASS,
            &[(Reason::TcpNoPayload, 1)],
        ),
        case(
            "HTTP naming a banned host passes (not TLS)",
            vec![tcp(v4).frame(b"GET / HTTP/1.1\r\nHost: www.tiktok.com\r\n\r\n")],
            XDP_PASS,
            &[(Reason::TcpNotHandshake, 1)],
        ),
        case(
            "allowed name passes",
            vec![hello_frame("www.example.org")],
            XDP_PASS,
            &[(Reason::HelloAllowed, 1)],
        ),
        case(
            "banned name drops",
            vec![hello_frame("www.tiktok.com")],
            XDP_DROP,
            &[(Reason::HelloBlocked, 1)],
        ),
        case(
            "the banned domain itself drops",
            vec![hello_frame("tiktok.com")],
            XDP_DROP,
            &[(Reason::HelloBlocked, 1)],
        ),
        case(
            "case and trailing dot do not evade",
            vec![hello_frame("WwW.TikTok.COM.")],
            XDP_DROP,
            &[(Reason::HelloBlocked, 1)],
        ),
        case(
            "a name ending like a rule is not below it",
            vec![hello_frame("nottiktok.com")],
            XDP_PASS,
            &[(Reason::HelloAllowed, 1)],
        ),
        case(
            "a rule inside a longer name does not match",
            vec![hello_frame("tiktok.com.example.net")],
            XDP_PASS,
            &[(Reason::HelloAllowed, 1)],
        ),
        case(
            "exact rule matches its name",
            vec![hello_frame("exact-only.example")],
            XDP_DROP,
            &[(Reason::HelloBlocked, 1)],
        ),
        case(
            "exact rule does not match below",
            vec![hello_frame("www.exact-only.example")],
            XDP_PASS,
            &[(Reason::HelloAllowed, 1)],
        ),
        case(
            "hello without SNI passes, counted",
            vec![tcp(v4).frame(&tls_records(
                &ClientHelloBuilder::minimal("x").no_server_name().build(),
                16384,
            ))],
            XDP_PASS,
            &[(Reason::HelloNoSni, 1)],
        ),
        case(
            "Chrome-size post-quantum hello drops",
            vec![tcp(v4).frame(&chrome)],
            XDP_DROP,
            &[(Reason::HelloBlocked, 1)],
        ),
        case(
            "Chrome-size hello for another name passes",
            vec![tcp(v4).frame(&chrome_ok)],
            XDP_PASS,
            &[(Reason::HelloAllowed, 1)],
        ),
        case(
            "hello in 40-byte TLS records drops",
            vec![tcp(v4).frame(&small_records)],
            XDP_DROP,
            &[(Reason::HelloBlocked, 1)],
        ),
        case(
            "second of several names is banned",
            vec![
                tcp(v4).frame(&tls_records(
                    &ClientHelloBuilder::minimal("www.example.org")
                        .server_name("m.tiktok.com")
                        .build(),
                    16384,
                )),
            ],
            XDP_DROP,
            &[(Reason::HelloBlocked, 1)],
        ),
        case(
            "monitored app passes, counted",
            vec![hello_frame("a.watched.example")],
            XDP_PASS,
            &[(Reason::HelloMonitored, 1)],
        ),
        case(
            "disabled app passes",
            vec![hello_frame("disabled.example")],
            XDP_PASS,
            &[(Reason::HelloAllowed, 1)],
        ),
        case(
            "IPv6 banned name drops",
            vec![tcp(v6).frame(&chrome)],
            XDP_DROP,
            &[(Reason::HelloBlocked, 1)],
        ),
        case(
            "802.1Q tagged banned name drops",
            vec![dot1q.frame(&chrome)],
            XDP_DROP,
            &[(Reason::HelloBlocked, 1)],
        ),
        case(
            "QinQ tagged banned name drops",
            vec![qinq.frame(&chrome)],
            XDP_DROP,
            &[(Reason::HelloBlocked, 1)],
        ),
        case(
            "Chrome-size hello with the name last drops",
            vec![tcp(v4).frame(&chrome_sni_last)],
            XDP_DROP,
            &[(Reason::HelloBlocked, 1)],
        ),
        case(
            "first segment of a split hello, name in the second, is counted incomplete",
            vec![split[0].clone()],
            XDP_PASS,
            &[(Reason::HelloIncomplete, 1)],
        ),
        case(
            "ServerHello is not a ClientHello",
            vec![tcp(v4).frame(&tls_records(&server_hello, 16384))],
            XDP_PASS,
            &[(Reason::NotClientHello, 1)],
        ),
        case(
            "malformed hello passes, counted",
            vec![tcp(v4).frame(&tls_records(&malformed, 16384))],
            XDP_PASS,
            &[(Reason::HelloMalformed, 1)],
        ),
        case(
            "non-first IPv4 fragment passes",
            vec![fragment],
            XDP_PASS,
            &[(Reason::IpFragment, 1)],
        ),
        case(
            "truncated IP header passes, counted",
            vec![hello_frame("www.tiktok.com")[..20].to_vec()],
            XDP_PASS,
            &[(Reason::HeaderMalformed, 1)],
        ),
    ]
}

#[test]
fn table() {
    let f = filter(RULES);
    let mut failures = Vec::new();
    for c in cases() {
        let before = counters(&f);
        let mut last = None;
        for frame in &c.frames {
            last = Some(f.run_frame(frame).expect("test run"));
        }
        let after = counters(&f);
        let mut problems = Vec::new();
        if last != Some(c.action) {
            problems.push(format!("action {last:?}, expected {}", c.action));
        }
        for r in Reason::ALL {
            let delta = after[r as usize].packets - before[r as usize].packets;
            let want = c
                .counted
                .iter()
                .find(|(w, _)| *w == r)
                .map_or(0, |(_, n)| *n);
            if delta != want {
                problems.push(format!("{} rose by {delta}, expected {want}", r.name()));
            }
        }
        println!(
            "{:<55} {}",
            c.name,
            if problems.is_empty() { "ok" } else { "FAILED" }
        );
        if !problems.is_empty() {
            failures.push(format!("{}: {}", c.name, problems.join("; ")));
        }
    }
    assert!(
        failures.is_empty(),
        "{} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn every_map_userspace_uses_is_in_the_object() {
    let f = filter(RULES);
    for name in names::MAPS {
        assert!(
            f.has_map(name),
            "map {name} missing from the compiled object"
        );
    }
    assert_eq!(counters(&f).len(), REASON_COUNT as usize);
}

#[test]
fn reinstalling_rules_switches_verdicts() {
    let mut f = filter(RULES);
    assert_eq!(
        f.run_frame(&hello_frame("www.tiktok.com")).unwrap(),
        XDP_DROP
    );
    let config = Config::parse(
        Path::new("/nonexistent/other.toml"),
        "[apps.other]\naction = \"drop\"\ndomains = [\"example.org\"]\n",
    )
    .unwrap();
    f.install(&RuleSet::compile(&config).unwrap()).unwrap();
    assert_eq!(
        f.run_frame(&hello_frame("www.tiktok.com")).unwrap(),
        XDP_PASS
    );
    assert_eq!(
        f.run_frame(&hello_frame("www.example.org")).unwrap(),
        XDP_DROP
    );
}

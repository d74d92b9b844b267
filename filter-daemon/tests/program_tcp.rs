//! Group: program tests (the compiled program through `BPF_PROG_TEST_RUN`, no namespaces;
//! see `filter-daemon/tests/README.md`).
//!
//! Table tests of the real compiled XDP program through `BPF_PROG_TEST_RUN`: each case is a
//! name, the frames sent in order, the rules, the action expected for the last frame and
//! the counters expected to move. Needs root (loading BPF programs).

mod common;

use std::{
    path::Path,
    sync::atomic::{AtomicU16, Ordering},
};

use common::program::{Case, XDP_DROP, XDP_PASS, XDP_TX, case, load_with, run_table, strict};

use filter_common::{Counter, EventAction, Note, REASON_COUNT, Reason, names};
use sni_filter::{
    config::Config,
    filter::{Filter, VERIFIED_INSNS_BOUND},
    rules::RuleSet,
};
use sni_filter_lab::hello::{
    ClientHelloBuilder, IpPair, Link, SniPosition, TcpFlags, TcpSegment, UdpDatagram, VlanTag,
    tls_records,
};

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
    // A client's SYN whose first data byte is the default segment's (sequence 1000).
    let opening = |s: &TcpSegment| TcpSegment {
        flags: TcpFlags::SYN,
        seq: 999,
        ..s.clone()
    };
    // The same hello with a name of the same length: identical bytes but the name.
    let decoy_sni_last = tls_records(
        &ClientHelloBuilder::chrome("www.example.ca")
            .sni_position(SniPosition::Last)
            .build(),
        16384,
    );
    let mut first_fragment = hello_frame("www.tiktok.com");
    first_fragment[20] = 0x20; // more fragments, offset 0
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
            &[(Reason::UdpPortNotInspected, 1)],
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
            "malformed hello passes with the lenient policy, counted",
            vec![tcp(v4).frame(&tls_records(&malformed, 16384))],
            XDP_PASS,
            &[(Reason::UninspectableMalformed, 1)],
        ),
        strict(
            "malformed hello is dropped with the strict policy",
            vec![tcp(v4).frame(&tls_records(&malformed, 16384))],
            XDP_DROP,
            &[(Reason::UninspectableMalformed, 1)],
        ),
        case(
            "non-first IPv4 fragment passes",
            vec![fragment],
            XDP_PASS,
            &[(Reason::IpFragment, 1)],
        ),
        case(
            "Chrome hello split after the record header, name in the second segment: dropped",
            tcp(v4).frames_split(&chrome_sni_last, &[5]),
            XDP_DROP,
            &[(Reason::HelloIncomplete, 1), (Reason::HelloBlocked, 1)],
        ),
        case(
            "hello split across segments for an allowed name passes",
            tcp(v4).frames_split(&chrome_ok, &[700]),
            XDP_PASS,
            &[(Reason::HelloIncomplete, 1), (Reason::HelloAllowed, 1)],
        ),
        case(
            "hello in 20 segments is read",
            tcp(v4).frames(&chrome_sni_last, chrome_sni_last.len().div_ceil(20)),
            XDP_DROP,
            &[(Reason::HelloIncomplete, 19), (Reason::HelloBlocked, 1)],
        ),
        strict(
            "hello in more segments than the bound is uninspectable",
            tcp(v4).frames(&chrome_sni_last, 40),
            XDP_DROP,
            // 32 segments are read (HELLO_SEGMENTS_MAX); every later one is uninspectable.
            &[
                (Reason::HelloIncomplete, 32),
                (
                    Reason::UninspectableTooLong,
                    chrome_sni_last.len().div_ceil(40) as u64 - 32,
                ),
            ],
        ),
        case(
            "later data of a blocked flow is dropped",
            {
                let s = tcp(v4);
                let hello = tls_records(
                    &ClientHelloBuilder::minimal("www.tiktok.com").build(),
                    16384,
                );
                let later = TcpSegment {
                    seq: s.seq + hello.len() as u32,
                    ..s.clone()
                };
                vec![s.frame(&hello), later.frame(b"\x17\x03\x03\x00\x05hello")]
            },
            XDP_DROP,
            &[(Reason::HelloBlocked, 1), (Reason::BlockedFlow, 1)],
        ),
        case(
            "a FIN without payload of a blocked flow passes",
            {
                let s = tcp(v4);
                let fin = TcpSegment {
                    flags: TcpFlags::FIN_ACK,
                    ..s.clone()
                };
                vec![
                    s.frame(&tls_records(
                        &ClientHelloBuilder::minimal("www.tiktok.com").build(),
                        16384,
                    )),
                    fin.frame(&[]),
                ]
            },
            XDP_PASS,
            &[(Reason::HelloBlocked, 1), (Reason::BlockedFlowTeardown, 1)],
        ),
        case(
            "a new SYN on the 5-tuple ends the verdict",
            {
                let s = tcp(v4);
                let syn = TcpSegment {
                    flags: TcpFlags::SYN,
                    ..s.clone()
                };
                vec![
                    s.frame(&tls_records(
                        &ClientHelloBuilder::minimal("www.tiktok.com").build(),
                        16384,
                    )),
                    syn.frame(&[]),
                    s.frame(&tls_records(
                        &ClientHelloBuilder::minimal("www.example.org").build(),
                        16384,
                    )),
                ]
            },
            XDP_PASS,
            &[
                (Reason::HelloBlocked, 1),
                (Reason::TcpNoPayload, 1),
                (Reason::HelloAllowed, 1),
            ],
        ),
        case(
            "a hello in the SYN (TCP Fast Open) is read",
            {
                let mut s = tcp(v4);
                s.flags = TcpFlags::SYN;
                vec![s.frame(&tls_records(
                    &ClientHelloBuilder::minimal("www.tiktok.com").build(),
                    16384,
                ))]
            },
            XDP_DROP,
            &[(Reason::HelloBlocked, 1)],
        ),
        case(
            "a retransmitted first segment is recognised",
            {
                let f = tcp(v4).frames_split(&chrome_sni_last, &[600]);
                vec![f[0].clone(), f[0].clone(), f[1].clone()]
            },
            XDP_DROP,
            &[
                (Reason::HelloIncomplete, 1),
                (Reason::HelloRetransmit, 1),
                (Reason::HelloBlocked, 1),
            ],
        ),
        case(
            "a later segment resent at an odd offset is compared byte by byte",
            {
                let f = tcp(v4).frames_split(&chrome_sni_last, &[601, 1201]);
                vec![f[0].clone(), f[1].clone(), f[1].clone(), f[2].clone()]
            },
            XDP_DROP,
            &[
                (Reason::HelloIncomplete, 2),
                (Reason::HelloRetransmit, 1),
                (Reason::HelloBlocked, 1),
            ],
        ),
        strict(
            "a resent segment differing in its last byte is uninspectable",
            {
                // At offset 600, 603 bytes: 75 compared as words, the last 3 one by one.
                let f = tcp(v4).frames_split(&chrome_sni_last, &[600, 1203]);
                let mut spoiled = f[1].clone();
                *spoiled.last_mut().unwrap() ^= 0x55;
                vec![f[0].clone(), f[1].clone(), spoiled]
            },
            XDP_DROP,
            &[
                (Reason::HelloIncomplete, 2),
                (Reason::UninspectableOverlap, 1),
            ],
        ),
        case(
            "a retransmission cut differently goes on where the first copy ended",
            {
                let s = tcp(v4);
                let first = s.frames_split(&chrome_sni_last, &[600]);
                let again = s.frames_split(&chrome_sni_last, &[1000]);
                vec![first[0].clone(), again[0].clone(), first[1].clone()]
            },
            XDP_DROP,
            // The second copy overlaps the first (compared) and carries 400 new bytes; the
            // last segment overlaps those and carries the name.
            &[(Reason::HelloIncomplete, 2), (Reason::HelloBlocked, 1)],
        ),
        strict(
            "a fake second segment for an allowed name cannot open the way for the real one",
            {
                let s = tcp(v4);
                let real = s.frames_split(&chrome_sni_last, &[600]);
                let fake = s.frames_split(&decoy_sni_last, &[600]);
                assert_eq!(real[0], fake[0], "the decoy must differ in its name only");
                vec![real[0].clone(), fake[1].clone(), real[1].clone()]
            },
            XDP_DROP,
            &[
                (Reason::HelloIncomplete, 1),
                (Reason::HelloAllowed, 1),
                (Reason::UninspectableOverlap, 1),
            ],
        ),
        case(
            "a fake first hello for an allowed name, then the real one at the same sequence",
            {
                let s = tcp(v4);
                let fake = s.frame(&tls_records(
                    &ClientHelloBuilder::minimal("www.example.ca").build(),
                    16384,
                ));
                vec![
                    fake,
                    s.frame(&tls_records(
                        &ClientHelloBuilder::minimal("www.tiktok.com").build(),
                        16384,
                    )),
                ]
            },
            XDP_DROP,
            &[(Reason::HelloAllowed, 1), (Reason::HelloBlocked, 1)],
        ),
        strict(
            "a segment after a gap is uninspectable, and reading resumes in order",
            {
                let f = tcp(v4).frames_split(&chrome_sni_last, &[600, 1200]);
                vec![f[0].clone(), f[2].clone(), f[1].clone(), f[2].clone()]
            },
            XDP_DROP,
            &[
                (Reason::HelloIncomplete, 2),
                (Reason::UninspectableOutOfOrder, 1),
                (Reason::HelloBlocked, 1),
            ],
        ),
        strict(
            "after a SYN, a later segment that comes first is out of order; then the hello is read in order",
            {
                let s = tcp(v4);
                let f = s.frames_split(&chrome_sni_last, &[600]);
                vec![
                    opening(&s).frame(&[]),
                    f[1].clone(),
                    f[0].clone(),
                    f[1].clone(),
                ]
            },
            XDP_DROP,
            &[
                (Reason::TcpNoPayload, 1),
                (Reason::UninspectableOutOfOrder, 1),
                (Reason::HelloIncomplete, 1),
                (Reason::HelloBlocked, 1),
            ],
        ),
        strict(
            "a fake hello read whole does not let the real one's later segment pass first",
            {
                let fake = tls_records(
                    &ClientHelloBuilder::minimal("www.example.ca").build(),
                    16384,
                );
                let s = tcp(v4);
                let f = s.frames_split(&chrome_sni_last, &[600]);
                vec![
                    opening(&s).frame(&[]),
                    s.frame(&fake),
                    f[1].clone(),
                    f[0].clone(),
                    f[1].clone(),
                ]
            },
            XDP_DROP,
            &[
                (Reason::TcpNoPayload, 1),
                (Reason::HelloAllowed, 1),
                (Reason::UninspectableOutOfOrder, 1),
                (Reason::HelloIncomplete, 1),
                (Reason::HelloBlocked, 1),
            ],
        ),
        strict(
            "after a SYN, data in order that is not a hello ends the tracking",
            {
                let s = tcp(v4);
                let later = TcpSegment {
                    seq: 5000,
                    ..s.clone()
                };
                vec![
                    opening(&s).frame(&[]),
                    s.frame(b"GET / HTTP/1.1\r\n\r\n"),
                    later.frame(b"more"),
                ]
            },
            XDP_PASS,
            &[(Reason::TcpNoPayload, 1), (Reason::TcpNotHandshake, 2)],
        ),
        strict(
            "urgent data in a hello is uninspectable",
            vec![with_tcp_flags(&hello_frame("www.tiktok.com"), 0x20)],
            XDP_DROP,
            &[(Reason::UninspectableUrgent, 1)],
        ),
        strict(
            "a first fragment too short for the TCP header is uninspectable",
            vec![tiny_first_fragment(&hello_frame("www.tiktok.com"))],
            XDP_DROP,
            &[(Reason::UninspectableFragment, 1)],
        ),
        case(
            "with the lenient policy the gap passes, counted",
            {
                let f = tcp(v4).frames_split(&chrome_sni_last, &[600, 1200]);
                vec![f[0].clone(), f[2].clone()]
            },
            XDP_PASS,
            &[
                (Reason::HelloIncomplete, 1),
                (Reason::UninspectableOutOfOrder, 1),
            ],
        ),
        case(
            "two junk bytes at the hello's sequence number do not blind the parser",
            {
                let s = tcp(v4);
                vec![
                    s.frame(&[0x16, 0x01]),
                    s.frame(&tls_records(
                        &ClientHelloBuilder::minimal("www.tiktok.com").build(),
                        16384,
                    )),
                ]
            },
            XDP_DROP,
            &[(Reason::HelloIncomplete, 1), (Reason::HelloBlocked, 1)],
        ),
        strict(
            "the first IPv4 fragment of a hello is uninspectable",
            vec![first_fragment],
            XDP_DROP,
            &[(Reason::UninspectableFragment, 1)],
        ),
        case(
            "IPv6 extension headers in front of TCP are walked",
            vec![with_ipv6_extensions(&tcp(v6).frame(&chrome), 2)],
            XDP_DROP,
            &[(Reason::HelloBlocked, 1)],
        ),
        strict(
            "the first IPv6 fragment of a hello is uninspectable",
            vec![with_ipv6_fragment(&tcp(v6).frame(&chrome), 0, true)],
            XDP_DROP,
            &[(Reason::UninspectableFragment, 1)],
        ),
        case(
            "a later IPv6 fragment passes",
            vec![with_ipv6_fragment(&tcp(v6).frame(&chrome), 185, false)],
            XDP_PASS,
            &[(Reason::IpFragment, 1)],
        ),
        strict(
            "an IPv6 chain beyond the bound is uninspectable",
            vec![with_ipv6_extensions(&tcp(v6).frame(&chrome), 7)],
            XDP_DROP,
            &[(Reason::UninspectableIpv6Chain, 1)],
        ),
        case(
            "a wildcard label matches below its parent",
            vec![
                hello_frame("p16-tiktok-va.ibyteimg.com"),
                hello_frame("x.P16-TikTok-SG.ibyteimg.com"),
            ],
            XDP_DROP,
            &[(Reason::HelloBlocked, 2)],
        ),
        case(
            "a second wildcard of the same parent matches too",
            vec![hello_frame("p19-sign-va.ibyteimg.com")],
            XDP_DROP,
            &[(Reason::HelloBlocked, 1)],
        ),
        case(
            "a label that does not fit the wildcard passes",
            vec![
                hello_frame("p16-other.ibyteimg.com"),
                hello_frame("ibyteimg.com"),
            ],
            XDP_PASS,
            &[(Reason::HelloAllowed, 2)],
        ),
        case(
            "truncated IP header passes, counted",
            vec![hello_frame("www.tiktok.com")[..20].to_vec()],
            XDP_PASS,
            &[(Reason::HeaderMalformed, 1)],
        ),
    ]
}

/// An IPv4 frame's TCP flags byte with `bits` added (checksums are not the program's
/// business).
fn with_tcp_flags(frame: &[u8], bits: u8) -> Vec<u8> {
    let mut f = frame.to_vec();
    f[14 + 20 + 13] |= bits;
    f
}

/// The first fragment (more fragments, offset 0) of an IPv4 frame, carrying only the first
/// 8 bytes of its TCP header.
fn tiny_first_fragment(frame: &[u8]) -> Vec<u8> {
    let mut f = frame[..14 + 20 + 8].to_vec();
    f[16..18].copy_from_slice(&28u16.to_be_bytes());
    f[20] = 0x20;
    f[21] = 0;
    f
}

/// Puts an IPv6 fragment header (offset in 8-byte units, more-fragments flag) in front of TCP.
fn with_ipv6_fragment(frame: &[u8], offset: u16, more: bool) -> Vec<u8> {
    const IP: usize = 14;
    let mut out = frame[..IP + 40].to_vec();
    let next = out[IP + 6];
    out[IP + 6] = 44; // fragment header
    let payload = u16::from_be_bytes([out[IP + 4], out[IP + 5]]) + 8;
    out[IP + 4..IP + 6].copy_from_slice(&payload.to_be_bytes());
    let field = (offset << 3) | u16::from(more);
    out.extend_from_slice(&[next, 0]);
    out.extend_from_slice(&field.to_be_bytes());
    out.extend_from_slice(&[0, 0, 0x12, 0x34]); // identification
    out.extend_from_slice(&frame[IP + 40..]);
    out
}

/// Puts `count` 8-byte destination-options headers between the IPv6 header and TCP.
fn with_ipv6_extensions(frame: &[u8], count: usize) -> Vec<u8> {
    const IP: usize = 14;
    let mut out = frame[..IP + 40].to_vec();
    let tcp_next = out[IP + 6];
    out[IP + 6] = 60; // destination options
    let payload = u16::from_be_bytes([out[IP + 4], out[IP + 5]]) + 8 * count as u16;
    out[IP + 4..IP + 6].copy_from_slice(&payload.to_be_bytes());
    for i in 0..count {
        let next = if i + 1 == count { tcp_next } else { 60 };
        // Next header, length 0 (8 bytes), PadN option of 4 bytes.
        out.extend_from_slice(&[next, 0, 1, 4, 0, 0, 0, 0]);
    }
    out.extend_from_slice(&frame[IP + 40..]);
    out
}

#[test]
fn table() {
    let (lenient, strict) = (table_filter(false), table_filter(true));
    run_table(cases(), |c| if c.strict { &strict } else { &lenient });
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
    // The verifier's work for each program, against this project's bound of a fifth of its
    // 1M limit: the work moves between kernels and builds, so a program near the limit on
    // one machine is refused on another.
    let figures = f.verification();
    assert_eq!(figures.len(), 2, "both programs were loaded: {figures:?}");
    for v in figures {
        let n = v
            .instructions
            .expect("the kernel reports the verifier's processed instructions");
        println!(
            "verifier processed {n} instructions of {} in {:.3} s",
            v.program,
            v.took.as_secs_f64()
        );
        assert!(
            n <= VERIFIED_INSNS_BOUND,
            "{} takes {n} of the verifier's instructions, above the bound of {VERIFIED_INSNS_BOUND}",
            v.program
        );
    }
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

#[test]
fn reloads_between_port_sets_inspect_the_ports_in_force() {
    // The daemon writes each port set into the side of the bitmap not in force and then
    // switches: every reload must inspect the new set, never the one before it.
    let config = |ports: &str| {
        Config::parse(
            Path::new("/nonexistent/ports.toml"),
            &format!("[filter]\ninspected_ports = [{ports}]\n{RULES}"),
        )
        .expect("ports config")
    };
    let first = config("443");
    let mut f = Filter::load_for(&first).expect("the program loads (run as root)");
    f.install(&RuleSet::compile(&first).unwrap()).unwrap();
    let hello_to = |port: u16| {
        let mut seg = tcp(IpPair::v4_example());
        seg.dst_port = port;
        hello_frame_on(&seg, "www.tiktok.com")
    };
    for round in 0..3 {
        for (ports, inspected, not_inspected) in [("8443", 8443, 443), ("443", 443, 8443)] {
            f.set_policy(&config(ports)).unwrap();
            let before = counters(&f);
            assert_eq!(
                f.run_frame(&hello_to(inspected)).unwrap(),
                XDP_DROP,
                "reload {round}, ports [{ports}]: a hello to {inspected} is judged"
            );
            assert_eq!(
                f.run_frame(&hello_to(not_inspected)).unwrap(),
                XDP_PASS,
                "reload {round}, ports [{ports}]: {not_inspected} is not inspected"
            );
            let after = counters(&f);
            let moved = |r: Reason| after[r as usize].packets - before[r as usize].packets;
            assert_eq!(moved(Reason::HelloBlocked), 1, "reload {round}, [{ports}]");
            assert_eq!(
                moved(Reason::TcpPortNotInspected),
                1,
                "reload {round}, [{ports}]"
            );
        }
    }
}

#[test]
fn flow_state_keeps_its_hint_bits_across_rebuilds() {
    // The bitmap in front of the flow tables is rebuilt by the daemon; a flow with a blocked
    // verdict, a hello being read or an opening must keep its bit, or its packets would
    // skip the lookups.
    let mut f = table_filter(true);
    let v4 = IpPair::v4_example();
    let blocked = tcp(v4);
    assert_eq!(
        f.run_frame(&hello_frame_on(&blocked, "www.tiktok.com"))
            .unwrap(),
        XDP_DROP
    );
    let hello = tls_records(
        &ClientHelloBuilder::chrome("www.tiktok.com")
            .sni_position(SniPosition::Last)
            .build(),
        16384,
    );
    let reading = tcp(v4);
    let split = reading.frames_split(&hello, &[300]);
    assert_eq!(f.run_frame(&split[0]).unwrap(), XDP_PASS);
    let mut opening = tcp(v4);
    opening.flags = TcpFlags::SYN;
    assert_eq!(f.run_frame(&opening.frame(&[])).unwrap(), XDP_PASS);
    for _ in 0..3 {
        f.rebuild_hints().expect("rebuild");
    }
    let before = counters(&f);
    assert_eq!(f.run_frame(&blocked.frame(b"more data")).unwrap(), XDP_DROP);
    assert_eq!(f.run_frame(&split[1]).unwrap(), XDP_DROP);
    // The opening connection's first data, one byte ahead of where its SYN said: the
    // program knows the connection, so this is out of order, not plain data.
    let mut ahead = opening.clone();
    ahead.flags = TcpFlags::PSH_ACK;
    ahead.seq = opening.seq.wrapping_add(2);
    assert_eq!(f.run_frame(&ahead.frame(b"xx")).unwrap(), XDP_DROP);
    let after = counters(&f);
    for (reason, n) in [
        (Reason::BlockedFlow, 1),
        (Reason::HelloBlocked, 1),
        (Reason::UninspectableOutOfOrder, 1),
    ] {
        assert_eq!(
            after[reason as usize].packets - before[reason as usize].packets,
            n,
            "{}",
            reason.name()
        );
    }
}

fn hello_frame_on(seg: &TcpSegment, name: &str) -> Vec<u8> {
    seg.frame(&tls_records(
        &ClientHelloBuilder::minimal(name).build(),
        16384,
    ))
}

#[test]
fn whole_hellos_take_the_fast_path_with_the_walkers_verdicts() {
    // Names blocked, by wildcard, monitored, disabled and allowed; ECH before and after the
    // name; no name at all. Each hello whole in one segment, through both paths.
    let mut hellos = Vec::new();
    for name in [
        "www.tiktok.com",
        "p16-tiktok-va.ibyteimg.com",
        "a.watched.example",
        "disabled.example",
        "www.example.org",
    ] {
        for (ech, position) in [
            (false, SniPosition::First),
            (true, SniPosition::First),
            (true, SniPosition::Last),
        ] {
            hellos.push(
                ClientHelloBuilder::chrome(name)
                    .post_quantum(false)
                    .ech(ech)
                    .sni_position(position)
                    .build(),
            );
        }
        hellos.push(ClientHelloBuilder::minimal(name).build());
    }
    hellos.push(ClientHelloBuilder::minimal("x").no_server_name().build());
    let mut fast = table_filter(true);
    let mut walker = table_filter(true);
    walker.set_walker_only(true).unwrap();
    let read_fast = |f: &Filter| f.notes().unwrap()[Note::HelloReadFast as usize];
    for (i, hello) in hellos.iter().enumerate() {
        let frame = tcp(IpPair::v6_example()).frame(&tls_records(hello, 16384));
        let fast_before = read_fast(&fast);
        let mut seen = Vec::new();
        for f in [&mut fast, &mut walker] {
            let before = counters(f);
            let action = f.run_frame(&frame).unwrap();
            let after = counters(f);
            let moved: Vec<(usize, u64)> = (0..after.len())
                .map(|r| (r, after[r].packets - before[r].packets))
                .filter(|(_, d)| *d != 0)
                .collect();
            let events: Vec<(u8, u8, u16, u8, Vec<u8>)> = f
                .drain_events()
                .unwrap()
                .iter()
                .map(|e| {
                    let name = e.sni[..usize::from(e.sni_len)].to_vec();
                    (e.reason, e.action, e.app, e.flags, name)
                })
                .collect();
            seen.push((action, moved, events));
        }
        assert_eq!(seen[0], seen[1], "hello {i}: fast path, then walker");
        assert_eq!(
            read_fast(&fast) - fast_before,
            1,
            "hello {i} was read by the fast path"
        );
    }
    assert_eq!(read_fast(&walker), 0, "walker only reads nothing fast");
}

#[test]
fn a_hello_split_at_every_byte_is_blocked() {
    for walker_only in [false, true] {
        let mut f = table_filter(true);
        f.set_walker_only(walker_only).unwrap();
        split_at_every_byte(&f, walker_only);
    }
}

/// Every cut of a Chrome-like hello into two segments, through `f`.
fn split_at_every_byte(f: &Filter, walker_only: bool) {
    let hello = tls_records(
        &ClientHelloBuilder::chrome("www.tiktok.com")
            .sni_position(SniPosition::Last)
            .build(),
        16384,
    );
    let name_at =
        sni_filter_lab::hello::find(&hello, b"www.tiktok.com").expect("name in the hello");
    let mut wrong = Vec::new();
    for cut in 1..hello.len() {
        let frames = tcp(IpPair::v4_example()).frames_split(&hello, &[cut]);
        let first = f.run_frame(&frames[0]).unwrap();
        let second = f.run_frame(&frames[1]).unwrap();
        // The first part passes unless it already holds the whole name.
        let first_ok = if cut >= name_at + "www.tiktok.com".len() {
            first == XDP_DROP
        } else {
            first == XDP_PASS
        };
        if !first_ok || second != XDP_DROP {
            wrong.push(format!("cut {cut}: first {first}, second {second}"));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} cuts of {} went wrong (walker only: {walker_only}):\n{}",
        wrong.len(),
        hello.len() - 1,
        wrong.join("\n")
    );
}

#[test]
fn a_hello_in_one_byte_records_over_several_segments_is_blocked() {
    let f = table_filter(true);
    let hello = tls_records(&ClientHelloBuilder::minimal("www.tiktok.com").build(), 1);
    let frames = tcp(IpPair::v4_example()).frames(&hello, 700);
    let actions: Vec<u32> = frames.iter().map(|fr| f.run_frame(fr).unwrap()).collect();
    assert_eq!(actions.last(), Some(&XDP_DROP), "{actions:?}");
}

#[test]
fn reject_answers_the_client_with_a_reset() {
    let f = filter("[apps.tiktok]\naction = \"reject\"\ndomains = [\"tiktok.com\"]\n");
    for ip in [IpPair::v4_example(), IpPair::v6_example()] {
        let seg = TcpSegment {
            ack: 777_000,
            ..tcp(ip)
        };
        let hello = tls_records(
            &ClientHelloBuilder::minimal("www.tiktok.com").build(),
            16384,
        );
        let (action, out) = f.run_frame_out(&seg.frame(&hello)).unwrap();
        assert_eq!(action, XDP_TX, "{ip:?}");
        let parsed = etherparse::SlicedPacket::from_ethernet(&out).expect("the reset parses");
        let Some(etherparse::TransportSlice::Tcp(t)) = parsed.transport else {
            panic!("no TCP in the reset")
        };
        assert!(t.rst() && t.ack(), "RST|ACK expected");
        assert_eq!(t.source_port(), seg.dst_port);
        assert_eq!(t.destination_port(), seg.src_port);
        assert_eq!(t.sequence_number(), 777_000, "seq = the client's ACK");
        assert_eq!(
            t.acknowledgment_number(),
            seg.seq + hello.len() as u32,
            "ack covers the hello"
        );
        assert!(t.payload().is_empty());
        match parsed.net {
            Some(etherparse::NetSlice::Ipv4(v4)) => {
                let h = v4.header();
                assert_eq!(h.source(), [198, 51, 100, 1], "addresses swapped");
                let fixed = h.to_header();
                assert_eq!(
                    fixed.header_checksum,
                    fixed.calc_header_checksum(),
                    "IPv4 header checksum"
                );
                assert_eq!(
                    t.calc_checksum_ipv4(fixed.source, fixed.destination)
                        .unwrap(),
                    t.checksum(),
                    "TCP checksum"
                );
            }
            Some(etherparse::NetSlice::Ipv6(v6)) => {
                let h = v6.header().to_header();
                assert_eq!(
                    t.calc_checksum_ipv6(h.source, h.destination).unwrap(),
                    t.checksum(),
                    "TCP checksum"
                );
            }
            _ => panic!("no IP in the reset"),
        }
    }
}

#[test]
fn blocked_and_monitored_flows_emit_one_event_and_allowed_ones_none() {
    let mut f = filter(RULES);
    let _ = f.drain_events().unwrap();
    let s = tcp(IpPair::v4_example());
    let hello = tls_records(
        &ClientHelloBuilder::minimal("www.tiktok.com").build(),
        16384,
    );
    let later = TcpSegment {
        seq: s.seq + hello.len() as u32,
        ..s.clone()
    };
    f.run_frame(&s.frame(&hello)).unwrap();
    f.run_frame(&later.frame(b"more")).unwrap();
    f.run_frame(&hello_frame("www.example.org")).unwrap();
    f.run_frame(&hello_frame("x.watched.example")).unwrap();
    let events = f.drain_events().unwrap();
    let names: Vec<(String, u8)> = events
        .iter()
        .map(|e| {
            (
                String::from_utf8_lossy(&e.sni[..e.sni_len as usize]).into_owned(),
                e.action,
            )
        })
        .collect();
    assert_eq!(
        names,
        [
            ("www.tiktok.com".to_string(), EventAction::Drop as u8),
            ("x.watched.example".to_string(), EventAction::Monitor as u8)
        ]
    );
    assert_eq!(events[0].flow.sport, s.src_port);
    assert_eq!(events[0].flow.dport, 443);
    assert_eq!(&events[0].flow.saddr[..4], &[192, 0, 2, 1]);
}

#[test]
fn only_configured_ports_are_inspected() {
    let f = filter(&format!("[filter]\ninspected_ports = [443]\n{RULES}"));
    let hello = tls_records(
        &ClientHelloBuilder::minimal("www.tiktok.com").build(),
        16384,
    );
    assert_eq!(
        f.run_frame(&tcp(IpPair::v4_example()).frame(&hello))
            .unwrap(),
        XDP_DROP
    );
    let other = TcpSegment {
        dst_port: 8443,
        ..tcp(IpPair::v4_example())
    };
    let before = counters(&f)[Reason::TcpPortNotInspected as usize].packets;
    assert_eq!(f.run_frame(&other.frame(&hello)).unwrap(), XDP_PASS);
    assert_eq!(
        counters(&f)[Reason::TcpPortNotInspected as usize].packets,
        before + 1
    );
}

#[test]
fn exempted_clients_and_out_of_scope_vlans_pass() {
    let f = filter(
        "[apps.tiktok]\naction = \"drop\"\ndomains = [\"tiktok.com\"]\nexempt_sources = [\"192.0.2.0/28\", \"2001:db8::1\"]\n\
         [apps.staff]\naction = \"drop\"\ndomains = [\"staff-only.example\"]\nvlans = [42]\n\
         [apps.local]\naction = \"drop\"\ndomains = [\"local-only.example\"]\ninterfaces = [\"lo\"]\n",
    );
    let hello = |name: &str| tls_records(&ClientHelloBuilder::minimal(name).build(), 16384);
    let reason_delta = |r: Reason, run: &dyn Fn() -> u32| {
        let before = counters(&f)[r as usize].packets;
        let action = run();
        (action, counters(&f)[r as usize].packets - before)
    };
    // The example pairs send from 192.0.2.1 and 2001:db8::1: both exempted.
    for ip in [IpPair::v4_example(), IpPair::v6_example()] {
        let got = reason_delta(Reason::HelloExempt, &|| {
            f.run_frame(&tcp(ip).frame(&hello("www.tiktok.com")))
                .unwrap()
        });
        assert_eq!(got, (XDP_PASS, 1), "{ip:?}");
    }
    // Another client of the same network family is not exempted.
    let IpPair::V4 { dst, .. } = IpPair::v4_example() else {
        unreachable!()
    };
    let other = TcpSegment {
        ip: IpPair::V4 {
            src: std::net::Ipv4Addr::new(192, 0, 2, 77),
            dst,
        },
        ..tcp(IpPair::v4_example())
    };
    assert_eq!(
        f.run_frame(&other.frame(&hello("www.tiktok.com"))).unwrap(),
        XDP_DROP
    );

    let tagged = |vid| TcpSegment {
        link: Link::with_vlans(&[VlanTag::dot1q(vid)]),
        ..tcp(IpPair::v4_example())
    };
    assert_eq!(
        f.run_frame(&tagged(42).frame(&hello("staff-only.example")))
            .unwrap(),
        XDP_DROP
    );
    assert_eq!(
        f.run_frame(&tagged(43).frame(&hello("staff-only.example")))
            .unwrap(),
        XDP_PASS
    );
    assert_eq!(
        f.run_frame(&tcp(IpPair::v4_example()).frame(&hello("staff-only.example")))
            .unwrap(),
        XDP_PASS
    );
    // BPF_PROG_TEST_RUN runs on the loopback interface.
    assert_eq!(
        f.run_frame(&tcp(IpPair::v4_example()).frame(&hello("local-only.example")))
            .unwrap(),
        XDP_DROP
    );
}

#[test]
fn a_hello_in_a_multi_buffer_jumbo_frame_is_read() {
    // Above a page, BPF_PROG_TEST_RUN hands a frags-capable program a multi-buffer frame, as
    // a driver does with a jumbo MTU: the name sits in a fragment, past the linear part.
    let f = table_filter(true);
    let hello = ClientHelloBuilder::chrome("www.tiktok.com")
        .sni_position(SniPosition::Last)
        .pad_to(7000)
        .build();
    let frame = tcp(IpPair::v4_example()).frame(&tls_records(&hello, 16384));
    assert!(frame.len() > 4096 + 1000, "frame of {} bytes", frame.len());
    assert_eq!(f.run_frame(&frame).unwrap(), XDP_DROP);
    let allowed = ClientHelloBuilder::chrome("www.example.org")
        .sni_position(SniPosition::Last)
        .pad_to(7000)
        .build();
    assert_eq!(
        f.run_frame(&tcp(IpPair::v4_example()).frame(&tls_records(&allowed, 16384)))
            .unwrap(),
        XDP_PASS
    );
}

/// Adds `words` 4-byte IPv4 options (NOP padding) to an untagged IPv4 frame.
fn with_ipv4_options(frame: &[u8], words: usize) -> Vec<u8> {
    const IP: usize = 14;
    let ihl = usize::from(frame[IP] & 0x0f) * 4;
    let mut out = frame[..IP + ihl].to_vec();
    out[IP] = 0x40 | ((ihl / 4 + words) as u8);
    let total = u16::from_be_bytes([out[IP + 2], out[IP + 3]]) + 4 * words as u16;
    out[IP + 2..IP + 4].copy_from_slice(&total.to_be_bytes());
    out.extend(std::iter::repeat_n(1u8, 4 * words)); // NOP options
    out[IP + 10..IP + 12].copy_from_slice(&[0, 0]);
    let sum: u32 = out[IP..IP + ihl + 4 * words]
        .chunks(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
        .sum();
    let folded = (sum & 0xffff) + (sum >> 16);
    let check = !(((folded & 0xffff) + (folded >> 16)) as u16);
    out[IP + 10..IP + 12].copy_from_slice(&check.to_be_bytes());
    out.extend_from_slice(&frame[IP + ihl..]);
    out
}

#[test]
fn ipv4_options_a_16_kib_hello_and_the_idle_timeout() {
    let f = filter(&format!(
        "[filter]\nuninspectable = \"drop\"\nflow_idle_secs = 1\n{RULES}"
    ));
    // IPv4 options (IHL up to 15 words) in front of TCP.
    for words in [1, 10] {
        let frame = with_ipv4_options(&hello_frame("www.tiktok.com"), words);
        etherparse::SlicedPacket::from_ethernet(&frame).expect("the frame with options parses");
        assert_eq!(
            f.run_frame(&frame).unwrap(),
            XDP_DROP,
            "{words} option words"
        );
    }
    // A hello padded to 16 KiB, in two records, over 12 segments, the name last.
    let big = tls_records(
        &ClientHelloBuilder::chrome("www.tiktok.com")
            .sni_position(SniPosition::Last)
            .pad_to(16 * 1024)
            .build(),
        16384,
    );
    assert!(big.len() > 16 * 1024);
    let frames = tcp(IpPair::v4_example()).frames(&big, 1448);
    assert!(frames.len() >= 12, "{} segments", frames.len());
    let actions: Vec<u32> = frames.iter().map(|fr| f.run_frame(fr).unwrap()).collect();
    assert_eq!(actions.last(), Some(&XDP_DROP), "{actions:?}");
    assert!(
        actions[..actions.len() - 1].iter().all(|&a| a == XDP_PASS),
        "{actions:?}"
    );
    // A blocked flow silent longer than flow_idle_secs is forgotten: its data passes again.
    let (_, later) = blocked_flow(&f);
    assert_eq!(f.run_frame(&later.frame(b"data")).unwrap(), XDP_DROP);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    assert_eq!(
        f.run_frame(&later.frame(b"data")).unwrap(),
        XDP_PASS,
        "the verdict outlived its idle timeout"
    );
}

/// `BPF_PROG_TEST_RUN` on a program fd, for a thread that runs packets while another reloads.
fn raw_test_run(prog_fd: std::os::fd::RawFd, frame: &[u8]) -> u32 {
    #[repr(C)]
    #[derive(Default)]
    struct TestAttr {
        prog_fd: u32,
        retval: u32,
        data_size_in: u32,
        data_size_out: u32,
        data_in: u64,
        data_out: u64,
        repeat: u32,
        duration: u32,
        ctx_size_in: u32,
        ctx_size_out: u32,
        ctx_in: u64,
        ctx_out: u64,
        flags: u32,
        cpu: u32,
        batch_size: u32,
        _pad: u32,
    }
    const BPF_PROG_TEST_RUN: libc::c_long = 10;
    let mut attr = TestAttr {
        prog_fd: u32::try_from(prog_fd).expect("a valid fd"),
        data_size_in: frame.len() as u32,
        data_in: frame.as_ptr() as u64,
        repeat: 1,
        ..TestAttr::default()
    };
    // SAFETY: the attribute points at `frame`, alive for the call; no output buffers.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_TEST_RUN,
            &raw mut attr,
            std::mem::size_of::<TestAttr>(),
        )
    };
    assert_eq!(
        rc,
        0,
        "BPF_PROG_TEST_RUN: {}",
        std::io::Error::last_os_error()
    );
    attr.retval
}

#[test]
fn a_reload_never_shows_a_mix_of_two_rule_sets() {
    use std::os::fd::{AsFd as _, AsRawFd as _};
    use std::sync::atomic::AtomicBool;
    // Both sets drop x.example, through apps in different places: set A through its first
    // app, set B through its second, whose first app only monitors. New rules with old apps
    // find a disabled app (pass); old rules with new apps find the monitor (pass, counted
    // hello_monitored). Only a clean switch drops every time.
    let text_a = "[apps.one]\naction = \"drop\"\ndomains = [\"x.example\"]\n";
    let text_b = "[apps.one]\naction = \"monitor\"\ndomains = [\"unused.example\"]\n[apps.two]\naction = \"drop\"\ndomains = [\"x.example\"]\n";
    let parse = |text: &str| {
        let config = Config::parse(Path::new("/nonexistent/mix.toml"), text).unwrap();
        let set = RuleSet::compile(&config).unwrap();
        (config, set)
    };
    let (config_a, set_a) = parse(text_a);
    let (config_b, set_b) = parse(text_b);
    let mut f = Filter::load_for(&config_a).unwrap();
    f.apply_config(&config_a, &set_a).unwrap();
    let fd = f.program().fd().unwrap().try_clone().unwrap();
    let stop = AtomicBool::new(false);
    let (runs, wrong) = std::thread::scope(|scope| {
        let runner = scope.spawn(|| {
            let (mut runs, mut wrong) = (0u32, Vec::new());
            while !stop.load(Ordering::Relaxed) {
                // A fresh flow each time: a blocked verdict would otherwise answer alone.
                let action = raw_test_run(fd.as_fd().as_raw_fd(), &hello_frame("x.example"));
                if action != XDP_DROP {
                    wrong.push(action);
                }
                runs += 1;
            }
            (runs, wrong)
        });
        for round in 0..40 {
            let (config, set) = if round % 2 == 0 {
                (&config_b, &set_b)
            } else {
                (&config_a, &set_a)
            };
            f.apply_config(config, set).unwrap();
        }
        stop.store(true, Ordering::Relaxed);
        runner.join().unwrap()
    });
    println!("{runs} packets judged during 40 reloads");
    assert!(runs > 100, "too few packets ran during the reloads: {runs}");
    assert!(
        wrong.is_empty(),
        "{} of {runs} packets saw a mix of the two sets: {wrong:?}",
        wrong.len()
    );
    assert_eq!(counters(&f)[Reason::HelloMonitored as usize].packets, 0);
}

/// A new flow whose hello the filter blocks (asserted): the flow's segment, and its next
/// one after the hello.
fn blocked_flow(f: &Filter) -> (TcpSegment, TcpSegment) {
    let s = tcp(IpPair::v4_example());
    let hello = tls_records(
        &ClientHelloBuilder::minimal("www.tiktok.com").build(),
        16384,
    );
    assert_eq!(f.run_frame(&s.frame(&hello)).unwrap(), XDP_DROP);
    let later = TcpSegment {
        seq: s.seq + hello.len() as u32,
        ..s.clone()
    };
    (s, later)
}

/// Runs the rest of this thread on `cpu` alone.
fn on_cpu(cpu: usize) {
    // SAFETY: an all-zero cpu_set_t is a valid empty set; CPU_SET fills one bit of it.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: as above; `cpu` is below CPU_SETSIZE.
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: `set` is a live cpu_set_t of the size passed.
    let rc = unsafe { libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &raw const set) };
    assert_eq!(
        rc,
        0,
        "sched_setaffinity({cpu}): {}",
        std::io::Error::last_os_error()
    );
}

/// Each CPU answers a blocked flow's packets from a cache of its own; a verdict ended on
/// another CPU (a SYN reusing the ports) must end there too, and a verdict's idle timeout
/// must hold however busy the flow keeps the cache.
#[test]
fn a_verdict_ended_on_one_cpu_is_not_answered_from_anothers_cache() {
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    assert!(cpus >= 2, "needs two CPUs, has {cpus}");
    // After the SYN, data out of the new connection's order is uninspectable: passed.
    let f = filter(&format!(
        "[filter]\nflow_idle_secs = 1\nuninspectable = \"pass\"\n{RULES}"
    ));
    let before = counters(&f);
    on_cpu(0);
    let (s, later) = blocked_flow(&f);
    let data = later.frame(b"data");
    // The first later packet fills CPU 0's cache, the next ones are answered from it.
    for _ in 0..3 {
        assert_eq!(f.run_frame(&data).unwrap(), XDP_DROP);
    }
    on_cpu(1);
    let syn = TcpSegment {
        flags: TcpFlags::SYN,
        ..s.clone()
    };
    assert_eq!(f.run_frame(&syn.frame(&[])).unwrap(), XDP_PASS);
    on_cpu(0);
    let moved = |r: Reason| counters(&f)[r as usize].packets - before[r as usize].packets;
    assert_eq!(f.run_frame(&data).unwrap(), XDP_PASS);
    assert_eq!(
        moved(Reason::BlockedFlow),
        3,
        "CPU 0 still answered from its cache after the SYN on CPU 1 ended the verdict"
    );
    // Busy on one CPU, idle on the other: the idle timeout is the flow's, not the cache's.
    let (_, later) = blocked_flow(&f);
    let start = std::time::Instant::now();
    while start.elapsed() < std::time::Duration::from_millis(600) {
        assert_eq!(f.run_frame(&later.frame(b"data")).unwrap(), XDP_DROP);
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    on_cpu(1);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    on_cpu(0);
    assert_eq!(
        f.run_frame(&later.frame(b"data")).unwrap(),
        XDP_PASS,
        "the verdict outlived its idle timeout in the cache"
    );
}

//! The table's rows about hellos over several TCP segments and the flows they open: splits,
//! retransmissions, overlaps, gaps and fake segments, the segment bound, and the verdict a
//! blocked flow keeps until a FIN or a new SYN.

use filter_common::Reason;
use sni_filter_lab::hello::{ClientHelloBuilder, IpPair, TcpFlags, TcpSegment, tls_records};

use super::common::program::{Case, XDP_DROP, XDP_PASS, case, strict};
use super::{banned_flow, chrome_name_last, tcp};

// One table: long by nature.
#[allow(clippy::too_many_lines)]
pub fn cases() -> Vec<Case> {
    let v4 = IpPair::v4_example();
    let chrome_ok = tls_records(
        &ClientHelloBuilder::chrome("www.example.org").build(),
        16384,
    );
    // A client's SYN whose first data byte is the default segment's (sequence 1000).
    let opening = |s: &TcpSegment| TcpSegment {
        flags: TcpFlags::SYN,
        seq: 999,
        ..s.clone()
    };
    // The same hello with a name of the same length: identical bytes but the name.
    let decoy_sni_last = chrome_name_last("www.example.ca");
    let chrome_sni_last = chrome_name_last("www.tiktok.com");
    let split = tcp(v4).frames_split(&chrome_sni_last, &[600]);
    vec![
        case(
            "first segment of a split hello, name in the second, is counted incomplete",
            vec![split[0].clone()],
            XDP_PASS,
            &[(Reason::HelloIncomplete, 1)],
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
                let (s, hello, later) = banned_flow(v4);
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
    ]
}

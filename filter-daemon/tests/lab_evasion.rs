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

mod common;

#[allow(clippy::wildcard_imports)]
use common::*;
use std::{collections::BTreeMap, fmt::Write as _, path::Path, time::Duration};

use sni_filter_lab::{
    Daemon, Lab, TlsServer,
    craft::{self, EXT_DEST_OPTS, EXT_HOP_BY_HOP, Segment, Session, Wire, flags},
    hello::{ClientHelloBuilder, find, tls_record_list, tls_records},
};

/// How long a session waits for the server's answer after its last segment.
const WAIT: Duration = Duration::from_millis(700);

/// What a technique sends, given the banned name's hello records and a fake one.
struct Technique {
    name: &'static str,
    ipv6: bool,
    plan: fn(&Hellos) -> Session,
}

/// The hellos techniques are made of; every one has a session id of its own.
struct Hellos {
    /// Chrome-like hello for the banned name, one record that fits one frame.
    banned: Vec<u8>,
    /// Chrome's post-quantum hello for the banned name (~1.8 KB: two segments).
    post_quantum: Vec<u8>,
    /// The same hello's handshake message, for techniques that make records of their own.
    banned_handshake: Vec<u8>,
    /// A small hello for the banned name, one record.
    small: Vec<u8>,
    small_handshake: Vec<u8>,
    /// A hello for the allowed name with the same length as `banned` (a fake).
    fake: Vec<u8>,
    /// Where the banned name starts in `banned`.
    name_at: usize,
    /// The banned name in mixed case, and with a trailing dot.
    mixed_case: Vec<u8>,
    trailing_dot: Vec<u8>,
    /// A banned hello padded so that 50-byte segments make more than 32 of them.
    padded: Vec<u8>,
}

fn hello(builder: &ClientHelloBuilder) -> (Vec<u8>, Vec<u8>) {
    let handshake = builder.build();
    (tls_records(&handshake, 16384), handshake)
}

impl Hellos {
    fn new() -> Self {
        // Without the post-quantum key share a Chrome-like hello fits one frame (~700 B).
        let chrome = |name: &str, seed| {
            ClientHelloBuilder::chrome(name)
                .post_quantum(false)
                .seed(seed)
        };
        let (banned, banned_handshake) = hello(&chrome(BANNED, 1));
        let (post_quantum, _) = hello(&ClientHelloBuilder::chrome(BANNED).seed(7));
        let (small, small_handshake) = hello(&ClientHelloBuilder::minimal(BANNED).seed(2));
        let (fake, _) = hello(&chrome(ALLOWED, 3));
        let name_at = find(&banned, BANNED.as_bytes()).expect("the name is in the hello");
        let (mixed_case, _) = hello(&chrome("wWw.TikTok.CoM", 4));
        let (trailing_dot, _) = hello(&chrome("www.tiktok.com.", 5));
        let (padded, _) = hello(&chrome(BANNED, 6).pad_to(2200));
        Self {
            banned,
            post_quantum,
            banned_handshake,
            small,
            small_handshake,
            fake,
            name_at,
            mixed_case,
            trailing_dot,
            padded,
        }
    }
}

fn session(segments: Vec<Segment>) -> Session {
    Session {
        segments,
        wait: WAIT,
        ..Session::default()
    }
}

/// The banned hello in two segments, the first (400 bytes) cut into two IP fragments, the
/// first fragment carrying `first` bytes after the IP header.
fn fragmented(h: &Hellos, first: usize) -> Session {
    let mut s = Segment::data(0, &h.banned[..400]);
    s.fragment_first = Some(first);
    session(vec![s, Segment::data(400, &h.banned[400..])])
}

/// `data` cut at `offsets`, as consecutive segments.
fn split(data: &[u8], offsets: &[usize]) -> Vec<Segment> {
    let mut out = Vec::new();
    let mut start = 0;
    for &o in offsets.iter().chain(std::iter::once(&data.len())) {
        out.push(Segment::data(start as u32, &data[start..o]));
        start = o;
    }
    out
}

fn chunks(data: &[u8], size: usize) -> Vec<Segment> {
    let offsets: Vec<usize> = (size..data.len()).step_by(size).collect();
    split(data, &offsets)
}

/// A fake hello (the allowed name) at the real hello's sequence number, changed by
/// `spoil` so that the server does not take it, then the real hello.
fn fake_first(h: &Hellos, spoil: impl Fn(&mut Segment)) -> Session {
    let mut fake = Segment::data(0, &h.fake);
    spoil(&mut fake);
    session(vec![fake, Segment::data(0, &h.banned)])
}

/// The records of a handshake, each with `version` as its record version.
fn with_record_version(records: &[u8], version: [u8; 2]) -> Vec<u8> {
    let mut out = records.to_vec();
    let mut at = 0;
    while at + 5 <= out.len() {
        out[at + 1..at + 3].copy_from_slice(&version);
        let len = usize::from(u16::from_be_bytes([out[at + 3], out[at + 4]]));
        at += 5 + len;
    }
    out
}

const TECHNIQUES: &[Technique] = &[
    Technique {
        name: "one segment (control)",
        ipv6: false,
        plan: |h| session(vec![Segment::data(0, &h.banned)]),
    },
    Technique {
        name: "one segment over IPv6 (control)",
        ipv6: true,
        plan: |h| session(vec![Segment::data(0, &h.banned)]),
    },
    Technique {
        name: "post-quantum hello in two segments (control)",
        ipv6: false,
        plan: |h| session(chunks(&h.post_quantum, 1400)),
    },
    Technique {
        name: "split after byte 1",
        ipv6: false,
        plan: |h| session(split(&h.banned, &[1])),
    },
    Technique {
        name: "split inside the record header",
        ipv6: false,
        plan: |h| session(split(&h.banned, &[3])),
    },
    Technique {
        name: "split inside the server name",
        ipv6: false,
        plan: |h| session(split(&h.banned, &[h.name_at + 4])),
    },
    Technique {
        name: "split just before the server name",
        ipv6: false,
        plan: |h| session(split(&h.banned, &[h.name_at])),
    },
    Technique {
        name: "split at 2, in the name and after it",
        ipv6: true,
        plan: |h| session(split(&h.banned, &[2, h.name_at + 7, h.name_at + 14])),
    },
    Technique {
        name: "100-byte segments",
        ipv6: false,
        plan: |h| session(chunks(&h.banned, 100)),
    },
    Technique {
        name: "1-byte segments (small hello)",
        ipv6: false,
        plan: |h| session(chunks(&h.small, 1)),
    },
    Technique {
        name: "8-byte segments (small hello)",
        ipv6: false,
        plan: |h| session(chunks(&h.small, 8)),
    },
    Technique {
        name: "two segments in reverse order",
        ipv6: false,
        plan: |h| {
            let mut s = split(&h.banned, &[h.name_at + 4]);
            s.reverse();
            session(s)
        },
    },
    Technique {
        name: "100-byte segments in reverse order",
        ipv6: false,
        plan: |h| {
            let mut s = chunks(&h.banned, 100);
            s.reverse();
            session(s)
        },
    },
    Technique {
        name: "overlap with different bytes",
        ipv6: false,
        plan: |h| {
            // The second segment restarts 10 bytes early with other bytes there.
            let cut = h.name_at + 4;
            let mut second = h.banned[cut - 10..].to_vec();
            second[..10].fill(b'x');
            session(vec![
                Segment::data(0, &h.banned[..cut]),
                Segment::data((cut - 10) as u32, &second),
            ])
        },
    },
    Technique {
        name: "first segment starts 10 junk bytes before the first byte (seqovl)",
        ipv6: false,
        plan: |h| {
            // The server drops the bytes before what it expects and keeps the hello's start.
            let cut = h.name_at + 4;
            let mut first = vec![b'x'; 10];
            first.extend_from_slice(&h.banned[..cut]);
            session(vec![
                Segment::data(0u32.wrapping_sub(10), &first),
                Segment::data(cut as u32, &h.banned[cut..]),
            ])
        },
    },
    Technique {
        name: "overlap: later copy of the name differs",
        ipv6: false,
        plan: |h| {
            // First the whole hello with another name of the same length, then the real one.
            let mut other = h.banned.clone();
            other[h.name_at..h.name_at + 3].copy_from_slice(b"xxx");
            session(vec![Segment::data(0, &other), Segment::data(0, &h.banned)])
        },
    },
    Technique {
        name: "fake hello first, TTL expiring at the gateway",
        ipv6: false,
        plan: |h| fake_first(h, |s| s.ttl = 1),
    },
    Technique {
        name: "fake hello first, TTL expiring beyond the gateway",
        ipv6: false,
        plan: |h| fake_first(h, |s| s.ttl = 2),
    },
    Technique {
        name: "fake hello first, bad TCP checksum",
        ipv6: false,
        plan: |h| fake_first(h, |s| s.bad_checksum = true),
    },
    Technique {
        name: "fake hello first, TCP MD5 signature option",
        ipv6: false,
        plan: |h| {
            fake_first(h, |s| {
                s.options = vec![19, 18];
                s.options.extend_from_slice(&[0xab; 16]);
            })
        },
    },
    Technique {
        name: "fake hello first, wrong sequence number",
        ipv6: false,
        plan: |h| fake_first(h, |s| s.rel_seq = 100_000),
    },
    Technique {
        name: "fake hello first, IPv6 hop limit 1",
        ipv6: true,
        plan: |h| fake_first(h, |s| s.ttl = 1),
    },
    Technique {
        name: "urgent byte inside the hello",
        ipv6: false,
        plan: |h| {
            let cut = h.name_at + 4;
            let mut first = h.banned[..cut].to_vec();
            first.push(b'!');
            let mut urgent = Segment::data(0, &first);
            urgent.flags |= flags::URG;
            urgent.urgent_pointer = first.len() as u16;
            session(vec![
                urgent,
                Segment::data((cut + 1) as u32, &h.banned[cut..]),
            ])
        },
    },
    Technique {
        name: "urgent flag on the hello's segment",
        ipv6: false,
        plan: |h| {
            let mut s = Segment::data(0, &h.banned);
            s.flags |= flags::URG;
            s.urgent_pointer = 1;
            session(vec![s])
        },
    },
    Technique {
        name: "records of 1 byte (small hello)",
        ipv6: false,
        plan: |h| session(chunks(&tls_records(&h.small_handshake, 1), 1400)),
    },
    Technique {
        name: "records cut at the server name",
        ipv6: false,
        plan: |h| {
            let at = h.name_at - 5 + 4;
            let mut records = tls_record_list(&h.banned_handshake[..at], 16384);
            records.extend(tls_record_list(&h.banned_handshake[at..], 16384));
            session(vec![Segment::data(0, &records.concat())])
        },
    },
    Technique {
        name: "records of random sizes, segments of 200",
        ipv6: false,
        plan: |h| {
            let mut records = Vec::new();
            let (mut at, mut size) = (0, 7);
            while at < h.banned_handshake.len() {
                let end = (at + size).min(h.banned_handshake.len());
                records.extend(tls_records(&h.banned_handshake[at..end], 16384));
                at = end;
                size = size * 7 % 97 + 1;
            }
            session(chunks(&records, 200))
        },
    },
    Technique {
        name: "record version 0x0300",
        ipv6: false,
        plan: |h| {
            session(vec![Segment::data(
                0,
                &with_record_version(&h.banned, [3, 0]),
            )])
        },
    },
    Technique {
        name: "record version 0x0001 (Go's crypto/tls reads it)",
        ipv6: false,
        plan: |h| {
            session(vec![Segment::data(
                0,
                &with_record_version(&h.banned, [0, 1]),
            )])
        },
    },
    Technique {
        name: "record version 0x0304",
        ipv6: false,
        plan: |h| {
            session(vec![Segment::data(
                0,
                &with_record_version(&h.banned, [3, 4]),
            )])
        },
    },
    Technique {
        name: "server name in mixed case",
        ipv6: false,
        plan: |h| session(vec![Segment::data(0, &h.mixed_case)]),
    },
    Technique {
        name: "server name with a trailing dot",
        ipv6: false,
        plan: |h| session(vec![Segment::data(0, &h.trailing_dot)]),
    },
    Technique {
        name: "hello in the SYN (TCP Fast Open)",
        ipv6: false,
        plan: |h| Session {
            syn_payload: h.small.clone(),
            syn_options: vec![34, 2, 1, 1], // Fast Open cookie request, NOP padding
            segments: vec![Segment::data(0, &h.small)],
            wait: WAIT,
            ..Session::default()
        },
    },
    Technique {
        name: "IPv4 fragments, hello starts in the first",
        ipv6: false,
        plan: |h| fragmented(h, 24),
    },
    Technique {
        name: "IPv4 fragments, first holds the TCP header only",
        ipv6: false,
        plan: |h| fragmented(h, 20),
    },
    Technique {
        name: "IPv4 tiny first fragment (8 bytes)",
        ipv6: false,
        plan: |h| fragmented(h, 8),
    },
    Technique {
        name: "IPv6 fragments, hello starts in the first",
        ipv6: true,
        plan: |h| fragmented(h, 24),
    },
    Technique {
        name: "IPv6 tiny first fragment (8 bytes)",
        ipv6: true,
        plan: |h| fragmented(h, 8),
    },
    Technique {
        name: "IPv6 Hop-by-Hop and Destination Options before TCP",
        ipv6: true,
        plan: |h| {
            let mut s = Segment::data(0, &h.banned);
            s.ipv6_ext = vec![EXT_HOP_BY_HOP, EXT_DEST_OPTS];
            session(vec![s])
        },
    },
    Technique {
        name: "IPv6: 7 extension headers before TCP",
        ipv6: true,
        plan: |h| {
            let mut s = Segment::data(0, &h.banned);
            s.ipv6_ext = vec![
                EXT_HOP_BY_HOP,
                EXT_DEST_OPTS,
                EXT_DEST_OPTS,
                EXT_DEST_OPTS,
                EXT_DEST_OPTS,
                EXT_DEST_OPTS,
                EXT_DEST_OPTS,
            ];
            session(vec![s])
        },
    },
    Technique {
        name: "padding: hello in more than 32 segments",
        ipv6: false,
        plan: |h| session(chunks(&h.padded, 50)),
    },
    Technique {
        name: "combined: fake TTL 1, then split in the name, reversed",
        ipv6: false,
        plan: |h| {
            let mut fake = Segment::data(0, &h.fake);
            fake.ttl = 1;
            let mut s = split(&h.banned, &[h.name_at + 4]);
            s.reverse();
            s.insert(0, fake);
            session(s)
        },
    },
    Technique {
        name: "combined: 1-byte records in 3-byte segments",
        ipv6: false,
        plan: |h| session(chunks(&tls_records(&h.small_handshake, 1), 3)),
    },
    Technique {
        name: "combined: bad-checksum fake, urgent byte, IPv4 fragments",
        ipv6: false,
        plan: |h| {
            let mut fake = Segment::data(0, &h.fake);
            fake.bad_checksum = true;
            let cut = h.name_at + 4;
            let mut first = h.banned[..cut].to_vec();
            first.push(b'!');
            let mut urgent = Segment::data(0, &first);
            urgent.flags |= flags::URG;
            urgent.urgent_pointer = first.len() as u16;
            urgent.fragment_first = Some(64);
            session(vec![
                fake,
                urgent,
                Segment::data((cut + 1) as u32, &h.banned[cut..]),
            ])
        },
    },
];

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Verdict {
    Blocked,
    ByPolicy,
    Bypass,
}

impl Verdict {
    fn name(self) -> &'static str {
        match self {
            Self::Blocked => "blocked",
            Self::ByPolicy => "uninspectable-by-policy",
            Self::Bypass => "bypass",
        }
    }
}

struct Row {
    technique: &'static str,
    verdict: Verdict,
    reasons: String,
    answered: bool,
}

/// Packets counted so far by reason, from `sni-filter stats --json`.
fn counters(daemon: &Daemon) -> BTreeMap<String, u64> {
    let out = daemon
        .command(["stats", "--json"])
        .output()
        .expect("stats runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("stats --json");
    v["reasons"]
        .as_object()
        .expect("reasons")
        .iter()
        .map(|(k, c)| (k.clone(), c["packets"].as_u64().unwrap_or(0)))
        .collect()
}

/// The reasons that matter to the table whose counters moved between two reads.
fn moved(before: &BTreeMap<String, u64>, after: &BTreeMap<String, u64>) -> Vec<String> {
    after
        .iter()
        .filter(|(k, _)| {
            k.starts_with("uninspectable_") || k.starts_with("hello_") || *k == "blocked_flow"
        })
        .filter(|(k, v)| before.get(*k).copied().unwrap_or(0) < **v)
        .map(|(k, v)| format!("{k}+{}", v - before.get(k).copied().unwrap_or(0)))
        .collect()
}

fn run_suite(wire: &Wire, daemon: &Daemon, h: &Hellos, port_base: u16) -> Vec<Row> {
    let banned_sessions = [
        craft::client_hello_session(&h.banned),
        craft::client_hello_session(&h.small),
        craft::client_hello_session(&h.mixed_case),
        craft::client_hello_session(&h.trailing_dot),
        craft::client_hello_session(&h.padded),
        craft::client_hello_session(&h.post_quantum),
    ];
    let mut rows = Vec::new();
    for (i, t) in TECHNIQUES.iter().enumerate() {
        let port = port_base + i as u16;
        let mut plan = (t.plan)(h);
        plan.ipv6 = t.ipv6;
        let before = counters(daemon);
        let answer = wire.session(port, &plan).expect("the session runs");
        let reasons = moved(&before, &counters(daemon));
        // Records re-cut from the handshake keep its session id; so do the variants.
        let answered = answer
            .server_hello_session
            .as_ref()
            .is_some_and(|s| banned_sessions.iter().flatten().any(|b| b == s));
        let by_policy = reasons.iter().any(|r| r.starts_with("uninspectable_"));
        let verdict = match (answered, by_policy) {
            (_, true) => Verdict::ByPolicy,
            (true, false) => Verdict::Bypass,
            (false, false) => Verdict::Blocked,
        };
        rows.push(Row {
            technique: t.name,
            verdict,
            reasons: if reasons.is_empty() {
                "-".into()
            } else {
                reasons.join(" ")
            },
            answered,
        });
    }
    rows
}

fn table(heading: &str, rows: &[Row]) -> String {
    let mut out = format!(
        "evasion suite, {heading}\n{:<66} {:<24} {:<8} {}\n",
        "technique", "result", "served", "counted (reason+packets)"
    );
    for r in rows {
        let _ = writeln!(
            out,
            "{:<66} {:<24} {:<8} {}",
            r.technique,
            r.verdict.name(),
            if r.answered { "yes" } else { "no" },
            r.reasons
        );
    }
    out
}

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

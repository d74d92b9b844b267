//! Group: program tests (the compiled program through `BPF_PROG_TEST_RUN`, no namespaces;
//! see `filter-daemon/tests/README.md`).
//!
//! Differential test of the compiled XDP program: seeded, generated `ClientHello`s cut into TLS
//! records and TCP segments at random are judged by the program and by parsers of this test's
//! own (tls-parser for the hello, etherparse for the frames). Every disagreement fails it.
//!
//! Needs root (loading BPF programs). A disagreement prints the seed of its case;
//! `SNI_FILTER_DIFF_SEED=<seed>` runs that case alone and prints its frames, and
//! `SNI_FILTER_DIFF_CASES=<n>` runs more (or fewer) cases than the default.

use std::{
    collections::BTreeSet,
    fmt::Write as _,
    net::{Ipv4Addr, Ipv6Addr},
    path::Path,
    time::Instant,
};

use etherparse::{NetSlice, SlicedPacket, TransportSlice, VlanSlice};
use filter_common::{
    EVENT_ECH, EVENT_SNI_LATER_SEGMENT, Event, EventAction, NO_APP, Note, REASON_COUNT, Reason,
    reason_from_u32,
};
use rand::{Rng, RngCore, SeedableRng, rngs::SmallRng};
use sni_filter::{config::Config, filter::Filter, rules::RuleSet};
use sni_filter_lab::hello::{
    ClientHelloBuilder, IpPair, Link, RECORD_FRAGMENT_MAX, SniPosition, TcpSegment, VlanTag, ext,
    find, tls_records,
};
use tls_parser::{
    SNIType, TlsExtension, TlsExtensionType, TlsMessage, TlsMessageHandshake, TlsRecordType,
    parse_tls_client_hello_extensions, parse_tls_message_handshake, parse_tls_raw_record,
};

const XDP_DROP: u32 = 1;
const XDP_PASS: u32 = 2;

/// Cases per run: a few hundred keep the run well under half a minute.
const CASES: u64 = 600;
/// Seed of the generator of case seeds: the same cases on every run.
const MASTER_SEED: u64 = 0x5e1f_d1ff_0000_0001;
/// Client ports of the cases count up from here, so that each case is a flow of its own
/// (a blocked flow stays blocked).
const FIRST_PORT: u16 = 2000;

/// The one banned domain: the name itself and every name below it.
const BANNED: &[u8] = b"tiktok.com";
const RULES: &str = "[filter]\nuninspectable = \"drop\"\n\n\
                     [apps.tiktok]\naction = \"drop\"\ndomains = [\"tiktok.com\"]\n";

/// Names that look like the banned domain without being it or below it.
const LOOKALIKES: [&str; 12] = [
    "nottiktok.com",
    "tiktok.com.evil.net",
    "tiktok.co",
    "tiktok.comm",
    "tiktokcom",
    "tiktok",
    "com",
    "ktok.com",
    "tiktok-com.net",
    "tiktok.com-cdn.net",
    "tiktok.cn",
    "xn--tiktok-7ua.com",
];

/// TCP payload of a 1500-byte MTU (IPv4 and TCP headers without options), and of a
/// 9000-byte jumbo frame.
const MSS: usize = 1460;
const JUMBO_MSS: usize = 8960;

/// Segments a hello may span and still be read (the program's `HELLO_SEGMENTS_MAX`): the cases
/// stay within it, as they stay within the MSS, so that every one of them is inspectable.
const SEGMENTS_MAX: usize = filter_common::hello::HELLO_SEGMENTS_MAX as usize;

/// Longest host name (RFC 1035 §2.3.4) and longest label.
const NAME_MAX: usize = 255;
const LABEL_MAX: usize = 63;

/// Extension types the generator must not pick for random bodies: tls-parser decodes
/// 0x0000-0x00ff and `next_protocol_negotiation` (0x3374) by their content, ALPS is in the
/// Chrome-like hellos already, and ECH is set by the case itself.
const RESERVED_TYPES: [u16; 3] = [
    0x3374,
    ext::APPLICATION_SETTINGS,
    ext::ENCRYPTED_CLIENT_HELLO,
];

/// One generated case; all of it follows from its seed (and the client port).
struct Case {
    /// The names put into the hello, in order (the oracle reads them back from the bytes).
    names: Vec<String>,
    ech: bool,
    hello_len: usize,
    record_size: usize,
    mss: usize,
    /// Offsets in the TCP stream where one segment ends and the next starts.
    cuts: Vec<usize>,
    tail_decoy: bool,
    v6: bool,
    vlans: usize,
    frames: Vec<Vec<u8>>,
    /// The client's next flight, after the hello: `ChangeCipherSpec` and application data.
    after: Vec<u8>,
}

impl Case {
    fn describe(&self) -> String {
        format!(
            "names {:?}, ECH {}, hello {} B in records of <= {} B, cuts {:?} (MSS {}), {}{}, {} VLAN tags",
            self.names,
            self.ech,
            self.hello_len,
            self.record_size,
            self.cuts,
            self.mss,
            if self.v6 { "IPv6" } else { "IPv4" },
            if self.tail_decoy {
                ", a hello in the last extension's body"
            } else {
                ""
            },
            self.vlans,
        )
    }
}

/// A case; `whole`: the hello in one record, cut by the MSS only, as browsers send it (so
/// that the fast path reads it where it fits a segment); else records and cuts at random.
fn generate_shaped(seed: u64, sport: u16, whole: bool) -> Case {
    let mut rng = SmallRng::seed_from_u64(seed);
    let names = pick_names(&mut rng);
    // A hello whose last extension (mostly; the name may land after it) carries, from the
    // start of a segment on, the bytes of a hello for a banned name: they are extension
    // bytes of the first hello, not a hello.
    let tail_decoy = rng.gen_bool(0.05);
    let ech = rng.gen_bool(0.5);
    let decoy = tls_records(
        &ClientHelloBuilder::minimal("www.tiktok.com").build(),
        RECORD_FRAGMENT_MAX,
    );
    let hello = build_hello(&mut rng, &names, ech, tail_decoy.then_some(&decoy[..]));
    let (stream, record_size, cuts, mss) = cut_up(
        &mut rng,
        &hello,
        &names,
        tail_decoy.then_some(&decoy[..]),
        whole,
    );
    let (segment, v6, vlans) = random_flow(&mut rng, sport);
    let next = TcpSegment {
        seq: segment.seq.wrapping_add(stream.len() as u32),
        ..segment.clone()
    };
    // ChangeCipherSpec (RFC 8446 D.4 middlebox compatibility) and an application data record.
    let mut flight = vec![0x14, 3, 3, 0, 1, 1, 0x17, 3, 3];
    let mut data = vec![0; rng.gen_range(1..=512)];
    rng.fill_bytes(&mut data);
    flight.extend_from_slice(&(data.len() as u16).to_be_bytes());
    flight.extend_from_slice(&data);
    Case {
        names,
        ech,
        hello_len: hello.len(),
        record_size,
        mss,
        frames: segment.frames_split(&stream, &cuts),
        after: next.frame(&flight),
        cuts,
        tail_decoy,
        v6,
        vlans,
    }
}

/// The handshake message: base shape, switches, SNI position and extra extensions at random;
/// `tail_decoy` goes last.
fn build_hello(
    rng: &mut SmallRng,
    names: &[String],
    ech: bool,
    tail_decoy: Option<&[u8]>,
) -> Vec<u8> {
    let base = if rng.gen_bool(0.5) {
        ClientHelloBuilder::chrome("unused.example")
    } else {
        ClientHelloBuilder::minimal("unused.example")
    };
    // Without GREASE, padding or the name last, the extra extensions come last.
    let grease = tail_decoy.is_none() && rng.gen_bool(0.5);
    let position = match rng.gen_range(0..4) {
        0 => SniPosition::First,
        1 => SniPosition::Early,
        2 if tail_decoy.is_none() => SniPosition::Last,
        _ => SniPosition::Index(rng.gen_range(0..24)),
    };
    let mut builder = base
        .no_server_name()
        .grease(grease)
        .ech(ech)
        .post_quantum(rng.gen_bool(0.5))
        .sni_position(position)
        .seed(rng.next_u64());
    for name in names {
        builder = builder.server_name(name);
    }
    if names.is_empty() && rng.gen_bool(0.3) {
        // An empty server_name extension: as a server sends it, no name.
        builder = builder.extension(ext::SERVER_NAME, &[]);
    }
    for _ in 0..rng.gen_range(0..=5) {
        let kind = unknown_type(rng);
        builder = builder.extension(kind, &extension_body(rng));
    }
    if let Some(decoy) = tail_decoy {
        builder = builder.extension(unknown_type(rng), decoy);
    } else if rng.gen_bool(0.2) {
        builder = builder.pad_to(rng.gen_range(256..=4096));
    }
    builder.build()
}

/// The hello in TLS records, and the offsets where the TCP stream is cut into segments:
/// none, or 1-6 segments at random, sometimes inside a name, 1-byte segments, a cut after
/// the first bytes; then more cuts so that no segment is above the MSS. Records too small
/// for the segment bound are doubled. Returns the stream, the record size, the cuts and the
/// MSS.
fn cut_up(
    rng: &mut SmallRng,
    hello: &[u8],
    names: &[String],
    tail_decoy: Option<&[u8]>,
    whole: bool,
) -> (Vec<u8>, usize, Vec<usize>, usize) {
    let mut record_size = if whole {
        RECORD_FRAGMENT_MAX
    } else {
        record_size(rng)
    };
    let jumbo = rng.gen_bool(0.1);
    loop {
        let stream = tls_records(hello, record_size);
        let mss = if jumbo && record_size >= 256 {
            JUMBO_MSS
        } else {
            MSS
        };
        let to_stream = |at: usize| at + 5 * (at / record_size + 1);
        let mut cuts = BTreeSet::new();
        // A quarter of the hellos go as they are, cut by the MSS only.
        if !whole && rng.gen_bool(0.75) {
            for _ in 1..rng.gen_range(1..=6) {
                cuts.insert(rng.gen_range(1..stream.len()));
            }
            let name_at = name_offsets(hello, names);
            if !name_at.is_empty() && rng.gen_bool(0.4) {
                let (at, len) = name_at[rng.gen_range(0..name_at.len())];
                let cut = to_stream(at + rng.gen_range(0..=len));
                if rng.gen_bool(0.5) {
                    cuts.insert(cut);
                } else {
                    // A run of 1-byte segments through the name.
                    for k in 0..rng.gen_range(1..=5) {
                        cuts.insert(cut + k);
                    }
                }
            }
            if rng.gen_bool(0.15) {
                let at = rng.gen_range(1..stream.len() - 1);
                cuts.insert(at);
                cuts.insert(at + 1);
            }
            if rng.gen_bool(0.1) {
                cuts.insert(if rng.gen_bool(0.5) { 1 } else { 5 });
            }
        }
        if let Some(at) = tail_decoy.and_then(|decoy| find(hello, decoy)) {
            cuts.insert(to_stream(at));
        }
        let cuts = within_mss(&cuts, stream.len(), mss);
        if cuts.len() < SEGMENTS_MAX {
            return (stream, record_size, cuts, mss);
        }
        record_size *= 2;
    }
}

/// A new flow: random addresses (IPv4 or IPv6), 0-2 VLAN tags, mostly port 443, a random
/// first sequence number. Returns it, whether it is IPv6 and its number of tags.
fn random_flow(rng: &mut SmallRng, sport: u16) -> (TcpSegment, bool, usize) {
    let v6 = rng.gen_bool(0.4);
    let ip = if v6 {
        let mut src = [0u8; 16];
        let mut dst = [0u8; 16];
        rng.fill_bytes(&mut src);
        rng.fill_bytes(&mut dst);
        src[..4].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8]);
        dst[..4].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8]);
        IpPair::V6 {
            src: Ipv6Addr::from(src),
            dst: Ipv6Addr::from(dst),
        }
    } else {
        IpPair::V4 {
            src: Ipv4Addr::from(rng.next_u32()),
            dst: Ipv4Addr::from(rng.next_u32()),
        }
    };
    let vlans = match rng.gen_range(0..4) {
        0 | 1 => vec![],
        2 => vec![VlanTag::dot1q(rng.gen_range(1..4095))],
        _ => vec![
            if rng.gen_bool(0.5) {
                VlanTag::dot1ad(rng.gen_range(1..4095))
            } else {
                VlanTag::dot1q(rng.gen_range(1..4095))
            },
            VlanTag::dot1q(rng.gen_range(1..4095)),
        ],
    };
    let dport = if rng.gen_bool(0.8) {
        443
    } else {
        rng.gen_range(1..=u16::MAX)
    };
    let mut segment = TcpSegment::new(ip, sport, dport);
    segment.link = Link::with_vlans(&vlans);
    // Sometimes close to the wrap of the sequence space, so that the hello wraps.
    segment.seq = if rng.gen_bool(0.2) {
        u32::MAX - rng.gen_range(0..4096)
    } else {
        rng.next_u32()
    };
    (segment, v6, vlans.len())
}

/// No name (a tenth of the hellos), one, or a list of up to four.
fn pick_names(rng: &mut SmallRng) -> Vec<String> {
    if rng.gen_bool(0.1) {
        return Vec::new();
    }
    let count = if rng.gen_bool(0.7) {
        1
    } else {
        rng.gen_range(2..=4)
    };
    (0..count).map(|_| host_name(rng)).collect()
}

fn host_name(rng: &mut SmallRng) -> String {
    // Room for a trailing dot.
    let room = NAME_MAX - 1;
    let suffix = format!(".{}", String::from_utf8_lossy(BANNED));
    let name = match rng.gen_range(0..10) {
        0..=2 => {
            let len = match rng.gen_range(0..20) {
                0..=11 => rng.gen_range(3..=40),
                12..=16 => rng.gen_range(41..=200),
                _ => rng.gen_range(201..=room),
            };
            random_host(rng, len)
        }
        3 => String::from_utf8_lossy(BANNED).into_owned(),
        4..=5 => {
            let len = rng.gen_range(1..=room - suffix.len());
            random_host(rng, len) + &suffix
        }
        6..=7 => {
            let lookalike = LOOKALIKES[rng.gen_range(0..LOOKALIKES.len())];
            if rng.gen_bool(0.5) {
                let len = rng.gen_range(1..=room - 1 - lookalike.len());
                format!("{}.{lookalike}", random_host(rng, len))
            } else {
                lookalike.to_owned()
            }
        }
        // Labels of one character: the most labels a name can have.
        _ => {
            let banned = rng.gen_bool(0.5);
            let room = if banned { room - suffix.len() } else { room };
            let labels = rng.gen_range(1..=room.div_ceil(2));
            let mut name: Vec<String> = (0..labels).map(|_| label(rng, 1)).collect();
            if banned {
                name.push(String::from_utf8_lossy(BANNED).into_owned());
            }
            name.join(".")
        }
    };
    let mut name = match rng.gen_range(0..10) {
        0..=5 => name,
        6..=7 => name.to_ascii_uppercase(),
        _ => name
            .chars()
            .map(|c| {
                if rng.gen_bool(0.5) {
                    c.to_ascii_uppercase()
                } else {
                    c
                }
            })
            .collect(),
    };
    if rng.gen_bool(0.15) {
        name.push('.');
    }
    assert!((1..=NAME_MAX).contains(&name.len()), "generated {name:?}");
    name
}

/// A host name of at most `len` bytes (and at least one label) of LDH labels.
fn random_host(rng: &mut SmallRng, len: usize) -> String {
    let mut name = String::new();
    while name.len() < len {
        if !name.is_empty() {
            if len - name.len() < 2 {
                break;
            }
            name.push('.');
        }
        let room = (len - name.len()).min(LABEL_MAX);
        let want = if rng.gen_bool(0.7) {
            rng.gen_range(1..=12)
        } else {
            rng.gen_range(1..=LABEL_MAX)
        };
        name.push_str(&label(rng, want.min(room)));
    }
    name
}

/// A label of letters, digits and inner hyphens (RFC 1035 §2.3.1).
fn label(rng: &mut SmallRng, len: usize) -> String {
    const ALNUM: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    (0..len)
        .map(|i| {
            if i > 0 && i + 1 < len && rng.gen_bool(0.1) {
                '-'
            } else {
                char::from(ALNUM[rng.gen_range(0..ALNUM.len())])
            }
        })
        .collect()
}

fn unknown_type(rng: &mut SmallRng) -> u16 {
    loop {
        let kind = rng.gen_range(0x0100..=0xfeff);
        if !RESERVED_TYPES.contains(&kind) {
            return kind;
        }
    }
}

/// Random bytes, or a body shaped like a `server_name` extension for a banned name.
fn extension_body(rng: &mut SmallRng) -> Vec<u8> {
    if rng.gen_bool(0.15) {
        let name = b"www.tiktok.com";
        let mut body = ((name.len() + 3) as u16).to_be_bytes().to_vec();
        body.push(0);
        body.extend_from_slice(&(name.len() as u16).to_be_bytes());
        body.extend_from_slice(name);
        return body;
    }
    let len = match rng.gen_range(0..20) {
        0..=13 => rng.gen_range(0..32),
        14..=18 => rng.gen_range(32..512),
        _ => rng.gen_range(512..1500),
    };
    let mut body = vec![0; len];
    rng.fill_bytes(&mut body);
    body
}

/// The largest record fragment: whole hellos, small records, or anything between.
fn record_size(rng: &mut SmallRng) -> usize {
    match rng.gen_range(0..10) {
        0..=3 => RECORD_FRAGMENT_MAX,
        4 => 1,
        5..=6 => rng.gen_range(2..=64),
        // Log-uniform over 64..=16384.
        _ => {
            let bits = rng.gen_range(6..14);
            rng.gen_range(1 << bits..=2 << bits)
        }
    }
}

/// Where each name's bytes start in the handshake message, and their length.
fn name_offsets(hello: &[u8], names: &[String]) -> Vec<(usize, usize)> {
    names
        .iter()
        .filter_map(|name| {
            let mut entry = vec![0];
            entry.extend_from_slice(&(name.len() as u16).to_be_bytes());
            entry.extend_from_slice(name.as_bytes());
            find(hello, &entry).map(|at| (at + 3, name.len()))
        })
        .collect()
}

/// The cuts, plus those that keep every segment within the MSS.
fn within_mss(cuts: &BTreeSet<usize>, len: usize, mss: usize) -> Vec<usize> {
    let mut out = Vec::new();
    let mut start = 0;
    for cut in cuts
        .iter()
        .copied()
        .filter(|&c| c > 0 && c < len)
        .chain([len])
    {
        while cut - start > mss {
            start += mss;
            out.push(start);
        }
        if cut < len {
            out.push(cut);
        }
        start = cut;
    }
    out
}

/// A flow as the event reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Flow {
    saddr: [u8; 16],
    daddr: [u8; 16],
    sport: u16,
    dport: u16,
    family: u8,
}

impl Flow {
    fn of_event(e: &Event) -> Self {
        Self {
            saddr: e.flow.saddr,
            daddr: e.flow.daddr,
            sport: e.flow.sport,
            dport: e.flow.dport,
            family: e.flow.family,
        }
    }
}

/// What the frames of a case should come to, by the parsers of this test.
struct Expected {
    /// Per frame of the hello, and for the data after it: the action and the counter it
    /// goes to.
    frames: Vec<(u32, Reason)>,
    after: (u32, Reason),
    /// The reason, action, app and name of the one event.
    reason: Reason,
    action: EventAction,
    app: u16,
    sni: Vec<u8>,
    /// `EVENT_*` bits that must be set, and those that may be either.
    flags: u8,
    flags_either: u8,
    flow: Flow,
    records: usize,
    /// A name's bytes span two segments.
    name_cut: bool,
    /// The highest record-layer major version in the hello: at 0x10 and above no TLS server
    /// reads the record (OpenSSL wants 3, Go's crypto/tls anything below 0x1000), while
    /// tls-parser does not look.
    record_major_max: u8,
}

/// A name is banned when, ASCII-lowercased and without one trailing dot, it is the banned
/// domain or ends with a dot and the banned domain.
fn banned(name: &[u8]) -> bool {
    let lower = name.to_ascii_lowercase();
    let name = lower.strip_suffix(b".").unwrap_or(&lower);
    name == BANNED || (name.ends_with(BANNED) && name[..name.len() - BANNED.len()].ends_with(b"."))
}

/// A frame's flow, VLAN tags, TCP sequence number and payload, by etherparse.
fn parse_frame(frame: &[u8]) -> Result<(Flow, usize, u32, &[u8]), String> {
    let packet = SlicedPacket::from_ethernet(frame).map_err(|e| format!("etherparse: {e}"))?;
    let vlans = match packet.vlan {
        None => 0,
        Some(VlanSlice::SingleVlan(_)) => 1,
        Some(VlanSlice::DoubleVlan(_)) => 2,
    };
    let (saddr, daddr, family) = match &packet.net {
        Some(NetSlice::Ipv4(v4)) => {
            let (mut s, mut d) = ([0; 16], [0; 16]);
            s[..4].copy_from_slice(&v4.header().source());
            d[..4].copy_from_slice(&v4.header().destination());
            (s, d, 4)
        }
        Some(NetSlice::Ipv6(v6)) => (v6.header().source(), v6.header().destination(), 6),
        _ => return Err("no IP header".into()),
    };
    let Some(TransportSlice::Tcp(tcp)) = packet.transport else {
        return Err("no TCP header".into());
    };
    let flow = Flow {
        saddr,
        daddr,
        sport: tcp.source_port(),
        dport: tcp.destination_port(),
        family,
    };
    Ok((flow, vlans, tcp.sequence_number(), tcp.payload()))
}

/// The frames' headers by etherparse, the hello by tls-parser, and from them the verdict.
// One walk from frames to verdict: long by nature.
#[allow(clippy::too_many_lines)]
fn oracle(case: &Case, banned_app: u16) -> Result<Expected, String> {
    let mut flow = None;
    let mut stream = Vec::new();
    let mut segment_ends = Vec::new();
    let mut next_seq = None;
    for (i, frame) in case.frames.iter().chain([&case.after]).enumerate() {
        let (this, vlans, seq, payload) =
            parse_frame(frame).map_err(|e| format!("frame {i}: {e}"))?;
        if vlans != case.vlans {
            return Err(format!(
                "frame {i}: {vlans} VLAN tags, built with {}",
                case.vlans
            ));
        }
        if *flow.get_or_insert(this) != this {
            return Err(format!("frame {i}: another flow {this:?}"));
        }
        if next_seq.is_some_and(|s| s != seq) {
            return Err(format!("frame {i}: sequence number out of order"));
        }
        next_seq = Some(seq.wrapping_add(payload.len() as u32));
        if i < case.frames.len() {
            stream.extend_from_slice(payload);
            segment_ends.push(stream.len());
        }
    }
    let flow = flow.ok_or("no frames")?;
    let segment_of = |at: usize| segment_ends.iter().position(|&end| at < end);

    // The handshake message from the records' fragments, with where each fragment was in
    // the stream.
    let mut handshake = Vec::new();
    let mut fragments = Vec::new();
    let mut record_major_max = 0u8;
    let mut rest = &stream[..];
    while !rest.is_empty() {
        let (next, record) =
            parse_tls_raw_record(rest).map_err(|e| format!("tls-parser, record: {e:?}"))?;
        if record.hdr.record_type != TlsRecordType::Handshake {
            return Err(format!("record of type {}", record.hdr.record_type));
        }
        record_major_max = record_major_max.max(record.hdr.version.0.to_be_bytes()[0]);
        let in_stream = record.data.as_ptr() as usize - stream.as_ptr() as usize;
        fragments.push((handshake.len(), in_stream, record.data.len()));
        handshake.extend_from_slice(record.data);
        rest = next;
    }
    let to_stream = |at: usize| {
        fragments
            .iter()
            .find(|(start, _, len)| (*start..start + len).contains(&at))
            .map(|(start, in_stream, _)| in_stream + at - start)
    };
    let (left, message) = parse_tls_message_handshake(&handshake)
        .map_err(|e| format!("tls-parser, handshake: {e:?}"))?;
    if !left.is_empty() {
        return Err(format!("{} bytes after the handshake message", left.len()));
    }
    let TlsMessage::Handshake(TlsMessageHandshake::ClientHello(hello)) = message else {
        return Err(format!("not a ClientHello: {message:?}"));
    };
    let (left, extensions) = parse_tls_client_hello_extensions(hello.ext.unwrap_or_default())
        .map_err(|e| format!("tls-parser, extensions: {e:?}"))?;
    if !left.is_empty() {
        return Err(format!("{} extension bytes tls-parser left", left.len()));
    }
    // Each host name, with the stream offsets of its first and last bytes and whether an ECH
    // extension came before it.
    let mut names: Vec<(&[u8], usize, usize, bool)> = Vec::new();
    let mut ech = false;
    for extension in &extensions {
        if u16::from(TlsExtensionType::from(extension)) == ext::ENCRYPTED_CLIENT_HELLO {
            ech = true;
        }
        if let TlsExtension::SNI(list) = extension {
            for (kind, name) in list {
                if *kind == SNIType::HostName {
                    let at = name.as_ptr() as usize - handshake.as_ptr() as usize;
                    let (Some(first), Some(last)) = (to_stream(at), to_stream(at + name.len() - 1))
                    else {
                        return Err("a name outside the records".into());
                    };
                    names.push((name, first, last, ech));
                }
            }
        }
    }
    let read: Vec<String> = names
        .iter()
        .map(|(n, ..)| String::from_utf8_lossy(n).into_owned())
        .collect();
    if read != case.names || ech != case.ech {
        return Err(format!(
            "tls-parser reads names {read:?} and ECH {ech}, the case was built with {:?} and {}",
            case.names, case.ech
        ));
    }
    let name_cut = names
        .iter()
        .any(|(_, first, last, _)| segment_of(*first) != segment_of(*last));

    let last_frame = case.frames.len() - 1;
    let mut frames = vec![(XDP_PASS, Reason::HelloIncomplete); case.frames.len()];
    let later = |last: usize| {
        if segment_of(last).unwrap_or(0) > 0 {
            EVENT_SNI_LATER_SEGMENT
        } else {
            0
        }
    };
    let banned_name = names.iter().find(|(name, ..)| banned(name));
    let (reason, sni, flags, flags_either) = if let Some(&(name, _, last, ech_before)) = banned_name
    {
        // The program drops the segment that completes the first banned name, and every
        // later one as part of a blocked flow.
        let at = segment_of(last).ok_or("the name is past the stream")?;
        frames[at] = (XDP_DROP, Reason::HelloBlocked);
        for f in &mut frames[at + 1..] {
            *f = (XDP_DROP, Reason::BlockedFlow);
        }
        // It stops reading at the banned name: an ECH extension after it may go unseen.
        let ech_flag = if ech_before { EVENT_ECH } else { 0 };
        let unseen = if ech && !ech_before { EVENT_ECH } else { 0 };
        (Reason::HelloBlocked, name, later(last) | ech_flag, unseen)
    } else {
        let (reason, sni, flags) = match names.last() {
            Some(&(name, _, last, _)) => (Reason::HelloAllowed, name, later(last)),
            None => (Reason::HelloNoSni, &[][..], 0),
        };
        frames[last_frame] = (XDP_PASS, reason);
        (reason, sni, flags | if ech { EVENT_ECH } else { 0 }, 0)
    };
    let blocked = banned_name.is_some();
    Ok(Expected {
        record_major_max,
        frames,
        after: if blocked {
            (XDP_DROP, Reason::BlockedFlow)
        } else {
            (XDP_PASS, Reason::TcpNotHandshake)
        },
        reason,
        action: if blocked {
            EventAction::Drop
        } else {
            EventAction::Pass
        },
        app: if blocked { banned_app } else { NO_APP },
        sni: sni.to_vec(),
        flags,
        flags_either,
        flow,
        records: fragments.len(),
        name_cut,
    })
}

/// An event as the tests compare and print it: everything but its time and flow.
fn describe_event(e: &Event) -> String {
    format!(
        "{}/{} app {} flags {:#x} {}",
        reason_from_u32(u32::from(e.reason)).name(),
        event_action_name(e.action),
        e.app,
        e.flags,
        show_name(&e.sni[..usize::from(e.sni_len).min(e.sni.len())])
    )
}

fn event_action_name(action: u8) -> String {
    EventAction::from_u8(action).map_or_else(|| format!("action {action}"), |a| a.name().into())
}

fn show_name(name: &[u8]) -> String {
    format!("{:?}", String::from_utf8_lossy(name))
}

/// Runs one case through the filter; returns what went differently than expected.
fn run_case(filter: &mut Filter, case: &Case, expected: &Expected) -> Vec<String> {
    let mut problems = Vec::new();
    let before = filter.counters().expect("counters readable");
    let actions: Vec<u32> = case
        .frames
        .iter()
        .map(|frame| filter.run_frame(frame).expect("test run"))
        .collect();
    let after_hello = filter.run_frame(&case.after).expect("test run");
    let after = filter.counters().expect("counters readable");
    let events = filter.drain_events().expect("events readable");

    let want: Vec<u32> = expected.frames.iter().map(|(a, _)| *a).collect();
    if actions.last() != want.last() {
        problems.push(format!(
            "last frame: action {:?}, expected {:?}",
            actions.last(),
            want.last()
        ));
    }
    if actions[..actions.len() - 1] != want[..want.len() - 1] {
        problems.push(format!("frame actions {actions:?}, expected {want:?}"));
    }
    if after_hello != expected.after.0 {
        problems.push(format!(
            "data after the hello: action {after_hello}, expected {}",
            expected.after.0
        ));
    }
    let mut counted = vec![0u64; REASON_COUNT as usize];
    for (_, reason) in expected.frames.iter().chain([&expected.after]) {
        counted[*reason as usize] += 1;
    }
    let moved: Vec<String> = (0..REASON_COUNT)
        .filter_map(|r| {
            let i = r as usize;
            let delta = after[i].packets - before[i].packets;
            (delta != counted[i]).then(|| {
                format!(
                    "{} {delta} (expected {})",
                    reason_from_u32(r).name(),
                    counted[i]
                )
            })
        })
        .collect();
    if !moved.is_empty() {
        problems.push(format!("counters: {}", moved.join(", ")));
    }

    let [event] = &events[..] else {
        let list: Vec<String> = events.iter().map(describe_event).collect();
        problems.push(format!(
            "{} events, expected one ({})",
            events.len(),
            list.join("; ")
        ));
        return problems;
    };
    problems.extend(check_event(event, expected));
    problems
}

/// What in the one event of a case differs from the expectation.
fn check_event(event: &Event, expected: &Expected) -> Vec<String> {
    let mut problems = Vec::new();
    let reason = reason_from_u32(u32::from(event.reason));
    if reason != expected.reason {
        problems.push(format!(
            "event reason {}, expected {}",
            reason.name(),
            expected.reason.name()
        ));
    }
    if event.action != expected.action as u8 {
        problems.push(format!(
            "event action {}, expected {}",
            event_action_name(event.action),
            expected.action.name()
        ));
    }
    if event.app != expected.app {
        problems.push(format!(
            "event app {}, expected {}",
            event.app, expected.app
        ));
    }
    let sni = &event.sni[..usize::from(event.sni_len).min(event.sni.len())];
    if sni != expected.sni {
        problems.push(format!(
            "event name {} ({} bytes), expected {} ({} bytes)",
            show_name(sni),
            event.sni_len,
            show_name(&expected.sni),
            expected.sni.len()
        ));
    }
    if event.flags & !expected.flags_either != expected.flags {
        problems.push(format!(
            "event flags {:#04x}, expected {:#04x} (ECH {EVENT_ECH:#x}, name from a later segment {EVENT_SNI_LATER_SEGMENT:#x})",
            event.flags, expected.flags
        ));
    }
    let flow = Flow::of_event(event);
    if flow != expected.flow || event.flow.proto != 6 {
        problems.push(format!(
            "event flow {flow:?} proto {}, expected {:?} proto 6",
            event.flow.proto, expected.flow
        ));
    }
    problems
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

#[derive(Default)]
struct Tally {
    cases: usize,
    split: usize,
    segments: usize,
    multi_record: usize,
    records: usize,
    names_cut: usize,
    ipv6: usize,
    vlan: usize,
    jumbo: usize,
    banned: usize,
    no_sni: usize,
    tail_decoys: usize,
    disagreements: usize,
    /// Cases that disagree, by what part of the program's answer differs.
    kinds: std::collections::BTreeMap<&'static str, usize>,
}

impl Tally {
    fn count(&mut self, case: &Case, expected: &Expected) {
        self.segments += case.frames.len();
        self.split += usize::from(case.frames.len() > 1);
        self.ipv6 += usize::from(case.v6);
        self.vlan += usize::from(case.vlans > 0);
        self.jumbo += usize::from(case.mss == JUMBO_MSS);
        self.no_sni += usize::from(case.names.is_empty());
        self.tail_decoys += usize::from(case.tail_decoy);
        self.records += expected.records;
        self.multi_record += usize::from(expected.records > 1);
        self.names_cut += usize::from(expected.name_cut);
        self.banned += usize::from(expected.reason == Reason::HelloBlocked);
    }

    fn disagree(&mut self, problems: &[String]) {
        self.disagreements += 1;
        let kinds: BTreeSet<&str> = problems.iter().map(|p| kind(p)).collect();
        for k in kinds {
            *self.kinds.entry(k).or_default() += 1;
        }
    }

    fn summary(&self, seconds: f64) -> String {
        let kinds = if self.kinds.is_empty() {
            String::new()
        } else {
            let kinds: Vec<String> = self.kinds.iter().map(|(k, n)| format!("{k} {n}")).collect();
            format!(" ({})", kinds.join(", "))
        };
        format!(
            "differential: {} cases, {} split hellos ({} segments), {} records ({} hellos in \
             several), {} names cut across segments, {} IPv6, {} VLAN-tagged, {} jumbo, {} banned, \
             {} without SNI, {} tail decoys, {} disagreements{kinds}, {seconds:.1} s",
            self.cases,
            self.split,
            self.segments,
            self.records,
            self.multi_record,
            self.names_cut,
            self.ipv6,
            self.vlan,
            self.jumbo,
            self.banned,
            self.no_sni,
            self.tail_decoys,
            self.disagreements,
        )
    }
}

/// What part of the program's answer a problem is about, for the summary.
fn kind(problem: &str) -> &'static str {
    if ["last frame", "frame actions", "data after"]
        .iter()
        .any(|p| problem.starts_with(p))
    {
        "verdict"
    } else if problem.starts_with("counters") {
        "counters"
    } else if problem.starts_with("event flags") {
        "event flags"
    } else if problem.starts_with("event flow") {
        "event flow"
    } else if problem.starts_with("the test's own") {
        "test parsers"
    } else {
        "events"
    }
}

/// The program loaded with the test's rules, every judged hello traced; and the banned
/// app's id.
fn differential_filter() -> (Filter, u16) {
    let config = Config::parse(Path::new("/nonexistent/differential.toml"), RULES)
        .expect("differential config");
    let set = RuleSet::compile(&config).expect("differential rules");
    let banned_app = set
        .apps
        .iter()
        .position(|a| a.name == "tiktok")
        .expect("the banned app") as u16;
    let mut filter = Filter::load_for(&config).expect("the program loads (run as root)");
    filter.install(&set).expect("rules install");
    filter.set_trace_all(true).expect("trace_all");
    (filter, banned_app)
}

/// The two ways the program reads a hello: the fast path where it can (as deployed), and
/// the walker alone. Every case runs through both, each with maps of its own.
fn both_paths() -> ([(&'static str, Filter); 2], u16) {
    let (fast, banned_app) = differential_filter();
    let (mut walker, _) = differential_filter();
    walker.set_walker_only(true).expect("walker_only");
    ([("fast path", fast), ("walker only", walker)], banned_app)
}

/// What one path did with a case's frames: the action of each, the reasons and notes that
/// moved, and its events without their times.
#[derive(Debug, PartialEq, Eq)]
struct Observed {
    actions: Vec<u32>,
    reasons: Vec<(Reason, u64)>,
    notes: Vec<u64>,
    events: Vec<String>,
}

fn observe(filter: &mut Filter, frames: &[&Vec<u8>]) -> Result<Observed, String> {
    let _ = filter.drain_events();
    let before = filter.counters().expect("counters readable");
    let notes_before = filter.notes().expect("notes readable");
    let mut actions = Vec::new();
    for frame in frames {
        actions.push(
            filter
                .run_frame(frame)
                .map_err(|e| format!("the program failed: {e}"))?,
        );
    }
    let after = filter.counters().expect("counters readable");
    let notes_after = filter.notes().expect("notes readable");
    let reasons = (0..REASON_COUNT)
        .filter_map(|r| {
            let delta = after[r as usize].packets - before[r as usize].packets;
            (delta != 0).then(|| (reason_from_u32(r), delta))
        })
        .collect();
    // Which path read the hello is the one thing allowed to differ.
    let notes = notes_after
        .iter()
        .zip(&notes_before)
        .enumerate()
        .filter(|(i, _)| *i != Note::HelloReadFast as usize)
        .map(|(_, (a, b))| a - b)
        .collect();
    let events = filter
        .drain_events()
        .expect("events readable")
        .iter()
        .map(describe_event)
        .collect();
    Ok(Observed {
        actions,
        reasons,
        notes,
        events,
    })
}

#[test]
fn program_agrees_with_independent_parsers() {
    let started = Instant::now();
    let (mut paths, banned_app) = both_paths();
    for (_, filter) in &mut paths {
        let _ = filter.drain_events().expect("events readable");
    }

    let only = std::env::var("SNI_FILTER_DIFF_SEED").ok().map(|s| {
        let s = s.trim();
        s.strip_prefix("0x")
            .map_or_else(|| s.parse(), |h| u64::from_str_radix(h, 16))
            .expect("SNI_FILTER_DIFF_SEED: a number")
    });
    let cases = std::env::var("SNI_FILTER_DIFF_CASES")
        .ok()
        .map_or(CASES, |n| {
            n.trim().parse().expect("SNI_FILTER_DIFF_CASES: a number")
        });
    let mut seeds = SmallRng::seed_from_u64(MASTER_SEED);
    let seeds: Vec<u64> = match only {
        Some(seed) => vec![seed],
        None => (0..cases).map(|_| seeds.next_u64()).collect(),
    };

    let mut tally = Tally::default();
    // Each seed twice: as drawn, and whole in one record (most of those take the fast path).
    let shaped = seeds.iter().flat_map(|&seed| [(seed, false), (seed, true)]);
    for (i, (seed, whole)) in shaped.enumerate() {
        // Distinct ports, and past 2^16 cases distinct random addresses, keep flows apart.
        let case = generate_shaped(seed, FIRST_PORT.wrapping_add(i as u16), whole);
        if only.is_some() {
            println!("case {seed:#018x}: {}", case.describe());
            for (n, frame) in case.frames.iter().enumerate() {
                println!("frame {n}: {}", hex(frame));
            }
            println!("data after the hello: {}", hex(&case.after));
        }
        tally.cases += 1;
        let problems = match oracle(&case, banned_app) {
            Ok(expected) => {
                tally.count(&case, &expected);
                // Each path must agree with the parsers, and so with the other.
                paths
                    .iter_mut()
                    .flat_map(|(path, filter)| {
                        run_case(filter, &case, &expected)
                            .into_iter()
                            .map(move |p| format!("{path}: {p}"))
                    })
                    .collect()
            }
            Err(e) => vec![format!("the test's own parsers failed: {e}")],
        };
        if !problems.is_empty() {
            tally.disagree(&problems);
            println!(
                "case {i} seed {seed:#018x}{}: {}\n    ({})",
                if whole { " (whole)" } else { "" },
                problems.join("\n    "),
                case.describe()
            );
        }
    }
    println!("{}", tally.summary(started.elapsed().as_secs_f64()));
    let fast = paths[0].1.notes().expect("notes readable")[Note::HelloReadFast as usize];
    println!("{fast} of the hellos took the fast path");
    // Of the whole hellos, those above the MSS, with several names or with a decoy are
    // split or handed over: about 40 % remain.
    assert!(
        only.is_some() || fast >= seeds.len() as u64 / 4,
        "the fast path read {fast} of {} cases: the comparison would test little",
        2 * seeds.len()
    );
    assert_eq!(
        tally.disagreements, 0,
        "of {} cases, some disagree (each printed above with its seed)",
        tally.cases,
    );
}

/// Mutated cases by default; `SNI_FILTER_FUZZ_CASES` runs more.
const FUZZ_CASES: u64 = 400;
const FUZZ_SEED: u64 = 0xf022_5eed_0000_0001;
/// Mutated cases take ports from here (the generated ones from `FIRST_PORT`).
const FUZZ_FIRST_PORT: u16 = 30_000;

/// Where a frame's TCP payload starts (its length when the frame no longer parses).
fn payload_offset(frame: &[u8]) -> usize {
    parse_frame(frame).map_or(frame.len(), |(_, _, _, p)| {
        p.as_ptr() as usize - frame.as_ptr() as usize
    })
}

/// One mutation of a case's frames, as a fuzzer would make it, and whether a sender could
/// put the result on the wire as it is (payload bytes changed, frames repeated, reordered
/// or lost: yes; headers broken, lengths that no longer agree: no, a receiver drops those).
fn mutate(rng: &mut SmallRng, frames: &mut Vec<Vec<u8>>) -> (String, bool) {
    let i = rng.gen_range(0..frames.len());
    let payload = payload_offset(&frames[i]).min(frames[i].len().saturating_sub(1));
    match rng.gen_range(0..8) {
        0 => {
            let n = rng.gen_range(1..=8);
            for _ in 0..n {
                let at = rng.gen_range(payload..frames[i].len());
                frames[i][at] ^= 1 << rng.gen_range(0..8);
            }
            (format!("{n} payload bits flipped in frame {i}"), true)
        }
        1 => {
            // Anywhere: Ethernet, VLAN, IP and TCP headers too.
            let n = rng.gen_range(1..=4);
            for _ in 0..n {
                let at = rng.gen_range(0..frames[i].len());
                frames[i][at] ^= 1 << rng.gen_range(0..8);
            }
            (format!("{n} bits flipped anywhere in frame {i}"), false)
        }
        2 => {
            let at = rng.gen_range(14..frames[i].len().max(15));
            frames[i].truncate(at);
            (format!("frame {i} cut at {at}"), false)
        }
        3 => {
            let f = frames[i].clone();
            frames.insert(i, f);
            (format!("frame {i} twice"), true)
        }
        4 if frames.len() > 1 => {
            let j = (i + 1) % frames.len();
            frames.swap(i, j);
            (format!("frames {i} and {j} swapped"), true)
        }
        5 if frames.len() > 1 => {
            frames.remove(i);
            (format!("frame {i} lost"), true)
        }
        6 => {
            // The IP and TCP lengths no longer agree with the frame.
            let at = rng.gen_range(payload..=frames[i].len());
            frames[i].insert(at, rng.r#gen::<u8>());
            (format!("a byte inserted in frame {i} at {at}"), false)
        }
        _ => {
            // A length field of the hello set to an extreme.
            let at = rng.gen_range(payload..frames[i].len());
            frames[i][at] = if rng.r#gen::<bool>() { 0xff } else { 0 };
            (
                format!("payload byte {at} of frame {i} set to an extreme"),
                true,
            )
        }
    }
}

/// What the program counted for a mutated case, and the case (`SNI_FILTER_FUZZ_ONLY`).
fn show_mutated(
    filter: &Filter,
    before: &[filter_common::Counter],
    case: &Case,
    mutations: &[String],
) {
    let after = filter.counters().expect("counters");
    for r in Reason::ALL {
        let d = after[r as usize].packets - before[r as usize].packets;
        if d > 0 {
            println!("{}: {d}", r.name());
        }
    }
    println!("mutations: {mutations:?}; {}", case.describe());
    for (n, frame) in case.frames.iter().enumerate() {
        println!("frame {n}: {}", hex(frame));
    }
}

/// Mutated packets and packet sequences through the real program: it never fails (an error
/// or an action other than pass, drop or transmit), never counts an internal error, and
/// where the mutation left frames a sender could send with a hello the independent parsers
/// still read with a banned name, the program dropped some frame of it.
#[test]
fn mutated_packets_never_fail_the_program_nor_pass_a_banned_hello_still_readable() {
    let started = Instant::now();
    let (mut filter, banned_app) = differential_filter();
    let (mut walker, _) = differential_filter();
    walker.set_walker_only(true).expect("walker_only");
    let cases = std::env::var("SNI_FILTER_FUZZ_CASES")
        .ok()
        .map_or(FUZZ_CASES, |n| {
            n.trim().parse().expect("SNI_FILTER_FUZZ_CASES: a number")
        });
    // SNI_FILTER_FUZZ_ONLY=N: only case N, with what the program counted.
    let only: Option<u64> = std::env::var("SNI_FILTER_FUZZ_ONLY").ok().map(|n| {
        n.trim()
            .parse()
            .expect("SNI_FILTER_FUZZ_ONLY: a case number")
    });
    let mut rng = SmallRng::seed_from_u64(FUZZ_SEED);
    let (mut frames_run, mut still_readable, mut stricter, mut failures) =
        (0usize, 0usize, 0usize, Vec::new());
    for i in 0..cases {
        let seed = rng.next_u64();
        // Every other case whole in one record, so that mutations reach the fast path too.
        let mut case = generate_shaped(seed, FUZZ_FIRST_PORT.wrapping_add(i as u16), i % 2 == 1);
        let mut mrng = SmallRng::seed_from_u64(seed);
        let (mutations, sendable): (Vec<String>, Vec<bool>) = (0..mrng.gen_range(1..=3))
            .map(|_| mutate(&mut mrng, &mut case.frames))
            .unzip();
        let sendable = sendable.iter().all(|&s| s);
        if only.is_some_and(|n| n != i) {
            continue;
        }
        // The walker alone must do exactly what the fast path and the walker did.
        let frames: Vec<&Vec<u8>> = case.frames.iter().chain([&case.after]).collect();
        let by_walker = observe(&mut walker, &frames);
        let internal = Reason::InternalError as usize;
        let all_before = filter.counters().expect("counters");
        let before = all_before[internal].packets;
        let _ = filter.drain_events();
        let mut problems = Vec::new();
        frames_run += frames.len();
        let observed = observe(&mut filter, &frames);
        let actions = match &observed {
            Ok(o) => o.actions.clone(),
            Err(e) => {
                problems.push(e.clone());
                Vec::new()
            }
        };
        if let Some(action) = actions.iter().find(|a| !(1..=3).contains(*a)) {
            problems.push(format!("action {action}"));
        }
        if observed != by_walker {
            problems.push(format!(
                "the paths differ: fast path {observed:?}, walker only {by_walker:?}"
            ));
        }
        // Where the parsers still read a hello with a banned name, some frame of it must
        // have been dropped. Header bits the parsers do not model (TCP flags, lengths) may
        // make the program stricter than they are: counted, not a finding.
        if let (true, Ok(expected)) = (sendable, oracle(&case, banned_app))
            && expected.record_major_max < 0x10
        {
            still_readable += 1;
            let banned = expected
                .frames
                .iter()
                .any(|(_, r)| *r == Reason::HelloBlocked);
            let dropped = actions
                .iter()
                .take(case.frames.len())
                .any(|&a| a == XDP_DROP);
            if banned && !dropped {
                problems.push(format!(
                    "a banned hello the parsers read passed: actions {actions:?}, expected {:?}",
                    expected.frames
                ));
            } else if !banned && dropped {
                stricter += 1;
            }
        }
        if only.is_some() {
            show_mutated(&filter, &all_before, &case, &mutations);
        }
        if filter.counters().expect("counters")[internal].packets != before {
            problems.push("internal_error counted".into());
        }
        if !problems.is_empty() {
            failures.push(format!(
                "case {i} seed {seed:#018x} ({}): {}",
                mutations.join(", "),
                problems.join("; ")
            ));
        }
    }
    println!(
        "{cases} mutated cases ({frames_run} frames, {still_readable} sendable and still readable by the independent parsers, {stricter} of them dropped where the parsers saw no banned name) in {:.1} s: {} findings",
        started.elapsed().as_secs_f64(),
        failures.len()
    );
    for f in &failures {
        println!("{f}");
    }
    assert!(
        failures.is_empty(),
        "{} findings (printed above)",
        failures.len()
    );
}

//! The generator of cases: from a seed, a hello (base shape, names, ECH, extra extensions
//! and padding at random), its TLS records and the cuts into TCP segments, and the flow it
//! goes on (addresses, VLAN tags, port, sequence number), with the data that follows it.

use std::{
    collections::BTreeSet,
    net::{Ipv4Addr, Ipv6Addr},
};

use rand::{Rng, RngCore, SeedableRng, rngs::SmallRng};
use sni_filter_lab::hello::{
    ClientHelloBuilder, IpPair, Link, RECORD_FRAGMENT_MAX, SniPosition, TcpSegment, VlanTag, ext,
    find, tls_records,
};

use super::names::pick_names;

/// TCP payload of a 1500-byte MTU (IPv4 and TCP headers without options), and of a
/// 9000-byte jumbo frame.
pub const MSS: usize = 1460;
pub const JUMBO_MSS: usize = 8960;

/// Segments a hello may span and still be read (the program's `HELLO_SEGMENTS_MAX`): the cases
/// stay within it, as they stay within the MSS, so that every one of them is inspectable.
pub const SEGMENTS_MAX: usize = filter_common::hello::HELLO_SEGMENTS_MAX as usize;

/// Extension types the generator must not pick for random bodies: tls-parser decodes
/// 0x0000-0x00ff and `next_protocol_negotiation` (0x3374) by their content, ALPS is in the
/// Chrome-like hellos already, and ECH is set by the case itself.
pub const RESERVED_TYPES: [u16; 3] = [
    0x3374,
    ext::APPLICATION_SETTINGS,
    ext::ENCRYPTED_CLIENT_HELLO,
];

/// One generated case; all of it follows from its seed (and the client port).
pub struct Case {
    /// The names put into the hello, in order (the oracle reads them back from the bytes).
    pub names: Vec<String>,
    pub ech: bool,
    pub hello_len: usize,
    pub record_size: usize,
    pub mss: usize,
    /// Offsets in the TCP stream where one segment ends and the next starts.
    pub cuts: Vec<usize>,
    pub tail_decoy: bool,
    pub v6: bool,
    pub vlans: usize,
    pub frames: Vec<Vec<u8>>,
    /// The client's next flight, after the hello: `ChangeCipherSpec` and application data.
    pub after: Vec<u8>,
}

impl Case {
    pub fn describe(&self) -> String {
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
pub fn generate_shaped(seed: u64, sport: u16, whole: bool) -> Case {
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
pub fn build_hello(
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
pub fn cut_up(
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
pub fn random_flow(rng: &mut SmallRng, sport: u16) -> (TcpSegment, bool, usize) {
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

pub fn unknown_type(rng: &mut SmallRng) -> u16 {
    loop {
        let kind = rng.gen_range(0x0100..=0xfeff);
        if !RESERVED_TYPES.contains(&kind) {
            return kind;
        }
    }
}

/// Random bytes, or a body shaped like a `server_name` extension for a banned name.
pub fn extension_body(rng: &mut SmallRng) -> Vec<u8> {
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
pub fn record_size(rng: &mut SmallRng) -> usize {
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
pub fn name_offsets(hello: &[u8], names: &[String]) -> Vec<(usize, usize)> {
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
pub fn within_mss(cuts: &BTreeSet<usize>, len: usize, mss: usize) -> Vec<usize> {
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

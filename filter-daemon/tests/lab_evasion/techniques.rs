//! The table of evasion techniques: each a name, the IP version and the session it puts on
//! the wire, from one segment (the controls) through splits, overlaps, fakes, urgent data,
//! record games, fragments and extension headers to combinations.

use sni_filter_lab::{
    craft::{EXT_DEST_OPTS, EXT_HOP_BY_HOP, Segment, Session, flags},
    hello::{tls_record_list, tls_records},
};

use super::hellos::{
    Hellos, WAIT, chunks, fake_first, fragmented, session, split, with_record_version,
};

/// What a technique sends, given the banned name's hello records and a fake one.
pub struct Technique {
    pub name: &'static str,
    pub ipv6: bool,
    pub plan: fn(&Hellos) -> Session,
}

pub const TECHNIQUES: &[Technique] = &[
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

//! The test's own reading of a case: the frames' headers by etherparse, the hello by
//! tls-parser, and from them the verdict, counters and event the program must come to.

use etherparse::{NetSlice, SlicedPacket, TransportSlice, VlanSlice};
use filter_common::{EVENT_ECH, EVENT_SNI_LATER_SEGMENT, Event, EventAction, NO_APP, Reason};
use sni_filter_lab::hello::ext;
use tls_parser::{
    SNIType, TlsExtension, TlsExtensionType, TlsMessage, TlsMessageHandshake, TlsRecordType,
    parse_tls_client_hello_extensions, parse_tls_message_handshake, parse_tls_raw_record,
};

use super::BANNED;
use super::common::program::{XDP_DROP, XDP_PASS};
use super::generate::Case;

/// A flow as the event reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Flow {
    pub saddr: [u8; 16],
    pub daddr: [u8; 16],
    pub sport: u16,
    pub dport: u16,
    pub family: u8,
}

impl Flow {
    pub fn of_event(e: &Event) -> Self {
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
pub struct Expected {
    /// Per frame of the hello, and for the data after it: the action and the counter it
    /// goes to.
    pub frames: Vec<(u32, Reason)>,
    pub after: (u32, Reason),
    /// The reason, action, app and name of the one event.
    pub reason: Reason,
    pub action: EventAction,
    pub app: u16,
    pub sni: Vec<u8>,
    /// `EVENT_*` bits that must be set, and those that may be either.
    pub flags: u8,
    pub flags_either: u8,
    pub flow: Flow,
    pub records: usize,
    /// A name's bytes span two segments.
    pub name_cut: bool,
    /// The highest record-layer major version in the hello: at 0x10 and above no TLS server
    /// reads the record (OpenSSL wants 3, Go's crypto/tls anything below 0x1000), while
    /// tls-parser does not look.
    pub record_major_max: u8,
}

/// A name is banned when, ASCII-lowercased and without one trailing dot, it is the banned
/// domain or ends with a dot and the banned domain.
pub fn banned(name: &[u8]) -> bool {
    let lower = name.to_ascii_lowercase();
    let name = lower.strip_suffix(b".").unwrap_or(&lower);
    name == BANNED || (name.ends_with(BANNED) && name[..name.len() - BANNED.len()].ends_with(b"."))
}

/// A frame's flow, VLAN tags, TCP sequence number and payload, by etherparse.
pub fn parse_frame(frame: &[u8]) -> Result<(Flow, usize, u32, &[u8]), String> {
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
pub fn oracle(case: &Case, banned_app: u16) -> Result<Expected, String> {
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

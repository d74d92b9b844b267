//! Ethernet, VLAN, IPv4, IPv6 (with extension headers) and TCP headers, parsed with a
//! cursor: each `parse_*` checks bounds, advances the cursor and says what comes next.

use aya_ebpf::{macros::map, maps::PerCpuArray, programs::XdpContext};
use filter_common::{
    FlowKey, Note, Reason,
    wire::{
        ETHERTYPE_QINQ, ETHERTYPE_VLAN, IPPROTO_AH, IPPROTO_DSTOPTS, IPPROTO_FRAGMENT,
        IPPROTO_HOPOPTS, IPPROTO_ROUTING, IPPROTO_TCP, IPPROTO_UDP, TCP_ACK, TCP_FIN, TCP_RST,
        TCP_SYN, TCP_URG,
    },
};

/// Bound of header offsets that went through map memory: far above Ethernet, two tags, IPv6,
/// six extension headers and TCP with options in any real packet.
pub const HEADERS_LEN_MAX: usize = 4096;

/// VLAN tags walked: 802.1ad QinQ carries at most an outer S-tag and an inner C-tag.
const VLAN_MAX_DEPTH: usize = 2;

/// IPv6 extension headers walked. RFC 8200 §4.1 recommends at most one of each (two
/// destination options): hop-by-hop, destination, routing, fragment, AH, destination
/// makes six; a longer chain is uninspectable rather than waved through.
const IPV6_EXT_MAX_CHAIN: usize = 6;

use filter_common::wire::{ETH_HLEN, IPV4_HLEN_MIN, IPV6_HLEN, TCP_HLEN_MIN, UDP_HLEN, VLAN_HLEN};

/// Offset of the next unparsed byte from the start of the frame.
pub struct Cursor {
    pub off: usize,
}

impl Cursor {
    pub const fn new() -> Self {
        Self { off: 0 }
    }
}

/// What the IP header says follows it. `end` is where the IP packet ends, which may be
/// before the frame's end (Ethernet pads short frames).
pub enum L4 {
    /// `first_fragment`: the packet is the first fragment of a fragmented datagram.
    Tcp {
        end: usize,
        first_fragment: bool,
    },
    /// `first_fragment` as for TCP.
    Udp {
        end: usize,
        first_fragment: bool,
    },
    Other,
    /// A non-first fragment: no transport header to read.
    Fragment,
}

/// The TCP header fields the program uses, and where the payload lies.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Tcp {
    /// Offset of the IP header from the start of the frame (for `reject`).
    pub ip_offset: usize,
    /// The innermost VLAN ID, 0 without tags (for apps scoped to VLANs).
    pub vlan: u16,
    /// Offset of the TCP header.
    pub offset: usize,
    pub seq: u32,
    pub ack: u32,
    pub flags: u8,
    pub payload_offset: usize,
    pub payload_len: usize,
}

impl Tcp {
    pub fn syn(&self) -> bool {
        self.flags & TCP_SYN != 0
    }

    /// A SYN without ACK: the client opening a connection.
    pub fn opens(&self) -> bool {
        self.flags & (TCP_SYN | TCP_ACK) == TCP_SYN
    }

    pub fn urgent(&self) -> bool {
        self.flags & TCP_URG != 0
    }

    pub fn fin_or_rst(&self) -> bool {
        self.flags & (TCP_FIN | TCP_RST) != 0
    }

    /// Sequence number of the first payload byte: a SYN takes one before its data (TFO).
    pub fn data_seq(&self) -> u32 {
        self.seq.wrapping_add(u32::from(self.syn()))
    }
}

#[map(name = "TCP_SEEN")]
static TCP_SEEN: PerCpuArray<Tcp> = PerCpuArray::with_max_entries(1, 0);

/// Passes the parsed header through map memory, whose contents the verifier does not track.
/// Each path through the headers (VLAN tags, IPv4 options, IPv6 extension headers) leaves
/// offsets with different known ranges, and the verifier would check everything after
/// once per combination; past this point it checks it once. Every later use of an offset
/// is checked at run time (packet bounds, `bpf_xdp_load_bytes`).
#[inline(always)]
pub fn launder(tcp: Tcp) -> Option<&'static Tcp> {
    let slot = TCP_SEEN.get_ptr_mut(0)?;
    // SAFETY: a per-CPU value, used by this CPU only while this packet is judged.
    unsafe {
        slot.write(tcp);
        Some(&*slot)
    }
}

/// The header the packet's header program laundered, for the judging program.
#[inline(always)]
pub fn laundered() -> Option<&'static Tcp> {
    // SAFETY: a per-CPU value, written by `launder` for this packet before the tail call.
    TCP_SEEN.get_ptr(0).map(|p| unsafe { &*p })
}

/// A UDP payload's offset and length passed through map memory (as `launder` passes a TCP
/// header) and checked on the way back: the verifier then knows their bound, not their
/// value, and checks what follows once instead of once per way through the headers.
#[inline(always)]
pub fn launder_offsets(offset: usize, len: usize) -> Result<(usize, usize), Reason> {
    let slot = OFFSETS.get_ptr_mut(0).ok_or(Reason::InternalError)?;
    // SAFETY: a per-CPU value, used by this CPU only while this packet is parsed; volatile
    // so that the values are read back from memory.
    let (offset, len) = unsafe {
        (&raw mut (*slot)[0]).write_volatile(offset as u64);
        (&raw mut (*slot)[1]).write_volatile(len as u64);
        (
            (&raw const (*slot)[0]).read_volatile() as usize,
            (&raw const (*slot)[1]).read_volatile() as usize,
        )
    };
    // Inside one IP packet, up to an IPv6 jumbogram's 64 KiB.
    if offset > IP_END_MAX || len > IP_END_MAX {
        return Err(Reason::HeaderMalformed);
    }
    Ok((offset, len))
}

/// Above the end of any IP packet a frame holds: 14 + 8 bytes of Ethernet and tags and
/// 65535 + 40 of IPv6 (RFC 8200 §3's payload length).
const IP_END_MAX: usize = 1 << 17;

#[map(name = "OFFSETS")]
static OFFSETS: PerCpuArray<[u64; 2]> = PerCpuArray::with_max_entries(1, 0);

/// A pointer to `N` bytes at `off`, if they are inside the packet's linear part.
#[inline(always)]
pub fn bytes_at<const N: usize>(ctx: &XdpContext, off: usize) -> Result<&[u8; N], Reason> {
    let start = ctx.data();
    let end = ctx.data_end();
    if start + off + N > end {
        return Err(Reason::HeaderMalformed);
    }
    // SAFETY: the bounds check above keeps the N bytes inside the packet.
    Ok(unsafe { &*((start + off) as *const [u8; N]) })
}

#[inline(always)]
fn be16(b: [u8; 2]) -> u16 {
    u16::from_be_bytes(b)
}

/// What the Ethernet header and its VLAN tags say.
pub struct Ethernet {
    /// The EtherType of the payload.
    pub proto: u16,
    /// VLAN tags walked.
    pub tags: u8,
    /// The VLAN ID of the innermost tag; 0 without tags.
    pub vlan: u16,
}

/// Ethernet and up to [`VLAN_MAX_DEPTH`] VLAN tags.
#[inline(always)]
pub fn parse_ethernet(ctx: &XdpContext, cur: &mut Cursor) -> Result<Ethernet, Reason> {
    let eth = bytes_at::<ETH_HLEN>(ctx, cur.off)?;
    let mut proto = be16([eth[12], eth[13]]);
    cur.off += ETH_HLEN;
    let mut tags = 0;
    let mut vlan = 0;
    for _ in 0..VLAN_MAX_DEPTH {
        if proto != ETHERTYPE_VLAN && proto != ETHERTYPE_QINQ {
            break;
        }
        let tag = bytes_at::<VLAN_HLEN>(ctx, cur.off)?;
        vlan = be16([tag[0], tag[1]]) & 0x0fff;
        proto = be16([tag[2], tag[3]]);
        cur.off += VLAN_HLEN;
        tags += 1;
    }
    Ok(Ethernet { proto, tags, vlan })
}

#[inline(always)]
fn l4_of(proto: u8, end: usize, first_fragment: bool) -> L4 {
    match proto {
        IPPROTO_TCP => L4::Tcp {
            end,
            first_fragment,
        },
        IPPROTO_UDP => L4::Udp {
            end,
            first_fragment,
        },
        _ => L4::Other,
    }
}

#[inline(always)]
pub fn parse_ipv4(ctx: &XdpContext, cur: &mut Cursor, flow: &mut FlowKey) -> Result<L4, Reason> {
    let ip = bytes_at::<IPV4_HLEN_MIN>(ctx, cur.off)?;
    let ihl = ((ip[0] & 0x0f) as usize) * 4;
    let total = be16([ip[2], ip[3]]) as usize;
    if ip[0] >> 4 != 4 || ihl < IPV4_HLEN_MIN || total < ihl {
        return Err(Reason::HeaderMalformed);
    }
    flow.family = 4;
    flow.proto = ip[9];
    flow.saddr[..4].copy_from_slice(&ip[12..16]);
    flow.daddr[..4].copy_from_slice(&ip[16..20]);
    let frag = be16([ip[6], ip[7]]);
    // Fragment offset in 8-byte units: a non-first fragment has no transport header.
    if frag & 0x1fff != 0 {
        return Ok(L4::Fragment);
    }
    let more_fragments = frag & 0x2000 != 0;
    let end = cur.off + total;
    cur.off += ihl;
    Ok(l4_of(ip[9], end, more_fragments))
}

#[inline(always)]
pub fn parse_ipv6(ctx: &XdpContext, cur: &mut Cursor, flow: &mut FlowKey) -> Result<L4, Reason> {
    let ip = bytes_at::<IPV6_HLEN>(ctx, cur.off)?;
    if ip[0] >> 4 != 6 {
        return Err(Reason::HeaderMalformed);
    }
    flow.family = 6;
    flow.saddr.copy_from_slice(&ip[8..24]);
    flow.daddr.copy_from_slice(&ip[24..40]);
    let payload = be16([ip[4], ip[5]]) as usize;
    let mut next = ip[6];
    cur.off += IPV6_HLEN;
    let end = cur.off + payload;
    let mut first_fragment = false;
    let mut walked = false;
    for _ in 0..IPV6_EXT_MAX_CHAIN {
        let len = match next {
            IPPROTO_HOPOPTS | IPPROTO_ROUTING | IPPROTO_DSTOPTS => {
                let h = bytes_at::<2>(ctx, cur.off)?;
                next = h[0];
                (h[1] as usize + 1) * 8
            }
            IPPROTO_AH => {
                let h = bytes_at::<2>(ctx, cur.off)?;
                next = h[0];
                (h[1] as usize + 2) * 4
            }
            IPPROTO_FRAGMENT => {
                let h = bytes_at::<4>(ctx, cur.off)?;
                next = h[0];
                let frag = be16([h[2], h[3]]);
                if frag & 0xfff8 != 0 {
                    counters_note_ext(walked);
                    return Ok(L4::Fragment);
                }
                first_fragment = frag & 1 != 0;
                8
            }
            _ => {
                counters_note_ext(walked);
                flow.proto = next;
                return Ok(l4_of(next, end, first_fragment));
            }
        };
        walked = true;
        cur.off += len;
    }
    counters_note_ext(walked);
    match next {
        IPPROTO_HOPOPTS | IPPROTO_ROUTING | IPPROTO_DSTOPTS | IPPROTO_AH | IPPROTO_FRAGMENT => {
            Err(Reason::UninspectableIpv6Chain)
        }
        _ => {
            flow.proto = next;
            Ok(l4_of(next, end, first_fragment))
        }
    }
}

#[inline(always)]
fn counters_note_ext(walked: bool) {
    if walked {
        crate::counters::note(Note::Ipv6ExtHeaders);
    }
}

/// Bytes of transport payload from `payload_offset` to the end of the IP packet or of the
/// frame (fragments of a multi-buffer frame included), whichever comes first.
#[inline(always)]
fn payload_len(ctx: &XdpContext, payload_offset: usize, ip_end: usize) -> Result<usize, Reason> {
    let linear = crate::counters::linear_len(ctx);
    // Only an IP packet longer than the linear part needs the fragments' length.
    let frame_end = if ip_end <= linear {
        linear
    } else {
        crate::counters::frame_len(ctx) as usize
    };
    let end = if ip_end < frame_end {
        ip_end
    } else {
        frame_end
    };
    if payload_offset > end {
        return Err(Reason::HeaderMalformed);
    }
    Ok(end - payload_offset)
}

/// The UDP header: fills the flow's ports, returns the payload's offset and length
/// (bounded by the IP length and the frame).
#[inline(always)]
pub fn parse_udp(
    ctx: &XdpContext,
    cur: &mut Cursor,
    ip_end: usize,
    flow: &mut FlowKey,
) -> Result<(usize, usize), Reason> {
    let udp = bytes_at::<UDP_HLEN>(ctx, cur.off)?;
    flow.sport = be16([udp[0], udp[1]]);
    flow.dport = be16([udp[2], udp[3]]);
    let payload_offset = cur.off + UDP_HLEN;
    let len = payload_len(ctx, payload_offset, ip_end)?;
    cur.off = payload_offset;
    Ok((payload_offset, len))
}

/// The TCP header; returns its fields and where its payload lies (bounded by the IP length).
#[inline(always)]
pub fn parse_tcp(
    ctx: &XdpContext,
    cur: &mut Cursor,
    ip_end: usize,
    flow: &mut FlowKey,
) -> Result<Tcp, Reason> {
    let tcp = bytes_at::<TCP_HLEN_MIN>(ctx, cur.off)?;
    flow.sport = be16([tcp[0], tcp[1]]);
    flow.dport = be16([tcp[2], tcp[3]]);
    let doff = ((tcp[12] >> 4) as usize) * 4;
    if doff < TCP_HLEN_MIN {
        return Err(Reason::HeaderMalformed);
    }
    let offset = cur.off;
    let payload_offset = cur.off + doff;
    let payload_len = payload_len(ctx, payload_offset, ip_end)?;
    cur.off = payload_offset;
    Ok(Tcp {
        ip_offset: 0,
        vlan: 0,
        offset,
        seq: u32::from_be_bytes([tcp[4], tcp[5], tcp[6], tcp[7]]),
        ack: u32::from_be_bytes([tcp[8], tcp[9], tcp[10], tcp[11]]),
        flags: tcp[13],
        payload_offset,
        payload_len,
    })
}

//! Ethernet, VLAN, IPv4, IPv6 and TCP headers, parsed with a cursor: each `parse_*` checks
//! bounds, advances the cursor and says what comes next.

use aya_ebpf::programs::XdpContext;
use filter_common::Reason;

pub const ETH_P_IP: u16 = 0x0800;
pub const ETH_P_IPV6: u16 = 0x86dd;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88a8;
const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;

/// VLAN tags walked: 802.1ad QinQ carries at most an outer S-tag and an inner C-tag.
const VLAN_MAX_DEPTH: usize = 2;

const ETH_HLEN: usize = 14;
const VLAN_HLEN: usize = 4;
const IPV4_HLEN_MIN: usize = 20;
const IPV6_HLEN: usize = 40;
const TCP_HLEN_MIN: usize = 20;

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
    Tcp {
        end: usize,
    },
    Udp,
    Other,
    /// A non-first fragment: no transport header to read.
    Fragment,
}

/// The TCP payload of the packet.
pub struct Payload {
    pub offset: usize,
    pub len: usize,
}

/// A pointer to `N` bytes at `off`, if they are inside the packet.
#[inline(always)]
fn bytes_at<const N: usize>(ctx: &XdpContext, off: usize) -> Result<&[u8; N], Reason> {
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

/// Ethernet and up to [`VLAN_MAX_DEPTH`] VLAN tags; returns the EtherType of the payload.
#[inline(always)]
pub fn parse_ethernet(ctx: &XdpContext, cur: &mut Cursor) -> Result<u16, Reason> {
    let eth = bytes_at::<ETH_HLEN>(ctx, cur.off)?;
    let mut proto = be16([eth[12], eth[13]]);
    cur.off += ETH_HLEN;
    for _ in 0..VLAN_MAX_DEPTH {
        if proto != ETH_P_8021Q && proto != ETH_P_8021AD {
            break;
        }
        let tag = bytes_at::<VLAN_HLEN>(ctx, cur.off)?;
        proto = be16([tag[2], tag[3]]);
        cur.off += VLAN_HLEN;
    }
    Ok(proto)
}

#[inline(always)]
pub fn parse_ipv4(ctx: &XdpContext, cur: &mut Cursor) -> Result<L4, Reason> {
    let ip = bytes_at::<IPV4_HLEN_MIN>(ctx, cur.off)?;
    let ihl = ((ip[0] & 0x0f) as usize) * 4;
    let total = be16([ip[2], ip[3]]) as usize;
    if ip[0] >> 4 != 4 || ihl < IPV4_HLEN_MIN || total < ihl {
        return Err(Reason::HeaderMalformed);
    }
    // Fragment offset in 8-byte units: a non-first fragment has no transport header.
    if be16([ip[6], ip[7]]) & 0x1fff != 0 {
        return Ok(L4::Fragment);
    }
    let proto = ip[9];
    let end = cur.off + total;
    cur.off += ihl;
    Ok(match proto {
        IPPROTO_TCP => L4::Tcp { end },
        IPPROTO_UDP => L4::Udp,
        _ => L4::Other,
    })
}

#[inline(always)]
pub fn parse_ipv6(ctx: &XdpContext, cur: &mut Cursor) -> Result<L4, Reason> {
    let ip = bytes_at::<IPV6_HLEN>(ctx, cur.off)?;
    if ip[0] >> 4 != 6 {
        return Err(Reason::HeaderMalformed);
    }
    let payload = be16([ip[4], ip[5]]) as usize;
    let next = ip[6];
    cur.off += IPV6_HLEN;
    let end = cur.off + payload;
    Ok(match next {
        IPPROTO_TCP => L4::Tcp { end },
        IPPROTO_UDP => L4::Udp,
        _ => L4::Other,
    })
}

/// The TCP header; returns where its payload lies (bounded by the IP length).
#[inline(always)]
pub fn parse_tcp(ctx: &XdpContext, cur: &mut Cursor, ip_end: usize) -> Result<Payload, Reason> {
    let tcp = bytes_at::<TCP_HLEN_MIN>(ctx, cur.off)?;
    let doff = ((tcp[12] >> 4) as usize) * 4;
    if doff < TCP_HLEN_MIN {
        return Err(Reason::HeaderMalformed);
    }
    let offset = cur.off + doff;
    let frame_end = ctx.data_end() - ctx.data();
    let end = if ip_end < frame_end {
        ip_end
    } else {
        frame_end
    };
    if offset > end {
        return Err(Reason::HeaderMalformed);
    }
    cur.off = offset;
    Ok(Payload {
        offset,
        len: end - offset,
    })
}

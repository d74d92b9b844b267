//! The bytes of the crafter's packets: IP packets of one TCP segment (IPv4 or IPv6, with
//! options, extension headers and checksums), IP fragments, and the server's segments and
//! session ids read back from the frames it answers with.

// Packet fields are built from lengths and offsets bounded by a frame's size.
#![allow(
    clippy::cast_possible_truncation,
    clippy::cast_possible_wrap,
    clippy::cast_sign_loss
)]

use std::net::IpAddr;

use anyhow::{Result, bail};

use super::{IPPROTO_TCP, IPV6_FRAGMENT, Segment};

/// The `legacy_session_id` of a hello record stream (as the crafter builds them: the
/// first record holds the start of the ClientHello).
pub fn client_hello_session(records: &[u8]) -> Option<Vec<u8>> {
    // record header 5, handshake header 4, version 2, random 32, then the length.
    let len = usize::from(*records.get(43)?);
    records.get(44..44 + len).map(<[u8]>::to_vec)
}

/// The session id a ServerHello echoes, once the server's stream holds it.
pub(super) fn server_hello_session(stream: &[u8]) -> Option<Vec<u8>> {
    if stream.len() < 44 || stream[0] != 0x16 || stream[5] != 0x02 {
        return None;
    }
    let len = usize::from(stream[43]);
    stream.get(44..44 + len).map(<[u8]>::to_vec)
}

pub(super) struct Received {
    pub(super) seq: u32,
    pub(super) flags: u8,
    pub(super) payload: Vec<u8>,
}

/// A TCP segment from the server to the client's `port`, from an Ethernet frame.
pub(super) fn parse_from_server(
    frame: &[u8],
    server: IpAddr,
    client: IpAddr,
    port: u16,
) -> Option<Received> {
    if frame.len() < 14 {
        return None;
    }
    let ethertype = u16::from_be_bytes([frame[12], frame[13]]);
    let ip = &frame[14..];
    let (l4, src, dst) = match ethertype {
        0x0800 if ip.len() >= 20 && ip[9] == IPPROTO_TCP => {
            let ihl = usize::from(ip[0] & 0x0f) * 4;
            let total = usize::from(u16::from_be_bytes([ip[2], ip[3]])).min(ip.len());
            let src = IpAddr::from(<[u8; 4]>::try_from(&ip[12..16]).ok()?);
            let dst = IpAddr::from(<[u8; 4]>::try_from(&ip[16..20]).ok()?);
            (ip.get(ihl..total)?, src, dst)
        }
        0x86dd if ip.len() >= 40 && ip[6] == IPPROTO_TCP => {
            let plen = usize::from(u16::from_be_bytes([ip[4], ip[5]]));
            let src = IpAddr::from(<[u8; 16]>::try_from(&ip[8..24]).ok()?);
            let dst = IpAddr::from(<[u8; 16]>::try_from(&ip[24..40]).ok()?);
            (ip.get(40..40 + plen)?, src, dst)
        }
        _ => return None,
    };
    if src != server || dst != client || l4.len() < 20 {
        return None;
    }
    if u16::from_be_bytes([l4[2], l4[3]]) != port || u16::from_be_bytes([l4[0], l4[1]]) != 443 {
        return None;
    }
    let doff = usize::from(l4[12] >> 4) * 4;
    Some(Received {
        seq: u32::from_be_bytes([l4[4], l4[5], l4[6], l4[7]]),
        flags: l4[13],
        payload: l4.get(doff..)?.to_vec(),
    })
}

pub(super) fn checksum_add(mut sum: u32, data: &[u8]) -> u32 {
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        sum += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [b] = chunks.remainder() {
        sum += u32::from(*b) << 8;
    }
    sum
}

pub(super) fn checksum_fold(mut sum: u32) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// The IP packet (IPv4 or IPv6 by the addresses) of one TCP segment.
pub(super) fn ip_packet(
    src: IpAddr,
    dst: IpAddr,
    sport: u16,
    seq: u32,
    ack: u32,
    seg: &Segment,
) -> Result<Vec<u8>> {
    let mut options = seg.options.clone();
    while !options.len().is_multiple_of(4) {
        options.push(0); // end of option list
    }
    let doff = 20 + options.len();
    let mut tcp = Vec::with_capacity(doff + seg.payload.len());
    tcp.extend_from_slice(&sport.to_be_bytes());
    tcp.extend_from_slice(&443u16.to_be_bytes());
    tcp.extend_from_slice(&seq.to_be_bytes());
    tcp.extend_from_slice(&ack.to_be_bytes());
    tcp.push(((doff / 4) as u8) << 4);
    tcp.push(seg.flags);
    tcp.extend_from_slice(&64240u16.to_be_bytes());
    tcp.extend_from_slice(&[0, 0]);
    tcp.extend_from_slice(&seg.urgent_pointer.to_be_bytes());
    tcp.extend_from_slice(&options);
    tcp.extend_from_slice(&seg.payload);
    let tcp_len = tcp.len() as u32;
    let mut sum = 0u32;
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            sum = checksum_add(sum, &s.octets());
            sum = checksum_add(sum, &d.octets());
            sum += u32::from(IPPROTO_TCP) + tcp_len;
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            sum = checksum_add(sum, &s.octets());
            sum = checksum_add(sum, &d.octets());
            sum += tcp_len + u32::from(IPPROTO_TCP);
        }
        _ => bail!("mixed address families"),
    }
    let mut c = checksum_fold(checksum_add(sum, &tcp));
    if seg.bad_checksum {
        c ^= 0x5a5a;
    }
    tcp[16..18].copy_from_slice(&c.to_be_bytes());
    Ok(match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let total = 20 + tcp.len();
            let mut ip = vec![0x45, 0];
            ip.extend_from_slice(&(total as u16).to_be_bytes());
            ip.extend_from_slice(&[0, 0, 0, 0]); // id, flags, fragment offset
            ip.push(seg.ttl);
            ip.push(IPPROTO_TCP);
            ip.extend_from_slice(&[0, 0]);
            ip.extend_from_slice(&s.octets());
            ip.extend_from_slice(&d.octets());
            let c = checksum_fold(checksum_add(0, &ip));
            ip[10..12].copy_from_slice(&c.to_be_bytes());
            ip.extend_from_slice(&tcp);
            ip
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            // Extension headers: each an 8-byte Hop-by-Hop or Destination Options header
            // with a PadN option; Hop-by-Hop may only come first.
            let mut ext = Vec::new();
            let kinds = &seg.ipv6_ext;
            for (i, _) in kinds.iter().enumerate() {
                let next = kinds.get(i + 1).copied().unwrap_or(IPPROTO_TCP);
                ext.extend_from_slice(&[next, 0, 1, 4, 0, 0, 0, 0]);
            }
            let first = kinds.first().copied().unwrap_or(IPPROTO_TCP);
            let mut ip = vec![0x60, 0, 0, 0];
            ip.extend_from_slice(&((ext.len() + tcp.len()) as u16).to_be_bytes());
            ip.push(first);
            ip.push(seg.ttl);
            ip.extend_from_slice(&s.octets());
            ip.extend_from_slice(&d.octets());
            ip.extend_from_slice(&ext);
            ip.extend_from_slice(&tcp);
            ip
        }
        _ => bail!("mixed address families"),
    })
}

/// Cuts an IP packet into two fragments, the first carrying `first` bytes (rounded up to
/// a multiple of 8) of what follows the fixed header (IPv6: the fragmentable part).
pub(super) fn fragments(packet: &[u8], ipv6: bool, first: usize, id: u32) -> Vec<Vec<u8>> {
    let first = first.div_ceil(8) * 8;
    if ipv6 {
        // Unfragmentable part: the fixed header (extension headers go in the fragments).
        let next = packet[6];
        let body = &packet[40..];
        let first = first.min(body.len());
        let mut out = Vec::new();
        for (offset, part, more) in [(0, &body[..first], true), (first, &body[first..], false)] {
            let mut ip = packet[..40].to_vec();
            ip[6] = IPV6_FRAGMENT;
            let plen = (8 + part.len()) as u16;
            ip[4..6].copy_from_slice(&plen.to_be_bytes());
            let off = ((offset / 8) as u16) << 3 | u16::from(more);
            ip.extend_from_slice(&[next, 0]);
            ip.extend_from_slice(&off.to_be_bytes());
            ip.extend_from_slice(&id.to_be_bytes());
            ip.extend_from_slice(part);
            out.push(ip);
        }
        return out;
    }
    let ihl = usize::from(packet[0] & 0x0f) * 4;
    let body = &packet[ihl..];
    let first = first.min(body.len());
    let mut out = Vec::new();
    for (offset, part, more) in [(0, &body[..first], true), (first, &body[first..], false)] {
        let mut ip = packet[..ihl].to_vec();
        let total = (ihl + part.len()) as u16;
        ip[2..4].copy_from_slice(&total.to_be_bytes());
        ip[4..6].copy_from_slice(&(id as u16).to_be_bytes());
        let frag = ((offset / 8) as u16) | if more { 0x2000 } else { 0 };
        ip[6..8].copy_from_slice(&frag.to_be_bytes());
        ip[10..12].copy_from_slice(&[0, 0]);
        let c = checksum_fold(checksum_add(0, &ip));
        ip[10..12].copy_from_slice(&c.to_be_bytes());
        ip.extend_from_slice(part);
        out.push(ip);
    }
    out
}

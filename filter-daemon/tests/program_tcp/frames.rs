//! Frame rewriters for what the hello builders do not make: TCP flags added, IPv4 options,
//! a tiny first IPv4 fragment, an IPv6 fragment header and IPv6 extension-header chains.

/// An IPv4 frame's TCP flags byte with `bits` added (checksums are not the program's
/// business).
pub fn with_tcp_flags(frame: &[u8], bits: u8) -> Vec<u8> {
    let mut f = frame.to_vec();
    f[14 + 20 + 13] |= bits;
    f
}

/// The first fragment (more fragments, offset 0) of an IPv4 frame, carrying only the first
/// 8 bytes of its TCP header.
pub fn tiny_first_fragment(frame: &[u8]) -> Vec<u8> {
    let mut f = frame[..14 + 20 + 8].to_vec();
    f[16..18].copy_from_slice(&28u16.to_be_bytes());
    f[20] = 0x20;
    f[21] = 0;
    f
}

/// Puts an IPv6 fragment header (offset in 8-byte units, more-fragments flag) in front of TCP.
pub fn with_ipv6_fragment(frame: &[u8], offset: u16, more: bool) -> Vec<u8> {
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
pub fn with_ipv6_extensions(frame: &[u8], count: usize) -> Vec<u8> {
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

/// Adds `words` 4-byte IPv4 options (NOP padding) to an untagged IPv4 frame.
pub fn with_ipv4_options(frame: &[u8], words: usize) -> Vec<u8> {
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

//! `reject`: turns the client's hello packet into a TCP RST from the server back to the
//! client, sent with `XDP_TX`, so the app fails at once instead of waiting and retrying.

use aya_ebpf::{helpers::generated::bpf_xdp_adjust_tail, programs::XdpContext};

use filter_common::wire::{IPPROTO_TCP, IPV6_HLEN, TCP_ACK, TCP_HLEN_MIN, TCP_RST};

use crate::headers::Tcp;

/// The reset's TCP header: no options.
const TCP_HLEN: usize = TCP_HLEN_MIN;
/// TTL / hop limit of the reset: a fresh packet from the server's side.
const RESET_TTL: u8 = 64;

/// A mutable pointer to `N` bytes at `off`, if they are inside the packet.
#[inline(always)]
// The context only locates the packet; the bytes written are the packet's, not the context's.
#[allow(clippy::mut_from_ref)]
fn bytes_mut<const N: usize>(ctx: &XdpContext, off: usize) -> Option<&mut [u8; N]> {
    // Offsets come through map memory (see `headers::launder`): bound them for the verifier.
    if off > crate::headers::HEADERS_LEN_MAX {
        return None;
    }
    let start = ctx.data();
    if start + off + N > ctx.data_end() {
        return None;
    }
    // SAFETY: bounds checked above; the program owns the packet while it runs.
    Some(unsafe { &mut *((start + off) as *mut [u8; N]) })
}

#[inline(always)]
fn fold(mut sum: u64) -> u16 {
    sum = (sum & 0xffff_ffff) + (sum >> 32);
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    !(sum as u16)
}

#[inline(always)]
fn sum_bytes(b: &[u8]) -> u64 {
    let mut s = 0u64;
    let mut i = 0;
    while i + 1 < b.len() {
        s += u64::from(u16::from_be_bytes([b[i], b[i + 1]]));
        i += 2;
    }
    s
}

/// Rewrites the packet into the RST; false if it cannot (then the caller just drops). A
/// function of its own, so that its locals are not in the frame of every verdict: the 6.1
/// verifier adds up the frames of a chain of calls against 512 bytes.
#[inline(never)]
pub fn answer_with_rst(ctx: &XdpContext, tcp: &Tcp) -> bool {
    let Some(eth) = bytes_mut::<12>(ctx, 0) else {
        return false;
    };
    let mut mac = [0u8; 6];
    mac.copy_from_slice(&eth[..6]);
    eth.copy_within(6..12, 0);
    eth[6..12].copy_from_slice(&mac);

    // The reset's sequence number is what the client expects next from the server (its
    // ACK field); its acknowledgement covers the client's data, so the client accepts it.
    let ack_client = tcp.data_seq().wrapping_add(tcp.payload_len as u32);
    let seq = if tcp.flags & TCP_ACK != 0 { tcp.ack } else { 0 };
    let Some(th) = bytes_mut::<TCP_HLEN>(ctx, tcp.offset) else {
        return false;
    };
    let (sport, dport) = ([th[0], th[1]], [th[2], th[3]]);
    th[0..2].copy_from_slice(&dport);
    th[2..4].copy_from_slice(&sport);
    th[4..8].copy_from_slice(&seq.to_be_bytes());
    th[8..12].copy_from_slice(&ack_client.to_be_bytes());
    th[12] = ((TCP_HLEN / 4) as u8) << 4;
    th[13] = TCP_RST | TCP_ACK;
    th[14..20].copy_from_slice(&[0; 6]);
    let tcp_sum = sum_bytes(&th[..]);

    let ip_offset = tcp.ip_offset;
    // 20 bytes, not 1: LLVM turns a 1-byte bound check into a form the verifier rejects.
    let Some(version) = bytes_mut::<20>(ctx, ip_offset) else {
        return false;
    };
    let pseudo = if version[0] >> 4 == 4 {
        let Some(ip) = bytes_mut::<20>(ctx, ip_offset) else {
            return false;
        };
        let ihl = ((ip[0] & 0x0f) as usize) * 4;
        if ip_offset + ihl != tcp.offset {
            return false;
        }
        // Swapping the addresses leaves the header checksum as it is; the words that change
        // (length, id, flags, TTL) are updated incrementally (RFC 1624), which also keeps
        // any IP options right without summing them.
        let mut addr = [0u8; 4];
        addr.copy_from_slice(&ip[12..16]);
        ip.copy_within(16..20, 12);
        ip[16..20].copy_from_slice(&addr);
        let old = sum_bytes(&ip[2..10]);
        let old_check = u16::from_be_bytes([ip[10], ip[11]]);
        ip[2..4].copy_from_slice(&((ihl + TCP_HLEN) as u16).to_be_bytes());
        ip[4..8].copy_from_slice(&[0, 0, 0x40, 0]); // id 0, don't fragment
        ip[8] = RESET_TTL;
        let new = sum_bytes(&ip[2..10]);
        // HC' = ~(~HC + ~m + m'), summed over the changed words (RFC 1624 eq. 3).
        let sum = u64::from(!old_check) + (0xffff * 4 - old) + new;
        ip[10..12].copy_from_slice(&fold(sum).to_be_bytes());
        sum_bytes(&ip[12..20]) + u64::from(IPPROTO_TCP) + TCP_HLEN as u64
    } else {
        let Some(ip) = bytes_mut::<IPV6_HLEN>(ctx, ip_offset) else {
            return false;
        };
        // Extension headers would have to be removed; such packets are dropped instead.
        if ip[6] != IPPROTO_TCP || ip_offset + IPV6_HLEN != tcp.offset {
            return false;
        }
        let mut addr = [0u8; 16];
        addr.copy_from_slice(&ip[8..24]);
        ip.copy_within(24..40, 8);
        ip[24..40].copy_from_slice(&addr);
        ip[4..6].copy_from_slice(&(TCP_HLEN as u16).to_be_bytes());
        ip[7] = RESET_TTL;
        sum_bytes(&ip[8..40]) + u64::from(IPPROTO_TCP) + TCP_HLEN as u64
    };
    let Some(th) = bytes_mut::<TCP_HLEN>(ctx, tcp.offset) else {
        return false;
    };
    th[16..18].copy_from_slice(&fold(tcp_sum + pseudo).to_be_bytes());

    // Cut the frame after the TCP header: the hello's bytes go nowhere.
    let keep = (tcp.offset + TCP_HLEN) as i64;
    let len = crate::counters::frame_len(ctx) as i64;
    // SAFETY: shrinking the frame; the program touches no packet pointer afterwards.
    unsafe { bpf_xdp_adjust_tail(ctx.ctx, (keep - len) as i32) == 0 }
}

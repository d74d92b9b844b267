//! QUIC as the program and the daemon share it: the Initials handed to the daemon and the
//! per-flow state that remembers its verdicts.

use crate::flows::FlowKey;

/// A client Initial handed to the daemon through `QUIC_INITIALS`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct QuicInitial {
    /// `bpf_ktime_get_ns` when the datagram arrived.
    pub ts_ns: u64,
    pub ifindex: u32,
    /// The innermost VLAN ID, 0 without tags.
    pub vlan: u16,
    /// The UDP payload's length, of which `data` holds the first `QUIC_COPY_MAX` bytes.
    pub len: u16,
    pub flow: FlowKey,
    pub data: [u8; QUIC_COPY_MAX],
}

/// Smallest UDP payload of a datagram carrying a client's Initial (RFC 9000 §14.1).
pub const QUIC_INITIAL_DATAGRAM_MIN: usize = 1200;

/// Bytes of a datagram copied to the daemon: above what clients send (1200 to 1472 bytes
/// on Ethernet paths); a longer Initial datagram is uninspectable.
pub const QUIC_COPY_MAX: usize = 2048;

/// Initials of one flow handed to the daemon before its verdict: a ClientHello spans one
/// to a few Initials (Chromium's post-quantum hello two), each retransmitted a few times.
pub const QUIC_INITIALS_PER_FLOW: u32 = 16;

/// The daemon's heartbeat older than this (nanoseconds) means no daemon judges QUIC.
pub const QUIC_HEARTBEAT_STALE_NS: u64 = 3_000_000_000;

/// Bytes of a connection ID as `QuicFlow` holds it: its length, the ID (at most 20 bytes in
/// QUIC versions 1 and 2, RFC 9000 §17.2), zeroes to the end.
pub const QUIC_CID_SLOT: usize = 24;

/// Longest connection ID of QUIC versions 1 and 2.
pub const QUIC_CID_MAX: usize = 20;

/// A connection ID as `QuicFlow` holds it; `None` for one longer than `QUIC_CID_MAX`.
pub fn quic_cid_slot(id: &[u8]) -> Option<[u8; QUIC_CID_SLOT]> {
    if id.len() > QUIC_CID_MAX {
        return None;
    }
    let mut slot = [0u8; QUIC_CID_SLOT];
    slot[0] = id.len() as u8;
    slot[1..=id.len()].copy_from_slice(id);
    Some(slot)
}

/// State of a QUIC flow in `QUIC_FLOWS` (an LRU map: losing an entry only means that the
/// flow's next Initials are handed on again).
#[repr(C, align(8))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct QuicFlow {
    /// Initials handed to the daemon since its last verdict on the flow.
    pub initials: u32,
    /// `QUIC_FLOW_*`.
    pub state: u32,
    /// With `QUIC_FLOW_ALLOWED`: the Destination Connection IDs of the allowed connection's
    /// Initials (the client's first choice, and the server's once the client uses it). An
    /// Initial under another ID is a new connection on the same ports, judged afresh: a client
    /// must not reach a banned name through the verdict on an allowed one.
    pub cids: [[u8; QUIC_CID_SLOT]; 2],
    /// When the daemon wrote the verdict (`CLOCK_MONOTONIC` ns). The client's own first ID
    /// counts only for `QUIC_FIRST_CID_NS` after it: a client chooses that ID, and one that
    /// reused it for a new connection later must not inherit the verdict. The server's ID
    /// the server chose: a new connection cannot take it.
    pub since_ns: u64,
}

/// How long after an allowed verdict Initials under the client's first connection ID pass:
/// far above a first flight's retransmissions (RFC 9002's PTO, doubling from 1 s at most).
pub const QUIC_FIRST_CID_NS: u64 = 10_000_000_000;

/// The daemon has not judged the flow yet.
pub const QUIC_FLOW_PENDING: u32 = 0;
/// The daemon judged the flow allowed: its Initials pass without being handed on.
pub const QUIC_FLOW_ALLOWED: u32 = 1;

/// Entries of `QUIC_FLOWS`.
pub const QUIC_FLOWS_MAX: u32 = 65536;

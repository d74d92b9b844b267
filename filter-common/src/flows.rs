//! A flow as the program keys it, and the blocked-flow and hello tables' entries and bounds
//! kept per flow.

/// Default bound of the blocked-flow table.
pub const VERDICTS_DEFAULT_MAX: u32 = 65536;

/// Default bound of the table of hellos being reassembled: hellos that span segments are a
/// few per second per thousand clients, and each lives a round trip.
pub const HELLOS_DEFAULT_MAX: u32 = 8192;

/// A TCP or UDP flow as the client sent it: addresses (IPv4 in the first 4 bytes), ports in
/// host order, address family (4 or 6) and IP protocol.
#[repr(C, align(8))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct FlowKey {
    pub saddr: [u8; 16],
    pub daddr: [u8; 16],
    pub sport: u16,
    pub dport: u16,
    pub family: u8,
    pub proto: u8,
    pub _pad: [u8; 2],
}

/// A flow judged blocked, in the `VERDICTS` table: its later packets are dropped.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct BlockedFlow {
    /// `bpf_ktime_get_ns` when the verdict was made and when the flow was last seen.
    pub since_ns: u64,
    pub last_ns: u64,
    pub app: u16,
    /// An [`Action`](crate::Action).
    pub action: u8,
    pub _pad: [u8; 5],
}

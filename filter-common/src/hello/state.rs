//! A hello being reassembled across TCP segments: the `HELLOS` entry that holds its walk and
//! the bytes read so far, and how long and how far such a hello is followed.

use super::walk::HelloWalk;

/// A hello being reassembled across segments, in the `HELLOS` table.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct HelloFlow {
    /// `bpf_ktime_get_ns` when the state was created or last refreshed by a conflict.
    pub touched_ns: u64,
    /// Non-zero while a CPU works on this flow (claimed with an atomic exchange; 64 bits
    /// because the BPF target has no 32-bit atomics).
    pub busy: u64,
    pub walk: HelloWalk,
    /// Sequence numbers of the hello's first byte and of the next byte expected.
    pub start_seq: u32,
    pub next_seq: u32,
    pub segments: u16,
    /// 1 once the walk reached the hello's end; kept to check overlaps.
    pub done: u8,
    /// Once bytes conflicted with the kept ones or passed the bounds: the uninspectable
    /// `Reason` (as `u8`) every later segment gets; the state is kept longer (see
    /// `HELLO_CONFLICT_IDLE_NS`). 0: none.
    pub conflict: u8,
    /// The first monitored app (or `NO_APP`), reported when the hello ends.
    pub monitored_app: u16,
    /// 1 once an uninspectable event was emitted for this flow.
    pub reported: u8,
    // 9 bytes: `kept` starts 8-byte aligned, so overlaps are compared by words.
    pub _pad: [u8; 9],
    /// Stream bytes from `start_seq`. Only the first `HELLO_KEEP` are used; the rest is
    /// slack so that a copy of up to `HELLO_KEEP` bytes at any offset below `HELLO_KEEP`
    /// stays inside the value for the verifier.
    pub kept: [u8; 2 * HELLO_KEEP],
}

/// Stream bytes of a hello kept to compare retransmissions and overlaps with: Chrome's
/// post-quantum hello is ~1.8 KB; an overlap beyond this is uninspectable.
pub const HELLO_KEEP: usize = 4096;

/// TCP segments one hello may span before it is uninspectable (real ones take 1-2; the
/// evasion tools split into more).
pub const HELLO_SEGMENTS_MAX: u16 = 32;

/// A hello whose next segment has not come for this long is forgotten. Servers wait about
/// as long for a handshake (nginx `ssl_handshake_timeout` 60 s), so a slower hello gains
/// nothing: its later segments are no longer a handshake the server accepts.
pub const HELLO_IDLE_NS: u64 = 60_000_000_000;

/// A flow that sent conflicting bytes is remembered longer than TCP's largest
/// retransmission interval (`TCP_RTO_MAX`, 120 s), so that a retransmission of the
/// conflicting bytes is never taken for plain data once the state is gone.
pub const HELLO_CONFLICT_IDLE_NS: u64 = 180_000_000_000;

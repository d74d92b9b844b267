//! The judging state of one hello on this CPU: the walk, the name being matched, the
//! verdict so far and who sent it. In map memory, which the verifier does not track.

use aya_ebpf::{macros::map, maps::PerCpuArray};
use filter_common::{
    Settings,
    hello::HelloWalk,
    name::{NameMatch, Suffixes},
};

/// Everything the judging of one chunk carries between `bpf_loop` rounds. It lives in map
/// memory, whose contents the verifier does not track, so that its check of a round
/// converges at once instead of following every counter value through every round.
#[repr(C)]
pub struct Judging {
    pub walk: HelloWalk,
    pub name: NameMatch,
    /// The fast path's one-pass match of the name.
    pub suffixes: Suffixes,
    pub pos: u32,
    pub end: u32,
    /// The verdict once reached, as a `Reason`; `NO_VERDICT` while walking.
    pub verdict: u32,
    /// The app that blocked the hello, or `NO_APP`.
    pub app: u16,
    /// The first monitored app, or `NO_APP`; carried across segments by the caller.
    pub monitored_app: u16,
    /// The [`Action`] of `app`.
    pub action: u8,
    /// 1 when this chunk is not the hello's first segment.
    pub later_segment: u8,
    /// 1 when a name was completed in a later segment.
    pub name_in_later_segment: u8,
    /// 1 when a name matched an app whose rules exempt this client.
    pub exempt: u8,
    /// The settings the current name is matched under (one snapshot per name).
    pub settings: Settings,
    /// Who sent the hello, where: for exemptions and scopes.
    pub client: [u8; 16],
    pub family: u8,
    /// 1 when the walker completed the name in the last round: the next one matches it.
    pub name_due: u8,
    pub vlan: u16,
    pub ifindex: u32,
    /// The fast path's walk of the extensions (`crate::fast`).
    pub fast: FastWalk,
}

/// Where the fast path is in the extensions, and what it found there.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct FastWalk {
    /// Offset of the next extension header in the frame, and extension bytes left.
    pub at: u32,
    pub left: u32,
    /// The `server_name` extension's body (offset in the frame, length); length 0: none.
    pub sni_at: u32,
    pub sni_len: u32,
    /// 1 when an ECH extension came anywhere, and before `server_name`.
    pub ech: u8,
    pub ech_before_sni: u8,
    pub _pad: [u8; 6],
}

#[map(name = "JUDGING")]
static JUDGING: PerCpuArray<Judging> = PerCpuArray::with_max_entries(1, 0);

/// This CPU's judging state.
#[inline(always)]
pub fn judging() -> Option<&'static mut Judging> {
    // SAFETY: a per-CPU value, used by this CPU only while one packet is judged.
    JUDGING.get_ptr_mut(0).map(|p| unsafe { &mut *p })
}

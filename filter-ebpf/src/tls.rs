//! Judges a TCP payload that starts a TLS handshake: copies it into per-CPU scratch, walks
//! the ClientHello and matches every server name it carries.

use core::{ffi::c_void, ptr};

use aya_ebpf::{
    helpers::generated::{bpf_loop, bpf_xdp_load_bytes},
    macros::map,
    maps::PerCpuArray,
    programs::XdpContext,
};
use filter_common::{
    Action, Reason,
    hello::{HelloWalk, SCRATCH_LEN, Step, WALK_NAME_SEEN},
    name::NameMatch,
    reason_from_u32,
};

/// Walker steps per `bpf_loop` round. Each step unrolled in one round multiplies the paths
/// the verifier explores; a round costs a direct call once the kernel inlines bpf_loop.
const ROUND_STEPS: u32 = 1;

/// Rounds per packet: enough for a full-size segment cut into the smallest TLS records
/// (1460 bytes / 6 bytes per 1-byte record, two steps each), far above real hellos (~50).
const WALK_ROUNDS_MAX: u32 = 1024;

const TLS_CONTENT_HANDSHAKE: u8 = 22;

/// Marks a verdict not reached yet.
const NO_VERDICT: u32 = u32::MAX;

#[repr(C)]
pub struct Scratch {
    pub data: [u8; SCRATCH_LEN],
}

/// Everything the judging of one packet carries between `bpf_loop` rounds. It lives in map
/// memory, whose contents the verifier does not track, so that its check of a round
/// converges at once instead of following every counter value through every round.
#[repr(C)]
pub struct Judging {
    pub walk: HelloWalk,
    pub name: NameMatch,
    pub pos: u32,
    pub end: u32,
    pub monitored: u32,
    /// The verdict once reached, as a `Reason`; `NO_VERDICT` while walking.
    pub verdict: u32,
}

#[map(name = "SCRATCH")]
static SCRATCH: PerCpuArray<Scratch> = PerCpuArray::with_max_entries(1, 0);

#[map(name = "JUDGING")]
static JUDGING: PerCpuArray<Judging> = PerCpuArray::with_max_entries(1, 0);

/// This CPU's judging state.
#[inline(always)]
pub fn judging() -> Option<&'static mut Judging> {
    // SAFETY: a per-CPU value, used by this CPU only while one packet is judged.
    JUDGING.get_ptr_mut(0).map(|p| unsafe { &mut *p })
}

#[inline(always)]
pub fn judge_payload(ctx: &XdpContext, offset: usize, len: usize) -> Reason {
    // The fast path: a payload whose first byte is not a handshake record is never copied.
    let mut first = [0u8; 1];
    // SAFETY: one byte into a stack buffer of one byte.
    if unsafe { bpf_xdp_load_bytes(ctx.ctx, offset as u32, first.as_mut_ptr().cast(), 1) } != 0 {
        return Reason::HeaderMalformed;
    }
    if first[0] != TLS_CONTENT_HANDSHAKE {
        return Reason::TcpNotHandshake;
    }
    let (Some(scratch), Some(j)) = (SCRATCH.get_ptr_mut(0), judging()) else {
        return Reason::InternalError;
    };
    if len == 0 || len > SCRATCH_LEN {
        return Reason::HelloTooComplex;
    }
    // Masked so the verifier sees 1..=SCRATCH_LEN; `black_box` stops LLVM from proving the
    // mask redundant and dropping it.
    let n = ((core::hint::black_box(len as u32) - 1) & (SCRATCH_LEN as u32 - 1)) + 1;
    // SAFETY: scratch is a per-CPU map value of SCRATCH_LEN bytes and n <= SCRATCH_LEN.
    if unsafe { bpf_xdp_load_bytes(ctx.ctx, offset as u32, scratch.cast(), n) } != 0 {
        return Reason::HeaderMalformed;
    }
    j.walk.reset();
    j.pos = 0;
    j.end = n;
    j.monitored = 0;
    j.verdict = NO_VERDICT;
    // SAFETY: the callback has the signature bpf_loop expects; its state is in JUDGING.
    unsafe {
        bpf_loop(
            WALK_ROUNDS_MAX,
            walk_round as *mut c_void,
            ptr::null_mut(),
            0,
        )
    };
    match judging() {
        Some(j) if j.verdict != NO_VERDICT => reason_from_u32(j.verdict),
        Some(_) => Reason::HelloTooComplex,
        None => Reason::InternalError,
    }
}

/// One round: a walker step, and the match of the name it completed, if any. Returns 1 to
/// end the loop.
extern "C" fn walk_round(_index: u64, _ctx: *mut c_void) -> i64 {
    let (Some(scratch), Some(j)) = (SCRATCH.get_ptr(0), judging()) else {
        return 1;
    };
    // SAFETY: a per-CPU value filled by `judge_payload` for this packet.
    let buf = unsafe { &(*scratch).data };
    let verdict = match j.walk.feed::<ROUND_STEPS>(buf, &mut j.pos, j.end) {
        Step::Paused => return 0,
        Step::NameBytes => {
            if !j.walk.take_name(buf, &mut j.pos, j.end) {
                return 0;
            }
            match crate::rules::action_for_name() {
                Some(Action::Drop | Action::Reject) => Reason::HelloBlocked,
                Some(Action::Monitor) => {
                    j.monitored = 1;
                    return 0;
                }
                None => return 0,
            }
        }
        Step::Done | Step::NeedMore if j.monitored != 0 => Reason::HelloMonitored,
        Step::Done | Step::NeedMore if j.walk.flags & WALK_NAME_SEEN != 0 => Reason::HelloAllowed,
        Step::Done => Reason::HelloNoSni,
        Step::NeedMore => Reason::HelloIncomplete,
        Step::NotHandshake => Reason::TcpNotHandshake,
        Step::NotClientHello => Reason::NotClientHello,
        Step::Malformed => Reason::HelloMalformed,
        Step::TooComplex => Reason::HelloTooComplex,
    };
    j.verdict = verdict as u32;
    1
}

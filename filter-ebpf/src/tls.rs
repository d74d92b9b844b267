//! Walks a chunk of ClientHello bytes: copies the payload into per-CPU scratch, runs the
//! walker from the state the caller prepared and matches every server name it completes.

use core::{ffi::c_void, ptr};

use aya_ebpf::{
    helpers::generated::{bpf_loop, bpf_xdp_load_bytes},
    macros::map,
    maps::PerCpuArray,
    programs::XdpContext,
};
use filter_common::{
    NO_APP, Note, Reason,
    hello::{SCRATCH_LEN, Step, WALK_NAME_LATER, walk_reason},
    reason_from_u32,
};

use crate::judging::judging;

/// Walker steps per `bpf_loop` round. Each step unrolled in one round multiplies the paths
/// the verifier explores; a round costs a direct call once the kernel inlines bpf_loop.
const ROUND_STEPS: u32 = 1;

/// Rounds per chunk: enough for a full-size segment cut into the smallest TLS records
/// (1460 bytes / 6 bytes per 1-byte record, two steps each), and the round that matches
/// the name; far above real hellos (~50).
const WALK_ROUNDS_MAX: u32 = 1024 + 1;

/// Payload offsets read straight from the packet are masked to this for the verifier: above
/// any header stack, below its limit of 64 KiB per packet offset.
const LINEAR_OFFSET_MASK: usize = (1 << 14) - 1;

/// Marks a verdict not reached yet.
const NO_VERDICT: u32 = u32::MAX;

#[repr(C)]
pub struct Scratch {
    pub data: [u8; SCRATCH_LEN],
}

#[map(name = "SCRATCH")]
static SCRATCH: PerCpuArray<Scratch> = PerCpuArray::with_max_entries(1, 0);

/// This CPU's scratch copy of the payload.
#[inline(always)]
pub fn scratch() -> Option<&'static mut Scratch> {
    // SAFETY: as above.
    SCRATCH.get_ptr_mut(0).map(|p| unsafe { &mut *p })
}

/// The first payload byte, read without copying the payload: straight from the packet when
/// it lies in the linear part (with the byte after it, which a payload that may be a hello
/// has), else with a helper call.
#[inline(always)]
pub fn first_byte(ctx: &XdpContext, offset: usize) -> Option<u8> {
    // Masked: in the judging program the offset comes through map memory, unbounded; the
    // mask stays although the test above makes it redundant to LLVM (`opaque_zero`): the
    // 6.1 verifier does not carry the test's bound to the offset reloaded from the stack.
    if offset < LINEAR_OFFSET_MASK {
        let p =
            ctx.data() + ((offset + filter_common::opaque_zero::<usize>()) & LINEAR_OFFSET_MASK);
        if p + 2 <= ctx.data_end() {
            // SAFETY: the check above keeps the two bytes inside the packet.
            return Some(unsafe { *(p as *const u8) });
        }
    }
    let mut b = [0u8; 1];
    // SAFETY: one byte into a stack buffer of one byte.
    let rc = unsafe { bpf_xdp_load_bytes(ctx.ctx, offset as u32, b.as_mut_ptr().cast(), 1) };
    if rc == 0 { Some(b[0]) } else { None }
}

/// Copies `len` payload bytes at `offset` into scratch; returns how many, or `None` when
/// the payload does not fit (a frame above the scratch size) or cannot be read.
#[inline(always)]
pub fn load_payload(ctx: &XdpContext, offset: usize, len: usize) -> Option<u32> {
    if len == 0 || len > SCRATCH_LEN {
        return None;
    }
    let scratch = SCRATCH.get_ptr_mut(0)?;
    // Masked so the verifier sees 1..=SCRATCH_LEN; `black_box` stops LLVM from proving the
    // mask redundant and dropping it.
    let n = ((core::hint::black_box(len as u32) - 1) & (SCRATCH_LEN as u32 - 1)) + 1;
    // SAFETY: scratch is a per-CPU map value of SCRATCH_LEN bytes and n <= SCRATCH_LEN.
    let rc = unsafe { bpf_xdp_load_bytes(ctx.ctx, offset as u32, scratch.cast(), n) };
    if rc == 0 { Some(n) } else { None }
}

/// Walks scratch `[pos, end)` from the walk state in `judging()`, which the caller set up.
/// Returns the reason the chunk ends with; `HelloIncomplete` when the hello goes on.
#[inline(always)]
pub fn walk(pos: u32, end: u32) -> Reason {
    let Some(j) = judging() else {
        return Reason::InternalError;
    };
    j.pos = pos;
    j.end = end;
    j.verdict = NO_VERDICT;
    j.app = NO_APP;
    j.name_in_later_segment = 0;
    j.exempt = 0;
    j.name_due = 0;
    // SAFETY: the callback has the signature bpf_loop expects; its state is in JUDGING.
    unsafe {
        bpf_loop(
            WALK_ROUNDS_MAX,
            walk_round as *mut c_void,
            ptr::null_mut(),
            0,
        )
    };
    let Some(j) = judging() else {
        return Reason::InternalError;
    };
    if j.name_in_later_segment != 0 {
        crate::counters::note(Note::SniFromLaterSegment);
    }
    if j.verdict == NO_VERDICT {
        Reason::UninspectableTooLong
    } else {
        reason_from_u32(j.verdict)
    }
}

/// One round: a walker step, or the match of the name the last step completed. Returns 1
/// to end the loop.
///
/// The match is a round of its own so that the verifier checks it from the round's one
/// entry state, not once for each of the many paths through the walker's fields that can
/// complete a name (on some kernels that multiplied the judging program's check).
extern "C" fn walk_round(_index: u64, _ctx: *mut c_void) -> i64 {
    let (Some(scratch), Some(j)) = (SCRATCH.get_ptr(0), judging()) else {
        return 1;
    };
    if j.name_due != 0 {
        j.name_due = 0;
        if !crate::rules::judge_name(false) {
            return 0;
        }
        let Some(j) = judging() else {
            return 1;
        };
        j.verdict = Reason::HelloBlocked as u32;
        return 1;
    }
    // SAFETY: a per-CPU value filled by `load_payload` for this packet.
    let buf = unsafe { &(*scratch).data };
    let verdict = match j.walk.feed::<ROUND_STEPS>(buf, &mut j.pos, j.end) {
        Step::Paused => return 0,
        Step::NameBytes => {
            if !j.walk.take_name(buf, &mut j.pos, j.end) {
                return 0;
            }
            if j.later_segment != 0 {
                j.name_in_later_segment = 1;
                j.walk.flags |= WALK_NAME_LATER;
            } else {
                j.walk.flags &= !WALK_NAME_LATER;
            }
            j.name_due = 1;
            return 0;
        }
        step => walk_reason(step, j.walk.flags, j.monitored_app != NO_APP, j.exempt != 0),
    };
    j.verdict = verdict as u32;
    1
}

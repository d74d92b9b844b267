//! Whether a segment's bytes equal the bytes a hello's state kept at the same stream
//! position: a retransmission or an overlap that differs is uninspectable.

use aya_ebpf::{helpers::generated::bpf_loop, macros::map, maps::PerCpuArray};
use filter_common::{
    FlowKey,
    hello::{HELLO_KEEP, SCRATCH_LEN},
};

use super::tables::HELLOS;
use crate::tls;

/// Steps per `bpf_loop` round when checking an overlap: each compares a block of words
/// (`BLOCK` bytes) or one word where both sides are aligned, else one byte. The rounds, not a loop over the whole hello, keep
/// the verifier's work bounded: a callback is checked as one body whatever the round count,
/// where a plain loop of `HELLO_KEEP / 8` steps was walked step by step at every call site
/// (hundreds of thousands of instructions on some hosts).
const COMPARE_ROUND: u32 = 16;

/// State of an overlap comparison between `bpf_loop` rounds.
#[map(name = "COMPARE")]
static COMPARE: PerCpuArray<Compare> = PerCpuArray::with_max_entries(1, 0);

#[repr(C)]
struct Compare {
    /// Offset in `kept` and in scratch, bytes to compare, and whether all matched so far.
    kept_off: u32,
    scratch_off: u32,
    len: u32,
    done: u32,
    same: u32,
    _pad: u32,
    flow: FlowKey,
}

/// Whether scratch `[0, len)` equals `kept[off, off + len)` of the flow's state. Where
/// `off` is a multiple of 8 (a resent first segment, and every later one after segments of
/// a multiple of 8 bytes, as 1448-byte ones are) the bytes are compared by words.
pub(super) fn same_bytes(flow: &FlowKey, off: u32, len: u32) -> bool {
    let Some(c) = COMPARE.get_ptr_mut(0) else {
        return false;
    };
    // SAFETY: a per-CPU value, used by this CPU only while this packet is judged.
    let c = unsafe { &mut *c };
    c.kept_off = off;
    c.scratch_off = 0;
    c.len = len;
    c.done = 0;
    c.same = 1;
    c.flow = *flow;
    // Enough rounds for byte steps; word steps end the loop sooner.
    let rounds = len.div_ceil(COMPARE_ROUND);
    // SAFETY: the callback has the signature bpf_loop expects; its state is in COMPARE.
    unsafe {
        bpf_loop(
            rounds,
            compare_round as *mut core::ffi::c_void,
            core::ptr::null_mut(),
            0,
        )
    };
    COMPARE
        .get_ptr(0)
        .is_some_and(|c| unsafe { (*c).same != 0 && (*c).done >= (*c).len })
}

/// Bytes compared as one block of words, where both sides are aligned.
const BLOCK: u32 = 64;

/// The word of `kept` at `at` (a multiple of 8), masked inside it (2 * HELLO_KEEP bytes).
#[inline(always)]
fn word(kept: &[u8; 2 * HELLO_KEEP], at: u32) -> u64 {
    // SAFETY: an 8-byte aligned offset (map values are) masked to leave a whole word.
    unsafe {
        kept.as_ptr()
            .add((at & (2 * HELLO_KEEP as u32 - 8)) as usize)
            .cast::<u64>()
            .read_volatile()
    }
}

/// The word of scratch at `at` (a multiple of 8), masked inside it.
#[inline(always)]
fn scratch_word(scratch: &tls::Scratch, at: u32) -> u64 {
    // SAFETY: as in `word`.
    unsafe {
        scratch
            .data
            .as_ptr()
            .add((at & (SCRATCH_LEN as u32 - 8)) as usize)
            .cast::<u64>()
            .read_volatile()
    }
}

extern "C" fn compare_round(_index: u64, _ctx: *mut core::ffi::c_void) -> i64 {
    let (Some(c), Some(scratch)) = (COMPARE.get_ptr_mut(0), tls::scratch()) else {
        return 1;
    };
    // SAFETY: a per-CPU value set up by `same_bytes`.
    let c = unsafe { &mut *c };
    let Some(st) = HELLOS.get_ptr(c.flow) else {
        c.same = 0;
        return 1;
    };
    // SAFETY: a map value valid for this program run.
    let kept = unsafe { &(*st).kept };
    // `done` is read from and written to map memory at every step, never kept in a
    // register: the verifier then sees the same state at the top of each step, whichever
    // way the last one went, instead of a range of positions that grows with every step.
    let done_at = &raw mut c.done;
    // SAFETY: fields of the per-CPU value above.
    let len = unsafe { (&raw const c.len).read_volatile() };
    let (kept_off, scratch_off) = (c.kept_off, c.scratch_off);
    for _ in 0..COMPARE_ROUND {
        // SAFETY: as above.
        let done = unsafe { done_at.read_volatile() };
        if done >= len {
            return 1;
        }
        let (k_at, s_at) = (kept_off + done, scratch_off + done);
        let aligned = (k_at | s_at) & 7 == 0;
        let left = len - done;
        let (same, step) = if aligned && left >= BLOCK {
            // A block of words, without a branch between them: most of a resent segment.
            let mut differ = 0;
            for w in 0..BLOCK / 8 {
                differ |= word(kept, k_at + 8 * w) ^ scratch_word(scratch, s_at + 8 * w);
            }
            (differ == 0, BLOCK)
        } else if aligned && left >= 8 {
            (word(kept, k_at) == scratch_word(scratch, s_at), 8)
        } else {
            let k = kept[(k_at & (2 * HELLO_KEEP as u32 - 1)) as usize];
            let s = scratch.data[(s_at as usize) & (SCRATCH_LEN - 1)];
            (k == s, 1)
        };
        if !same {
            c.same = 0;
            return 1;
        }
        // SAFETY: as above.
        unsafe { done_at.write_volatile(done + step) };
    }
    0
}

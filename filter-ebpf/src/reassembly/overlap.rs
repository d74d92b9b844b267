//! Whether a segment's bytes equal the bytes a hello's state kept at the same stream
//! position: a retransmission or an overlap that differs is uninspectable.

use aya_ebpf::{helpers::generated::bpf_loop, macros::map, maps::PerCpuArray};
use filter_common::{
    FlowKey,
    hello::{HELLO_KEEP, HelloFlow, SCRATCH_LEN},
};

use super::tables::HELLOS;
use crate::tls;

/// Bytes compared per `bpf_loop` round when checking an overlap.
const COMPARE_ROUND: u32 = 64;

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

/// Whether scratch `[0, len)` equals `kept[off, off + len)` of the flow's state: by 8-byte
/// words where `off` is a multiple of 8 (a resent first segment, and every later one after
/// segments of a multiple of 8 bytes, as 1448-byte ones are), else byte by byte.
pub(super) fn same_bytes(flow: &FlowKey, off: u32, len: u32) -> bool {
    if off.is_multiple_of(8) {
        return same_words(flow, off, len);
    }
    same_bytes_in_rounds(flow, off, len)
}

/// `same_bytes` for an aligned `off`: one plain loop of word comparisons, then the last
/// bytes one by one. `off + len` is at most `HELLO_KEEP` (the caller's check). A function
/// of its own: inlined, its locals would sit in the judging program's frame, which the
/// 6.1 verifier adds to every chain of calls below it (512 bytes in all).
#[inline(never)]
fn same_words(flow: &FlowKey, off: u32, len: u32) -> bool {
    const KEPT_WORD_MASK: u32 = (2 * HELLO_KEEP / 8) as u32 - 1;
    const SCRATCH_WORD_MASK: u32 = (SCRATCH_LEN / 8) as u32 - 1;
    let (Some(st), Some(scratch)) = (HELLOS.get_ptr(flow), tls::scratch()) else {
        return false;
    };
    // SAFETY: a map value valid for this program run; `kept` lies at an 8-byte aligned
    // offset of the aligned value (checked below), scratch at offset 0 of its value.
    let (kept, copy) = unsafe {
        (
            (&raw const (*st).kept).cast::<u64>(),
            (&raw const scratch.data).cast::<u64>(),
        )
    };
    const { assert!(core::mem::offset_of!(HelloFlow, kept).is_multiple_of(8)) };
    let (first, words) = (off / 8, len / 8);
    // Read anew in each round, so that LLVM cannot fold the two ends of the loop into one
    // count the verifier does not see bounded (the 6.1 verifier then walked the loop past
    // the end of scratch).
    let words_left = words;
    for w in 0..(HELLO_KEEP / 8) as u32 {
        // SAFETY: a local of this function.
        if w >= unsafe { (&raw const words_left).read_volatile() } {
            break;
        }
        // SAFETY: masked indices inside `kept` (2 * HELLO_KEEP bytes) and scratch.
        let same = unsafe {
            kept.add(((first + w) & KEPT_WORD_MASK) as usize)
                .read_volatile()
                == copy.add((w & SCRATCH_WORD_MASK) as usize).read_volatile()
        };
        if !same {
            return false;
        }
    }
    let tail = words * 8;
    // SAFETY: as above.
    let (kept, copy) = unsafe { (&(*st).kept, &scratch.data) };
    for i in 0..8 {
        let at = tail + i;
        if at >= len {
            break;
        }
        if kept[((off + at) & (2 * HELLO_KEEP as u32 - 1)) as usize]
            != copy[(at as usize) & (SCRATCH_LEN - 1)]
        {
            return false;
        }
    }
    true
}

/// `same_bytes` for any `off`: `COMPARE_ROUND` bytes per `bpf_loop` round.
fn same_bytes_in_rounds(flow: &FlowKey, off: u32, len: u32) -> bool {
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
    for i in 0..COMPARE_ROUND {
        if c.done >= c.len {
            return 1;
        }
        let k = kept[((c.kept_off + c.done) & (2 * HELLO_KEEP as u32 - 1)) as usize];
        let s = scratch.data[((c.scratch_off + c.done) as usize) & (SCRATCH_LEN - 1)];
        if k != s {
            c.same = 0;
            return 1;
        }
        c.done += 1;
        let _ = i;
    }
    0
}

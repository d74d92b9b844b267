//! A bitmap in front of the per-flow tables: most TCP segments belong to flows with no
//! blocked verdict, no hello being read and no connection being opened, and a clear bit
//! says so with one array read instead of three hash lookups.
//!
//! Two sides: the program sets a flow's bit in both, after the entry exists in its table,
//! and reads the side `HINT_SIDE` names. The daemon clears the other side, sets the bits of
//! every entry the tables hold, and switches: a bit set meanwhile by the program survives,
//! since the entry was in the table before its bit was set and the daemon scans after it
//! clears. Bits of entries gone stay set until the next switch: a false "maybe" costs the
//! lookups, never a verdict.

use core::intrinsics::{AtomicOrdering, atomic_or};

use aya_ebpf::{bindings::BPF_F_MMAPABLE, macros::map, maps::Array};
use filter_common::{FlowKey, HINT_WORDS, flow_hint_bit};

#[map(name = "FLOW_HINTS")]
static FLOW_HINTS: Array<u64> = Array::with_max_entries(2 * HINT_WORDS, BPF_F_MMAPABLE);

#[map(name = "HINT_SIDE")]
static HINT_SIDE: Array<u32> = Array::with_max_entries(1, 0);

/// Whether the flow whose `flow_hint_bit` is `bit` may have an entry in `VERDICTS`,
/// `HELLOS` or `OPENING`.
#[inline(always)]
pub fn maybe(bit: u32) -> bool {
    let side = HINT_SIDE.get(0).map_or(0, |s| *s & 1);
    // A missing word (it cannot be) answers "maybe": the full lookups decide.
    FLOW_HINTS
        .get(side * HINT_WORDS + bit / 64)
        .is_none_or(|w| w & (1 << (bit % 64)) != 0)
}

/// Sets the flow's bit in both sides. Call after the flow's entry is in its table.
#[inline(always)]
pub fn mark(flow: &FlowKey) {
    let bit = flow_hint_bit(flow);
    for side in 0..2 {
        if let Some(w) = FLOW_HINTS.get_ptr_mut(side * HINT_WORDS + bit / 64) {
            // SAFETY: a map value, written by every CPU: an atomic or keeps every bit.
            unsafe { atomic_or::<u64, u64, { AtomicOrdering::SeqCst }>(w, 1 << (bit % 64)) };
        }
    }
}

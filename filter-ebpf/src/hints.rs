//! A bitmap in front of the per-flow tables: most TCP segments belong to flows with no
//! blocked verdict, no hello being read and no connection being opened, and a clear bit
//! says so with an array read instead of a hash lookup. Each table has a bit of its own
//! per flow (`filter_common::hint_bit`): a connection past its hello has stale bits of the
//! opening only, which cost that one lookup until the daemon rebuilds the bitmap.
//!
//! Two sides: the program sets a flow's bit in both, after the entry exists in its table,
//! and reads the side `HINT_SIDE` names. The daemon clears the other side, sets the bits of
//! every entry the tables hold, and switches: a bit set meanwhile by the program survives,
//! since the entry was in the table before its bit was set and the daemon scans after it
//! clears. Bits of entries gone stay set until the next switch: a false "maybe" costs the
//! lookups, never a verdict.

use core::intrinsics::{AtomicOrdering, atomic_or};

use aya_ebpf::{bindings::BPF_F_MMAPABLE, macros::map, maps::Array};
use filter_common::{FlowKey, FlowTable, HINT_WORDS, flow_hash, hint_bit, hint_word};

#[map(name = "FLOW_HINTS")]
static FLOW_HINTS: Array<u64> = Array::with_max_entries(2 * HINT_WORDS, BPF_F_MMAPABLE);

#[map(name = "HINT_SIDE")]
static HINT_SIDE: Array<u32> = Array::with_max_entries(1, 0);

/// The tables (`FlowTable::mask` bits) in which the flow with hash `hash` may have an
/// entry: one word read.
#[inline(always)]
pub fn known(hash: u64) -> u8 {
    let side = HINT_SIDE.get(0).map_or(0, |s| *s & 1);
    // A missing word (it cannot be) answers "maybe": the full lookups decide.
    let word = FLOW_HINTS
        .get(side * HINT_WORDS + hint_word(hash))
        .map_or(u64::MAX, |w| *w);
    let mut known = 0;
    for table in FlowTable::ALL {
        if word & (1 << (hint_bit(hash, table) % 64)) != 0 {
            known |= table.mask();
        }
    }
    known
}

/// Sets the flow's bit for `table` in both sides. Call after the flow's entry is in it.
#[inline(always)]
pub fn mark(flow: &FlowKey, table: FlowTable) {
    let bit = hint_bit(flow_hash(flow), table);
    for side in 0..2 {
        if let Some(w) = FLOW_HINTS.get_ptr_mut(side * HINT_WORDS + bit / 64) {
            // SAFETY: a map value, written by every CPU: an atomic or keeps every bit.
            unsafe { atomic_or::<u64, u64, { AtomicOrdering::SeqCst }>(w, 1 << (bit % 64)) };
        }
    }
}

//! Where a flow's bits lie in `FLOW_HINTS`, the bitmaps that let a TCP segment skip the
//! lookups of per-flow tables it has no entry in.

use crate::flows::FlowKey;

/// Bits of one side of `FLOW_HINTS`: a bitmap with a bit set for every flow that has a
/// blocked verdict, a hello being read or an opening connection, one bit per table (and, by
/// collision, for some that have none). A TCP segment skips the hash lookup of each table
/// whose bit is clear. 2^20 bits (128 KiB) keep a table of 140k flows under 13 % filled.
pub const HINT_BITS_LOG2: u32 = 20;
/// Words of one side of `FLOW_HINTS`.
pub const HINT_WORDS: u32 = 1 << (HINT_BITS_LOG2 - 6);

/// The per-flow tables a flow's hint bits stand for: each has a bit of its own per flow,
/// so that a stale bit (its entry gone, the bitmap not yet rebuilt) costs that table's
/// lookup only.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum FlowTable {
    Verdicts = 0,
    Hellos = 1,
    Opening = 2,
}

impl FlowTable {
    pub const ALL: [Self; 3] = [Self::Verdicts, Self::Hellos, Self::Opening];

    /// The table's bit in a mask of tables a flow may have entries in.
    #[inline(always)]
    pub const fn mask(self) -> u8 {
        1 << self as u8
    }
}

/// A flow key's hash: a multiplicative hash of its five words. Not seeded: a chosen
/// collision only sends a flow down the full lookups (or shares a cache slot), never past
/// them.
#[inline(always)]
pub fn flow_hash(flow: &FlowKey) -> u64 {
    let p = core::ptr::from_ref(flow).cast::<u64>();
    let mut h = 0u64;
    let mut i = 0;
    while i < size_of::<FlowKey>() / 8 {
        // SAFETY: `FlowKey` is 40 bytes, 8-byte aligned: five whole words.
        let w = unsafe { p.add(i).read_volatile() };
        h = (h ^ w).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        i += 1;
    }
    h
}

/// The bit in one side of `FLOW_HINTS` of the flow with hash `hash`, for `table`. A flow's
/// bits for the three tables lie in one 64-bit word (the hash's top bits pick it), so that
/// one load reads them all; each table's place in the word comes from other bits of the
/// hash.
#[inline(always)]
pub const fn hint_bit(hash: u64, table: FlowTable) -> u32 {
    let word = (hash >> (64 - (HINT_BITS_LOG2 - 6))) as u32;
    let at = ((hash >> (32 + 6 * table as u32)) & 63) as u32;
    word * 64 + at
}

/// The word of one side of `FLOW_HINTS` that holds the flow's bits (see [`hint_bit`]).
#[inline(always)]
pub const fn hint_word(hash: u64) -> u32 {
    hint_bit(hash, FlowTable::Verdicts) / 64
}

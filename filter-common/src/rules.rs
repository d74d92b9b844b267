//! The rules table as the program probes it: its value, its slots (open addressing built in
//! userspace) and the bound of its size.

/// Default bound of the rules (all apps together): 65536, far above today's lists, in 4 MiB
/// of rule table. 1M rules need `rules_max = 1048576` and 64 MiB (both sides).
pub const RULES_DEFAULT_MAX: u32 = 1 << 16;

/// Value of the rules map, keyed by [`RuleKey`](crate::name::RuleKey).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct RuleValue {
    /// Index into the `APPS` array.
    pub app: u16,
    /// `RULE_*` bits.
    pub flags: u16,
    /// With `RULE_WILD_PARENT`: index + 1 of the first `WILDCARDS` pattern of this parent.
    pub wild: u16,
    pub _pad: u16,
}

/// The rule matches the name and every name below it (label boundaries).
pub const RULE_SUFFIX: u16 = 1;
/// The rule matches the name itself only.
pub const RULE_EXACT: u16 = 2;
/// The name is the parent of wildcard patterns (`p16-tiktok-*.ibyteimg.com`).
pub const RULE_WILD_PARENT: u16 = 4;

/// Bound of the wildcard pattern table.
pub const WILDCARDS_MAX: u32 = 4096;

/// One slot of the rules table (open addressing with linear probing, built in userspace).
/// `hash` 0 marks an empty slot; rule keys are made non-zero by [`slot_hash`].
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct RuleSlot {
    pub hash: u64,
    pub value: RuleValue,
}

/// Slots probed per lookup at most. The table is at most half full, where linear probing
/// needs 1.5 probes on average; the compiler draws a new seed if any key would need more.
pub const RULE_PROBES_MAX: u32 = 32;

/// A rule hash as stored in a slot: never 0, which marks an empty slot.
#[inline(always)]
pub const fn slot_hash(h: u64) -> u64 {
    if h == 0 { 1 } else { h }
}

/// The slot a hash probes first.
#[inline(always)]
pub const fn first_slot(h: u64, mask: u32) -> u32 {
    ((h >> 32) as u32 ^ h as u32) & mask
}

/// Slots of one side of the rules table for `rules_max` rules: a power of two at least
/// twice as large, so the table stays at most half full.
pub const fn rule_slots(rules_max: u32) -> u32 {
    let wanted = if rules_max < 512 {
        1024
    } else {
        rules_max.saturating_mul(2)
    };
    wanted.next_power_of_two()
}

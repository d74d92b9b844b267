//! The one-pass match of a name (the program's fast path): every suffix's key hashed in one
//! pass over the name, then one rule lookup each, where [`super::NameMatch`] takes a round
//! per label.

use super::{
    NAME_BUF, RuleKey, RuleTables, compared_len, hash_start, hash_step, lower, reload, store,
};
use crate::rules::{RULE_EXACT, RULE_SUFFIX, RULE_WILD_PARENT, RuleValue};

/// Suffixes the one-pass match holds, and the longest name it hashes: a name with more
/// labels than this, or longer, is matched by [`super::NameMatch`]'s rounds instead. Bounds of
/// the program's verifier, which walks each byte of the loop, and far above the names of
/// apps' hosts (`v16-webapp-prime.us.tiktok.com`: 5 labels, 30 bytes).
pub const SUFFIXES_MAX: usize = 8;
pub const ONE_PASS_NAME_MAX: usize = 64;
/// Rule slots the one-pass match probes per suffix: the table is at most half full, where
/// linear probing rarely needs more.
pub const ONE_PASS_PROBES: u32 = 8;

/// The one-pass match of a name, for a caller that can afford a loop over its bytes (the
/// program's fast path): first the keys of every suffix that starts at a label boundary,
/// hashed right to left in one pass, then one rule lookup each. It finds what
/// [`super::NameMatch`] finds — the most specific suffix rule, or the exact rule of the whole name
/// — except where a suffix is a parent of wildcard patterns: there it answers "not mine",
/// and the rounds of [`super::NameMatch`] compare the patterns.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Suffixes {
    /// Keys of the suffixes, shortest first; the last is the whole name's.
    pub keys: [u64; SUFFIXES_MAX],
    /// Keys held. Read and written through memory (volatile): the program's verifier then
    /// sees one state per byte of the name, not one per number of dots so far.
    pub count: u32,
    pub _pad: u32,
}

impl Suffixes {
    /// Hashes the keys of `name[..len]`'s suffixes. False when it has more than
    /// `SUFFIXES_MAX` of them, or more than `ONE_PASS_NAME_MAX` bytes.
    #[inline(always)]
    pub fn hash(&mut self, name: &[u8; NAME_BUF], len: usize, seed: u64) -> bool {
        let len = compared_len(name, len);
        store(&mut self.count, 0);
        if len > ONE_PASS_NAME_MAX {
            return false;
        }
        if len == 0 {
            // As `NameMatch::step`: an empty name is looked up under no key.
            return true;
        }
        let mut h = hash_start(seed);
        // The last byte's index, opaque to LLVM so that it keeps the mask below: without
        // it, it reads `name[len + i - 1]` at an offset of -1, which the 6.1 verifier
        // (knowing `len != 0`, not `len >= 1`) refuses.
        let last = len - 1 + crate::words::opaque_zero::<usize>();
        for done in 0..ONE_PASS_NAME_MAX {
            if done >= len {
                break;
            }
            let c = lower(name[last.wrapping_sub(done) & (NAME_BUF - 1)]);
            // As `NameMatch::step`: a dot after the first byte ends a label, and the suffix
            // right of it is looked up before the dot is hashed.
            if c == b'.' && done > 0 && !self.push(h) {
                return false;
            }
            h = hash_step(h, c);
        }
        self.push(h)
    }

    #[inline(always)]
    fn push(&mut self, key: u64) -> bool {
        let n = reload(&self.count) as usize;
        if n >= SUFFIXES_MAX {
            return false;
        }
        self.keys[n & (SUFFIXES_MAX - 1)] = key;
        store(&mut self.count, n as u32 + 1);
        true
    }

    /// The rule the hashed name matches, if any; `None` when a suffix is a wildcard parent
    /// or a lookup needs more probes (neither is this match's to decide).
    #[inline(always)]
    pub fn lookup(&self, tables: &impl RuleTables) -> Option<Option<RuleValue>> {
        let n = reload(&self.count) as usize;
        let mut best = None;
        for k in 0..SUFFIXES_MAX {
            if k >= n {
                break;
            }
            let Some(v) = tables.rule_near(RuleKey { hash: self.keys[k] })? else {
                continue;
            };
            if v.flags & RULE_WILD_PARENT != 0 {
                return None;
            }
            // The whole name also takes exact rules; a longer suffix overrides a shorter one.
            let wanted = if k + 1 == n {
                RULE_SUFFIX | RULE_EXACT
            } else {
                RULE_SUFFIX
            };
            if v.flags & wanted != 0 {
                best = Some(v);
            }
        }
        Some(best)
    }
}

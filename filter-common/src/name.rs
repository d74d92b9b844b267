//! Host names as the filter compares them: ASCII-lowercased, trailing dot ignored, hashed
//! suffix by suffix from the right so that one map lookup per label finds a rule.

use crate::{RULE_EXACT, RULE_SUFFIX, RuleValue};

/// Longest server name read: a DNS name is at most 255 octets (RFC 1035 §2.3.4), and TLS
/// stacks refuse longer SNI host names (OpenSSL: `TLSEXT_MAXLEN_host_name`).
pub const NAME_MAX: usize = 255;

/// Size of a name buffer: a power of two so indices can be masked for the verifier.
pub const NAME_BUF: usize = 256;

/// Key of the rules map: the seeded hash of one normalised name.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct RuleKey {
    pub hash: u64,
}

// FNV-1a constants (Fowler, Noll, Vo; http://www.isthe.com/chongo/tech/comp/fnv/).
const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// ASCII lowercase; other bytes unchanged (names on the wire are A-labels, RFC 5890).
#[inline(always)]
pub const fn lower(c: u8) -> u8 {
    if c.is_ascii_uppercase() { c | 0x20 } else { c }
}

#[inline(always)]
pub const fn hash_start(seed: u64) -> u64 {
    FNV_OFFSET ^ seed
}

/// One byte of the right-to-left hash.
#[inline(always)]
pub const fn hash_step(h: u64, c: u8) -> u64 {
    (h ^ c as u64).wrapping_mul(FNV_PRIME)
}

/// The key of a whole name (already normalised: lowercase, no trailing dot), as the rule
/// compiler stores it and as [`match_name`] finds it.
pub fn rule_key(seed: u64, name: &[u8]) -> RuleKey {
    let mut h = hash_start(seed);
    for &c in name.iter().rev() {
        h = hash_step(h, lower(c));
    }
    RuleKey { hash: h }
}

/// Bytes scanned per [`NameMatch::step`]: one label (at most 63 bytes, RFC 1035 §2.3.4)
/// and its dot, so a step ends at each label boundary.
pub const MATCH_STEP_BYTES: u32 = 64;

/// Steps that always finish a name: one per label (at most 128 in 255 bytes) plus one per
/// 64 bytes of a label that is too long to be valid.
pub const MATCH_STEPS_MAX: u32 = 132;

/// A name being matched against the rules, one label per step from the right: every suffix
/// that starts at a label boundary is looked up (suffix rules), and the whole name (exact
/// rules too); the most specific match wins. `lookup` is a map lookup in the program and a
/// hash map in userspace, so both judge names the same way.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct NameMatch {
    /// The hash of the bytes right of `pos`.
    pub hash: u64,
    /// The name's length without a trailing dot.
    pub len: u32,
    /// Bytes of the name, counted from its end, already hashed.
    pub done: u32,
    pub best: RuleValue,
    /// 1 when `best` holds a match.
    pub found: u32,
}

impl NameMatch {
    /// Starts matching `name[..len]`.
    #[inline(always)]
    pub fn new(name: &[u8; NAME_BUF], len: usize, seed: u64) -> Self {
        let mut len = if len > NAME_MAX { NAME_MAX } else { len };
        // A trailing dot names the same host (RFC 1034 §3.1): `tiktok.com.` is `tiktok.com`.
        if len > 0 && name[(len - 1) & (NAME_BUF - 1)] == b'.' {
            len -= 1;
        }
        Self {
            hash: hash_start(seed),
            len: len as u32,
            done: 0,
            best: RuleValue::default(),
            found: 0,
        }
    }

    /// Hashes up to one label leftwards and looks up the suffix it completes. Returns true
    /// when the whole name has been looked up.
    #[inline(always)]
    pub fn step(
        &mut self,
        name: &[u8; NAME_BUF],
        mut lookup: impl FnMut(RuleKey) -> Option<RuleValue>,
    ) -> bool {
        if self.len == 0 {
            return true;
        }
        let mut h = self.hash;
        for _ in 0..MATCH_STEP_BYTES {
            if self.done >= self.len {
                break;
            }
            let c = lower(name[((self.len - 1 - self.done) as usize) & (NAME_BUF - 1)]);
            if c == b'.' && self.done > 0 {
                if let Some(v) = lookup(RuleKey { hash: h })
                    && v.flags & RULE_SUFFIX != 0
                {
                    self.best = v;
                    self.found = 1;
                }
                self.hash = hash_step(h, c);
                self.done += 1;
                return false;
            }
            h = hash_step(h, c);
            self.done += 1;
        }
        self.hash = h;
        if self.done < self.len {
            return false;
        }
        if let Some(v) = lookup(RuleKey { hash: h })
            && v.flags & (RULE_SUFFIX | RULE_EXACT) != 0
        {
            self.best = v;
            self.found = 1;
        }
        true
    }

    pub fn result(&self) -> Option<RuleValue> {
        if self.found != 0 {
            Some(self.best)
        } else {
            None
        }
    }
}

/// Matches a whole name at once (userspace; the program drives [`NameMatch::step`]).
pub fn match_name(
    name: &[u8; NAME_BUF],
    len: usize,
    seed: u64,
    mut lookup: impl FnMut(RuleKey) -> Option<RuleValue>,
) -> Option<RuleValue> {
    let mut m = NameMatch::new(name, len, seed);
    while !m.step(name, &mut lookup) {}
    m.result()
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::collections::HashMap;
    use std::vec::Vec;

    fn table(seed: u64, rules: &[(&str, u16, u16)]) -> HashMap<RuleKey, RuleValue> {
        rules
            .iter()
            .map(|(n, app, flags)| {
                (
                    rule_key(seed, n.as_bytes()),
                    RuleValue {
                        app: *app,
                        flags: *flags,
                    },
                )
            })
            .collect()
    }

    fn judge(t: &HashMap<RuleKey, RuleValue>, seed: u64, host: &str) -> Option<u16> {
        let mut buf = [0u8; NAME_BUF];
        let b: Vec<u8> = host.bytes().collect();
        buf[..b.len()].copy_from_slice(&b);
        match_name(&buf, b.len(), seed, |k| t.get(&k).copied()).map(|v| v.app)
    }

    #[test]
    fn suffix_rules_match_at_label_boundaries_only() {
        let seed = 0x1234_5678;
        let t = table(seed, &[("tiktok.com", 1, RULE_SUFFIX)]);
        assert_eq!(judge(&t, seed, "tiktok.com"), Some(1));
        assert_eq!(judge(&t, seed, "www.tiktok.com"), Some(1));
        assert_eq!(judge(&t, seed, "a.b.c.tiktok.com"), Some(1));
        assert_eq!(judge(&t, seed, "nottiktok.com"), None);
        assert_eq!(judge(&t, seed, "tiktok.com.example.net"), None);
        assert_eq!(judge(&t, seed, "tiktok.co"), None);
        assert_eq!(judge(&t, seed, "com"), None);
    }

    #[test]
    fn case_and_trailing_dot_do_not_matter() {
        let seed = 7;
        let t = table(seed, &[("tiktok.com", 1, RULE_SUFFIX)]);
        assert_eq!(judge(&t, seed, "WWW.TikTok.COM"), Some(1));
        assert_eq!(judge(&t, seed, "www.tiktok.com."), Some(1));
        assert_eq!(judge(&t, seed, "."), None);
        assert_eq!(judge(&t, seed, ".tiktok.com"), Some(1));
        assert_eq!(judge(&t, seed, ""), None);
    }

    #[test]
    fn exact_rules_match_the_name_alone_and_specific_rules_win() {
        let seed = 99;
        let t = table(
            seed,
            &[
                ("example.org", 2, RULE_EXACT),
                ("tiktok.com", 1, RULE_SUFFIX),
                ("ads.tiktok.com", 3, RULE_SUFFIX),
            ],
        );
        assert_eq!(judge(&t, seed, "example.org"), Some(2));
        assert_eq!(judge(&t, seed, "www.example.org"), None);
        assert_eq!(judge(&t, seed, "x.ads.tiktok.com"), Some(3));
        assert_eq!(judge(&t, seed, "x.tiktok.com"), Some(1));
    }

    #[test]
    fn long_labels_and_many_labels_finish_within_the_bound() {
        let seed = 3;
        let t = table(seed, &[("tiktok.com", 1, RULE_SUFFIX)]);
        let long = std::format!("{}.tiktok.com", "a".repeat(200));
        assert_eq!(judge(&t, seed, &long), Some(1));
        let many = std::format!("{}tiktok.com", "a.".repeat(122));
        assert_eq!(judge(&t, seed, &many), Some(1));
        for host in [long.as_str(), many.as_str()] {
            let mut buf = [0u8; NAME_BUF];
            buf[..host.len()].copy_from_slice(host.as_bytes());
            let mut m = NameMatch::new(&buf, host.len(), seed);
            let steps = (1..=MATCH_STEPS_MAX).find(|_| m.step(&buf, |k| t.get(&k).copied()));
            assert!(
                steps.is_some(),
                "{host} needs more than {MATCH_STEPS_MAX} steps"
            );
        }
    }

    #[test]
    fn seed_changes_every_key() {
        assert_ne!(rule_key(1, b"tiktok.com"), rule_key(2, b"tiktok.com"));
        assert_eq!(rule_key(1, b"TikTok.com"), rule_key(1, b"tiktok.com"));
    }
}

//! Host names as the filter compares them: ASCII-lowercased, trailing dot ignored, hashed
//! suffix by suffix from the right so that one map lookup per label finds a rule.

use crate::{RULE_EXACT, RULE_SUFFIX, RULE_WILD_PARENT, RuleValue};

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

/// Where a name match looks rules and wildcard patterns up: the program's maps, or
/// userspace tables, so both judge names the same way.
pub trait RuleTables {
    fn rule(&self, key: RuleKey) -> Option<RuleValue>;
    fn pattern(&self, index: u16) -> Option<&WildPattern>;
}

/// Longest literal part around the `*` of a wildcard label: a label is at most 63 bytes.
pub const WILD_PART_MAX: usize = 64;

/// Patterns tried per parent name (a parent with more is refused when rules are loaded).
pub const WILD_CHAIN_MAX: u32 = 4;

// Only the deepest label below a wildcard parent is compared, so the rule compiler refuses
// a wildcard parent below another one (`*.a.b.com` with `*.b.com`) rather than miss one.

/// A wildcard label such as `p16-tiktok-*` under a parent name (`ibyteimg.com`): the label
/// must start with `prefix`, end with `suffix` and be at least as long as both. It matches
/// the names with such a label directly below the parent, and every name below those.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WildPattern {
    pub prefix: [u8; WILD_PART_MAX],
    pub suffix: [u8; WILD_PART_MAX],
    pub prefix_len: u8,
    pub suffix_len: u8,
    pub app: u16,
    /// Index + 1 of the next pattern of the same parent; 0 ends the chain.
    pub next: u16,
    pub _pad: u16,
}

impl Default for WildPattern {
    fn default() -> Self {
        Self {
            prefix: [0; WILD_PART_MAX],
            suffix: [0; WILD_PART_MAX],
            prefix_len: 0,
            suffix_len: 0,
            app: 0,
            next: 0,
            _pad: 0,
        }
    }
}

/// A name being matched against the rules, one label per step from the right: every suffix
/// that starts at a label boundary is looked up (suffix rules), and the whole name (exact
/// rules too); a parent of wildcard patterns has the label left of it compared with them.
/// The most specific match wins.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct NameMatch {
    /// The hash of the bytes already stepped over (the right end of the name).
    pub hash: u64,
    /// The name's length without a trailing dot.
    pub len: u32,
    /// Bytes of the name, counted from its end, already hashed.
    pub done: u32,
    /// `done` where the current label began.
    pub label_from: u32,
    pub best: RuleValue,
    /// 1 when `best` holds a match.
    pub found: u32,
    /// Index + 1 of the first pattern to compare the current label with; 0: none.
    pub wild: u16,
    /// 1 when a rule matched at or below the wildcard candidate's label (it wins).
    pub deeper: u16,
    /// The label below a wildcard parent, compared once the walk is over
    /// (`finish`): index + 1 of the parent's first pattern, the label's start and length.
    pub candidate: u32,
    pub candidate_start: u32,
    pub candidate_len: u32,
}

impl NameMatch {
    /// Starts matching `name[..len]`.
    #[inline(always)]
    pub fn new(name: &[u8; NAME_BUF], len: usize, seed: u64) -> Self {
        let mut m = Self::default();
        m.begin(name, len, seed);
        m
    }

    /// Sets up a zeroed `NameMatch` as [`NameMatch::new`] makes it, in place (the program
    /// zeroes it as words: a struct literal would become a byte-by-byte `memset`).
    #[inline(always)]
    pub fn begin(&mut self, name: &[u8; NAME_BUF], len: usize, seed: u64) {
        let mut len = if len > NAME_MAX { NAME_MAX } else { len };
        // A trailing dot names the same host (RFC 1034 §3.1): `tiktok.com.` is `tiktok.com`.
        if len > 0 && name[(len - 1) & (NAME_BUF - 1)] == b'.' {
            len -= 1;
        }
        self.hash = hash_start(seed);
        self.len = len as u32;
    }

    /// Hashes up to one label leftwards and looks up the suffix it completes. Returns true
    /// when the whole name has been looked up.
    #[inline(always)]
    pub fn step(&mut self, name: &[u8; NAME_BUF], tables: &impl RuleTables) -> bool {
        if self.len == 0 {
            return true;
        }
        let mut h = self.hash;
        let mut boundary = false;
        // The byte loop only hashes; the lookups and pattern comparisons come after it, once,
        // so the verifier does not walk them inside every iteration.
        for _ in 0..MATCH_STEP_BYTES {
            if self.done >= self.len {
                break;
            }
            let c = lower(name[((self.len - 1 - self.done) as usize) & (NAME_BUF - 1)]);
            if c == b'.' && self.done > 0 {
                boundary = true;
                break;
            }
            h = hash_step(h, c);
            self.done += 1;
        }
        self.hash = h;
        let complete = self.done >= self.len;
        if !boundary && !complete {
            // A label longer than one step: go on with it.
            return false;
        }
        if self.wild != 0 {
            // Only noted here: comparing in this loop would put the comparison inside every
            // step the verifier checks.
            self.candidate = u32::from(self.wild);
            self.candidate_start = self.len - self.done;
            self.candidate_len = self.done - self.label_from;
            self.deeper = 0;
        }
        let wanted = if complete {
            RULE_SUFFIX | RULE_EXACT
        } else {
            RULE_SUFFIX
        };
        self.consider(tables.rule(RuleKey { hash: h }), wanted);
        if complete {
            return true;
        }
        self.hash = hash_step(h, b'.');
        self.done += 1;
        self.label_from = self.done;
        false
    }

    /// Takes a rule found for the suffix just completed if its flags fit; a parent of
    /// wildcard patterns arms the comparison of the next label.
    #[inline(always)]
    fn consider(&mut self, v: Option<RuleValue>, wanted: u16) {
        let Some(v) = v else {
            self.wild = 0;
            return;
        };
        if v.flags & wanted != 0 {
            self.best = v;
            self.found = 1;
            self.deeper = 1;
        }
        self.wild = if v.flags & RULE_WILD_PARENT != 0 {
            v.wild
        } else {
            0
        };
    }

    /// Compares the wildcard candidate (the deepest label below a wildcard parent) with its
    /// parent's patterns, unless a rule at or below that label already matched. Call once
    /// the steps are done.
    #[inline(always)]
    pub fn finish(&mut self, name: &[u8; NAME_BUF], tables: &impl RuleTables) {
        if self.deeper != 0 {
            return;
        }
        let mut next = self.candidate as u16;
        for _ in 0..WILD_CHAIN_MAX {
            if next == 0 {
                return;
            }
            let Some(p) = tables.pattern(next - 1) else {
                return;
            };
            if label_matches(name, self.candidate_start, self.candidate_len, p) {
                self.best = RuleValue {
                    app: p.app,
                    flags: RULE_SUFFIX,
                    wild: 0,
                    _pad: 0,
                };
                self.found = 1;
                return;
            }
            next = p.next;
        }
    }

    pub fn result(&self) -> Option<RuleValue> {
        if self.found != 0 {
            Some(self.best)
        } else {
            None
        }
    }
}

/// Whether `name[start, start + len)` starts with the pattern's prefix and ends with its
/// suffix (ASCII case-insensitive).
#[inline(always)]
fn label_matches(name: &[u8; NAME_BUF], start: u32, len: u32, p: &WildPattern) -> bool {
    let (pl, sl) = (u32::from(p.prefix_len), u32::from(p.suffix_len));
    if pl + sl > len {
        return false;
    }
    for i in 0..WILD_PART_MAX as u32 {
        if i >= pl {
            break;
        }
        if lower(name[((start + i) as usize) & (NAME_BUF - 1)])
            != p.prefix[(i as usize) & (WILD_PART_MAX - 1)]
        {
            return false;
        }
    }
    let tail = start + len - sl;
    for i in 0..WILD_PART_MAX as u32 {
        if i >= sl {
            break;
        }
        if lower(name[((tail + i) as usize) & (NAME_BUF - 1)])
            != p.suffix[(i as usize) & (WILD_PART_MAX - 1)]
        {
            return false;
        }
    }
    true
}

/// Matches a whole name at once (userspace; the program drives [`NameMatch::step`]).
pub fn match_name(
    name: &[u8; NAME_BUF],
    len: usize,
    seed: u64,
    tables: &impl RuleTables,
) -> Option<RuleValue> {
    let mut m = NameMatch::new(name, len, seed);
    while !m.step(name, tables) {}
    m.finish(name, tables);
    m.result()
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::collections::HashMap;
    use std::vec::Vec;

    struct Tables {
        rules: HashMap<RuleKey, RuleValue>,
        patterns: Vec<WildPattern>,
    }

    impl RuleTables for Tables {
        fn rule(&self, key: RuleKey) -> Option<RuleValue> {
            self.rules.get(&key).copied()
        }
        fn pattern(&self, index: u16) -> Option<&WildPattern> {
            self.patterns.get(usize::from(index))
        }
    }

    fn value(app: u16, flags: u16) -> RuleValue {
        RuleValue {
            app,
            flags,
            wild: 0,
            _pad: 0,
        }
    }

    fn table(seed: u64, rules: &[(&str, u16, u16)]) -> Tables {
        let rules = rules
            .iter()
            .map(|(n, app, flags)| (rule_key(seed, n.as_bytes()), value(*app, *flags)))
            .collect();
        Tables {
            rules,
            patterns: Vec::new(),
        }
    }

    fn judge(t: &Tables, seed: u64, host: &str) -> Option<u16> {
        let mut buf = [0u8; NAME_BUF];
        let b: Vec<u8> = host.bytes().collect();
        buf[..b.len()].copy_from_slice(&b);
        match_name(&buf, b.len(), seed, t).map(|v| v.app)
    }

    fn pattern(prefix: &str, suffix: &str, app: u16, next: u16) -> WildPattern {
        let mut p = WildPattern {
            app,
            next,
            prefix_len: prefix.len() as u8,
            suffix_len: suffix.len() as u8,
            ..WildPattern::default()
        };
        p.prefix[..prefix.len()].copy_from_slice(prefix.as_bytes());
        p.suffix[..suffix.len()].copy_from_slice(suffix.as_bytes());
        p
    }

    #[test]
    fn wildcard_labels_match_below_their_parent_only() {
        let seed = 5;
        let mut t = table(seed, &[]);
        // Two patterns under ibyteimg.com, chained; the parent is no rule itself.
        t.rules.insert(
            rule_key(seed, b"ibyteimg.com"),
            RuleValue {
                app: 0,
                flags: RULE_WILD_PARENT,
                wild: 1,
                _pad: 0,
            },
        );
        t.patterns.push(pattern("p16-tiktok-", "", 7, 2));
        t.patterns.push(pattern("p", "-sign", 8, 0));
        assert_eq!(judge(&t, seed, "p16-tiktok-va.ibyteimg.com"), Some(7));
        assert_eq!(judge(&t, seed, "P16-TikTok-SG.ibyteimg.com"), Some(7));
        assert_eq!(judge(&t, seed, "a.p16-tiktok-va.ibyteimg.com"), Some(7));
        assert_eq!(judge(&t, seed, "p77-sign.ibyteimg.com"), Some(8));
        assert_eq!(judge(&t, seed, "p16-tiktok.ibyteimg.com"), None);
        assert_eq!(judge(&t, seed, "ibyteimg.com"), None);
        assert_eq!(judge(&t, seed, "x.ibyteimg.com"), None);
        assert_eq!(judge(&t, seed, "p16-tiktok-va.other.com"), None);
        // The literal parts may not overlap: "-sign" is too short for "p" + "-sign".
        assert_eq!(judge(&t, seed, "-sign.ibyteimg.com"), None);
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
            let steps = (1..=MATCH_STEPS_MAX).find(|_| m.step(&buf, &t));
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

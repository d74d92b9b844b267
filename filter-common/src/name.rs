//! Host names as the filter compares them: ASCII-lowercased, trailing dot ignored, hashed
//! suffix by suffix from the right so that one map lookup per label finds a rule.

mod one_pass;

pub use one_pass::{ONE_PASS_NAME_MAX, ONE_PASS_PROBES, SUFFIXES_MAX, Suffixes};

use crate::rules::{RULE_EXACT, RULE_SUFFIX, RULE_WILD_PARENT, RuleValue};

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

/// Bytes scanned per [`NameMatch::step`]; a step also ends at each label boundary. In the
/// program a step is one `bpf_loop` round whose byte loop the verifier walks unrolled, so
/// the fewer bytes the cheaper its check: most labels are shorter than this.
pub const MATCH_STEP_BYTES: u32 = 16;

/// Steps that always finish a name: per label (at most 128 in 255 bytes) one that hashes
/// it and one that looks its suffix up, plus one per `MATCH_STEP_BYTES` bytes of the name,
/// for the labels longer than that.
pub const MATCH_STEPS_MAX: u32 = 2 * 128 + (NAME_MAX as u32).div_ceil(MATCH_STEP_BYTES);

/// [`NameMatch::advance`] calls that always finish a match: the label steps, then one per
/// byte of each pattern tried (prefix and suffix at most 64 each), one more per pattern,
/// and the step that sees the end.
pub const MATCH_ROUNDS_MAX: u32 =
    MATCH_STEPS_MAX + 1 + WILD_CHAIN_MAX * (2 * WILD_PART_MAX as u32 + 1);

/// Where a name match looks rules and wildcard patterns up: the program's maps, or
/// userspace tables, so both judge names the same way.
pub trait RuleTables {
    fn rule(&self, key: RuleKey) -> Option<RuleValue>;
    /// As [`RuleTables::rule`], or `None` when telling takes more than `ONE_PASS_PROBES`
    /// probes of an open-addressing table (the one-pass match then declines the name).
    fn rule_near(&self, key: RuleKey) -> Option<Option<RuleValue>> {
        Some(self.rule(key))
    }
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

impl WildPattern {
    /// The pattern `prefix*suffix` of `app`, followed in its parent's chain by `next`.
    ///
    /// # Panics
    /// On a part longer than `WILD_PART_MAX` (the rule compiler refuses those first).
    pub fn new(prefix: &[u8], suffix: &[u8], app: u16, next: u16) -> Self {
        let mut p = Self {
            app,
            next,
            prefix_len: prefix.len() as u8,
            suffix_len: suffix.len() as u8,
            ..Self::default()
        };
        p.prefix[..prefix.len()].copy_from_slice(prefix);
        p.suffix[..suffix.len()].copy_from_slice(suffix);
        p
    }
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
    /// The wildcard comparison: the byte of the pattern (prefix, then suffix) compared
    /// next, and the patterns of the chain already tried.
    pub wild_at: u32,
    pub wild_tried: u32,
    /// 1 once every label has been looked up (the wildcard comparison comes next).
    pub stepped: u32,
    /// 1 when the last step ended at a label boundary.
    pub boundary: u32,
    /// 1 when the suffix just hashed is to be looked up, by the next step.
    pub lookup_due: u32,
    pub _pad: u32,
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
        self.hash = hash_start(seed);
        self.len = compared_len(name, len) as u32;
    }

    /// Hashes up to one label leftwards; the next step looks up the suffix it completes.
    /// Returns true when the whole name has been looked up.
    ///
    /// Hashing and looking up are steps of their own: in the program each step is one
    /// `bpf_loop` round, so the verifier checks the lookup's probe loop from the round's
    /// one entry state, not once for each of the states the byte loop can end in (on some
    /// kernels that multiplied the judging program's check to 450k instructions).
    #[inline(always)]
    pub fn step(&mut self, name: &[u8; NAME_BUF], tables: &impl RuleTables) -> bool {
        if self.lookup_due != 0 {
            self.lookup_due = 0;
            return self.look_up(tables);
        }
        if self.len == 0 {
            return true;
        }
        let mut h = self.hash;
        let mut boundary = false;
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
        self.boundary = u32::from(boundary);
        // Read back from memory (volatile, so that LLVM keeps the loads): the loop ends in
        // as many states as it has iterations.
        if reload(&self.boundary) != 0 || reload(&self.done) >= self.len {
            self.lookup_due = 1;
        }
        false
    }

    /// The second half of a label's step: looks up the suffix just hashed, notes a
    /// wildcard candidate, and moves past the label's dot. True when the name is done.
    #[inline(always)]
    fn look_up(&mut self, tables: &impl RuleTables) -> bool {
        // The probe first, from the state every lookup starts in: decided before it, the
        // flags wanted or a noted candidate would have the verifier walk it once for each.
        // None as a value of no flags at once: a `None` carried on leaves its payload
        // undefined, which LLVM may copy into code the 6.1 verifier then refuses to read.
        let found = tables
            .rule(RuleKey {
                hash: reload(&self.hash),
            })
            .unwrap_or_default();
        let done = reload(&self.done);
        let complete = done >= self.len;
        let wanted = if complete {
            RULE_SUFFIX | RULE_EXACT
        } else {
            RULE_SUFFIX
        };
        // The parent's patterns apply to this label: read before `consider` replaces them.
        let parent_wild = self.wild;
        let matched = self.consider(found, wanted);
        if parent_wild != 0 {
            // Only noted here: comparing in this loop would put the comparison inside every
            // step the verifier checks.
            self.candidate = u32::from(parent_wild);
            self.candidate_start = self.len - done;
            self.candidate_len = done - self.label_from;
            // A rule of this label (just considered) or a deeper one wins over the pattern.
            self.deeper = u16::from(matched);
        }
        if complete {
            return true;
        }
        self.hash = hash_step(reload(&self.hash), b'.');
        let done = reload(&self.done) + 1;
        self.done = done;
        self.label_from = done;
        false
    }

    /// Takes the rule found for the suffix just completed (no flags: none) if its flags fit
    /// (true then); a parent of wildcard patterns arms the comparison of the next label.
    #[inline(always)]
    fn consider(&mut self, v: RuleValue, wanted: u16) -> bool {
        let matched = v.flags & wanted != 0;
        if matched {
            self.best = v;
            self.found = 1;
            self.deeper = 1;
        }
        self.wild = if v.flags & RULE_WILD_PARENT != 0 {
            v.wild
        } else {
            0
        };
        matched
    }

    /// Compares one byte of the wildcard candidate (the deepest label below a wildcard
    /// parent) with its parent's patterns, unless a rule at or below that label already
    /// matched. Call once the steps are done, until it returns true.
    ///
    /// One byte per call, its position kept here: inside the program each call is one
    /// `bpf_loop` round, so the verifier checks one comparison, not an unrolled loop over
    /// every byte of every pattern (whose paths it cannot prune, and whose stepped index
    /// the 6.1 verifier loses the bound of).
    #[inline(always)]
    pub fn finish_step(&mut self, name: &[u8; NAME_BUF], tables: &impl RuleTables) -> bool {
        if self.deeper != 0 || self.candidate == 0 || self.wild_tried >= WILD_CHAIN_MAX {
            return true;
        }
        let Some(p) = tables.pattern((self.candidate - 1) as u16) else {
            return true;
        };
        let (pl, sl) = (u32::from(p.prefix_len), u32::from(p.suffix_len));
        // The literal parts may not overlap inside the label.
        let fits = pl + sl <= self.candidate_len;
        let at = self.wild_at;
        if fits && at >= pl + sl {
            self.best = RuleValue {
                app: p.app,
                flags: RULE_SUFFIX,
                wild: 0,
                _pad: 0,
            };
            self.found = 1;
            return true;
        }
        if fits {
            let (pos, want) = if at < pl {
                (
                    self.candidate_start + at,
                    p.prefix[(at as usize) & (WILD_PART_MAX - 1)],
                )
            } else {
                let k = at - pl;
                (
                    self.candidate_start + self.candidate_len - sl + k,
                    p.suffix[(k as usize) & (WILD_PART_MAX - 1)],
                )
            };
            if lower(name[(pos as usize) & (NAME_BUF - 1)]) == want {
                self.wild_at = at + 1;
                return false;
            }
        }
        // This pattern does not match: the next one of the parent's chain.
        self.candidate = u32::from(p.next);
        self.wild_at = 0;
        self.wild_tried += 1;
        self.candidate == 0 || self.wild_tried >= WILD_CHAIN_MAX
    }

    /// One step of the whole match: the label steps, then the wildcard comparison. Returns
    /// true when the match is over and [`NameMatch::result`] holds it.
    #[inline(always)]
    pub fn advance(&mut self, name: &[u8; NAME_BUF], tables: &impl RuleTables) -> bool {
        if self.stepped == 0 {
            if !self.step(name, tables) {
                return false;
            }
            self.stepped = 1;
            // No wildcard to compare: over without another call.
            return self.deeper != 0 || self.candidate == 0;
        }
        self.finish_step(name, tables)
    }

    pub fn result(&self) -> Option<RuleValue> {
        if self.found != 0 {
            Some(self.best)
        } else {
            None
        }
    }
}

/// The length of `name[..len]` as compared: at most `NAME_MAX`, without a trailing dot
/// (RFC 1034 §3.1: `tiktok.com.` names the same host as `tiktok.com`).
#[inline(always)]
pub(crate) fn compared_len(name: &[u8; NAME_BUF], len: usize) -> usize {
    // By arithmetic, not branches: each branch here doubles the states the program's
    // verifier carries into every round of the match. The operands pass through
    // `black_box`, or LLVM turns the sign tests back into comparisons and branches.
    let bb = core::hint::black_box::<u32>;
    let length = bb(len as u32);
    // At most NAME_MAX: `over` is 1 for a longer name.
    let over = bb((NAME_MAX as u32).wrapping_sub(length) >> 31);
    let len = length.wrapping_sub(over.wrapping_mul(length.wrapping_sub(NAME_MAX as u32)));
    // `opaque_zero` keeps the mask: LLVM proves it redundant once len is in 1..=255, and
    // the 6.1 verifier, which does not learn `len >= 1` from `len != 0`, then sees an
    // index that may be -1.
    let last = name
        [(len.wrapping_sub(1) as usize + crate::words::opaque_zero::<usize>()) & (NAME_BUF - 1)];
    // 1 for a name that is not empty and ends in a dot: the sign bit of `last ^ '.'` - 1
    // (set only for a dot) and not that of `len - 1` (set only for an empty name).
    let dot_less_one = bb(u32::from(last ^ b'.').wrapping_sub(1));
    let len_less_one = bb(len.wrapping_sub(1));
    let dot = bb((dot_less_one & !len_less_one) >> 31);
    (len - dot) as usize
}

/// A value written to memory, where [`reload`] finds it.
#[inline(always)]
pub(crate) fn store<T: Copy>(at: &mut T, v: T) {
    // SAFETY: a reference is valid and aligned for a write.
    unsafe { core::ptr::write_volatile(at, v) }
}

/// A value read back from memory, never from a register LLVM kept it in.
#[inline(always)]
pub(crate) fn reload<T: Copy>(v: &T) -> T {
    // SAFETY: a reference is valid and aligned for a read.
    unsafe { core::ptr::read_volatile(v) }
}

/// Matches a whole name at once (userspace; the program drives [`NameMatch::step`]).
pub fn match_name(
    name: &[u8; NAME_BUF],
    len: usize,
    seed: u64,
    tables: &impl RuleTables,
) -> Option<RuleValue> {
    let mut m = NameMatch::new(name, len, seed);
    while !m.advance(name, tables) {}
    m.result()
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::collections::HashMap;
    use std::vec::Vec;

    struct Tables {
        /// The seed the rule keys were hashed with.
        seed: u64,
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
            seed,
            rules,
            patterns: Vec::new(),
        }
    }

    fn judge(t: &Tables, seed: u64, host: &str) -> Option<u16> {
        match_name(&name_buf(host), host.len(), seed, t).map(|v| v.app)
    }

    /// `host` in a name buffer as the walker leaves it.
    fn name_buf(host: &str) -> [u8; NAME_BUF] {
        let mut buf = [0u8; NAME_BUF];
        buf[..host.len()].copy_from_slice(host.as_bytes());
        buf
    }

    impl Tables {
        /// Makes `parent` the parent of the wildcard patterns from the first on (no rule
        /// of its own).
        fn wild_parent(&mut self, parent: &[u8]) {
            let value = RuleValue {
                wild: 1,
                ..value(0, RULE_WILD_PARENT)
            };
            self.rules.insert(rule_key(self.seed, parent), value);
        }

        /// Judges each of `hosts` and checks that it matched a rule of `app`.
        fn expect_app(&self, app: u16, hosts: &[&str]) {
            for host in hosts {
                assert_eq!(judge(self, self.seed, host), Some(app), "{host}");
            }
        }

        /// Judges each of `hosts` and checks that it matched no rule.
        fn expect_none(&self, hosts: &[&str]) {
            for host in hosts {
                assert_eq!(judge(self, self.seed, host), None, "{host}");
            }
        }
    }

    fn pattern(prefix: &str, suffix: &str, app: u16, next: u16) -> WildPattern {
        WildPattern::new(prefix.as_bytes(), suffix.as_bytes(), app, next)
    }

    #[test]
    fn wildcard_labels_match_below_their_parent_only() {
        let seed = 5;
        let mut t = table(seed, &[]);
        // Two patterns under ibyteimg.com, chained; the parent is no rule itself.
        t.wild_parent(b"ibyteimg.com");
        t.patterns.push(pattern("p16-tiktok-", "", 7, 2));
        t.patterns.push(pattern("p", "-sign", 8, 0));
        t.expect_app(
            7,
            &[
                "p16-tiktok-va.ibyteimg.com",
                "P16-TikTok-SG.ibyteimg.com",
                "a.p16-tiktok-va.ibyteimg.com",
            ],
        );
        t.expect_app(8, &["p77-sign.ibyteimg.com"]);
        t.expect_none(&[
            "p16-tiktok.ibyteimg.com",
            "ibyteimg.com",
            "x.ibyteimg.com",
            "p16-tiktok-va.other.com",
        ]);
        // The literal parts may not overlap: "-sign" is too short for "p" + "-sign".
        assert_eq!(judge(&t, seed, "-sign.ibyteimg.com"), None);
    }

    #[test]
    fn suffix_rules_match_at_label_boundaries_only() {
        let t = table(0x1234_5678, &[("tiktok.com", 1, RULE_SUFFIX)]);
        t.expect_app(1, &["tiktok.com", "www.tiktok.com", "a.b.c.tiktok.com"]);
        t.expect_none(&[
            "nottiktok.com",
            "tiktok.com.example.net",
            "tiktok.co",
            "com",
        ]);
    }

    #[test]
    fn case_and_trailing_dot_do_not_matter() {
        let t = table(7, &[("tiktok.com", 1, RULE_SUFFIX)]);
        t.expect_app(1, &["WWW.TikTok.COM", "www.tiktok.com.", ".tiktok.com"]);
        t.expect_none(&[".", ""]);
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
        t.expect_app(2, &["example.org"]);
        t.expect_none(&["www.example.org"]);
        t.expect_app(3, &["x.ads.tiktok.com"]);
        t.expect_app(1, &["x.tiktok.com"]);
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
            let buf = name_buf(host);
            let mut m = NameMatch::new(&buf, host.len(), seed);
            let steps = (1..=MATCH_STEPS_MAX).find(|_| m.step(&buf, &t));
            assert!(
                steps.is_some(),
                "{host} needs more than {MATCH_STEPS_MAX} steps"
            );
        }
    }

    #[test]
    fn the_longest_wildcard_comparison_finishes_within_the_rounds() {
        // Four chained patterns of 31 + 31 literal bytes, each failing only at its last
        // byte, under a 63-byte label below a 255-byte name: the most rounds a match takes.
        let seed = 11;
        let mut t = table(seed, &[]);
        t.wild_parent(b"c.example");
        let label = "a".repeat(63);
        for k in 0..WILD_CHAIN_MAX as u16 {
            let suffix = std::format!("{}{}", "a".repeat(30), if k == 3 { "a" } else { "b" });
            t.patterns.push(pattern(
                &"a".repeat(31),
                &suffix,
                20 + k,
                if k == 3 { 0 } else { k + 2 },
            ));
        }
        let host = std::format!("{}.{label}.c.example", "b.".repeat(87));
        assert!(host.len() <= NAME_MAX, "{}", host.len());
        let buf = name_buf(&host);
        let mut m = NameMatch::new(&buf, host.len(), seed);
        let rounds = (1..=MATCH_ROUNDS_MAX).find(|_| m.advance(&buf, &t));
        assert!(
            rounds.is_some(),
            "needs more than {MATCH_ROUNDS_MAX} rounds"
        );
        assert_eq!(
            m.result().map(|v| v.app),
            Some(23),
            "the fourth pattern matches"
        );
    }

    #[test]
    fn seed_changes_every_key() {
        assert_ne!(rule_key(1, b"tiktok.com"), rule_key(2, b"tiktok.com"));
        assert_eq!(rule_key(1, b"TikTok.com"), rule_key(1, b"tiktok.com"));
    }

    /// The one-pass match, where it answers, against the rounds, on names built from a few
    /// labels (empty ones, dots at either end, capitals included) and rules on their
    /// suffixes, some of them wildcard parents.
    #[test]
    fn the_one_pass_match_finds_what_the_rounds_find() {
        let labels = ["a", "Tik", "tik", "", "cdn", "x-1", "com", "COM"];
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = |n: usize| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % n as u64) as usize
        };
        let (mut answered, mut declined, mut matched) = (0, 0, 0);
        for round in 0..4000_u64 {
            let seed = round;
            let name = |next: &mut dyn FnMut(usize) -> usize| {
                let parts: Vec<&str> = (0..=next(5)).map(|_| labels[next(labels.len())]).collect();
                let mut n = parts.join(".");
                if next(6) == 0 {
                    n.push('.');
                }
                n
            };
            let mut t = table(seed, &[]);
            for _ in 0..next(4) {
                let flags = [
                    RULE_SUFFIX,
                    RULE_EXACT,
                    RULE_WILD_PARENT,
                    RULE_SUFFIX | RULE_WILD_PARENT,
                ][next(4)];
                let n = name(&mut next).to_ascii_lowercase();
                let n = n.strip_suffix('.').unwrap_or(&n);
                let mut v = value(1 + next(9) as u16, flags);
                if flags & RULE_WILD_PARENT != 0 {
                    t.patterns.push(pattern("t", "", 20, 0));
                    v.wild = t.patterns.len() as u16;
                }
                t.rules.insert(rule_key(seed, n.as_bytes()), v);
            }
            for _ in 0..8 {
                let host = name(&mut next);
                let buf = name_buf(&host);
                let mut s = Suffixes::default();
                assert!(s.hash(&buf, host.len(), seed), "{host}: at most 6 labels");
                let rounds = match_name(&buf, host.len(), seed, &t);
                match s.lookup(&t) {
                    Some(found) => {
                        assert_eq!(found.map(|v| v.app), rounds.map(|v| v.app), "{host}");
                        answered += 1;
                        matched += usize::from(found.is_some());
                    }
                    None => declined += 1,
                }
            }
        }
        // Each kind of case was met.
        assert!(
            answered > 20_000 && matched > 500 && declined > 500,
            "{answered} {matched} {declined}"
        );
    }

    #[test]
    fn the_one_pass_match_declines_names_of_too_many_labels_or_bytes() {
        let mut buf = [0u8; NAME_BUF];
        let host = "a".repeat(ONE_PASS_NAME_MAX + 1);
        buf[..host.len()].copy_from_slice(host.as_bytes());
        assert!(!Suffixes::default().hash(&buf, host.len(), 1));
        let host = "a".repeat(ONE_PASS_NAME_MAX) + ".";
        buf[..host.len()].copy_from_slice(host.as_bytes());
        assert!(Suffixes::default().hash(&buf, host.len(), 1));
        let host = "a.".repeat(SUFFIXES_MAX) + "com";
        buf[..host.len()].copy_from_slice(host.as_bytes());
        assert!(!Suffixes::default().hash(&buf, host.len(), 1));
        let host = "a.".repeat(SUFFIXES_MAX - 1) + "com";
        buf[..host.len()].copy_from_slice(host.as_bytes());
        assert!(Suffixes::default().hash(&buf, host.len(), 1));
    }
}

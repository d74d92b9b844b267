//! The rule set the daemon loads: names by seeded hash, per-app policies, exemptions and
//! scopes, and the match of a name against them.
//! Every map here is written by userspace only, so the program maps them read-only.

use core::ffi::c_void;

use aya_ebpf::{
    bindings::BPF_F_RDONLY_PROG,
    helpers::generated::bpf_loop,
    macros::map,
    maps::{Array, HashMap, LpmTrie, lpm_trie::Key},
};
use filter_common::{
    APPS_MAX, Action, AppPolicy, AppScope, ExemptPrefix, NO_APP, RULE_PROBES_MAX,
    RULES_DEFAULT_MAX, RuleSlot, RuleValue, SCOPE_IFACE, SCOPE_VLAN, ScopeKey, WILDCARDS_MAX,
    app_scope, first_slot,
    name::{MATCH_ROUNDS_MAX, ONE_PASS_PROBES, RuleKey, RuleTables, WildPattern},
    slot_hash,
};

/// The rules: an open-addressing table of `RuleSlot`s in two sides (sized by userspace
/// from `rules_max`), one in force, one being filled by a reload. 16 bytes a slot and at
/// most half full: 1M rules take 32 MiB a side.
#[map(name = "RULES")]
static RULES: Array<RuleSlot> = Array::with_max_entries(2 * RULES_DEFAULT_MAX, BPF_F_RDONLY_PROG);

/// Wildcard labels (`p16-tiktok-*`), chained per parent name from `RuleValue::wild`.
#[map(name = "WILDCARDS")]
// Two halves: a reload writes its patterns into the half the running rules do not use.
static WILDCARDS: Array<WildPattern> =
    Array::with_max_entries(2 * WILDCARDS_MAX, BPF_F_RDONLY_PROG);

/// App policies, in two sides like the rules.
#[map(name = "APPS")]
static APPS: Array<AppPolicy> = Array::with_max_entries(2 * APPS_MAX, BPF_F_RDONLY_PROG);

/// Source networks exempted per app, as `ExemptPrefix` keys.
#[map(name = "EXEMPT")]
static EXEMPT: LpmTrie<ExemptPrefix, u8> = LpmTrie::with_max_entries(EXEMPT_MAX, BPF_F_RDONLY_PROG);

/// The interfaces and VLAN IDs each scoped app applies on.
#[map(name = "SCOPES")]
static SCOPES: HashMap<ScopeKey, u8> = HashMap::with_max_entries(SCOPES_MAX, BPF_F_RDONLY_PROG);

/// Bounds of the exemption and scope tables: far above any city's offices and networks.
const EXEMPT_MAX: u32 = 4096;
const SCOPES_MAX: u32 = 4096;

/// Whether the app's rules apply to the hello being judged (see `filter_common::app_scope`),
/// answered from the scope and exemption maps; an exempted client is recorded, for the
/// reason.
#[inline(always)]
fn applies(app: u16, policy: &AppPolicy, j: &mut crate::judging::Judging) -> bool {
    let scoped = |kind, value| {
        SCOPES
            .get_ptr(ScopeKey {
                app,
                kind,
                _pad: 0,
                value,
            })
            .is_some()
    };
    let exempted = || {
        let bits = if j.family == 4 { 32 } else { 128 };
        let data = ExemptPrefix {
            app: app.to_be_bytes(),
            family: j.family,
            _pad: 0,
            addr: j.client,
        };
        EXEMPT
            .get(Key::new(ExemptPrefix::HEADER_BITS + bits, data))
            .is_some()
    };
    match app_scope(
        policy,
        || scoped(SCOPE_IFACE, j.ifindex),
        || scoped(SCOPE_VLAN, u32::from(j.vlan)),
        exempted,
    ) {
        AppScope::Applies => true,
        AppScope::Outside => false,
        AppScope::Exempt => {
            j.exempt = 1;
            false
        }
    }
}

/// The app whose rules match the name just read, and its action, if any. `one_pass`: try
/// the one-pass match first (the fast path's).
#[inline(always)]
fn action_for_name(one_pass: bool) -> Option<(u16, Action)> {
    let j = crate::judging::judging()?;
    // One snapshot of the settings for the whole name: a reload switching sides in the
    // middle must not pair one side's seed with the other's table.
    // SAFETY: both are `Settings`, 8-byte aligned map values.
    unsafe { filter_common::copy_words(&raw mut j.settings, crate::settings::settings()?) };
    let seed = j.settings.hash_seed;
    let found = if one_pass
        && j.suffixes
            .hash(&j.walk.name, j.walk.name_len as usize, seed)
    {
        crate::judging::judging()?.suffixes.lookup(&Maps)
    } else {
        None
    };
    let rule = match found {
        Some(rule) => rule?,
        None => rounds_match(seed)?,
    };
    let j = crate::judging::judging()?;
    let base = j.settings.apps_base;
    let app = APPS.get(base + u32::from(rule.app))?;
    // Exemptions and scopes are keyed by the app's entry in its side of `APPS`.
    let key = (base + u32::from(rule.app)) as u16;
    if !applies(key, app, j) {
        return None;
    }
    Some((rule.app, Action::from_u8(app.action)?))
}

/// The rule the name matches, by `NameMatch`'s rounds: any name, wildcards included.
#[inline(always)]
fn rounds_match(seed: u64) -> Option<filter_common::RuleValue> {
    let j = crate::judging::judging()?;
    // SAFETY: an aligned field of a map value; zeroes are the empty match.
    unsafe { filter_common::zero_words(&raw mut j.name) };
    j.name.begin(&j.walk.name, j.walk.name_len as usize, seed);
    // One label, or one byte of a wildcard comparison, per round keeps the verifier's view
    // to one label's bytes.
    // SAFETY: the callback has the signature bpf_loop expects; its state is in JUDGING.
    unsafe {
        bpf_loop(
            MATCH_ROUNDS_MAX,
            match_round as *mut c_void,
            core::ptr::null_mut(),
            0,
        )
    };
    crate::judging::judging()?.name.result()
}

/// Matches the name the walker just read and records what it means in the judging state:
/// true for a blocking app (its id and action noted), else false, with the first monitoring
/// app noted. The one consequence of a name for the walker and the fast path alike
/// (`one_pass`: the fast path, which matches in one pass where it can).
#[inline(always)]
pub fn judge_name(one_pass: bool) -> bool {
    let matched = action_for_name(one_pass);
    let Some(j) = crate::judging::judging() else {
        return false;
    };
    match matched {
        Some((app, action @ (Action::Drop | Action::Reject))) => {
            j.app = app;
            j.action = action as u8;
            true
        }
        Some((app, Action::Monitor)) => {
            if j.monitored_app == NO_APP {
                j.monitored_app = app;
            }
            false
        }
        None => false,
    }
}

/// The rule tables as the matcher sees them: the program's maps.
struct Maps;

impl RuleTables for Maps {
    #[inline(always)]
    fn rule(&self, key: RuleKey) -> Option<RuleValue> {
        probe(key, RULE_PROBES_MAX)?
    }

    #[inline(always)]
    fn rule_near(&self, key: RuleKey) -> Option<Option<RuleValue>> {
        probe(key, ONE_PASS_PROBES)
    }

    #[inline(always)]
    fn pattern(&self, index: u16) -> Option<&WildPattern> {
        WILDCARDS.get(u32::from(index))
    }
}

/// The rule of `key`, probing at most `probes` slots of the side in force; `None` when
/// those did not tell (or the table is missing).
#[inline(always)]
fn probe(key: RuleKey, probes: u32) -> Option<Option<RuleValue>> {
    let s = &crate::judging::judging()?.settings;
    let h = slot_hash(key.hash);
    let start = first_slot(h, s.rules_mask);
    for probe in 0..probes {
        let slot = RULES.get(s.rules_base + (start.wrapping_add(probe) & s.rules_mask))?;
        if slot.hash == h {
            return Some(Some(slot.value));
        }
        if slot.hash == 0 {
            return Some(None);
        }
    }
    None
}

extern "C" fn match_round(_index: u64, _ctx: *mut c_void) -> i64 {
    let Some(j) = crate::judging::judging() else {
        return 1;
    };
    i64::from(j.name.advance(&j.walk.name, &Maps))
}

//! The rule maps and settings of a loaded filter: the rules table (Robin Hood placed
//! under a fresh seed), wildcards, apps, exemptions and scopes written into the side not in
//! force, the policy keys, and the one write of `SETTINGS` that switches sides.

use std::{fs::File, io::Read as _, net::IpAddr};

use aya::maps::{Array, HashMap, LpmTrie, MapData, lpm_trie::Key};
use filter_common::{
    AppPolicy, ExemptPrefix, RULE_PROBES_MAX, RuleSlot, SCOPE_IFACE, SCOPE_VLAN, ScopeKey,
    Settings, Sides, WILDCARDS_MAX, first_slot, name::WildPattern, names, slot_hash,
};

use super::Filter;
use crate::{
    Error,
    config::{Config, Mode, Uninspectable},
    rules::{AppRules, RuleSet},
};

/// How long a side of the tables rests after leaving service before it is rewritten.
const SIDE_REUSE_GRACE: std::time::Duration = std::time::Duration::from_millis(20);

impl Filter {
    /// Replaces the rule set (rules, wildcards, apps, exemptions, scopes), keeping the policy.
    pub fn install(&mut self, set: &RuleSet) -> Result<(), Error> {
        self.apply(None, Some(set))
    }

    /// Applies a configuration and its rule set at once: everything is written into the
    /// sides not in force, then one write of `ACTIVE` switches the program over, so no
    /// packet sees neither set or a mix of the two.
    pub fn apply_config(&mut self, config: &Config, set: &RuleSet) -> Result<(), Error> {
        self.apply(Some(config), Some(set))
    }

    fn apply(&mut self, config: Option<&Config>, set: Option<&RuleSet>) -> Result<(), Error> {
        // The sides about to be written left service at the last switch; a packet that read
        // the settings just before it may still be using them. Programs finish a packet in
        // microseconds, so a short wait before reusing a side is ample.
        if let Some(elapsed) = self.switched.map(|t| t.elapsed())
            && elapsed < SIDE_REUSE_GRACE
        {
            std::thread::sleep(SIDE_REUSE_GRACE.saturating_sub(elapsed));
        }
        let mut next = self.settings();
        let old_apps_base = next.apps_base;
        if let Some(set) = set {
            self.write_rules(set, &mut next)?;
        }
        let ports = config.map(|config| Self::write_policy(config, &mut next));
        self.commit(next, ports.as_deref())?;
        if set.is_some() {
            self.remove_scopes_of(old_apps_base)?;
        }
        Ok(())
    }

    /// Writes a settings value (and the inspected ports, or those in force when `None`) into
    /// the side not in force, then makes it the one in force: two writes of the whole value,
    /// the second changing only the switch (see `filter_common::Sides`).
    pub(super) fn commit(&mut self, next: Settings, ports: Option<&[u64]>) -> Result<(), Error> {
        let (from, to) = (self.sides.active, self.sides.active ^ 1);
        match ports {
            Some(p) => self.sides.side[to as usize].ports.copy_from_slice(p),
            None => self.sides.side[to as usize].ports = self.sides.side[from as usize].ports,
        }
        self.sides.side[to as usize].settings = next;
        self.write_sides(from)?;
        // Only once the kernel has it: a failed switch leaves the side in force as it was,
        // and the next commit writes the other one again.
        self.write_sides(to)?;
        self.sides.active = to;
        self.switched = Some(std::time::Instant::now());
        Ok(())
    }

    /// The settings in force.
    pub(super) fn settings(&self) -> Settings {
        self.sides.side[self.sides.active as usize].settings
    }

    /// Writes both sides with `active` as the side in force.
    fn write_sides(&mut self, active: u32) -> Result<(), Error> {
        let sides = Sides {
            active,
            ..*self.sides
        };
        let mut map: Array<&mut MapData, Sides> = self.map_mut(names::SETTINGS)?;
        map.set(0, sides, 0).map_err(|e| {
            Error::map(
                names::SETTINGS,
                format!("writing with side {active} in force"),
                e,
            )
        })
    }

    /// Fills the side of the rules, wildcards and apps not in force with `set`.
    fn write_rules(&mut self, set: &RuleSet, next: &mut Settings) -> Result<(), Error> {
        let side = u32::from(self.settings().rules_base == 0);
        let slots = self.rule_slots;
        let (seed, table) = self.build_table(set)?;
        let mut tables = set.tables(seed)?;
        // Wildcard patterns live in the same side: their indices point into it.
        let offset = side * WILDCARDS_MAX;
        for p in &mut tables.patterns {
            if p.next != 0 {
                p.next += offset as u16;
            }
        }
        let mut wild: Array<&mut MapData, WildPattern> = self.map_mut(names::WILDCARDS)?;
        for (i, p) in tables.patterns.iter().enumerate() {
            let at = offset + i as u32;
            wild.set(at, *p, 0)
                .map_err(|e| Error::map(names::WILDCARDS, format!("writing slot {at}"), e))?;
        }
        // Only slots that hold a rule now or held one the last time this side was written
        // need a write: the rest are already empty.
        let used: Vec<u32> = (0..slots)
            .filter(|&i| table[i as usize].hash != 0)
            .collect();
        let stale = std::mem::take(&mut self.side_slots[side as usize]);
        let mut rules: Array<&mut MapData, RuleSlot> = self.map_mut(names::RULES)?;
        let rule_failed = |at: u32, e| Error::map(names::RULES, format!("writing slot {at}"), e);
        for i in stale.into_iter().filter(|&i| table[i as usize].hash == 0) {
            let at = side * slots + i;
            rules
                .set(at, RuleSlot::default(), 0)
                .map_err(|e| rule_failed(at, e))?;
        }
        for &i in &used {
            let mut slot = table[i as usize];
            if slot.value.wild != 0 {
                slot.value.wild += offset as u16;
            }
            let at = side * slots + i;
            rules.set(at, slot, 0).map_err(|e| rule_failed(at, e))?;
        }
        self.side_slots[side as usize] = used;
        let apps_base = side * filter_common::APPS_MAX;
        let mut apps: Array<&mut MapData, AppPolicy> = self.map_mut(names::APPS)?;
        for i in 0..filter_common::APPS_MAX {
            let policy = set
                .apps
                .get(i as usize)
                .map_or_else(AppPolicy::default, AppRules::policy);
            let at = apps_base + i;
            apps.set(at, policy, 0)
                .map_err(|e| Error::map(names::APPS, format!("writing slot {at}"), e))?;
        }
        self.install_scopes(set, apps_base)?;
        next.hash_seed = seed;
        next.rules_base = side * slots;
        next.rules_mask = slots - 1;
        next.apps_base = apps_base;
        Ok(())
    }

    /// The rules as an open-addressing table under a fresh seed; a seed under which some
    /// key would need more than `RULE_PROBES_MAX` probes is replaced by another.
    fn build_table(&self, set: &RuleSet) -> Result<(u64, Vec<RuleSlot>), Error> {
        const SEEDS_TRIED: usize = 8;
        for _ in 0..SEEDS_TRIED {
            let seed = random_seed()?;
            if let Some(table) = robin_hood(&set.tables(seed)?, self.rule_slots) {
                return Ok((seed, table));
            }
        }
        Err(Error::config(
            "rules_max",
            format!(
                "{} rules do not fit the rules table of {} slots; raise rules_max",
                set.rule_count(),
                self.rule_slots
            ),
        ))
    }

    /// Source exemptions and interface/VLAN scopes of every app: the new entries first,
    /// then those no longer wanted are removed.
    fn install_scopes(&mut self, set: &RuleSet, apps_base: u32) -> Result<(), Error> {
        let mut exempt_keys = Vec::new();
        let mut scope_keys = Vec::new();
        for (i, app) in set.apps.iter().enumerate() {
            let id = (apps_base + i as u32) as u16;
            for net in &app.exempt_sources {
                let (family, addr) = match net.addr() {
                    IpAddr::V4(a) => {
                        let mut b = [0u8; 16];
                        b[..4].copy_from_slice(&a.octets());
                        (4, b)
                    }
                    IpAddr::V6(a) => (6, a.octets()),
                };
                let data = ExemptPrefix {
                    app: id.to_be_bytes(),
                    family,
                    _pad: 0,
                    addr,
                };
                exempt_keys.push(Key::new(
                    ExemptPrefix::HEADER_BITS + u32::from(net.prefix_len()),
                    data,
                ));
            }
            for iface in &app.interfaces {
                let index = crate::state::ifindex(iface).ok_or_else(|| Error::Attach {
                    iface: iface.clone(),
                    reason: format!("named by app {} but does not exist", app.name),
                })?;
                scope_keys.push(ScopeKey {
                    app: id,
                    kind: SCOPE_IFACE,
                    _pad: 0,
                    value: index,
                });
            }
            for &vlan in &app.vlans {
                scope_keys.push(ScopeKey {
                    app: id,
                    kind: SCOPE_VLAN,
                    _pad: 0,
                    value: u32::from(vlan),
                });
            }
        }
        let mut exempt: LpmTrie<&mut MapData, ExemptPrefix, u8> = self.map_mut(names::EXEMPT)?;
        for k in &exempt_keys {
            exempt
                .insert(k, 1, 0)
                .map_err(|e| Error::map(names::EXEMPT, "inserting an exemption", e))?;
        }
        let mut scopes: HashMap<&mut MapData, ScopeKey, u8> = self.map_mut(names::SCOPES)?;
        for k in &scope_keys {
            scopes
                .insert(k, 1, 0)
                .map_err(|e| Error::map(names::SCOPES, "inserting a scope", e))?;
        }
        Ok(())
    }

    /// Removes the exemptions and scopes of the apps side that left service.
    fn remove_scopes_of(&mut self, apps_base: u32) -> Result<(), Error> {
        let range = apps_base..apps_base + filter_common::APPS_MAX;
        let mut exempt: LpmTrie<&mut MapData, ExemptPrefix, u8> = self.map_mut(names::EXEMPT)?;
        let old: Vec<Key<ExemptPrefix>> = exempt.keys().filter_map(Result::ok).collect();
        for k in old
            .iter()
            .filter(|k| range.contains(&u32::from(u16::from_be_bytes(k.data().app))))
        {
            let _ = exempt.remove(k);
        }
        let mut scopes: HashMap<&mut MapData, ScopeKey, u8> = self.map_mut(names::SCOPES)?;
        let old: Vec<ScopeKey> = scopes.keys().filter_map(Result::ok).collect();
        for k in old.iter().filter(|k| range.contains(&u32::from(k.app))) {
            let _ = scopes.remove(k);
        }
        Ok(())
    }

    /// Applies the policy keys of a configuration (the mode, the `uninspectable` policy, the
    /// blocked flows' idle timeout, the inspected ports), keeping the rule set.
    pub fn set_policy(&mut self, config: &Config) -> Result<(), Error> {
        self.apply(Some(config), None)
    }

    /// Sets the policy keys of `next`; returns the inspected-ports bitmap.
    fn write_policy(config: &Config, next: &mut Settings) -> Vec<u64> {
        let mut words = vec![0u64; filter_common::PORT_WORDS as usize];
        for &p in &config.inspected_ports {
            words[usize::from(p) / 64] |= 1 << (p % 64);
        }
        next.all_ports = u8::from(config.inspected_ports.is_empty());
        next.uninspectable_drop = u8::from(config.uninspectable == Uninspectable::Drop);
        next.flow_idle_ns = config.flow_idle_secs.saturating_mul(1_000_000_000);
        next.quic_mode = config.quic.mode();
        next.quic_hold = u8::from(config.quic_hold);
        next.walker_only = u8::from(!config.hello_fast_path);
        next.monitor = u8::from(config.mode == Mode::Monitor);
        next.quic_ports = [0; filter_common::QUIC_PORTS_MAX];
        for (slot, &p) in next.quic_ports.iter_mut().zip(&config.quic_ports) {
            *slot = p;
        }
        words
    }

    /// Sends every hello through the walker (`on`) or lets the fast path read the hellos it
    /// can (the default). For tests and benchmarks that compare the two paths.
    pub fn set_walker_only(&mut self, on: bool) -> Result<(), Error> {
        let mut next = self.settings();
        next.walker_only = u8::from(on);
        self.commit(next, None)
    }

    /// Sets `trace_all`: an event for every judged hello. Only for filters of their own
    /// (replay), never for the live one.
    pub fn set_trace_all(&mut self, on: bool) -> Result<(), Error> {
        let mut next = self.settings();
        next.trace_all = u8::from(on);
        self.commit(next, None)
    }
}

/// Places every rule with Robin Hood insertion: a key that has probed further than the one
/// in a slot takes the slot and moves that one on. The lookup is plain linear probing; Robin
/// Hood only keeps every key's distance from its first slot short (at half load, a handful
/// of probes even for 1M rules), so none needs more than `RULE_PROBES_MAX`. `None` if one
/// would.
fn robin_hood(tables: &crate::rules::Tables, slots: u32) -> Option<Vec<RuleSlot>> {
    let mask = slots - 1;
    let mut table = vec![RuleSlot::default(); slots as usize];
    let distance = |hash: u64, at: u32| at.wrapping_sub(first_slot(hash, mask)) & mask;
    for (key, value) in &tables.rules {
        let mut entry = RuleSlot {
            hash: slot_hash(key.hash),
            value: *value,
        };
        let mut at = first_slot(entry.hash, mask);
        let mut dist = 0;
        loop {
            if dist >= RULE_PROBES_MAX {
                return None;
            }
            let slot = &mut table[at as usize];
            if slot.hash == 0 || slot.hash == entry.hash {
                *slot = entry;
                break;
            }
            let theirs = distance(slot.hash, at);
            if theirs < dist {
                std::mem::swap(slot, &mut entry);
                dist = theirs;
            }
            at = (at + 1) & mask;
            dist += 1;
        }
    }
    Some(table)
}

fn random_seed() -> Result<u64, Error> {
    let mut b = [0u8; 8];
    File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .map_err(|source| Error::Read {
            path: "/dev/urandom".into(),
            source,
        })?;
    Ok(u64::from_ne_bytes(b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use filter_common::{RuleValue, name::RuleKey};

    /// What the program does: linear probing from the first slot, stopping at an empty one.
    fn probe(table: &[RuleSlot], hash: u64) -> Option<u32> {
        let mask = table.len() as u32 - 1;
        let h = slot_hash(hash);
        let start = first_slot(h, mask);
        for i in 0..RULE_PROBES_MAX {
            let slot = table[(start.wrapping_add(i) & mask) as usize];
            if slot.hash == h {
                return Some(i);
            }
            if slot.hash == 0 {
                return None;
            }
        }
        None
    }

    #[test]
    fn a_million_rules_fit_their_table_within_the_probe_bound() {
        let n: u32 = 1_000_000;
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let rules: std::collections::HashMap<RuleKey, RuleValue> = (0..n)
            .map(|i| {
                // splitmix64: well-spread keys, as the seeded name hash gives.
                state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
                let mut z = state;
                z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
                z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
                (
                    RuleKey {
                        hash: z ^ (z >> 31),
                    },
                    RuleValue {
                        app: (i % 7) as u16,
                        flags: 1,
                        wild: 0,
                        _pad: 0,
                    },
                )
            })
            .collect();
        let tables = crate::rules::Tables {
            rules,
            patterns: Vec::new(),
        };
        let table = robin_hood(&tables, filter_common::rule_slots(n)).expect("the rules fit");
        let mut longest = 0;
        for (k, v) in &tables.rules {
            let found = probe(&table, k.hash).expect("every rule is found within the bound");
            assert_eq!(
                table[((first_slot(slot_hash(k.hash), table.len() as u32 - 1) + found) as usize)
                    & (table.len() - 1)]
                    .value,
                *v
            );
            longest = longest.max(found);
        }
        println!("1M rules: longest probe {}", longest + 1);
        assert!(
            longest + 1 < RULE_PROBES_MAX / 2,
            "longest probe {} is near the bound",
            longest + 1
        );
    }
}

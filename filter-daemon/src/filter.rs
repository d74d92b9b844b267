//! The compiled XDP program embedded in this binary: loading it, filling its rule maps,
//! attaching it to interfaces and reading its counters.

use std::{fs::File, io::Read as _};

use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, HashMap, LpmTrie, MapData, PerCpuArray, ProgramArray, RingBuf, lpm_trie::Key},
    programs::{
        Xdp, XdpMode as AyaXdpMode,
        links::{FdLink, PinnedLink},
        xdp::{XdpLink, XdpLinkId},
    },
};
use std::net::IpAddr;

use filter_common::{
    AppPolicy, BlockedFlow, Counter, Event, ExemptPrefix, FlowKey, FlowTable, HINT_WORDS,
    LAYOUT_VERSION, REASON_COUNT, RULE_PROBES_MAX, RuleSlot, SCOPE_IFACE, SCOPE_VLAN, ScopeKey,
    Settings, Sides, WILDCARDS_MAX, first_slot, flow_hash,
    hello::{HELLO_CONFLICT_IDLE_NS, HELLO_IDLE_NS, HelloFlow},
    hint_bit,
    name::WildPattern,
    names, slot_hash,
};

use crate::{
    Error,
    config::{Config, Uninspectable, XdpMode},
    rules::{AppRules, RuleSet},
    state::{Instance, PINNED_MAPS},
};

/// The object file built from `filter-ebpf` by build.rs.
pub static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/filter-ebpf"));

/// A loaded (and possibly attached) filter. Dropping it detaches and unloads it.
pub struct Filter {
    ebpf: Ebpf,
    /// The value of `SETTINGS` as last written: both sides and the one in force.
    sides: Box<Sides>,
    /// Slots of one side of the rules table.
    rule_slots: u32,
    /// The slots each side of the rules table holds rules in.
    side_slots: [Vec<u32>; 2],
    /// When the last switch of sides happened.
    switched: Option<std::time::Instant>,
    /// `FLOW_HINTS` mapped into this process, once used.
    hints: Option<HintWords>,
    /// The verifier's figures for the two programs, judging program first.
    verification: Vec<Verification>,
}

/// The verifier's limit of processed instructions per program (`BPF_COMPLEXITY_LIMIT_INSNS`).
pub const VERIFIER_LIMIT: u32 = 1_000_000;

/// The most processed instructions this project accepts for a program: a fifth of the
/// limit, because the verifier's work for one program moves between kernels and builds,
/// and a program that verifies only just is a gateway that may not come back after a
/// reboot or an upgrade.
pub const VERIFIED_INSNS_BOUND: u32 = 200_000;

/// What the verifier reported for one program this filter loaded.
#[derive(Clone, Debug)]
pub struct Verification {
    pub program: &'static str,
    /// Processed instructions, as the kernel reports them for the loaded program
    /// (`verified_insns` of `BPF_OBJ_GET_INFO_BY_FD`; `None` before 5.16).
    pub instructions: Option<u32>,
    /// Wall time of the load, which is the verifier's time.
    pub took: std::time::Duration,
}

/// How long a side of the tables rests after leaving service before it is rewritten.
const SIDE_REUSE_GRACE: std::time::Duration = std::time::Duration::from_millis(20);

/// How [`Filter::attach_pinned`] put the program on an interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Attached {
    /// A new link, in this mode.
    New(XdpMode),
    /// The link an earlier daemon pinned, its program replaced by this one.
    Adopted,
}

/// Counters summed over every CPU, indexed by `Reason`.
pub type Counters = Vec<Counter>;

impl Filter {
    /// Loads the program with the table sizes and policy of a configuration.
    pub fn load_for(config: &Config) -> Result<Self, Error> {
        let mut f = Self::load_sized(
            config.rules_max,
            config.verdicts_max,
            config.hellos_max,
            None,
        )?;
        f.set_policy(config)?;
        Ok(f)
    }

    /// As [`Filter::load_for`], with the maps that outlive a daemon taken from the pins of
    /// `instance` where they exist (see [`Instance::prune_pins`]) and pinned there where they
    /// do not.
    pub fn load_pinned(config: &Config, instance: &Instance) -> Result<Self, Error> {
        let mut f = Self::load_sized(
            config.rules_max,
            config.verdicts_max,
            config.hellos_max,
            Some(instance),
        )?;
        f.set_policy(config)?;
        let mut layout: Array<&mut MapData, u32> = f.map_mut(names::LAYOUT)?;
        layout
            .set(0, LAYOUT_VERSION, 0)
            .map_err(|e| Error::MapText(format!("{}: {e}", names::LAYOUT)))?;
        Ok(f)
    }

    /// Loads the program into the kernel with room for `rules_max` rules and default
    /// tables, for filters of their own (replay, tests).
    pub fn load(rules_max: u32) -> Result<Self, Error> {
        Self::load_sized(
            rules_max,
            filter_common::VERDICTS_DEFAULT_MAX,
            filter_common::HELLOS_DEFAULT_MAX,
            None,
        )
    }

    /// During a reload the old and new rule sets live side by side, so the rules map holds
    /// twice `rules_max`.
    fn load_sized(
        rules_max: u32,
        verdicts_max: u32,
        hellos_max: u32,
        pins: Option<&Instance>,
    ) -> Result<Self, Error> {
        let mut loader = EbpfLoader::new();
        loader
            .map_max_entries(names::RULES, 2 * filter_common::rule_slots(rules_max))
            .map_max_entries(names::VERDICTS, verdicts_max)
            .map_max_entries(names::HELLOS, hellos_max);
        if let Some(instance) = pins {
            for name in PINNED_MAPS {
                loader.map_pin_path(name, instance.pin(name));
            }
        }
        let mut ebpf = loader
            .load(OBJECT)
            .map_err(|e| Error::LoadText(format!("{e}")))?;
        // The judging program first: the header program tail-calls it through JUDGE.
        let mut verification = Vec::new();
        for name in [names::JUDGE_PROGRAM, names::PROGRAM] {
            let program: &mut Xdp = ebpf
                .program_mut(name)
                .ok_or_else(|| Error::LoadText(format!("program {name} missing from the object")))?
                .try_into()
                .map_err(|e| Error::LoadText(format!("{e}")))?;
            let start = std::time::Instant::now();
            program
                .load()
                .map_err(|e| Error::LoadText(format!("{name}: {}", verifier_message(&e))))?;
            verification.push(Verification {
                program: name,
                took: start.elapsed(),
                instructions: program
                    .info()
                    .ok()
                    .and_then(|i| i.verified_instruction_count()),
            });
        }
        let judge_fd = {
            let judge: &Xdp = ebpf
                .program(names::JUDGE_PROGRAM)
                .and_then(|p| p.try_into().ok())
                .ok_or_else(|| Error::LoadText("judging program missing".into()))?;
            judge
                .fd()
                .map_err(|e| Error::LoadText(format!("{e}")))?
                .try_clone()
                .map_err(|e| Error::LoadText(format!("{e}")))?
        };
        let map = ebpf
            .map_mut(names::JUDGE)
            .ok_or_else(|| Error::LoadText("JUDGE map missing".into()))?;
        let mut judge_slot: ProgramArray<&mut MapData> = ProgramArray::try_from(map)
            .map_err(|e| Error::MapText(format!("{}: {e}", names::JUDGE)))?;
        judge_slot
            .set(0, &judge_fd, 0)
            .map_err(|e| Error::MapText(format!("{}: {e}", names::JUDGE)))?;
        let mut settings = Settings {
            flow_idle_ns: crate::config::FLOW_IDLE_DEFAULT_SECS * 1_000_000_000,
            all_ports: 1,
            quic_ports: [crate::config::QUIC_PORT_DEFAULT, 0, 0, 0],
            ..Settings::default()
        };
        let mut filter = Self {
            ebpf,
            // Side 1 in force, empty, so that the first commit fills side 0.
            sides: Box::new(Sides {
                active: 1,
                ..Sides::EMPTY
            }),
            rule_slots: filter_common::rule_slots(rules_max),
            side_slots: [Vec::new(), Vec::new()],
            switched: None,
            hints: None,
            verification,
        };
        // Side 1 of everything starts in force, empty, so the first rule set fills side 0.
        settings.rules_base = filter.rule_slots;
        settings.apps_base = filter_common::APPS_MAX;
        filter.commit(settings, None)?;
        // Adopted tables come with their bits; rebuilding checks the mapping works too.
        filter.rebuild_hints()?;
        Ok(filter)
    }

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
    fn commit(&mut self, next: Settings, ports: Option<&[u64]>) -> Result<(), Error> {
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
    fn settings(&self) -> Settings {
        self.sides.side[self.sides.active as usize].settings
    }

    /// Writes both sides with `active` as the side in force.
    fn write_sides(&mut self, active: u32) -> Result<(), Error> {
        let sides = Sides {
            active,
            ..*self.sides
        };
        let mut map: Array<&mut MapData, Sides> = self.map_mut(names::SETTINGS)?;
        map.set(0, sides, 0)
            .map_err(|e| Error::MapText(format!("{}: {e}", names::SETTINGS)))
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
            wild.set(offset + i as u32, *p, 0)
                .map_err(|e| Error::MapText(format!("{}: {e}", names::WILDCARDS)))?;
        }
        // Only slots that hold a rule now or held one the last time this side was written
        // need a write: the rest are already empty.
        let used: Vec<u32> = (0..slots)
            .filter(|&i| table[i as usize].hash != 0)
            .collect();
        let stale = std::mem::take(&mut self.side_slots[side as usize]);
        let mut rules: Array<&mut MapData, RuleSlot> = self.map_mut(names::RULES)?;
        for i in stale.into_iter().filter(|&i| table[i as usize].hash == 0) {
            rules
                .set(side * slots + i, RuleSlot::default(), 0)
                .map_err(|e| Error::MapText(format!("{}[{i}]: {e}", names::RULES)))?;
        }
        for &i in &used {
            let mut slot = table[i as usize];
            if slot.value.wild != 0 {
                slot.value.wild += offset as u16;
            }
            rules
                .set(side * slots + i, slot, 0)
                .map_err(|e| Error::MapText(format!("{}[{i}]: {e}", names::RULES)))?;
        }
        self.side_slots[side as usize] = used;
        let apps_base = side * filter_common::APPS_MAX;
        let mut apps: Array<&mut MapData, AppPolicy> = self.map_mut(names::APPS)?;
        for i in 0..filter_common::APPS_MAX {
            let policy = set
                .apps
                .get(i as usize)
                .map_or_else(AppPolicy::default, AppRules::policy);
            apps.set(apps_base + i, policy, 0)
                .map_err(|e| Error::MapText(format!("{}: {e}", names::APPS)))?;
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
        Err(Error::MapText(format!(
            "{} rules do not fit the rules table of {} slots; raise rules_max",
            set.rule_count(),
            self.rule_slots
        )))
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
                .map_err(|e| Error::MapText(format!("{}: {e}", names::EXEMPT)))?;
        }
        let mut scopes: HashMap<&mut MapData, ScopeKey, u8> = self.map_mut(names::SCOPES)?;
        for k in &scope_keys {
            scopes
                .insert(k, 1, 0)
                .map_err(|e| Error::MapText(format!("{}: {e}", names::SCOPES)))?;
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

    fn map_mut<'a, T>(&'a mut self, name: &str) -> Result<T, Error>
    where
        T: TryFrom<&'a mut aya::maps::Map, Error = aya::maps::MapError>,
    {
        let map = self
            .ebpf
            .map_mut(name)
            .ok_or_else(|| Error::MapText(format!("map {name} missing from the object")))?;
        T::try_from(map).map_err(|e| Error::MapText(format!("map {name}: {e}")))
    }

    /// The kernel's id of a map of this filter, to open a handle of its own elsewhere.
    pub fn map_id(&self, name: &str) -> Result<u32, Error> {
        use aya::maps::Map;
        let map = self
            .ebpf
            .map(name)
            .ok_or_else(|| Error::MapText(format!("map {name} missing from the object")))?;
        let (Map::Array(data) | Map::HashMap(data) | Map::LruHashMap(data) | Map::RingBuf(data)) =
            map
        else {
            return Err(Error::MapText(format!("map {name}: no id for its type")));
        };
        data.info()
            .map(|i| i.id())
            .map_err(|e| Error::MapText(format!("map {name}: {e}")))
    }

    pub fn program(&self) -> &Xdp {
        self.ebpf
            .program(names::PROGRAM)
            .and_then(|p| p.try_into().ok())
            .expect("the program was checked at load")
    }

    fn program_mut(&mut self) -> &mut Xdp {
        self.ebpf
            .program_mut(names::PROGRAM)
            .and_then(|p| p.try_into().ok())
            .expect("the program was checked at load")
    }

    /// Runs one frame through the loaded program (`BPF_PROG_TEST_RUN`) with this filter's
    /// maps, so state carries over from frame to frame as on a live interface. Returns the
    /// XDP action.
    pub fn run_frame(&self, frame: &[u8]) -> Result<u32, Error> {
        self.run_frame_out(frame).map(|(action, _)| action)
    }

    /// As [`Filter::run_frame`], with the frame as the program left it (a `reject` turns
    /// it into the reset sent back to the client).
    pub fn run_frame_out(&self, frame: &[u8]) -> Result<(u32, Vec<u8>), Error> {
        use aya::programs::{TestRun as _, TestRunOptions};
        let mut out = vec![0u8; frame.len() + 256];
        let opts = TestRunOptions {
            data_in: Some(frame),
            data_out: Some(&mut out),
            ..TestRunOptions::new()
        };
        let result = self
            .program()
            .test_run(opts)
            .map_err(|e| Error::LoadText(format!("BPF_PROG_TEST_RUN: {}", error_chain(&e))))?;
        out.truncate(result.data_size_out as usize);
        Ok((result.return_value, out))
    }

    /// Applies the policy keys of a configuration (the `uninspectable` policy, the blocked
    /// flows' idle timeout, the inspected ports), keeping the rule set.
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

    /// Takes every event the program has written since the last call.
    pub fn drain_events(&mut self) -> Result<Vec<Event>, Error> {
        let map = self
            .ebpf
            .map_mut(names::EVENTS)
            .ok_or_else(|| Error::MapText("events map missing".into()))?;
        let mut ring: RingBuf<&mut MapData> = RingBuf::try_from(map)
            .map_err(|e| Error::MapText(format!("{}: {e}", names::EVENTS)))?;
        let mut events = Vec::new();
        while let Some(item) = ring.next() {
            if item.len() >= size_of::<Event>() {
                // SAFETY: the program writes whole `Event` records; read unaligned from the ring.
                events.push(unsafe { std::ptr::read_unaligned(item.as_ptr().cast::<Event>()) });
            }
        }
        Ok(events)
    }

    /// Removes reassembly states and blocked verdicts that went idle (the program forgets
    /// them when it meets them again; this frees the table for flows it never meets again).
    /// Returns how many of each were removed.
    pub fn sweep(&mut self) -> Result<(usize, usize), Error> {
        let now = monotonic_ns();
        let idle = self.settings().flow_idle_ns;
        let mut hellos: HashMap<&mut MapData, FlowKey, HelloFlow> = self.map_mut(names::HELLOS)?;
        let stale: Vec<FlowKey> = hellos
            .iter()
            .filter_map(Result::ok)
            .filter(|(_, h)| {
                let limit = if h.conflict != 0 {
                    HELLO_CONFLICT_IDLE_NS
                } else {
                    HELLO_IDLE_NS
                };
                now.saturating_sub(h.touched_ns) > limit
            })
            .map(|(k, _)| k)
            .collect();
        for k in &stale {
            let _ = hellos.remove(k);
        }
        let mut verdicts: HashMap<&mut MapData, FlowKey, BlockedFlow> =
            self.map_mut(names::VERDICTS)?;
        let expired: Vec<FlowKey> = verdicts
            .iter()
            .filter_map(Result::ok)
            .filter(|(_, v)| now.saturating_sub(v.last_ns) > idle)
            .map(|(k, _)| k)
            .collect();
        for k in &expired {
            let _ = verdicts.remove(k);
        }
        self.rebuild_hints()?;
        Ok((stale.len(), expired.len()))
    }

    /// Rebuilds the side of `FLOW_HINTS` not in force from the tables' entries, then puts it
    /// in force (see the program's `hints.rs` for why no entry loses its bit).
    pub fn rebuild_hints(&mut self) -> Result<(), Error> {
        use std::sync::atomic::Ordering::SeqCst;
        let side_map: Array<&MapData, u32> = self.map(names::HINT_SIDE)?;
        let side = side_map.get(&0, 0).unwrap_or(0) & 1;
        let other = side ^ 1;
        let words = HINT_WORDS as usize;
        let mut bits = Vec::new();
        {
            let hints = self.hints()?;
            for w in &hints.words()[other as usize * words..(other as usize + 1) * words] {
                w.store(0, SeqCst);
            }
        }
        // After the clear: an entry the program adds from now on sets its own bit here.
        let mut mark = |table, keys: &mut dyn Iterator<Item = FlowKey>| {
            bits.extend(keys.map(|k| hint_bit(flow_hash(&k), table) as usize));
        };
        let verdicts: HashMap<&MapData, FlowKey, BlockedFlow> = self.map(names::VERDICTS)?;
        mark(
            FlowTable::Verdicts,
            &mut verdicts.keys().filter_map(Result::ok),
        );
        let hellos: HashMap<&MapData, FlowKey, HelloFlow> = self.map(names::HELLOS)?;
        mark(FlowTable::Hellos, &mut hellos.keys().filter_map(Result::ok));
        let opening: HashMap<&MapData, FlowKey, u32> = self.map(names::OPENING)?;
        mark(
            FlowTable::Opening,
            &mut opening.keys().filter_map(Result::ok),
        );
        let hints = self.hints()?;
        for bit in bits {
            hints.words()[other as usize * words + bit / 64].fetch_or(1 << (bit % 64), SeqCst);
        }
        let mut side_map: Array<&mut MapData, u32> = self.map_mut(names::HINT_SIDE)?;
        side_map
            .set(0, other, 0)
            .map_err(|e| Error::MapText(format!("{}: {e}", names::HINT_SIDE)))
    }

    /// `FLOW_HINTS`, mapped into this process once.
    fn hints(&mut self) -> Result<&HintWords, Error> {
        if self.hints.is_none() {
            use aya::maps::Map;
            use std::os::fd::{AsFd as _, AsRawFd as _};
            let Some(Map::Array(data)) = self.ebpf.map(names::FLOW_HINTS) else {
                return Err(Error::MapText(format!("map {} missing", names::FLOW_HINTS)));
            };
            self.hints = Some(HintWords::map(data.fd().as_fd().as_raw_fd())?);
        }
        self.hints
            .as_ref()
            .ok_or_else(|| Error::MapText(format!("map {} not mapped", names::FLOW_HINTS)))
    }

    fn map<'a, T>(&'a self, name: &str) -> Result<T, Error>
    where
        T: TryFrom<&'a aya::maps::Map, Error = aya::maps::MapError>,
    {
        let map = self
            .ebpf
            .map(name)
            .ok_or_else(|| Error::MapText(format!("map {name} missing from the object")))?;
        T::try_from(map).map_err(|e| Error::MapText(format!("map {name}: {e}")))
    }

    /// Whether the object has a map of this name.
    pub fn has_map(&self, name: &str) -> bool {
        self.ebpf.map(name).is_some()
    }

    /// What the verifier reported for each program when this filter loaded it.
    pub fn verification(&self) -> &[Verification] {
        &self.verification
    }

    /// The kernel's id of the loaded program.
    pub fn program_id(&self) -> Option<u32> {
        self.program().info().ok().map(|i| i.id())
    }

    /// Attaches to `iface` in `mode`; with `fallback`, a native attach that the driver
    /// refuses is retried in generic mode. Returns the mode in force. The attachment ends
    /// with the filter (tests, benchmarks); the daemon uses [`Filter::attach_pinned`].
    pub fn attach(&mut self, iface: &str, mode: XdpMode, fallback: bool) -> Result<XdpMode, Error> {
        self.attach_link(iface, mode, fallback)
            .map(|(_, mode)| mode)
    }

    fn attach_link(
        &mut self,
        iface: &str,
        mode: XdpMode,
        fallback: bool,
    ) -> Result<(XdpLinkId, XdpMode), Error> {
        let flags = match mode {
            XdpMode::Native => AyaXdpMode::Driver,
            XdpMode::Generic => AyaXdpMode::Skb,
        };
        match self.program_mut().attach(iface, flags) {
            Ok(id) => Ok((id, mode)),
            Err(e) if mode == XdpMode::Native && fallback => {
                eprintln!(
                    "sni-filter: warning: native XDP on {iface} refused ({e}); falling back to generic mode as configured"
                );
                let id = self
                    .program_mut()
                    .attach(iface, AyaXdpMode::Skb)
                    .map_err(|e| Error::Attach {
                        iface: iface.into(),
                        reason: format!("generic XDP: {e}"),
                    })?;
                Ok((id, XdpMode::Generic))
            }
            Err(e) => Err(Error::Attach {
                iface: iface.into(),
                reason: format!(
                    "{} XDP attach failed: {}{}",
                    mode.name(),
                    error_chain(&e),
                    if mode == XdpMode::Native {
                        " (set generic_fallback = true or pass --allow-generic-fallback to accept generic mode)"
                    } else {
                        ""
                    }
                ),
            }),
        }
    }

    /// Puts the program on `iface` through a link pinned under `instance`, so that it stays
    /// attached when this process ends. A link already pinned there (a filter left by an
    /// earlier daemon) is taken over: its program is replaced by this one in one step
    /// (`BPF_LINK_UPDATE`), with no moment without a filter.
    pub fn attach_pinned(
        &mut self,
        iface: &str,
        mode: XdpMode,
        fallback: bool,
        instance: &Instance,
    ) -> Result<Attached, Error> {
        let pin = instance.link_pin(iface);
        let failed = |what: &str, e: &dyn std::fmt::Display| Error::Attach {
            iface: iface.into(),
            reason: format!("{what} {}: {e}", pin.display()),
        };
        if pin.exists() {
            let pinned =
                PinnedLink::from_pin(&pin).map_err(|e| failed("opening the link pinned at", &e))?;
            let link = XdpLink::try_from(FdLink::from(pinned))
                .map_err(|e| failed("the link pinned at", &e))?;
            let id = self.program_mut().attach_to_link(link).map_err(|e| {
                failed(
                    "replacing the program of the link pinned at",
                    &error_chain(&e),
                )
            })?;
            // The pin holds the link; this process's handle on it goes.
            drop(self.program_mut().take_link(id));
            return Ok(Attached::Adopted);
        }
        let (id, actual) = self.attach_link(iface, mode, fallback)?;
        let link = self
            .program_mut()
            .take_link(id)
            .map_err(|e| failed("taking the new link for", &e))?;
        let link = FdLink::try_from(link).map_err(|e| Error::Attach {
            iface: iface.into(),
            reason: format!(
                "the kernel attached XDP without a link ({e}), which cannot be pinned: the filter could not outlive the daemon"
            ),
        })?;
        link.pin(&pin)
            .map_err(|e| failed("pinning the link at", &e))?;
        Ok(Attached::New(actual))
    }

    /// Pins the tail-call table of this program, replacing the pin of the program it took
    /// over (whose table, unpinned, empties once no process holds it: call this only once
    /// this program is on every interface).
    pub fn pin_judge(&self, instance: &Instance) -> Result<(), Error> {
        let path = instance.pin(names::JUDGE);
        let _ = std::fs::remove_file(&path);
        self.ebpf
            .map(names::JUDGE)
            .ok_or_else(|| Error::MapText(format!("map {} missing", names::JUDGE)))?
            .pin(&path)
            .map_err(|e| {
                Error::State(format!(
                    "pinning {} at {}: {e}",
                    names::JUDGE,
                    path.display()
                ))
            })
    }

    pub fn counters(&self) -> Result<Counters, Error> {
        let map = self
            .ebpf
            .map(names::COUNTERS)
            .ok_or_else(|| Error::MapText("counters map missing".into()))?;
        let array: PerCpuArray<&MapData, Counter> = PerCpuArray::try_from(map)
            .map_err(|e| Error::MapText(format!("{}: {e}", names::COUNTERS)))?;
        sum_counters(&array)
    }

    /// The notes (`Note`), summed over every CPU, indexed by note.
    pub fn notes(&self) -> Result<Vec<u64>, Error> {
        let map = self
            .ebpf
            .map(names::NOTES)
            .ok_or_else(|| Error::MapText("notes map missing".into()))?;
        let array: PerCpuArray<&MapData, u64> = PerCpuArray::try_from(map)
            .map_err(|e| Error::MapText(format!("{}: {e}", names::NOTES)))?;
        (0..filter_common::NOTE_COUNT)
            .map(|i| {
                array
                    .get(&i, 0)
                    .map(|per_cpu| per_cpu.iter().sum())
                    .map_err(|e| Error::MapText(format!("{}[{i}]: {e}", names::NOTES)))
            })
            .collect()
    }
}

/// Sums a per-CPU counters array.
pub fn sum_counters<T: std::borrow::Borrow<MapData>>(
    array: &PerCpuArray<T, Counter>,
) -> Result<Counters, Error> {
    (0..REASON_COUNT)
        .map(|i| {
            let per_cpu = array
                .get(&i, 0)
                .map_err(|e| Error::MapText(format!("{}[{i}]: {e}", names::COUNTERS)))?;
            Ok(per_cpu.iter().fold(Counter::default(), |acc, c| Counter {
                packets: acc.packets + c.packets,
                bytes: acc.bytes + c.bytes,
                dropped: acc.dropped + c.dropped,
            }))
        })
        .collect()
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(inner) = cur {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        cur = inner.source();
    }
    s
}

/// The verifier's log is long; its last lines say why the program was refused. The kernel
/// and what to do come with them: a refusal is a fact about this build on this kernel.
fn verifier_message(e: &aya::programs::ProgramError) -> String {
    let full = format!("{e:?}");
    if let aya::programs::ProgramError::LoadError { verifier_log, .. } = e {
        let log = verifier_log.to_string();
        // For whoever changes the program: the whole log, which is long.
        let saved = std::env::var_os("SNI_FILTER_VERIFIER_LOG")
            .filter(|path| std::fs::write(path, &log).is_ok())
            .map(|path| format!("the whole log is in {}", path.to_string_lossy()));
        let tail: Vec<&str> = log.lines().rev().take(25).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map_or_else(|_| "unknown".into(), |r| r.trim().to_string());
        return format!(
            "the verifier of kernel {kernel} refused the program:\n{}\n\
             Nothing was attached or changed: a filter already running stays in force. This \
             build cannot filter on this kernel; keep the version that runs, and report the \
             lines above with the kernel version ({}).",
            tail.join("\n"),
            saved.unwrap_or_else(|| {
                "set SNI_FILTER_VERIFIER_LOG=FILE to save the whole log".into()
            })
        );
    }
    full
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

/// Both sides of `FLOW_HINTS` (an mmapable array), mapped shared: the daemon's atomic
/// operations and the program's act on the same words.
struct HintWords {
    ptr: std::ptr::NonNull<std::sync::atomic::AtomicU64>,
}

impl HintWords {
    const LEN: usize = 2 * HINT_WORDS as usize;

    fn map(fd: std::os::fd::RawFd) -> Result<Self, Error> {
        // SAFETY: a shared mapping of the map's data, of the size the map has (two sides of
        // HINT_WORDS u64 values, a multiple of the page size).
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                Self::LEN * 8,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(Error::MapText(format!(
                "mapping {}: {}",
                names::FLOW_HINTS,
                std::io::Error::last_os_error()
            )));
        }
        std::ptr::NonNull::new(p.cast())
            .map(|ptr| Self { ptr })
            .ok_or_else(|| Error::MapText(format!("mapping {}: null", names::FLOW_HINTS)))
    }

    fn words(&self) -> &[std::sync::atomic::AtomicU64] {
        // SAFETY: LEN words mapped for the life of self, 8-byte aligned (page aligned).
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), Self::LEN) }
    }
}

impl Drop for HintWords {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `map`, unmapped once.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), Self::LEN * 8) };
    }
}

// SAFETY: the words are atomics; the mapping is shared with the kernel, not with Rust code.
unsafe impl Send for HintWords {}

/// `CLOCK_MONOTONIC` in nanoseconds: the clock of `bpf_ktime_get_ns`.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid timespec to fill; CLOCK_MONOTONIC always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &raw mut ts) };
    // Both fields are non-negative for CLOCK_MONOTONIC.
    ts.tv_sec.unsigned_abs() * 1_000_000_000 + ts.tv_nsec.unsigned_abs()
}

fn random_seed() -> Result<u64, Error> {
    let mut b = [0u8; 8];
    File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .map_err(|e| Error::LoadText(format!("reading /dev/urandom: {e}")))?;
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

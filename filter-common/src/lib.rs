//! Types, limits and parsers shared by the XDP program and the `sni-filter` daemon.
//! Everything here is `#![no_std]`, `#[repr(C)]` and free of implicit padding.
#![no_std]
// The walker and matcher run inside the XDP program, where a call that is not inlined is a
// BPF-to-BPF call verified per call site: inlining is part of their design there.
#![allow(clippy::inline_always)]
// `_pad` fields are public so both sides can build values; they are always zero.
#![allow(clippy::pub_underscore_fields)]

pub mod hello;
pub mod name;
pub mod wire;

mod reason;
pub use reason::{Fate, NOTE_COUNT, Note, REASON_COUNT, Reason, reason_from_u32};

/// Names of the maps and the program as they appear in the compiled object. aya's
/// `#[map(name = ...)]` wants a literal, so a test checks these against the object.
pub mod names {
    pub const PROGRAM: &str = "sni_filter";
    /// The judging program the header program tail-calls through `JUDGE`.
    pub const JUDGE_PROGRAM: &str = "sni_judge";
    pub const JUDGE: &str = "JUDGE";
    /// Benchmark floors: an XDP program that passes everything, one that drops everything.
    pub const BENCH_PASS: &str = "bench_pass";
    pub const BENCH_DROP: &str = "bench_drop";
    pub const COUNTERS: &str = "COUNTERS";
    pub const RULES: &str = "RULES";
    pub const APPS: &str = "APPS";
    pub const SETTINGS: &str = "SETTINGS";
    pub const EVENTS: &str = "EVENTS";
    pub const NOTES: &str = "NOTES";
    pub const IFACE_COUNTERS: &str = "IFACE_COUNTERS";
    pub const APP_COUNTERS: &str = "APP_COUNTERS";
    pub const VERDICTS: &str = "VERDICTS";
    pub const HELLOS: &str = "HELLOS";
    pub const EXEMPT: &str = "EXEMPT";
    pub const SCOPES: &str = "SCOPES";
    pub const WILDCARDS: &str = "WILDCARDS";
    /// One `u32`: the [`LAYOUT_VERSION`](super::LAYOUT_VERSION) of the maps pinned with it.
    pub const LAYOUT: &str = "LAYOUT";
    /// The ring of client QUIC Initials handed to the daemon.
    pub const QUIC_INITIALS: &str = "QUIC_INITIALS";
    /// Per-flow state of QUIC flows not judged blocked: Initials handed on, allowed.
    pub const QUIC_FLOWS: &str = "QUIC_FLOWS";
    /// One `u64`: when the daemon's QUIC worker last showed it is alive.
    pub const QUIC_HEARTBEAT: &str = "QUIC_HEARTBEAT";
    /// Two bitmaps of the flows that may have state (`FlowHints`), and the side in force.
    pub const FLOW_HINTS: &str = "FLOW_HINTS";
    pub const HINT_SIDE: &str = "HINT_SIDE";
    /// Connections between their SYN and their hello.
    pub const OPENING: &str = "OPENING";
    /// Every map the daemon reads or writes (a test checks each is in the object).
    pub const MAPS: [&str; 21] = [
        JUDGE,
        LAYOUT,
        EXEMPT,
        SCOPES,
        WILDCARDS,
        COUNTERS,
        RULES,
        APPS,
        SETTINGS,
        EVENTS,
        NOTES,
        IFACE_COUNTERS,
        APP_COUNTERS,
        VERDICTS,
        HELLOS,
        QUIC_INITIALS,
        QUIC_FLOWS,
        QUIC_HEARTBEAT,
        FLOW_HINTS,
        HINT_SIDE,
        OPENING,
    ];
}

/// Copies a value as 8-byte words. On the BPF target LLVM turns a plain copy or zeroing of
/// a struct into a call to a byte-by-byte `memcpy`/`memset` loop (a few instructions per
/// byte); written as volatile words it stays a handful of loads and stores.
///
/// # Safety
/// `dst` and `src` must be valid, 8-byte aligned (byte arrays inside aligned structs at
/// aligned offsets qualify) and not overlapping.
#[inline(always)]
pub unsafe fn copy_words<T: Copy>(dst: *mut T, src: *const T) {
    const { assert!(size_of::<T>().is_multiple_of(8)) };
    let (d, s) = (dst.cast::<u64>(), src.cast::<u64>());
    let mut i = 0;
    while i < size_of::<T>() / 8 {
        // SAFETY: word `i` lies inside both values, aligned (the caller's promise).
        unsafe { d.add(i).write_volatile(s.add(i).read_volatile()) };
        i += 1;
    }
}

/// Zero, as far as LLVM knows something unknown. Added to an index before its mask, it
/// keeps the mask in the program: LLVM drops a mask it can prove redundant, or turns a
/// masked index that grows in a loop into a pointer stepped forward, and the 6.1 verifier
/// then loses the index's bound. The verifier itself still sees the zero.
#[inline(always)]
pub fn opaque_zero<T: Default>() -> T {
    core::hint::black_box(T::default())
}

/// Zeroes a value as 8-byte words (see [`copy_words`]).
///
/// # Safety
/// `dst` must be valid and 8-byte aligned, and all zeroes a valid value of `T`.
#[inline(always)]
pub unsafe fn zero_words<T: Copy>(dst: *mut T) {
    const { assert!(size_of::<T>().is_multiple_of(8)) };
    let d = dst.cast::<u64>();
    let mut i = 0;
    while i < size_of::<T>() / 8 {
        // SAFETY: word `i` lies inside the value, aligned (the caller's promise).
        unsafe { d.add(i).write_volatile(0) };
        i += 1;
    }
}

/// The layout of the maps that outlive a daemon (pinned: counters, blocked flows, hellos
/// being read, events). A daemon adopts a pinned filter's maps only when their layout is
/// this one, and the CLI reads only maps of this layout. Raise it with any change to a
/// pinned map's type, key or value, or to what a value means; the test
/// `pinned_layout_matches_its_version` lists what it covers.
pub const LAYOUT_VERSION: u32 = 5;

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

/// Apps per rule set. The app id is a `u16`, but an array of policies the program reads on
/// every match stays small: 255 apps is far beyond any city's list of banned applications.
pub const APPS_MAX: u32 = 256;

/// Default bound of the rules (all apps together): 65536, far above today's lists, in 4 MiB
/// of rule table. 1M rules need `rules_max = 1048576` and 64 MiB (both sides).
pub const RULES_DEFAULT_MAX: u32 = 1 << 16;

/// Default bound of the blocked-flow table.
pub const VERDICTS_DEFAULT_MAX: u32 = 65536;

/// Default bound of the table of hellos being reassembled: hellos that span segments are a
/// few per second per thousand clients, and each lives a round trip.
pub const HELLOS_DEFAULT_MAX: u32 = 8192;

/// Words of the inspected-ports bitmap (`Side::ports`): one bit per TCP port.
pub const PORT_WORDS: u32 = 65536 / 64;

/// What happens to a flow whose name matched an app's rules.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Count and log only.
    Monitor = 0,
    /// Drop silently.
    Drop = 1,
    /// Drop, and answer the client with a TCP RST.
    Reject = 2,
}

impl Action {
    pub const fn from_u8(v: u8) -> Option<Self> {
        match v {
            0 => Some(Self::Monitor),
            1 => Some(Self::Drop),
            2 => Some(Self::Reject),
            _ => None,
        }
    }

    pub const fn name(self) -> &'static str {
        match self {
            Self::Monitor => "monitor",
            Self::Drop => "drop",
            Self::Reject => "reject",
        }
    }
}

/// Value of the rules map, keyed by [`name::RuleKey`].
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

/// Per-app policy, indexed by app id in the `APPS` array.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct AppPolicy {
    /// An [`Action`] as `u8`.
    pub action: u8,
    /// 1 when the app is in use; 0 marks an unused slot.
    pub enabled: u8,
    /// `APP_*` bits.
    pub flags: u8,
    pub _pad: [u8; 5],
}

/// Whether a matched app's rules apply to a client, decided in one order for the program
/// and the daemon's QUIC judge: the app in use, the client's interface and VLAN in the app's
/// scope, the client not exempted. Each side answers the scope and exemption questions from
/// its own tables; a question is asked only when the app's flags say it has an answer.
#[inline(always)]
pub fn app_scope(
    policy: &AppPolicy,
    iface_in_scope: impl FnOnce() -> bool,
    vlan_in_scope: impl FnOnce() -> bool,
    exempted: impl FnOnce() -> bool,
) -> AppScope {
    if policy.enabled == 0
        || (policy.flags & APP_SCOPED_IFACES != 0 && !iface_in_scope())
        || (policy.flags & APP_SCOPED_VLANS != 0 && !vlan_in_scope())
    {
        return AppScope::Outside;
    }
    if policy.flags & APP_HAS_EXEMPTIONS != 0 && exempted() {
        return AppScope::Exempt;
    }
    AppScope::Applies
}

/// What [`app_scope`] decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AppScope {
    Applies,
    /// Not in use, or not on this interface or VLAN: as if no rule matched.
    Outside,
    /// The client is exempted: passed, and the hello counted `hello_exempt`.
    Exempt,
}

/// The app has source exemptions in `EXEMPT`.
pub const APP_HAS_EXEMPTIONS: u8 = 1;
/// The app applies only on the interfaces listed in `SCOPES`.
pub const APP_SCOPED_IFACES: u8 = 2;
/// The app applies only on the VLAN IDs listed in `SCOPES`.
pub const APP_SCOPED_VLANS: u8 = 4;

/// The data of an `EXEMPT` LPM-trie key: the prefix covers the app, the family, a zero
/// byte and then the address bits of the exempted network.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct ExemptPrefix {
    /// The app id, big-endian so that it is the first bits of the prefix.
    pub app: [u8; 2],
    /// 4 or 6.
    pub family: u8,
    pub _pad: u8,
    pub addr: [u8; 16],
}

impl ExemptPrefix {
    /// Bits of the key before the address.
    pub const HEADER_BITS: u32 = 32;
}

/// A key of the `SCOPES` set: an app and an interface index or VLAN ID it applies on.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct ScopeKey {
    pub app: u16,
    /// `SCOPE_IFACE` or `SCOPE_VLAN`.
    pub kind: u8,
    pub _pad: u8,
    pub value: u32,
}

pub const SCOPE_IFACE: u8 = 1;
pub const SCOPE_VLAN: u8 = 2;

/// What the program reads of the configuration: the one value of `SETTINGS`, read with one
/// lookup per packet. Two sides, and which one is in force, so that userspace switches
/// everything a reload changes — rules, apps, exemptions, ports, policy — at once.
///
/// Userspace writes the whole value twice: first the side not in force (the one in force
/// rewritten unchanged), then again with only `active` changed, so that the switch is the
/// only change a reader can see in the middle of the second copy (0 or 1 differ in one
/// byte). The program only reads it.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sides {
    pub side: [Side; 2],
    /// The side in force: 0 or 1.
    pub active: u32,
    pub _pad: u32,
}

/// One side of [`Sides`].
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Side {
    pub settings: Settings,
    /// Inspected TCP destination ports, one bit each; used when `settings.all_ports` is 0.
    pub ports: [u64; PORT_WORDS as usize],
}

impl Sides {
    /// Both sides zero: no rules, no port inspected, side 0 in force.
    #[allow(
        clippy::large_stack_arrays,
        reason = "16 KiB, built once per loaded filter, in userspace"
    )]
    pub const EMPTY: Self = Self {
        side: [Side::EMPTY; 2],
        active: 0,
        _pad: 0,
    };
}

impl Side {
    pub const EMPTY: Self = Self {
        settings: Settings::EMPTY,
        ports: [0; PORT_WORDS as usize],
    };

    /// Whether payload to TCP destination port `port` is inspected.
    #[inline(always)]
    pub fn inspects(&self, port: u16) -> bool {
        self.settings.all_ports != 0 || self.ports[usize::from(port / 64)] & (1 << (port % 64)) != 0
    }
}

/// Program-wide settings, one per side of [`Sides`]. Each side of the double-buffered
/// tables is named by a base index here.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Settings {
    /// Seed of the rule-name hash; random per loaded rule set so that names cannot be
    /// chosen offline to collide with a rule.
    pub hash_seed: u64,
    /// First slot of the rule table in `RULES`, and its size - 1 (a power of two).
    pub rules_base: u32,
    pub rules_mask: u32,
    /// First entry of this rule set's app policies in `APPS` (also added to the app id in
    /// `EXEMPT` and `SCOPES` keys).
    pub apps_base: u32,
    pub _pad0: u32,
    /// A blocked flow idle this long (nanoseconds) is forgotten.
    pub flow_idle_ns: u64,
    /// 1: a hello the program cannot read completely has its packet dropped; 0: passed.
    /// Counted by reason either way.
    pub uninspectable_drop: u8,
    /// 1: an event for every judged hello, allowed ones too. Only `replay` sets it, on maps
    /// of its own: a live filter never logs allowed flows (that would be a browsing history).
    pub trace_all: u8,
    /// 1: every TCP port is inspected; 0: only the ports set in the side's `ports`.
    pub all_ports: u8,
    /// A `QUIC_*` mode: what happens to QUIC Initials.
    pub quic_mode: u8,
    /// 1: Initials of flows not judged yet are dropped until the verdict exists.
    pub quic_hold: u8,
    /// 1: every hello goes through the walker, none through the fast path that reads a
    /// hello whole in one segment straight from the packet (`hello_fast_path = false`, for
    /// diagnosis; tests set it to compare the two).
    pub walker_only: u8,
    pub _pad: [u8; 2],
    /// UDP destination ports inspected for QUIC; 0 marks an unused entry.
    pub quic_ports: [u16; QUIC_PORTS_MAX],
}

impl Settings {
    const EMPTY: Self = Self {
        hash_seed: 0,
        rules_base: 0,
        rules_mask: 0,
        apps_base: 0,
        _pad0: 0,
        flow_idle_ns: 0,
        uninspectable_drop: 0,
        trace_all: 0,
        all_ports: 0,
        quic_mode: 0,
        quic_hold: 0,
        walker_only: 0,
        _pad: [0; 2],
        quic_ports: [0; QUIC_PORTS_MAX],
    };
}

/// `quic = "inspect"`: Initials are read by the daemon, which writes the verdict.
pub const QUIC_INSPECT: u8 = 0;
/// `quic = "block"`: every Initial is dropped; clients fall back to TCP.
pub const QUIC_BLOCK: u8 = 1;
/// `quic = "allow"`: QUIC passes uninspected.
pub const QUIC_ALLOW: u8 = 2;

/// UDP ports inspected for QUIC at most.
pub const QUIC_PORTS_MAX: usize = 4;

/// Smallest UDP payload of a datagram carrying a client's Initial (RFC 9000 §14.1).
pub const QUIC_INITIAL_DATAGRAM_MIN: usize = 1200;

/// Bytes of a datagram copied to the daemon: above what clients send (1200 to 1472 bytes
/// on Ethernet paths); a longer Initial datagram is uninspectable.
pub const QUIC_COPY_MAX: usize = 2048;

/// Initials of one flow handed to the daemon before its verdict: a ClientHello spans one
/// to a few Initials (Chromium's post-quantum hello two), each retransmitted a few times.
pub const QUIC_INITIALS_PER_FLOW: u32 = 16;

/// The daemon's heartbeat older than this (nanoseconds) means no daemon judges QUIC.
pub const QUIC_HEARTBEAT_STALE_NS: u64 = 3_000_000_000;

/// A client Initial handed to the daemon through `QUIC_INITIALS`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct QuicInitial {
    /// `bpf_ktime_get_ns` when the datagram arrived.
    pub ts_ns: u64,
    pub ifindex: u32,
    /// The innermost VLAN ID, 0 without tags.
    pub vlan: u16,
    /// The UDP payload's length, of which `data` holds the first `QUIC_COPY_MAX` bytes.
    pub len: u16,
    pub flow: FlowKey,
    pub data: [u8; QUIC_COPY_MAX],
}

/// Bytes of a connection ID as `QuicFlow` holds it: its length, the ID (at most 20 bytes in
/// QUIC versions 1 and 2, RFC 9000 §17.2), zeroes to the end.
pub const QUIC_CID_SLOT: usize = 24;

/// Longest connection ID of QUIC versions 1 and 2.
pub const QUIC_CID_MAX: usize = 20;

/// A connection ID as `QuicFlow` holds it; `None` for one longer than `QUIC_CID_MAX`.
pub fn quic_cid_slot(id: &[u8]) -> Option<[u8; QUIC_CID_SLOT]> {
    if id.len() > QUIC_CID_MAX {
        return None;
    }
    let mut slot = [0u8; QUIC_CID_SLOT];
    slot[0] = id.len() as u8;
    slot[1..=id.len()].copy_from_slice(id);
    Some(slot)
}

/// State of a QUIC flow in `QUIC_FLOWS` (an LRU map: losing an entry only means that the
/// flow's next Initials are handed on again).
#[repr(C, align(8))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct QuicFlow {
    /// Initials handed to the daemon since its last verdict on the flow.
    pub initials: u32,
    /// `QUIC_FLOW_*`.
    pub state: u32,
    /// With `QUIC_FLOW_ALLOWED`: the Destination Connection IDs of the allowed connection's
    /// Initials (the client's first choice, and the server's once the client uses it). An
    /// Initial under another ID is a new connection on the same ports, judged afresh: a client
    /// must not reach a banned name through the verdict on an allowed one.
    pub cids: [[u8; QUIC_CID_SLOT]; 2],
    /// When the daemon wrote the verdict (`CLOCK_MONOTONIC` ns). The client's own first ID
    /// counts only for `QUIC_FIRST_CID_NS` after it: a client chooses that ID, and one that
    /// reused it for a new connection later must not inherit the verdict. The server's ID
    /// the server chose: a new connection cannot take it.
    pub since_ns: u64,
}

/// How long after an allowed verdict Initials under the client's first connection ID pass:
/// far above a first flight's retransmissions (RFC 9002's PTO, doubling from 1 s at most).
pub const QUIC_FIRST_CID_NS: u64 = 10_000_000_000;

/// The daemon has not judged the flow yet.
pub const QUIC_FLOW_PENDING: u32 = 0;
/// The daemon judged the flow allowed: its Initials pass without being handed on.
pub const QUIC_FLOW_ALLOWED: u32 = 1;

/// Entries of `QUIC_FLOWS`.
pub const QUIC_FLOWS_MAX: u32 = 65536;

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

/// A TCP or UDP flow as the client sent it: addresses (IPv4 in the first 4 bytes), ports in
/// host order, address family (4 or 6) and IP protocol.
#[repr(C, align(8))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct FlowKey {
    pub saddr: [u8; 16],
    pub daddr: [u8; 16],
    pub sport: u16,
    pub dport: u16,
    pub family: u8,
    pub proto: u8,
    pub _pad: [u8; 2],
}

/// What the program did with a flow, as events report it.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventAction {
    Pass = 0,
    Drop = 1,
    Reject = 2,
    Monitor = 3,
}

impl EventAction {
    pub const fn from_u8(v: u8) -> Option<Self> {
        match v {
            0 => Some(Self::Pass),
            1 => Some(Self::Drop),
            2 => Some(Self::Reject),
            3 => Some(Self::Monitor),
            _ => None,
        }
    }

    pub const fn name(self) -> &'static str {
        match self {
            Self::Pass => "pass",
            Self::Drop => "drop",
            Self::Reject => "reject",
            Self::Monitor => "monitor",
        }
    }
}

/// No app matched.
pub const NO_APP: u16 = u16::MAX;

/// The event's name was read from a TCP segment after the first one of the hello.
pub const EVENT_SNI_LATER_SEGMENT: u8 = 1;
/// The hello carried an `encrypted_client_hello` extension.
pub const EVENT_ECH: u8 = 2;

/// One record of the `EVENTS` ring buffer: a blocked, monitored or uninspectable flow (or,
/// with `trace_all`, any judged hello).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Event {
    /// `bpf_ktime_get_ns` (`CLOCK_MONOTONIC`) when the verdict was made.
    pub ts_ns: u64,
    pub ifindex: u32,
    /// Index of the matching app, or [`NO_APP`].
    pub app: u16,
    /// An [`EventAction`].
    pub action: u8,
    /// A [`Reason`] as `u8`.
    pub reason: u8,
    pub flow: FlowKey,
    /// Length of the first server name in `sni` (0: none read).
    pub sni_len: u16,
    /// `EVENT_*` bits.
    pub flags: u8,
    pub _pad: [u8; 5],
    pub sni: [u8; name::NAME_BUF],
}

/// Per-CPU counter of one [`Reason`].
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Counter {
    pub packets: u64,
    pub bytes: u64,
    /// Of `packets`, those dropped (the `uninspectable` policy can go either way).
    pub dropped: u64,
}

/// Slots of the per-interface counters: indexed by `ifindex % IFACE_SLOTS`. The daemon
/// checks that the interfaces it attaches to do not share a slot.
pub const IFACE_SLOTS: u32 = 1024;

/// Per-CPU counters of one interface, by address family.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct IfaceCounters {
    pub ipv4: u64,
    pub ipv6: u64,
    pub other: u64,
    pub vlan_tagged: u64,
    pub dropped: u64,
}

/// Per-CPU counters of one app.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct AppCounters {
    /// Flows whose hello matched the app (blocked or monitored).
    pub flows: u64,
    /// Packets dropped: the hellos and every later packet of the flows.
    pub packets_dropped: u64,
    pub bytes_dropped: u64,
    /// TCP resets sent to clients (`reject`).
    pub resets: u64,
}

/// A flow judged blocked, in the `VERDICTS` table: its later packets are dropped.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct BlockedFlow {
    /// `bpf_ktime_get_ns` when the verdict was made and when the flow was last seen.
    pub since_ns: u64,
    pub last_ns: u64,
    pub app: u16,
    /// An [`Action`].
    pub action: u8,
    pub _pad: [u8; 5],
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: each type is `#[repr(C)]`, `Copy`, and has no implicit padding (explicit `_pad`
    // fields fill every hole), so any byte pattern of the right size is a valid value.
    unsafe impl aya::Pod for super::RuleValue {}
    unsafe impl aya::Pod for super::RuleSlot {}
    unsafe impl aya::Pod for super::AppPolicy {}
    unsafe impl aya::Pod for super::Settings {}
    unsafe impl aya::Pod for super::Sides {}
    unsafe impl aya::Pod for super::Counter {}
    unsafe impl aya::Pod for super::IfaceCounters {}
    unsafe impl aya::Pod for super::AppCounters {}
    unsafe impl aya::Pod for super::BlockedFlow {}
    unsafe impl aya::Pod for super::hello::HelloFlow {}
    unsafe impl aya::Pod for super::name::RuleKey {}
    unsafe impl aya::Pod for super::name::WildPattern {}
    unsafe impl aya::Pod for super::FlowKey {}
    unsafe impl aya::Pod for super::ExemptPrefix {}
    unsafe impl aya::Pod for super::ScopeKey {}
    unsafe impl aya::Pod for super::Event {}
    unsafe impl aya::Pod for super::QuicFlow {}
    unsafe impl aya::Pod for super::QuicInitial {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::size_of;

    #[test]
    fn shared_types_have_no_implicit_padding() {
        assert_eq!(size_of::<RuleValue>(), 8);
        assert_eq!(size_of::<name::WildPattern>(), 136);
        assert_eq!(size_of::<AppPolicy>(), 8);
        assert_eq!(size_of::<Settings>(), 48);
        assert_eq!(size_of::<QuicInitial>(), 8 + 4 + 2 + 2 + 40 + QUIC_COPY_MAX);
        assert_eq!(size_of::<QuicFlow>(), 64);
        assert_eq!(size_of::<RuleSlot>(), 16);
        assert_eq!(size_of::<FlowKey>(), 40);
        assert_eq!(size_of::<ExemptPrefix>(), 20);
        assert_eq!(size_of::<ScopeKey>(), 8);
        assert_eq!(size_of::<Event>(), 8 + 4 + 2 + 1 + 1 + 40 + 2 + 1 + 5 + 256);
        assert_eq!(size_of::<Counter>(), 24);
        assert_eq!(size_of::<BlockedFlow>(), 24);
        assert_eq!(size_of::<hello::HelloFlow>() % 8, 0);
        assert_eq!(size_of::<name::RuleKey>(), 8);
    }

    /// What the pinned maps hold, as of [`LAYOUT_VERSION`]. A change here is a change of
    /// the pinned layout: raise the version and update this list.
    #[test]
    fn pinned_layout_matches_its_version() {
        let layout = [
            ("version", LAYOUT_VERSION as usize),
            ("reasons", REASON_COUNT as usize),
            ("notes", NOTE_COUNT as usize),
            ("iface slots", IFACE_SLOTS as usize),
            ("apps", APPS_MAX as usize),
            ("Counter", size_of::<Counter>()),
            ("IfaceCounters", size_of::<IfaceCounters>()),
            ("AppCounters", size_of::<AppCounters>()),
            ("FlowKey", size_of::<FlowKey>()),
            ("BlockedFlow", size_of::<BlockedFlow>()),
            ("HelloFlow", size_of::<hello::HelloFlow>()),
            ("Event", size_of::<Event>()),
            ("QuicFlow", size_of::<QuicFlow>()),
            ("QuicInitial", size_of::<QuicInitial>()),
            // Where a flow's bits are in the pinned `FLOW_HINTS`.
            ("hint bits", hint_bits_of_a_sample_flow()),
        ];
        let expected = [
            ("version", 5),
            ("reasons", 40),
            ("notes", 12),
            ("iface slots", 1024),
            ("apps", 256),
            ("Counter", 24),
            ("IfaceCounters", 40),
            ("AppCounters", 32),
            ("FlowKey", 40),
            ("BlockedFlow", 24),
            ("HelloFlow", 8536),
            ("Event", 320),
            ("QuicFlow", 64),
            ("QuicInitial", 2104),
            ("hint bits", 1_029_901_307),
        ];
        assert_eq!(layout, expected);
    }

    /// The three hint bits of one flow key, folded into one number.
    fn hint_bits_of_a_sample_flow() -> usize {
        let flow = FlowKey {
            sport: 40_000,
            dport: 443,
            family: 4,
            ..FlowKey::default()
        };
        let h = flow_hash(&flow);
        FlowTable::ALL
            .iter()
            .fold(0, |acc, &t| acc * 31 + hint_bit(h, t) as usize)
    }

    #[test]
    fn actions_round_trip_through_u8() {
        for a in [Action::Monitor, Action::Drop, Action::Reject] {
            assert_eq!(Action::from_u8(a as u8), Some(a));
        }
        assert_eq!(Action::from_u8(3), None);
    }
}

//! The settings the program reads with one lookup per packet: two sides, which one is in
//! force, the inspected ports and the QUIC mode.

/// Words of the inspected-ports bitmap (`Side::ports`): one bit per TCP port.
pub const PORT_WORDS: u32 = 65536 / 64;

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
    /// 1: `mode = "monitor"`, the whole filter's dry run: every decision is made, counted
    /// and logged as it would be, but a packet that would be dropped or answered with a
    /// reset passes untouched (counted under the note `monitor_passed`).
    pub monitor: u8,
    pub _pad: u8,
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
        monitor: 0,
        _pad: 0,
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

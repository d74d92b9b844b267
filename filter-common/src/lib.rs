//! Types, limits and parsers shared by the XDP program and the `sni-filter` daemon.
//! Everything here is `#![no_std]`, `#[repr(C)]` and free of implicit padding.
#![no_std]
// The walker and matcher run inside the XDP program, where a call that is not inlined is a
// BPF-to-BPF call verified per call site: inlining is part of their design there.
#![allow(clippy::inline_always)]
// `_pad` fields are public so both sides can build values; they are always zero.
#![allow(clippy::pub_underscore_fields)]

/// A `u8` enum that crosses the program/userspace boundary as its number, with the
/// conversion back (`from_u8`) and the name the CLI prints (`name`), each variant written
/// once with its number and its name.
macro_rules! u8_enum {
    (
        $(#[$meta:meta])*
        pub enum $enum:ident {
            $($(#[$vmeta:meta])* $variant:ident = $value:literal => $name:literal,)*
        }
    ) => {
        $(#[$meta])*
        #[repr(u8)]
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum $enum {
            $($(#[$vmeta])* $variant = $value,)*
        }

        impl $enum {
            pub const fn from_u8(v: u8) -> Option<Self> {
                match v {
                    $($value => Some(Self::$variant),)*
                    _ => None,
                }
            }

            pub const fn name(self) -> &'static str {
                match self {
                    $(Self::$variant => $name,)*
                }
            }
        }
    };
}

pub mod hello;
pub mod name;
pub mod names;
pub mod wire;

mod apps;
mod counters;
mod events;
mod flows;
mod hints;
mod quic;
mod reason;
mod rules;
mod settings;
mod words;

pub use apps::{
    APP_HAS_EXEMPTIONS, APP_SCOPED_IFACES, APP_SCOPED_VLANS, APPS_MAX, Action, AppPolicy, AppScope,
    ExemptPrefix, SCOPE_IFACE, SCOPE_VLAN, ScopeKey, app_scope,
};
pub use counters::{AppCounters, Counter, IFACE_SLOTS, IfaceCounters};
pub use events::{EVENT_ECH, EVENT_MONITOR, EVENT_SNI_LATER_SEGMENT, Event, EventAction, NO_APP};
pub use flows::{BlockedFlow, FlowKey, HELLOS_DEFAULT_MAX, VERDICTS_DEFAULT_MAX};
pub use hints::{FlowTable, HINT_BITS_LOG2, HINT_WORDS, flow_hash, hint_bit, hint_word};
pub use quic::{
    QUIC_CID_MAX, QUIC_CID_SLOT, QUIC_COPY_MAX, QUIC_FIRST_CID_NS, QUIC_FLOW_ALLOWED,
    QUIC_FLOW_PENDING, QUIC_FLOWS_MAX, QUIC_HEARTBEAT_STALE_NS, QUIC_INITIAL_DATAGRAM_MIN,
    QUIC_INITIALS_PER_FLOW, QuicFlow, QuicInitial, quic_cid_slot,
};
pub use reason::{Fate, NOTE_COUNT, Note, REASON_COUNT, Reason, reason_from_u32};
pub use rules::{
    RULE_EXACT, RULE_PROBES_MAX, RULE_SUFFIX, RULE_WILD_PARENT, RULES_DEFAULT_MAX, RuleSlot,
    RuleValue, WILDCARDS_MAX, first_slot, rule_slots, slot_hash,
};
pub use settings::{
    PORT_WORDS, QUIC_ALLOW, QUIC_BLOCK, QUIC_INSPECT, QUIC_PORTS_MAX, Settings, Side, Sides,
};
pub use words::{copy_words, opaque_zero, zero_words};

/// The layout of the maps that outlive a daemon (pinned: counters, blocked flows, hellos
/// being read, events). A daemon adopts a pinned filter's maps only when their layout is
/// this one, and the CLI reads only maps of this layout. Raise it with any change to a
/// pinned map's type, key or value, or to what a value means; the test
/// `pinned_layout_matches_its_version` lists what it covers.
pub const LAYOUT_VERSION: u32 = 7;

/// `aya::Pod` for each type userspace puts in a map.
#[cfg(feature = "user")]
macro_rules! pod {
    ($($ty:ty),* $(,)?) => {
        // SAFETY: each type is `#[repr(C)]`, `Copy`, and has no implicit padding (explicit
        // `_pad` fields fill every hole), so any byte pattern of the right size is a valid
        // value.
        $(unsafe impl aya::Pod for $ty {})*
    };
}

#[cfg(feature = "user")]
pod!(
    RuleValue,
    RuleSlot,
    AppPolicy,
    Settings,
    Sides,
    Counter,
    IfaceCounters,
    AppCounters,
    BlockedFlow,
    hello::HelloFlow,
    name::RuleKey,
    name::WildPattern,
    FlowKey,
    ExemptPrefix,
    ScopeKey,
    Event,
    QuicFlow,
    QuicInitial,
);

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
        assert_eq!(
            size_of::<Event>(),
            8 + 4 + 2 + 1 + 1 + 40 + 2 + 1 + 1 + 2 + 2 + 256
        );
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
            ("version", 7),
            ("reasons", 40),
            ("notes", 13),
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

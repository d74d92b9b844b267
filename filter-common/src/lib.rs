//! Types, limits and parsers shared by the XDP program and the `sni-filter` daemon.
//! Everything here is `#![no_std]`, `#[repr(C)]` and free of implicit padding.
#![no_std]

pub mod hello;
pub mod name;

mod reason;
pub use reason::{REASON_COUNT, Reason, reason_from_u32};

/// Names of the maps and the program as they appear in the compiled object. aya's
/// `#[map(name = ...)]` wants a literal, so a test checks these against the object.
pub mod names {
    pub const PROGRAM: &str = "sni_filter";
    pub const COUNTERS: &str = "COUNTERS";
    pub const RULES: &str = "RULES";
    pub const APPS: &str = "APPS";
    pub const SETTINGS: &str = "SETTINGS";
    /// Every map the daemon reads or writes.
    pub const MAPS: [&str; 4] = [COUNTERS, RULES, APPS, SETTINGS];
}

/// Apps per rule set. The app id is a `u16`, but an array of policies the program reads on
/// every match stays small: 255 apps is far beyond any city's list of banned applications.
pub const APPS_MAX: u32 = 256;

/// Default bound of the rules table: 1M rules (DESIGN.md plans for 100k+).
pub const RULES_DEFAULT_MAX: u32 = 1 << 20;

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
}

/// The rule matches the name and every name below it (label boundaries).
pub const RULE_SUFFIX: u16 = 1;
/// The rule matches the name itself only.
pub const RULE_EXACT: u16 = 2;

/// Per-app policy, indexed by app id in the `APPS` array.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct AppPolicy {
    /// An [`Action`] as `u8`.
    pub action: u8,
    /// 1 when the app is in use; 0 marks an unused slot.
    pub enabled: u8,
    pub _pad: [u8; 6],
}

/// Program-wide settings, the single entry of the `SETTINGS` array. Userspace writes it
/// before attaching; the program only reads it (`BPF_F_RDONLY_PROG`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Settings {
    /// Seed of the rule-name hash; random per loaded rule set so that names cannot be
    /// chosen offline to collide with a rule.
    pub hash_seed: u64,
}

/// Per-CPU counter of one [`Reason`].
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Counter {
    pub packets: u64,
    pub bytes: u64,
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: each type is `#[repr(C)]`, `Copy`, and has no implicit padding (explicit `_pad`
    // fields fill every hole), so any byte pattern of the right size is a valid value.
    unsafe impl aya::Pod for super::RuleValue {}
    unsafe impl aya::Pod for super::AppPolicy {}
    unsafe impl aya::Pod for super::Settings {}
    unsafe impl aya::Pod for super::Counter {}
    unsafe impl aya::Pod for super::name::RuleKey {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::size_of;

    #[test]
    fn shared_types_have_no_implicit_padding() {
        assert_eq!(size_of::<RuleValue>(), 4);
        assert_eq!(size_of::<AppPolicy>(), 8);
        assert_eq!(size_of::<Settings>(), 8);
        assert_eq!(size_of::<Counter>(), 16);
        assert_eq!(size_of::<name::RuleKey>(), 8);
    }

    #[test]
    fn actions_round_trip_through_u8() {
        for a in [Action::Monitor, Action::Drop, Action::Reject] {
            assert_eq!(Action::from_u8(a as u8), Some(a));
        }
        assert_eq!(Action::from_u8(3), None);
    }
}

//! Per-CPU counters by reason, by interface and by app.

/// Per-CPU counter of one [`Reason`](crate::Reason).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Counter {
    pub packets: u64,
    pub bytes: u64,
    /// Of `packets`, those dropped (the `uninspectable` policy can go either way; none in
    /// `mode = "monitor"`, where the note `monitor_passed` counts what would have been).
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
    /// Packets dropped: the hellos and every later packet of the flows (none in monitor
    /// mode, where `flows` still counts the flows that would have been blocked).
    pub packets_dropped: u64,
    pub bytes_dropped: u64,
    /// TCP resets sent to clients (`reject`).
    pub resets: u64,
}

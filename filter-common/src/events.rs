//! Records of the `EVENTS` ring buffer: what the program did with a flow, and why.

use crate::{flows::FlowKey, name};

u8_enum! {
    /// What the program did with a flow, as events report it.
    pub enum EventAction {
        Pass = 0 => "pass",
        Drop = 1 => "drop",
        Reject = 2 => "reject",
        Monitor = 3 => "monitor",
    }
}

/// No app matched.
pub const NO_APP: u16 = u16::MAX;

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
    /// A [`Reason`](crate::Reason) as `u8`.
    pub reason: u8,
    pub flow: FlowKey,
    /// Length of the first server name in `sni` (0: none read).
    pub sni_len: u16,
    /// `EVENT_*` bits.
    pub flags: u8,
    pub _pad0: u8,
    /// The innermost VLAN ID of the frame, 0 without tags.
    pub vlan: u16,
    pub _pad1: u16,
    pub sni: [u8; name::NAME_BUF],
}

/// The event's name was read from a TCP segment after the first one of the hello.
pub const EVENT_SNI_LATER_SEGMENT: u8 = 1;
/// The hello carried an `encrypted_client_hello` extension.
pub const EVENT_ECH: u8 = 2;
/// The filter ran in `mode = "monitor"`: the event's action is what would have happened,
/// and the packet passed.
pub const EVENT_MONITOR: u8 = 4;

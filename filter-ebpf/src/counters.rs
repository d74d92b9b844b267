//! Per-CPU counters — by reason, by note, by interface and by app — and the program's single
//! exit that bumps them. No atomics: each CPU owns its slot and userspace sums them.

use aya_ebpf::{
    macros::map,
    maps::{Array, PerCpuArray},
    programs::XdpContext,
};
use filter_common::{
    APPS_MAX, AppCounters, Counter, Fate, IFACE_SLOTS, IfaceCounters, NOTE_COUNT, Note,
    REASON_COUNT, Reason,
    wire::{XDP_DROP, XDP_PASS, XDP_TX},
};

/// The layout version of the pinned maps, written by the daemon; the program never reads it.
#[map(name = "LAYOUT")]
static LAYOUT: Array<u32> = Array::with_max_entries(1, 0);

#[map(name = "COUNTERS")]
static COUNTERS: PerCpuArray<Counter> = PerCpuArray::with_max_entries(REASON_COUNT, 0);

#[map(name = "NOTES")]
static NOTES: PerCpuArray<u64> = PerCpuArray::with_max_entries(NOTE_COUNT, 0);

#[map(name = "IFACE_COUNTERS")]
static IFACE_COUNTERS: PerCpuArray<IfaceCounters> = PerCpuArray::with_max_entries(IFACE_SLOTS, 0);

#[map(name = "APP_COUNTERS")]
static APP_COUNTERS: PerCpuArray<AppCounters> = PerCpuArray::with_max_entries(APPS_MAX, 0);

/// What the parse saw of the frame, for the per-interface counters.
#[repr(C)]
#[derive(Default, Clone, Copy)]
pub struct Seen {
    /// 4, 6, or 0 for not IP.
    pub family: u8,
    pub vlan: bool,
    pub _pad: u16,
    /// The frame's length as it arrived (a `reject` rewrites it into a short reset): the
    /// linear part's, or the whole frame's when its IP packet reaches past that part.
    pub len: u32,
}

/// How a packet leaves the program.
#[derive(Clone, Copy)]
pub struct Exit {
    pub reason: Reason,
    /// The packet was rewritten into a TCP RST for the client: send it back (`XDP_TX`).
    pub transmit: bool,
}

impl Exit {
    #[inline(always)]
    pub const fn of(reason: Reason) -> Self {
        Self {
            reason,
            transmit: false,
        }
    }
}

#[inline(always)]
pub fn note(n: Note) {
    if let Some(c) = NOTES.get_ptr_mut(n as u32) {
        // SAFETY: a per-CPU slot, written only by this CPU while the program runs.
        unsafe { *c += 1 };
    }
}

/// Adds a dropped packet (and its flow, when `new_flow`) to the app's counters. In monitor
/// mode nothing is dropped: only the flow is counted.
#[inline(always)]
pub fn app_dropped(app: u16, bytes: u64, new_flow: bool) {
    let dropped = !crate::settings::monitoring();
    if let Some(c) = APP_COUNTERS.get_ptr_mut(app as u32) {
        // SAFETY: a per-CPU slot, written only by this CPU while the program runs.
        unsafe {
            if dropped {
                (*c).packets_dropped += 1;
                (*c).bytes_dropped += bytes;
            }
            if new_flow {
                (*c).flows += 1;
            }
        }
    }
}

#[inline(always)]
pub fn app_monitored(app: u16) {
    if let Some(c) = APP_COUNTERS.get_ptr_mut(app as u32) {
        // SAFETY: as above.
        unsafe { (*c).flows += 1 };
    }
}

#[inline(always)]
pub fn app_reset(app: u16) {
    if let Some(c) = APP_COUNTERS.get_ptr_mut(app as u32) {
        // SAFETY: as above.
        unsafe { (*c).resets += 1 };
    }
}

/// The frame's length, including the fragments of a multi-buffer frame: a helper call,
/// which the packets whose IP packet fits the linear part never need (see `linear_len`).
#[inline(always)]
pub fn frame_len(ctx: &XdpContext) -> u64 {
    // SAFETY: the context pointer is the program's own.
    unsafe { aya_ebpf::helpers::generated::bpf_xdp_get_buff_len(ctx.ctx) }
}

/// The length of the frame's linear part, read from the context without a helper call.
#[inline(always)]
pub fn linear_len(ctx: &XdpContext) -> usize {
    ctx.data_end() - ctx.data()
}

/// The single exit: counts the packet under its reason and interface, returns the action.
/// The one place a verdict becomes a drop: in monitor mode a packet whose reason would drop
/// it passes instead, counted under its reason as ever and under `monitor_passed`. A packet
/// already rewritten into a reset (`transmit`) is sent: its hello no longer exists, and
/// monitor mode never asks for the rewrite (`verdict::conclude`).
#[inline(always)]
pub fn record(ctx: &XdpContext, seen: &Seen, exit: Exit) -> u32 {
    let settings = crate::settings::settings();
    let verdict_drops = match exit.reason.fate() {
        Fate::Pass => false,
        Fate::Drop => true,
        Fate::Policy => settings.is_some_and(|s| s.uninspectable_drop != 0),
    };
    let drop = if verdict_drops && settings.is_some_and(|s| s.monitor != 0) {
        note(Note::MonitorPassed);
        false
    } else {
        verdict_drops
    };
    let bytes = u64::from(seen.len);
    if let Some(c) = COUNTERS.get_ptr_mut(exit.reason as u32) {
        // SAFETY: a per-CPU slot, written only by this CPU while the program runs.
        unsafe {
            (*c).packets += 1;
            (*c).bytes += bytes;
            if drop || exit.transmit {
                (*c).dropped += 1;
            }
        }
    }
    if let Some(c) = IFACE_COUNTERS.get_ptr_mut(ctx.ingress_ifindex() as u32 % IFACE_SLOTS) {
        // SAFETY: as above.
        unsafe {
            match seen.family {
                4 => (*c).ipv4 += 1,
                6 => (*c).ipv6 += 1,
                _ => (*c).other += 1,
            }
            if seen.vlan {
                (*c).vlan_tagged += 1;
            }
            if drop || exit.transmit {
                (*c).dropped += 1;
            }
        }
    }
    if exit.transmit {
        XDP_TX
    } else if drop {
        XDP_DROP
    } else {
        XDP_PASS
    }
}

//! The ring buffer of flow events: one per blocked, monitored or uninspectable flow, never
//! per allowed flow and never per packet. The daemon formats and rate-limits them.

use aya_ebpf::{helpers::bpf_ktime_get_ns, macros::map, maps::RingBuf, programs::XdpContext};
use filter_common::{EVENT_MONITOR, Event, EventAction, FlowKey, Note, Reason, name::NAME_BUF};

use crate::counters;

/// Room for about 3000 events between two reads by the daemon.
const EVENTS_BYTES: u32 = 1 << 20;

#[map(name = "EVENTS")]
static EVENTS: RingBuf = RingBuf::with_byte_size(EVENTS_BYTES, 0);

/// Emits one event; a full buffer loses it, counted under `event_lost` so that operators see
/// what the log is missing (the verdict counters stay exact either way).
#[inline(always)]
// Inlined into its callers: a struct of these fields would only move them once more.
#[allow(clippy::too_many_arguments)]
pub fn emit(
    ctx: &XdpContext,
    flow: &FlowKey,
    app: u16,
    action: EventAction,
    reason: Reason,
    name: &[u8; NAME_BUF],
    name_len: u16,
    flags: u8,
    vlan: u16,
) {
    let Some(mut entry) = EVENTS.reserve::<Event>(0) else {
        counters::note(Note::EventLost);
        return;
    };
    let e = entry.as_mut_ptr();
    // SAFETY: `e` points at a reserved, writable record of `size_of::<Event>()` bytes.
    unsafe {
        (*e).ts_ns = bpf_ktime_get_ns();
        (*e).ifindex = ctx.ingress_ifindex() as u32;
        (*e).app = app;
        (*e).action = action as u8;
        (*e).reason = reason as u8;
        (*e).flow = *flow;
        (*e).sni_len = name_len;
        // What a SIEM needs to tell a dry run from enforcement, on every event.
        (*e).flags = if crate::settings::monitoring() {
            flags | EVENT_MONITOR
        } else {
            flags
        };
        (*e)._pad0 = 0;
        (*e).vlan = vlan;
        (*e)._pad1 = 0;
        // The name sits at an aligned offset of an aligned value, as `sni` does.
        filter_common::copy_words(&raw mut (*e).sni, name);
    }
    entry.submit(0);
}

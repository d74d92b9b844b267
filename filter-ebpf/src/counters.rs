//! Per-CPU counters by reason, and the program's single exit that bumps them.
//! No atomics: each CPU owns its slot and userspace sums them.

use aya_ebpf::{macros::map, maps::PerCpuArray, programs::XdpContext};
use filter_common::{Counter, REASON_COUNT, Reason};

#[map(name = "COUNTERS")]
static COUNTERS: PerCpuArray<Counter> = PerCpuArray::with_max_entries(REASON_COUNT, 0);

/// Counts the packet under `reason` and returns the XDP action for it.
#[inline(always)]
pub fn record(ctx: &XdpContext, reason: Reason) -> u32 {
    if let Some(c) = COUNTERS.get_ptr_mut(reason as u32) {
        // SAFETY: a per-CPU slot, written only by this CPU while the program runs.
        unsafe {
            (*c).packets += 1;
            (*c).bytes += (ctx.data_end() - ctx.data()) as u64;
        }
    }
    crate::action_for(reason)
}

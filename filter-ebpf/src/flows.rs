//! The blocked-flow table: once a flow's hello is judged blocked, its later packets are
//! dropped too, until a new SYN on the 5-tuple or the idle timeout ends the verdict.

use aya_ebpf::{bindings::BPF_NOEXIST, macros::map, maps::HashMap};
use filter_common::{Action, BlockedFlow, FlowKey, Note, Reason, VERDICTS_DEFAULT_MAX};

use crate::{
    counters::{self, Exit},
    headers::Tcp,
};

/// Written by the program, read and flushed by userspace (`sni-filter flows`). A plain hash,
/// not LRU: a full table must be counted, never silently evict a standing verdict.
#[map(name = "VERDICTS")]
static VERDICTS: HashMap<FlowKey, BlockedFlow> = HashMap::with_max_entries(VERDICTS_DEFAULT_MAX, 0);

/// The standing verdict of the flow, if it has one that still holds. `tcp`: the segment's
/// header, for a TCP flow (a SYN ends the verdict, a bare FIN or RST passes); `None` for a
/// UDP (QUIC) flow, which only the idle timeout ends. `bytes`: the frame's length, counted
/// for the app when the packet is dropped.
#[inline(always)]
pub fn standing_verdict(flow: &FlowKey, tcp: Option<&Tcp>, bytes: u32) -> Option<Exit> {
    let v = VERDICTS.get_ptr_mut(flow)?;
    // SAFETY: a map value; fields are plain data and a racing update gives old or new values.
    let (last, app) = unsafe { ((*v).last_ns, (*v).app) };
    if tcp.is_some_and(Tcp::syn) {
        // Ports are reused: a new connection is judged afresh.
        let _ = VERDICTS.remove(flow);
        counters::note(Note::VerdictEndedBySyn);
        return None;
    }
    // One clock read per packet (a helper call).
    let now = crate::coarse_now();
    let idle = now.saturating_sub(last);
    if idle > crate::settings::settings().map_or(0, |s| s.flow_idle_ns) {
        let _ = VERDICTS.remove(flow);
        counters::note(Note::VerdictExpired);
        return None;
    }
    if tcp.is_some_and(|t| t.payload_len == 0 && t.fin_or_rst()) {
        return Some(Exit::of(Reason::BlockedFlowTeardown));
    }
    // At most once a second: idle timeouts are tens of seconds, and a write per packet
    // would move the entry's cache line between the CPUs a flood of the flow lands on.
    if idle >= LAST_SEEN_GRANULARITY_NS {
        // SAFETY: as above.
        unsafe { (*v).last_ns = now };
    }
    counters::app_dropped(app, u64::from(bytes), false);
    Some(Exit::of(Reason::BlockedFlow))
}

/// How stale a blocked flow's last-seen time may get before a packet refreshes it.
const LAST_SEEN_GRANULARITY_NS: u64 = 1_000_000_000;

/// Records a blocked verdict for the flow; a full table is counted.
#[inline(always)]
pub fn block(flow: &FlowKey, app: u16, action: Action, now: u64) {
    let v = BlockedFlow {
        since_ns: now,
        last_ns: now,
        app,
        action: action as u8,
        _pad: [0; 5],
    };
    if VERDICTS.insert(flow, v, BPF_NOEXIST as u64).is_err() && VERDICTS.get_ptr(flow).is_none() {
        counters::note(Note::VerdictTableFull);
        return;
    }
    crate::hints::mark(flow);
}

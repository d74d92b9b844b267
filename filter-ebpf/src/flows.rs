//! The blocked-flow table: once a flow's hello is judged blocked, its later packets are
//! dropped too, until a new SYN on the 5-tuple or the idle timeout ends the verdict.

use core::intrinsics::{AtomicOrdering, atomic_xadd};

use aya_ebpf::{
    bindings::BPF_NOEXIST,
    macros::map,
    maps::{Array, HashMap, PerCpuArray},
};
use filter_common::{Action, BlockedFlow, FlowKey, FlowTable, Note, Reason, VERDICTS_DEFAULT_MAX};

use crate::{
    counters::{self, Exit},
    headers::Tcp,
};

/// Written by the program, read and flushed by userspace (`sni-filter flows`). A plain hash,
/// not LRU: a full table must be counted, never silently evict a standing verdict.
#[map(name = "VERDICTS")]
static VERDICTS: HashMap<FlowKey, BlockedFlow> = HashMap::with_max_entries(VERDICTS_DEFAULT_MAX, 0);

/// A blocked flow as this CPU last found it in `VERDICTS`: the packets of a blocked flow,
/// which is what a banned app's stream becomes, are answered from here with one array
/// lookup instead of a hash of the 40-byte key. Direct-mapped by the flow's hash.
#[repr(C)]
struct Cached {
    flow: FlowKey,
    /// The slot answers until then (coarse clock); 0: empty.
    until_ns: u64,
    /// `EPOCH` when filled: a verdict removed since makes every slot filled before stale.
    epoch: u64,
    app: u16,
    _pad: [u8; 6],
}

#[map(name = "VERDICT_CACHE")]
static CACHE: PerCpuArray<Cached> = PerCpuArray::with_max_entries(VERDICT_CACHE_SLOTS, 0);

/// Bumped by every removal of a verdict the program makes (a SYN, the idle timeout): a
/// slot filled before, on any CPU, no longer answers.
#[map(name = "VERDICT_EPOCH")]
static EPOCH: Array<u64> = Array::with_max_entries(1, 0);

/// Slots per CPU: 4096 of 64 bytes. Blocked flows at once on one CPU are few; a collision
/// costs the hash lookup, never a verdict.
const VERDICT_CACHE_SLOTS: u32 = 4096;

/// How long a cached verdict answers without a look at `VERDICTS`: at most this, and at
/// most a quarter of the idle timeout. Removals the program makes end it at once (the
/// epoch); a removal by the daemon (`flows --flush`, its sweep of idle verdicts) takes
/// effect within this.
const CACHE_WINDOW_NS: u64 = 1_000_000_000;

/// How stale a blocked flow's last-seen time may get before a packet refreshes it.
const LAST_SEEN_GRANULARITY_NS: u64 = 1_000_000_000;

#[inline(always)]
fn epoch() -> u64 {
    EPOCH
        .get_ptr(0)
        // SAFETY: an aligned u64 of a map value; volatile: other CPUs bump it.
        .map_or(0, |e| unsafe { e.read_volatile() })
}

/// Removes the flow's verdict, for every CPU's cache too.
#[inline(always)]
fn end_verdict(flow: &FlowKey, note: Note) {
    let _ = VERDICTS.remove(flow);
    if let Some(e) = EPOCH.get_ptr_mut(0) {
        // SAFETY: an aligned u64 of a map value, bumped by every CPU: atomically.
        unsafe { atomic_xadd::<u64, u64, { AtomicOrdering::SeqCst }>(e, 1) };
    }
    counters::note(note);
}

/// The standing verdict of the flow, if it has one that still holds. `hash`: the flow's
/// `flow_hash`, which places it in the cache. `tcp`: the segment's header, for a TCP
/// flow (a SYN ends the verdict, a bare FIN or RST passes); `None` for a UDP (QUIC) flow,
/// which only the idle timeout ends. `bytes`: the frame's length, counted for the app when
/// the packet is dropped.
#[inline(always)]
pub fn standing_verdict(flow: &FlowKey, hash: u64, tcp: Option<&Tcp>, bytes: u32) -> Option<Exit> {
    // One clock read per packet (a helper call).
    let now = crate::coarse_now();
    // Read before `VERDICTS` is: a removal after that is seen at the next packet.
    let epoch = epoch();
    let syn = tcp.is_some_and(Tcp::syn);
    let teardown = tcp.is_some_and(|t| t.payload_len == 0 && t.fin_or_rst());
    let slot = CACHE.get_ptr_mut((hash >> 32) as u32 % VERDICT_CACHE_SLOTS);
    if let Some(c) = slot
        && !syn
    {
        // SAFETY: this CPU's slot, written by this CPU only.
        let c = unsafe { &*c };
        if now < c.until_ns && c.epoch == epoch && same_flow(&c.flow, flow) {
            return Some(blocked(c.app, bytes, teardown));
        }
    }
    let v = VERDICTS.get_ptr_mut(flow)?;
    // SAFETY: a map value; fields are plain data and a racing update gives old or new values.
    let (last, app) = unsafe { ((*v).last_ns, (*v).app) };
    if syn {
        // Ports are reused: a new connection is judged afresh.
        end_verdict(flow, Note::VerdictEndedBySyn);
        return None;
    }
    let idle_max = crate::settings::settings().map_or(0, |s| s.flow_idle_ns);
    let idle = now.saturating_sub(last);
    if idle > idle_max {
        end_verdict(flow, Note::VerdictExpired);
        return None;
    }
    // At most once a second: idle timeouts are tens of seconds, and a write per packet
    // would move the entry's cache line between the CPUs a flood of the flow lands on.
    if idle >= LAST_SEEN_GRANULARITY_NS {
        // SAFETY: as above.
        unsafe { (*v).last_ns = now };
    }
    if let Some(c) = slot {
        // SAFETY: this CPU's slot; the key is 40 bytes at aligned offsets.
        unsafe {
            filter_common::copy_words(&raw mut (*c).flow, flow);
            (*c).until_ns = now + min(CACHE_WINDOW_NS, idle_max / 4);
            (*c).epoch = epoch;
            (*c).app = app;
        }
    }
    Some(blocked(app, bytes, teardown))
}

/// A packet of a blocked flow: dropped and counted for the app, or, a bare FIN or RST,
/// passed so that both ends close.
#[inline(always)]
fn blocked(app: u16, bytes: u32, teardown: bool) -> Exit {
    if teardown {
        return Exit::of(Reason::BlockedFlowTeardown);
    }
    counters::app_dropped(app, u64::from(bytes), false);
    Exit::of(Reason::BlockedFlow)
}

/// Whether two flow keys are equal, compared as five words.
#[inline(always)]
fn same_flow(a: &FlowKey, b: &FlowKey) -> bool {
    let (a, b) = (
        core::ptr::from_ref(a).cast::<[u64; 5]>(),
        core::ptr::from_ref(b).cast::<[u64; 5]>(),
    );
    // SAFETY: `FlowKey` is 40 bytes, 8-byte aligned (checked in filter-common).
    let (a, b) = unsafe { (&*a, &*b) };
    (a[0] ^ b[0]) | (a[1] ^ b[1]) | (a[2] ^ b[2]) | (a[3] ^ b[3]) | (a[4] ^ b[4]) == 0
}

#[inline(always)]
const fn min(a: u64, b: u64) -> u64 {
    if a < b { a } else { b }
}

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
    crate::hints::mark(flow, FlowTable::Verdicts);
}

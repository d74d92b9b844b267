//! Judges TCP payload that starts or continues a ClientHello. A hello that ends in its first
//! segment needs no state; one that goes on gets a `HELLOS` entry holding the walk and the
//! bytes read so far, so later segments continue the walk and retransmissions or overlaps
//! are compared with what was read: different bytes at a position already read are
//! uninspectable, so a fake hello can never open the way for the real one.

//!
//! `tables` holds the per-flow tables and the checks made before judging, `overlap` the
//! comparison of resent bytes with the kept ones.

mod overlap;
mod tables;

use core::intrinsics::{AtomicOrdering, atomic_xchg};

use aya_ebpf::{
    bindings::BPF_NOEXIST, helpers::generated::bpf_xdp_load_bytes, macros::map, maps::PerCpuArray,
    programs::XdpContext,
};
use filter_common::{
    EventAction, FlowTable, NO_APP, Note, Reason,
    hello::{
        HELLO_CONFLICT_IDLE_NS, HELLO_IDLE_NS, HELLO_KEEP, HELLO_SEGMENTS_MAX, HelloFlow,
        WALK_NAME_SEEN,
    },
    reason_from_u32,
    wire::TLS_CONTENT_HANDSHAKE,
};

pub use self::tables::{may_be_hello, opening};
use self::{
    overlap::same_bytes,
    tables::{HELLOS, OPENING},
};
use crate::{
    counters::{self, Exit},
    fast, tls,
    verdict::{self, Segment},
};

const KEEP_MASK: u32 = HELLO_KEEP as u32 - 1;

/// Where a new entry is built before it is inserted (it is too large for the stack).
#[map(name = "NEW_HELLO")]
static NEW_HELLO: PerCpuArray<HelloFlow> = PerCpuArray::with_max_entries(1, 0);

/// What to do with a segment, decided before any walking so that the walk (and the
/// verdict after it) has one call site: each call site of a BPF function is verified anew.
enum Plan {
    Exit(Exit),
    /// Walk the payload as the start of a new hello (after dropping any old state).
    Fresh,
    /// Walk the payload from byte `pos` on from the flow's state.
    ReadOn {
        pos: u32,
    },
}

pub fn judge_segment(seg: &Segment, first_fragment: bool) -> Exit {
    let (ctx, flow) = (seg.ctx, seg.flow);
    let Some(first) = tls::first_byte(ctx, seg.tcp.payload_offset) else {
        return Exit::of(Reason::HeaderMalformed);
    };
    let starts = first == TLS_CONTENT_HANDSHAKE;
    if seg.tcp.urgent()
        && (starts || (seg.may_have(FlowTable::Hellos) && HELLOS.get_ptr(flow).is_some()))
    {
        verdict::report(
            seg,
            Reason::UninspectableUrgent,
            NO_APP,
            EventAction::Pass,
            0,
        );
        return Exit::of(Reason::UninspectableUrgent);
    }
    let mut state = None;
    let mut plan = Plan::Fresh;
    if let Some(st) = seg
        .may_have(FlowTable::Hellos)
        .then(|| HELLOS.get_ptr_mut(flow))
        .flatten()
    {
        // SAFETY: a map value that stays valid for this program run (RCU).
        let st = unsafe { &mut *st };
        let idle = if st.conflict != 0 {
            HELLO_CONFLICT_IDLE_NS
        } else {
            HELLO_IDLE_NS
        };
        if seg.now.wrapping_sub(st.touched_ns) <= idle {
            // `core`'s atomic types offer no read-modify-write on the BPF target, so the
            // intrinsic: whoever swaps 0 for 1 owns the flow; the others back out.
            // SAFETY: `busy` is an aligned u64 inside the map value.
            if unsafe { atomic_xchg::<u64, { AtomicOrdering::SeqCst }>(&raw mut st.busy, 1) } != 0 {
                return Exit::of(Reason::UninspectableBusy);
            }
            plan = plan_continue(seg, st, starts);
            if let Plan::ReadOn { .. } = plan {
                state = Some(st);
            } else {
                // SAFETY: as above.
                unsafe { atomic_xchg::<u64, { AtomicOrdering::SeqCst }>(&raw mut st.busy, 0) };
            }
        } else {
            let _ = HELLOS.remove(flow);
        }
    }
    if let Plan::Fresh = plan
        && seg.may_have(FlowTable::Opening)
        && let Some(next) = OPENING.get_ptr(flow)
    {
        // SAFETY: a map value that stays valid for this program run (RCU).
        let gap = seg.tcp.data_seq().wrapping_sub(unsafe { *next }) as i32;
        // Before the connection is past its hello, data may only follow what came before
        // it; a hello may also start again at or before that point (a resent or a second
        // hello, judged afresh).
        if (starts && gap > 0) || (!starts && gap != 0) {
            verdict::report(
                seg,
                Reason::UninspectableOutOfOrder,
                NO_APP,
                EventAction::Pass,
                0,
            );
            return Exit::of(Reason::UninspectableOutOfOrder);
        }
        if !starts {
            // In order after the hello: from here on segments are judged as before.
            let _ = OPENING.remove(flow);
        }
    }
    match plan {
        Plan::Exit(exit) => exit,
        Plan::Fresh if !starts => Exit::of(Reason::TcpNotHandshake),
        Plan::Fresh if first_fragment => {
            verdict::report(
                seg,
                Reason::UninspectableFragment,
                NO_APP,
                EventAction::Pass,
                0,
            );
            Exit::of(Reason::UninspectableFragment)
        }
        // One call of each, concluded here rather than inside `read`: one call deeper, the
        // chain read → conclude → reset would pass the 6.1 verifier's 512 bytes of stack
        // for a chain of calls.
        Plan::Fresh | Plan::ReadOn { .. } => {
            let (state, pos) = match plan {
                Plan::ReadOn { pos } => (state, pos),
                _ => (None, 0),
            };
            read(seg, state, pos).map_or_else(
                |exit| exit,
                |r| {
                    if r == Reason::HelloBlocked && seg.may_have(FlowTable::Hellos) {
                        // The flow's verdict replaces what was kept of its hello.
                        let _ = HELLOS.remove(seg.flow);
                    }
                    verdict::conclude(seg, r)
                },
            )
        }
    }
}

/// Decides what a segment of a flow with reassembly state means.
fn plan_continue(seg: &Segment, st: &mut HelloFlow, starts: bool) -> Plan {
    let (flow, tcp) = (seg.flow, seg.tcp);
    let seq = tcp.data_seq();
    let len = tcp.payload_len as u32;
    let off = seq.wrapping_sub(st.start_seq);
    let consumed = st.next_seq.wrapping_sub(st.start_seq);
    if (off as i32) < 0 {
        // Data from before the hello: a new hello there is judged afresh; bytes reaching
        // into the hello cannot be compared and are uninspectable.
        if starts {
            let _ = HELLOS.remove(flow);
            return Plan::Fresh;
        }
        if (off.wrapping_add(len) as i32) > 0 {
            return Plan::Exit(conflict(seg, st, Reason::UninspectableOverlap));
        }
        return Plan::Exit(Exit::of(Reason::TcpNotHandshake));
    }
    if st.conflict != 0 && off >= consumed {
        // Once its bytes contradicted each other or passed the bounds, the rest of the hello
        // is uninspectable under the same reason.
        return Plan::Exit(Exit::of(reason_from_u32(u32::from(st.conflict))));
    }
    if off > consumed {
        // A gap: inspection resumes when the missing bytes arrive in order.
        if st.reported == 0 {
            st.reported = 1;
            verdict::report(
                seg,
                Reason::UninspectableOutOfOrder,
                NO_APP,
                EventAction::Pass,
                0,
            );
        }
        return Plan::Exit(Exit::of(Reason::UninspectableOutOfOrder));
    }
    if off == consumed {
        if st.done != 0 {
            // The hello is over: this is the data after it, or a second hello (after a
            // HelloRetryRequest), which is judged afresh.
            let _ = HELLOS.remove(flow);
            return if starts {
                Plan::Fresh
            } else {
                Plan::Exit(Exit::of(Reason::TcpNotHandshake))
            };
        }
        return Plan::ReadOn { pos: 0 };
    }
    // Overlap with bytes already read: compare.
    let overlap = min(len, consumed - off);
    if off + overlap > HELLO_KEEP as u32 {
        return Plan::Exit(conflict(seg, st, Reason::UninspectableOverlap));
    }
    if tls::load_payload(seg.ctx, tcp.payload_offset, tcp.payload_len).is_none() {
        return Plan::Exit(Exit::of(Reason::UninspectableTooLong));
    }
    if !same_bytes(flow, off, overlap) {
        // A different hello at the very start, before anything was decided from the first
        // copy (e.g. junk bytes that looked like a record header): read the new one instead.
        if off == 0 && starts && st.walk.flags & WALK_NAME_SEEN == 0 && st.done == 0 {
            let _ = HELLOS.remove(flow);
            return Plan::Fresh;
        }
        return Plan::Exit(conflict(seg, st, Reason::UninspectableOverlap));
    }
    if len <= consumed - off {
        return Plan::Exit(Exit::of(Reason::HelloRetransmit));
    }
    if st.done != 0 {
        let _ = HELLOS.remove(flow);
        return Plan::Exit(Exit::of(Reason::TcpNotHandshake));
    }
    Plan::ReadOn { pos: overlap }
}

/// Walks the payload from `pos`: from the flow's state when there is one (which the caller
/// claimed), else as a new hello — by the fast path when it can. Stores what was read and
/// returns the reason to conclude with; `Err` is an exit that needs no conclusion.
fn read(seg: &Segment, state: Option<&mut HelloFlow>, pos: u32) -> Result<Reason, Exit> {
    let tcp = seg.tcp;
    let Some(j) = crate::judging::judging() else {
        release(state);
        return Err(Exit::of(Reason::InternalError));
    };
    // SAFETY: 16 bytes at aligned offsets of an aligned key and an aligned map value.
    unsafe { filter_common::copy_words(&raw mut j.client, &raw const seg.flow.saddr) };
    j.family = seg.flow.family;
    j.vlan = tcp.vlan;
    j.ifindex = seg.ctx.ingress_ifindex() as u32;
    match &state {
        Some(st) => {
            // SAFETY: aligned map values (see `copy_words`).
            unsafe { filter_common::copy_words(&raw mut j.walk, &raw const st.walk) };
            j.monitored_app = st.monitored_app;
            j.later_segment = 1;
        }
        None => {
            j.walk.reset();
            j.monitored_app = NO_APP;
            j.later_segment = 0;
        }
    }
    if state.is_none()
        && crate::settings::settings().is_some_and(|s| s.walker_only == 0)
        && let Some(reason) =
            fast::judge(seg.ctx, tcp.payload_offset as u32, tcp.payload_len as u32)
    {
        counters::note(Note::HelloReadFast);
        read_whole(seg);
        return Ok(reason);
    }
    let Some(end) = tls::load_payload(seg.ctx, tcp.payload_offset, tcp.payload_len) else {
        release(state);
        return Err(Exit::of(Reason::UninspectableTooLong));
    };
    let mut reason = tls::walk(pos, end);
    match state {
        Some(st) => {
            reason = store(seg, st, reason, pos, end);
            // SAFETY: `busy` is an aligned u64 inside the map value.
            unsafe { atomic_xchg::<u64, { AtomicOrdering::SeqCst }>(&raw mut st.busy, 0) };
        }
        None if reason == Reason::HelloIncomplete => {
            // The reassembly state checks the order of this hello's segments from here.
            if seg.may_have(FlowTable::Opening) {
                let _ = OPENING.remove(seg.flow);
            }
            reason = start_reassembly(seg, end);
        }
        None => read_whole(seg),
    }
    Ok(reason)
}

/// A hello read whole in one segment: what follows must come after it.
#[inline(always)]
fn read_whole(seg: &Segment) {
    if !seg.may_have(FlowTable::Opening) {
        return;
    }
    if let Some(next) = OPENING.get_ptr_mut(seg.flow) {
        let tcp = seg.tcp;
        // SAFETY: a map value that stays valid for this program run (RCU).
        unsafe { *next = tcp.data_seq().wrapping_add(tcp.payload_len as u32) };
    }
}

/// Saves the walk into the flow's state after a later segment; returns the reason to
/// conclude with.
fn store(seg: &Segment, st: &mut HelloFlow, reason: Reason, pos: u32, end: u32) -> Reason {
    if st.segments >= HELLO_SEGMENTS_MAX {
        return conflict(seg, st, Reason::UninspectableTooLong).reason;
    }
    let Some(j) = crate::judging::judging() else {
        return Reason::InternalError;
    };
    let consumed = st.next_seq.wrapping_sub(st.start_seq);
    keep_bytes(
        seg.ctx,
        &mut st.kept,
        seg.tcp.payload_offset,
        pos,
        consumed,
        end - pos,
    );
    // SAFETY: aligned map values (see `copy_words`).
    unsafe { filter_common::copy_words(&raw mut st.walk, &raw const j.walk) };
    st.monitored_app = j.monitored_app;
    st.next_seq = st.next_seq.wrapping_add(end - pos);
    st.segments += 1;
    match reason {
        Reason::HelloIncomplete | Reason::HelloBlocked => {}
        // Kept until the data after the hello, to check overlaps with what was read.
        Reason::HelloAllowed | Reason::HelloNoSni | Reason::HelloMonitored => st.done = 1,
        Reason::UninspectableTooLong => return conflict(seg, st, reason).reason,
        _ => {
            let _ = HELLOS.remove(seg.flow);
        }
    }
    reason
}

/// A first segment whose hello goes on: keep its walk and bytes.
fn start_reassembly(seg: &Segment, n: u32) -> Reason {
    let (Some(ns), Some(j)) = (NEW_HELLO.get_ptr_mut(0), crate::judging::judging()) else {
        return Reason::InternalError;
    };
    // SAFETY: a per-CPU value, used by this CPU only while this packet is judged.
    let ns = unsafe { &mut *ns };
    let tcp = seg.tcp;
    ns.touched_ns = seg.now;
    ns.busy = 0;
    // SAFETY: aligned map values (see `copy_words`).
    unsafe { filter_common::copy_words(&raw mut ns.walk, &raw const j.walk) };
    ns.start_seq = tcp.data_seq();
    ns.next_seq = tcp.data_seq().wrapping_add(n);
    ns.segments = 1;
    ns.done = 0;
    ns.conflict = 0;
    ns.monitored_app = j.monitored_app;
    ns.reported = 0;
    ns._pad = [0; 9];
    keep_bytes(seg.ctx, &mut ns.kept, tcp.payload_offset, 0, 0, n);
    // By reference: by value, the 8 KiB entry would be copied onto the 512-byte BPF stack.
    #[allow(clippy::needless_borrows_for_generic_args)]
    let inserted = HELLOS.insert(seg.flow, &*ns, BPF_NOEXIST as u64);
    if inserted.is_err() {
        return Reason::UninspectableTableFull;
    }
    crate::hints::mark(seg.flow, FlowTable::Hellos);
    counters::note(Note::ReassemblyStarted);
    Reason::HelloIncomplete
}

#[inline(always)]
fn release(state: Option<&mut HelloFlow>) {
    if let Some(st) = state {
        // SAFETY: `busy` is an aligned u64 inside the map value.
        unsafe { atomic_xchg::<u64, { AtomicOrdering::SeqCst }>(&raw mut st.busy, 0) };
    }
}

/// Bytes that contradict what was read: uninspectable, and remembered long.
fn conflict(seg: &Segment, st: &mut HelloFlow, reason: Reason) -> Exit {
    st.conflict = reason as u8;
    st.touched_ns = seg.now;
    if st.reported == 0 {
        st.reported = 1;
        verdict::report(seg, reason, NO_APP, EventAction::Pass, 0);
    }
    Exit::of(reason)
}

/// Stores `n` payload bytes from `pos` at `kept[at..]`, as far as `HELLO_KEEP` allows.
#[inline(always)]
fn keep_bytes(
    ctx: &XdpContext,
    kept: &mut [u8; 2 * HELLO_KEEP],
    payload_offset: usize,
    pos: u32,
    at: u32,
    n: u32,
) {
    if at >= HELLO_KEEP as u32 || n == 0 {
        return;
    }
    let n = min(n, HELLO_KEEP as u32 - at);
    // Masked for the verifier: at < HELLO_KEEP and 1 <= n <= HELLO_KEEP keep the copy
    // inside the 2 * HELLO_KEEP bytes of `kept`.
    let at = core::hint::black_box(at) & KEEP_MASK;
    let n = ((core::hint::black_box(n) - 1) & KEEP_MASK) + 1;
    // SAFETY: the destination range is inside `kept` (see above).
    unsafe {
        bpf_xdp_load_bytes(
            ctx.ctx,
            (payload_offset as u32).wrapping_add(pos),
            kept.as_mut_ptr().add(at as usize).cast(),
            n,
        );
    }
}

#[inline(always)]
const fn min(a: u32, b: u32) -> u32 {
    if a < b { a } else { b }
}

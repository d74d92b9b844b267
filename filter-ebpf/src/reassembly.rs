//! Judges TCP payload that starts or continues a ClientHello. A hello that ends in its first
//! segment needs no state; one that goes on gets a `HELLOS` entry holding the walk and the
//! bytes read so far, so later segments continue the walk and retransmissions or overlaps
//! are compared with what was read: different bytes at a position already read are
//! uninspectable, so a fake hello can never open the way for the real one.

use core::intrinsics::{AtomicOrdering, atomic_xchg};

use aya_ebpf::{
    bindings::BPF_NOEXIST,
    helpers::generated::{bpf_loop, bpf_xdp_load_bytes},
    macros::map,
    maps::{HashMap, LruHashMap, PerCpuArray},
    programs::XdpContext,
};
use filter_common::{
    EventAction, FlowKey, FlowTable, HELLOS_DEFAULT_MAX, NO_APP, Note, Reason,
    hello::{
        HELLO_CONFLICT_IDLE_NS, HELLO_IDLE_NS, HELLO_KEEP, HELLO_SEGMENTS_MAX, HelloFlow,
        SCRATCH_LEN, WALK_NAME_SEEN,
    },
    reason_from_u32,
};

use crate::{
    counters::{self, Exit},
    fast,
    tls::{self, TLS_CONTENT_HANDSHAKE},
    verdict::{self, Segment},
};

const KEEP_MASK: u32 = HELLO_KEEP as u32 - 1;

/// Bytes compared per `bpf_loop` round when checking an overlap.
const COMPARE_ROUND: u32 = 64;

/// Written by the program only; userspace reads it for `status` and removes stale entries.
/// Preallocated: a table that allocates on insert keeps only a few free entries of this
/// size per CPU, refilled later, so a burst of split hellos (every Chrome connection
/// starts one) could find none and become uninspectable while the table is far from full.
#[map(name = "HELLOS")]
static HELLOS: HashMap<FlowKey, HelloFlow> = HashMap::with_max_entries(HELLOS_DEFAULT_MAX, 0);

/// Connections opened (a SYN seen) whose first payload byte has not come yet, with the
/// sequence number it will have. Data that arrives before that byte is out of order: a
/// client that sends a hello's segments in reverse would otherwise get its later segments
/// past unread (no hello starts them) and the first one read as an unfinished hello.
/// LRU: a SYN flood evicts entries, which only forgoes the check for those connections.
#[map(name = "OPENING")]
static OPENING: LruHashMap<FlowKey, u32> = LruHashMap::with_max_entries(OPENING_MAX, 0);

/// Connections between their SYN and their first payload tracked at once.
const OPENING_MAX: u32 = 65536;

/// Records a client's SYN: its payload starts at `data_seq`. A hello being read on the
/// same 5-tuple belonged to an earlier connection (ports are reused) and is forgotten.
/// `known`: the tables the flow may have entries in (`FlowTable::mask` bits).
#[inline(always)]
pub fn opening(flow: &FlowKey, data_seq: u32, known: u8) {
    if OPENING.insert(flow, data_seq, 0).is_ok() {
        crate::hints::mark(flow, FlowTable::Opening);
    }
    if known & FlowTable::Hellos.mask() != 0 && HELLOS.get_ptr(flow).is_some() {
        let _ = HELLOS.remove(flow);
    }
}

/// Where a new entry is built before it is inserted (it is too large for the stack).
#[map(name = "NEW_HELLO")]
static NEW_HELLO: PerCpuArray<HelloFlow> = PerCpuArray::with_max_entries(1, 0);

/// State of an overlap comparison between `bpf_loop` rounds.
#[map(name = "COMPARE")]
static COMPARE: PerCpuArray<Compare> = PerCpuArray::with_max_entries(1, 0);

#[repr(C)]
struct Compare {
    /// Offset in `kept` and in scratch, bytes to compare, and whether all matched so far.
    kept_off: u32,
    scratch_off: u32,
    len: u32,
    done: u32,
    same: u32,
    _pad: u32,
    flow: FlowKey,
}

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

/// Whether a payload may concern a hello: it starts a TLS handshake record, or its flow
/// has a hello being read (or cannot be read). Anything else is `tcp_not_handshake`, as the
/// judging program would find. A payload whose first byte cannot be read goes on to the
/// judging program, which says why.
/// `known`: the tables the flow may have entries in (`FlowTable::mask` bits).
#[inline(always)]
pub fn may_be_hello(ctx: &XdpContext, flow: &FlowKey, payload_offset: usize, known: u8) -> bool {
    tls::first_byte(ctx, payload_offset).is_none_or(|b| b == TLS_CONTENT_HANDSHAKE)
        || (known & FlowTable::Hellos.mask() != 0 && HELLOS.get_ptr(flow).is_some())
        || (known & FlowTable::Opening.mask() != 0 && OPENING.get_ptr(flow).is_some())
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

/// Whether scratch `[0, len)` equals `kept[off, off + len)` of the flow's state: by 8-byte
/// words where `off` is a multiple of 8 (a resent first segment, and every later one after
/// segments of a multiple of 8 bytes, as 1448-byte ones are), else byte by byte.
fn same_bytes(flow: &FlowKey, off: u32, len: u32) -> bool {
    if off.is_multiple_of(8) {
        return same_words(flow, off, len);
    }
    same_bytes_in_rounds(flow, off, len)
}

/// `same_bytes` for an aligned `off`: one plain loop of word comparisons, then the last
/// bytes one by one. `off + len` is at most `HELLO_KEEP` (the caller's check). A function
/// of its own: inlined, its locals would sit in the judging program's frame, which the
/// 6.1 verifier adds to every chain of calls below it (512 bytes in all).
#[inline(never)]
fn same_words(flow: &FlowKey, off: u32, len: u32) -> bool {
    const KEPT_WORD_MASK: u32 = (2 * HELLO_KEEP / 8) as u32 - 1;
    const SCRATCH_WORD_MASK: u32 = (SCRATCH_LEN / 8) as u32 - 1;
    let (Some(st), Some(scratch)) = (HELLOS.get_ptr(flow), tls::scratch()) else {
        return false;
    };
    // SAFETY: a map value valid for this program run; `kept` lies at an 8-byte aligned
    // offset of the aligned value (checked below), scratch at offset 0 of its value.
    let (kept, copy) = unsafe {
        (
            (&raw const (*st).kept).cast::<u64>(),
            (&raw const scratch.data).cast::<u64>(),
        )
    };
    const { assert!(core::mem::offset_of!(HelloFlow, kept).is_multiple_of(8)) };
    let (first, words) = (off / 8, len / 8);
    // Read anew in each round, so that LLVM cannot fold the two ends of the loop into one
    // count the verifier does not see bounded (the 6.1 verifier then walked the loop past
    // the end of scratch).
    let words_left = words;
    for w in 0..(HELLO_KEEP / 8) as u32 {
        // SAFETY: a local of this function.
        if w >= unsafe { (&raw const words_left).read_volatile() } {
            break;
        }
        // SAFETY: masked indices inside `kept` (2 * HELLO_KEEP bytes) and scratch.
        let same = unsafe {
            kept.add(((first + w) & KEPT_WORD_MASK) as usize)
                .read_volatile()
                == copy.add((w & SCRATCH_WORD_MASK) as usize).read_volatile()
        };
        if !same {
            return false;
        }
    }
    let tail = words * 8;
    // SAFETY: as above.
    let (kept, copy) = unsafe { (&(*st).kept, &scratch.data) };
    for i in 0..8 {
        let at = tail + i;
        if at >= len {
            break;
        }
        if kept[((off + at) & (2 * HELLO_KEEP as u32 - 1)) as usize]
            != copy[(at as usize) & (SCRATCH_LEN - 1)]
        {
            return false;
        }
    }
    true
}

/// `same_bytes` for any `off`: `COMPARE_ROUND` bytes per `bpf_loop` round.
fn same_bytes_in_rounds(flow: &FlowKey, off: u32, len: u32) -> bool {
    let Some(c) = COMPARE.get_ptr_mut(0) else {
        return false;
    };
    // SAFETY: a per-CPU value, used by this CPU only while this packet is judged.
    let c = unsafe { &mut *c };
    c.kept_off = off;
    c.scratch_off = 0;
    c.len = len;
    c.done = 0;
    c.same = 1;
    c.flow = *flow;
    let rounds = len.div_ceil(COMPARE_ROUND);
    // SAFETY: the callback has the signature bpf_loop expects; its state is in COMPARE.
    unsafe {
        bpf_loop(
            rounds,
            compare_round as *mut core::ffi::c_void,
            core::ptr::null_mut(),
            0,
        )
    };
    COMPARE
        .get_ptr(0)
        .is_some_and(|c| unsafe { (*c).same != 0 && (*c).done >= (*c).len })
}

extern "C" fn compare_round(_index: u64, _ctx: *mut core::ffi::c_void) -> i64 {
    let (Some(c), Some(scratch)) = (COMPARE.get_ptr_mut(0), tls::scratch()) else {
        return 1;
    };
    // SAFETY: a per-CPU value set up by `same_bytes`.
    let c = unsafe { &mut *c };
    let Some(st) = HELLOS.get_ptr(c.flow) else {
        c.same = 0;
        return 1;
    };
    // SAFETY: a map value valid for this program run.
    let kept = unsafe { &(*st).kept };
    for i in 0..COMPARE_ROUND {
        if c.done >= c.len {
            return 1;
        }
        let k = kept[((c.kept_off + c.done) & (2 * HELLO_KEEP as u32 - 1)) as usize];
        let s = scratch.data[((c.scratch_off + c.done) as usize) & (SCRATCH_LEN - 1)];
        if k != s {
            c.same = 0;
            return 1;
        }
        c.done += 1;
        let _ = i;
    }
    0
}

#[inline(always)]
const fn min(a: u32, b: u32) -> u32 {
    if a < b { a } else { b }
}

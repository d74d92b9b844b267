//! QUIC on the inspected UDP ports: the program cannot decrypt an Initial, so it hands the
//! client's Initials to the daemon, which writes the flow's verdict; a blocked flow's packets
//! are then dropped here like those of a blocked TCP flow.

use aya_ebpf::{
    helpers::{bpf_ktime_get_ns, generated::bpf_xdp_load_bytes},
    macros::map,
    maps::{Array, LruHashMap, RingBuf},
    programs::XdpContext,
};
use filter_common::{
    FlowKey, QUIC_ALLOW, QUIC_BLOCK, QUIC_CID_MAX, QUIC_CID_SLOT, QUIC_COPY_MAX, QUIC_FIRST_CID_NS,
    QUIC_FLOW_ALLOWED, QUIC_FLOW_PENDING, QUIC_FLOWS_MAX, QUIC_HEARTBEAT_STALE_NS,
    QUIC_INITIAL_DATAGRAM_MIN, QUIC_INITIALS_PER_FLOW, QuicFlow, QuicInitial, Reason, Settings,
    wire::{QUIC_V1, QUIC_V2},
};

use crate::counters::Exit;

/// Room for about 2000 Initials between two reads by the daemon.
const QUIC_INITIALS_BYTES: u32 = 1 << 22;

#[map(name = "QUIC_INITIALS")]
static QUIC_INITIALS: RingBuf = RingBuf::with_byte_size(QUIC_INITIALS_BYTES, 0);

#[map(name = "QUIC_FLOWS")]
static QUIC_FLOWS: LruHashMap<FlowKey, QuicFlow> = LruHashMap::with_max_entries(QUIC_FLOWS_MAX, 0);

#[map(name = "QUIC_HEARTBEAT")]
static QUIC_HEARTBEAT: Array<u64> = Array::with_max_entries(1, 0);

/// Whether `port` is one of the UDP ports inspected for QUIC.
#[inline(always)]
fn quic_port(s: &Settings, port: u16) -> bool {
    port != 0 && s.quic_ports.contains(&port)
}

/// A UDP datagram whose payload lies at `offset`, `len` bytes long.
#[inline(always)]
pub fn judge_udp(
    ctx: &XdpContext,
    flow: &FlowKey,
    offset: usize,
    len: usize,
    first_fragment: bool,
    vlan: u16,
    frame_bytes: u32,
) -> Result<Exit, Reason> {
    let Some(s) = crate::settings::settings() else {
        return Ok(Exit::of(Reason::UdpPortNotInspected));
    };
    if !quic_port(s, flow.dport) {
        return Ok(Exit::of(Reason::UdpPortNotInspected));
    }
    if s.quic_mode == QUIC_ALLOW {
        return Ok(Exit::of(Reason::QuicNotInspected));
    }
    if let Some(exit) =
        crate::flows::standing_verdict(flow, filter_common::flow_hash(flow), None, frame_bytes)
    {
        return Ok(exit);
    }
    // The first byte and the version of a long header.
    let mut head = [0u8; 8];
    // SAFETY: at most 5 bytes into a stack buffer of 8.
    if len < 5
        || unsafe { bpf_xdp_load_bytes(ctx.ctx, offset as u32, head.as_mut_ptr().cast(), 5) } != 0
    {
        return Ok(Exit::of(Reason::QuicNotInitial));
    }
    if head[0] & 0x80 == 0 {
        return Ok(Exit::of(Reason::QuicNotInitial));
    }
    let version = u32::from_be_bytes([head[1], head[2], head[3], head[4]]);
    let kind = (head[0] >> 4) & 3;
    let initial = match version {
        QUIC_V1 => kind == 0,
        QUIC_V2 => kind == 1,
        // Version negotiation comes from servers.
        0 => return Ok(Exit::of(Reason::QuicNotInitial)),
        _ => return Ok(Exit::of(Reason::UninspectableQuicVersion)),
    };
    if !initial {
        return Ok(Exit::of(Reason::QuicNotInitial));
    }
    if first_fragment {
        return Ok(Exit::of(Reason::UninspectableFragment));
    }
    if s.quic_mode == QUIC_BLOCK {
        return Ok(Exit::of(Reason::QuicBlockedByPolicy));
    }
    if len < QUIC_INITIAL_DATAGRAM_MIN {
        return Ok(Exit::of(Reason::QuicInitialTooSmall));
    }
    let Some(cid) = dcid_slot(ctx, offset) else {
        // A connection ID above 20 bytes: servers discard the packet (RFC 9000 §17.2).
        return Ok(Exit::of(Reason::QuicNotInitial));
    };
    match QUIC_FLOWS.get_ptr_mut(flow) {
        // SAFETY: a map value; a racing update gives old or new counts, both bounded.
        Some(f) => unsafe {
            if (*f).state == QUIC_FLOW_ALLOWED && allowed_cid(&cid, &*f) {
                return Ok(Exit::of(Reason::QuicFlowAllowed));
            }
            if (*f).initials >= QUIC_INITIALS_PER_FLOW {
                return Ok(Exit::of(Reason::UninspectableQuicBudget));
            }
            (*f).initials += 1;
        },
        None => {
            let first = QuicFlow {
                initials: 1,
                state: QUIC_FLOW_PENDING,
                cids: [[0; QUIC_CID_SLOT]; 2],
                since_ns: 0,
            };
            let _ = QUIC_FLOWS.insert(flow, first, 0);
        }
    }
    if !daemon_alive() {
        return Ok(Exit::of(Reason::QuicDaemonAbsent));
    }
    if len > QUIC_COPY_MAX {
        return Ok(Exit::of(Reason::UninspectableQuicTooLarge));
    }
    if !hand_on(ctx, flow, offset, len, vlan) {
        return Ok(Exit::of(Reason::UninspectableQuicQueueFull));
    }
    Ok(Exit::of(if s.quic_hold != 0 {
        Reason::QuicInitialHeld
    } else {
        Reason::QuicInitialQueued
    }))
}

/// The Initial's Destination Connection ID (after the first byte and the version) as
/// `QuicFlow` holds them: length, ID, zeroes. `None` for an ID above 20 bytes.
#[inline(always)]
fn dcid_slot(ctx: &XdpContext, offset: usize) -> Option<[u64; 3]> {
    let mut words = [0u64; 3];
    // SAFETY: 21 bytes into a 24-byte stack buffer; the datagram holds at least 1200.
    let rc = unsafe {
        bpf_xdp_load_bytes(
            ctx.ctx,
            (offset + 5) as u32,
            words.as_mut_ptr().cast(),
            1 + QUIC_CID_MAX as u32,
        )
    };
    if rc != 0 {
        return None;
    }
    let len = (words[0] & 0xff) as usize;
    if len > QUIC_CID_MAX {
        return None;
    }
    // Bytes past the ID (they belong to what follows it) are zeroed: byte k of the slot is
    // bits 8 * (k % 8) of word k / 8 (little-endian, as the BPF target is).
    for (w, word) in words.iter_mut().enumerate() {
        let first = w * 8;
        if first > len {
            *word = 0;
        } else if first + 8 > len + 1 {
            let keep = len + 1 - first;
            *word &= (1u64 << (8 * keep)) - 1;
        }
    }
    Some(words)
}

/// Whether an Initial under `cid` belongs to the connection the flow's verdict allowed: the
/// server's ID, or the client's first one shortly after the verdict.
#[inline(always)]
fn allowed_cid(cid: &[u64; 3], f: &QuicFlow) -> bool {
    let (first, server) = (slot_words(&f.cids[0]), slot_words(&f.cids[1]));
    (server != first && *cid == server)
        || (*cid == first && crate::age(f.since_ns) <= QUIC_FIRST_CID_NS)
}

/// A connection ID slot of `QuicFlow` as the three words `dcid_slot` makes of a packet's.
#[inline(always)]
fn slot_words(slot: &[u8; QUIC_CID_SLOT]) -> [u64; 3] {
    let held = slot.as_ptr().cast::<u64>();
    // SAFETY: the slot is 24 bytes at an 8-byte aligned offset of an aligned value.
    unsafe {
        [
            held.read_volatile(),
            held.add(1).read_volatile(),
            held.add(2).read_volatile(),
        ]
    }
}

/// Whether the daemon's heartbeat is fresh.
#[inline(always)]
fn daemon_alive() -> bool {
    let Some(beat) = QUIC_HEARTBEAT.get(0) else {
        return false;
    };
    *beat != 0 && crate::age(*beat) <= QUIC_HEARTBEAT_STALE_NS
}

/// Copies the datagram into the ring for the daemon. False when the ring is full.
#[inline(always)]
fn hand_on(ctx: &XdpContext, flow: &FlowKey, offset: usize, len: usize, vlan: u16) -> bool {
    let Some(mut entry) = QUIC_INITIALS.reserve::<QuicInitial>(0) else {
        return false;
    };
    let e = entry.as_mut_ptr();
    // Masked so the verifier sees 1..=QUIC_COPY_MAX (a power of two).
    let n = ((core::hint::black_box(len as u32) - 1) & (QUIC_COPY_MAX as u32 - 1)) + 1;
    // SAFETY: `e` points at a reserved, writable record; `data` holds QUIC_COPY_MAX bytes.
    unsafe {
        (*e).ts_ns = bpf_ktime_get_ns();
        (*e).ifindex = ctx.ingress_ifindex() as u32;
        (*e).vlan = vlan;
        (*e).len = n as u16;
        filter_common::copy_words(&raw mut (*e).flow, flow);
        let rc = bpf_xdp_load_bytes(ctx.ctx, offset as u32, (&raw mut (*e).data).cast(), n);
        if rc != 0 {
            entry.discard(0);
            return false;
        }
    }
    entry.submit(0);
    true
}

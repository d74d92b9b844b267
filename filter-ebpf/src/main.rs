//! The XDP program of sni-filter: at ingress of a LAN-facing interface it reads the server
//! name of each TLS ClientHello and drops the flows of banned names; all else passes.
#![no_std]
#![no_main]
// `atomic_xchg`: the BPF target's `core` atomics have no read-modify-write operations.
#![allow(internal_features)]
#![feature(core_intrinsics)]

mod counters;
mod events;
mod fast;
mod flows;
mod headers;
mod hints;
mod judging;
mod quic;
mod reassembly;
mod reset;
mod rules;
mod settings;
mod tls;
mod verdict;

use aya_ebpf::{
    macros::{map, xdp},
    maps::{PerCpuArray, ProgramArray},
    programs::XdpContext,
};
use filter_common::{
    FlowKey, FlowTable, Note, Reason,
    wire::{ETHERTYPE_IPV4, ETHERTYPE_IPV6, XDP_DROP, XDP_PASS},
};

use crate::{
    counters::{Exit, Seen},
    headers::{Cursor, L4},
};

/// The judging program (`sni_judge`), entered by tail call: reading a hello is verified as
/// a program of its own, from the state `PENDING` hands over, so the verifier checks it
/// once instead of once per path through the headers.
#[map(name = "JUDGE")]
static JUDGE: ProgramArray = ProgramArray::with_max_entries(1, 0);

/// What the header program hands the judging program.
#[repr(C)]
struct Pending {
    flow: FlowKey,
    now: u64,
    seen: Seen,
    first_fragment: u8,
    /// The tables the flow may have entries in (`FlowTable::mask` bits).
    known: u8,
    _pad: [u8; 4],
}

#[map(name = "PENDING")]
static PENDING: PerCpuArray<Pending> = PerCpuArray::with_max_entries(1, 0);

#[xdp(frags)]
pub fn sni_filter(ctx: XdpContext) -> u32 {
    let mut seen = Seen {
        len: counters::linear_len(&ctx) as u32,
        ..Seen::default()
    };
    let exit = match try_sni_filter(&ctx, &mut seen) {
        Ok(exit) => exit,
        Err(reason) => Exit::of(reason),
    };
    counters::record(&ctx, &seen, exit)
}

#[xdp(frags)]
pub fn sni_judge(ctx: XdpContext) -> u32 {
    let (Some(p), Some(tcp)) = (PENDING.get_ptr(0), headers::laundered()) else {
        return counters::record(&ctx, &Seen::default(), Exit::of(Reason::InternalError));
    };
    // SAFETY: a per-CPU value the header program filled for this packet.
    let p = unsafe { &*p };
    let seg = verdict::Segment {
        ctx: &ctx,
        flow: &p.flow,
        tcp,
        now: p.now,
        known: &raw const p.known,
        frame_len: p.seen.len,
    };
    let exit = reassembly::judge_segment(&seg, p.first_fragment != 0);
    counters::record(&ctx, &p.seen, exit)
}

/// Parses down to the transport header and judges the packet. `Err` carries the reason a
/// packet could not be parsed; both arms end in the one exit above.
#[inline(always)]
fn try_sni_filter(ctx: &XdpContext, seen: &mut Seen) -> Result<Exit, Reason> {
    let mut cur = Cursor::new();
    let mut flow = core::mem::MaybeUninit::<FlowKey>::uninit();
    // SAFETY: a local, 8-byte aligned; all zeroes is the empty key.
    let flow = unsafe {
        filter_common::zero_words(flow.as_mut_ptr());
        flow.assume_init_mut()
    };
    let eth = headers::parse_ethernet(ctx, &mut cur)?;
    if eth.tags > 0 {
        seen.vlan = true;
        counters::note(Note::VlanTagged);
    }
    let ip_offset = cur.off;
    let l4 = match eth.proto {
        ETHERTYPE_IPV4 => {
            seen.family = 4;
            headers::parse_ipv4(ctx, &mut cur, flow)?
        }
        ETHERTYPE_IPV6 => {
            seen.family = 6;
            headers::parse_ipv6(ctx, &mut cur, flow)?
        }
        _ => return Ok(Exit::of(Reason::NotIp)),
    };
    if let L4::Tcp { end, .. } | L4::Udp { end, .. } = l4
        && end > seen.len as usize
    {
        // A multi-buffer frame: its bytes are counted whole.
        seen.len = counters::frame_len(ctx) as u32;
    }
    match l4 {
        L4::Tcp {
            end,
            first_fragment,
        } => {
            let mut tcp = match headers::parse_tcp(ctx, &mut cur, end, flow) {
                Ok(tcp) => tcp,
                // A first fragment too short for its TCP header (RFC 1858's tiny fragment):
                // header and hello exist only once the server has reassembled them.
                Err(_) if first_fragment => return Ok(Exit::of(Reason::UninspectableFragment)),
                Err(reason) => return Err(reason),
            };
            // Cheapest first: verdicts only ever exist for inspected ports.
            if !settings::port_inspected(flow.dport) {
                return Ok(Exit::of(Reason::TcpPortNotInspected));
            }
            // Each way through the VLAN tags and IP headers leaves offsets of other known
            // values; through map memory they become one unknown value each, and the
            // verifier checks what follows once, not once per way.
            // (The judging program reads the header from there too.)
            tcp.ip_offset = ip_offset;
            tcp.vlan = eth.vlan;
            let tcp = headers::launder(tcp).ok_or(Reason::InternalError)?;
            judge_tcp(ctx, flow, tcp, first_fragment, seen)
        }
        L4::Udp {
            end,
            first_fragment,
        } => {
            let (offset, len) = headers::parse_udp(ctx, &mut cur, end, flow)?;
            // As for TCP.
            let (offset, len) = headers::launder_offsets(offset, len)?;
            quic::judge_udp(ctx, flow, offset, len, first_fragment, eth.vlan, seen.len)
        }
        L4::Other => Ok(Exit::of(Reason::OtherProtocol)),
        L4::Fragment => Ok(Exit::of(Reason::IpFragment)),
    }
}

/// The time for idle timeouts, in nanoseconds of `CLOCK_MONOTONIC` as of the last timer
/// tick: a read of the kernel's last update, not of the clock source (which in a VM can
/// cost as much as the rest of a packet). Timeouts are tens of seconds; a tick is at most
/// 10 ms. Userspace compares these times with `CLOCK_MONOTONIC`.
#[inline(always)]
pub fn coarse_now() -> u64 {
    // SAFETY: a helper without arguments.
    unsafe { aya_ebpf::helpers::generated::bpf_ktime_get_coarse_ns() }
}

/// Nanoseconds since `since` on the coarse clock; 0 for a time ahead of it (the daemon
/// stamps with the precise clock, which may lead the coarse one by a tick).
#[inline(always)]
pub fn age(since: u64) -> u64 {
    coarse_now().saturating_sub(since)
}

/// A TCP segment: the flow's standing verdict first, then its payload.
#[inline(always)]
fn judge_tcp(
    ctx: &XdpContext,
    flow: &FlowKey,
    tcp: &headers::Tcp,
    first_fragment: bool,
    seen: &Seen,
) -> Result<Exit, Reason> {
    // The tables the flow may have entries in: a clear bit spares that table's lookup.
    let hash = filter_common::flow_hash(flow);
    let known = hints::known(hash);
    if known & FlowTable::Verdicts.mask() != 0
        && let Some(exit) = flows::standing_verdict(flow, hash, Some(tcp), seen.len)
    {
        return Ok(exit);
    }
    if tcp.opens() {
        reassembly::opening(flow, tcp.data_seq(), known);
    }
    // A SYN just made an opening entry (a hello in the SYN must update it).
    let known = if tcp.opens() {
        known | FlowTable::Opening.mask()
    } else {
        known
    };
    if tcp.payload_len == 0 {
        return Ok(Exit::of(Reason::TcpNoPayload));
    }
    // Most payload is neither a hello's start nor the rest of one being read: it leaves
    // here, without the trip through map memory and the tail call.
    if !reassembly::may_be_hello(ctx, flow, tcp.payload_offset, known) {
        return Ok(Exit::of(Reason::TcpNotHandshake));
    }
    let now = coarse_now();
    // The header is in `TCP_SEEN` already (laundered above), where the judging program
    // reads it.
    let p = PENDING.get_ptr_mut(0).ok_or(Reason::InternalError)?;
    // SAFETY: a per-CPU value, used by this CPU only while this packet is judged.
    unsafe {
        (*p).flow = *flow;
        (*p).now = now;
        (*p).seen = *seen;
        (*p).first_fragment = u8::from(first_fragment);
        (*p).known = known;
        // On success the judging program ends the packet; returning means it is missing.
        JUDGE.tail_call(ctx, 0);
    }
    Err(Reason::InternalError)
}

// A reachable panic would be an infinite loop, which the verifier refuses: so a panic path
// fails at load time instead of shipping.
#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";

/// The floor benchmarks measure against: an XDP program that passes everything.
#[xdp(frags)]
pub fn bench_pass(_ctx: XdpContext) -> u32 {
    XDP_PASS
}

/// The ceiling of dropping on veth, for the end-to-end benchmark: drops everything.
#[xdp(frags)]
pub fn bench_drop(_ctx: XdpContext) -> u32 {
    XDP_DROP
}

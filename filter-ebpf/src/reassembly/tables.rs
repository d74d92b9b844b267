//! The tables a hello's reassembly keeps per flow: the hellos being read (`HELLOS`) and the
//! connections between their SYN and their first payload byte (`OPENING`).

use aya_ebpf::{
    macros::map,
    maps::{HashMap, LruHashMap},
    programs::XdpContext,
};
use filter_common::{
    FlowKey, FlowTable, HELLOS_DEFAULT_MAX, hello::HelloFlow, wire::TLS_CONTENT_HANDSHAKE,
};

use crate::tls;

/// Written by the program only; userspace reads it for `status` and removes stale entries.
/// Preallocated: a table that allocates on insert keeps only a few free entries of this
/// size per CPU, refilled later, so a burst of split hellos (every Chrome connection
/// starts one) could find none and become uninspectable while the table is far from full.
#[map(name = "HELLOS")]
pub(super) static HELLOS: HashMap<FlowKey, HelloFlow> =
    HashMap::with_max_entries(HELLOS_DEFAULT_MAX, 0);

/// Connections opened (a SYN seen) whose first payload byte has not come yet, with the
/// sequence number it will have. Data that arrives before that byte is out of order: a
/// client that sends a hello's segments in reverse would otherwise get its later segments
/// past unread (no hello starts them) and the first one read as an unfinished hello.
/// LRU: a SYN flood evicts entries, which only forgoes the check for those connections.
#[map(name = "OPENING")]
pub(super) static OPENING: LruHashMap<FlowKey, u32> = LruHashMap::with_max_entries(OPENING_MAX, 0);

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

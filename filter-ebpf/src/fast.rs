//! The judging program's fast path: a ClientHello that lies whole in one TLS record in the
//! linear part of one segment is walked straight from the packet, in one plain bounded loop.
//!
//! It decides only hellos whose every length it checked agrees with the walker's rules
//! (`filter_common::hello`): anything else — several records, a hello cut by the segment's
//! end, multi-buffer frames, several names, any length the walker would call malformed, more
//! extensions than the loop walks — is handed to the walker from the hello's first byte,
//! which reads it as if the fast path did not exist. So the fast path never decides
//! differently; it only decides sooner. The differential tests run every case both ways.

use aya_ebpf::{helpers::generated::bpf_xdp_load_bytes, programs::XdpContext};
use filter_common::{
    NO_APP, Reason,
    hello::{
        HELLO_LEN_MAX, RECORD_LEN_MAX, Step, WALK_ECH_SEEN, WALK_NAME_SEEN, WALK_SNI_SEEN,
        walk_reason,
    },
    name::{NAME_BUF, NAME_MAX},
    wire::{
        EXT_ECH, EXT_SERVER_NAME, HANDSHAKE_CLIENT_HELLO, SNI_HOST_NAME, TLS_CONTENT_HANDSHAKE,
    },
};

use crate::judging::{self, Judging};

/// Record header (5), handshake header (4), `legacy_version` (2), `random` (32) and the
/// session id's length (1): the fixed start of every hello.
const FIXED_LEN: u32 = 44;
/// Where the hello body starts in the record, and the body's fixed part before the
/// session id (RFC 8446 §4.1.2).
const BODY_AT: u32 = 9;
const BODY_FIXED: u32 = 34;

/// Extensions walked. Chrome sends 16 to 18 (two of them GREASE), Firefox about 15 and
/// Safari about 14; a hello with more goes to the walker, which has no such bound.
const EXTENSIONS_MAX: u32 = 32;
/// Extensions walked per round of the loop with the position in registers.
const ROUND_EXTENSIONS: u32 = 4;

/// Offsets into the packet are masked to this for the verifier: above any linear frame
/// (a 9000-byte jumbo frame's included) and below its limit of 64 KiB per packet offset.
const OFFSET_MASK: u32 = (1 << 14) - 1;

/// `N` bytes of the packet at `off`, if they lie in its linear part. `N` is at least 2:
/// for one byte LLVM rewrites `p + 1 > end` as `p >= end`, from which the verifier learns
/// no readable range.
#[inline(always)]
fn bytes<const N: usize>(data: usize, end: usize, off: u32) -> Option<&'static [u8; N]> {
    const { assert!(N >= 2) };
    let p = data + (off & OFFSET_MASK) as usize;
    if p + N > end {
        return None;
    }
    // SAFETY: the check above keeps the N bytes inside the packet's linear part.
    Some(unsafe { &*(p as *const [u8; N]) })
}

#[inline(always)]
const fn be16(b: [u8; 2]) -> u32 {
    ((b[0] as u32) << 8) | b[1] as u32
}

/// The verdict on a hello starting at `payload` (an offset into the frame) whose segment
/// carries `payload_len` bytes, with the judging state's name, flags, app and action set as
/// the walker leaves them; `None` hands the hello to the walker.
#[inline(always)]
pub fn judge(ctx: &XdpContext, payload: u32, payload_len: u32) -> Option<Reason> {
    let (data, end) = (ctx.data(), ctx.data_end());
    if payload > OFFSET_MASK {
        return None;
    }
    let head = bytes::<{ FIXED_LEN as usize }>(data, end, payload)?;
    let record_len = be16([head[3], head[4]]);
    // As the walker reads a record header (lenient versions, no empty records).
    if head[0] != TLS_CONTENT_HANDSHAKE
        || head[1] >= 0x10
        || record_len == 0
        || record_len > RECORD_LEN_MAX
        || head[5] != HANDSHAKE_CLIENT_HELLO
    {
        return None;
    }
    let body_len = (u32::from(head[6]) << 16) | be16([head[7], head[8]]);
    let hello_end = BODY_AT + body_len;
    // The whole hello in this record, in this segment and in the frame's linear part,
    // below the offsets' mask (in a linear frame over 16 KiB, as loopback's GRO makes,
    // masking would change them).
    if body_len > HELLO_LEN_MAX
        || body_len + 4 > record_len
        || hello_end > payload_len
        || (payload + hello_end) as usize > end - data
        || payload + hello_end > OFFSET_MASK
        || body_len < BODY_FIXED + 1
    {
        return None;
    }
    let session_id = u32::from(head[43]);
    if session_id > 32 || session_id > body_len - BODY_FIXED - 1 {
        return None;
    }
    // From here `at` is an offset into the hello, `left` the body bytes not yet accounted.
    let mut at = FIXED_LEN + session_id;
    let mut left = body_len - BODY_FIXED - 1 - session_id;
    let ciphers = be16(*bytes::<2>(data, end, payload + at)?);
    if ciphers < 2 || ciphers & 1 != 0 || 2 + ciphers > left {
        return None;
    }
    left -= 2 + ciphers;
    at += 2 + ciphers;
    // Two bytes (the length and the first method, which must exist): for one byte LLVM
    // turns the bounds check into a form that proves nothing to the verifier.
    let compression = u32::from(bytes::<2>(data, end, payload + at)?[0]);
    if compression == 0 || 1 + compression > left {
        return None;
    }
    left -= 1 + compression;
    at += 1 + compression;
    let j = judging::judging()?;
    // Without extensions (SSL 3.0 style) there is no name; `extensions` notes none either.
    let total = if left == 0 {
        0
    } else {
        let total = be16(*bytes::<2>(data, end, payload + at)?);
        if 2 + total != left {
            return None;
        }
        total
    };
    extensions(j, data, end, payload + at + 2, total)?;
    conclude(ctx, data, end)
}

/// Walks `total` bytes of extensions at `at`, one load per extension header, and notes in
/// `j.fast` where the `server_name` extension's body lies and whether an ECH extension came
/// before it and anywhere.
///
/// Between rounds the loop's offsets live in map memory, not in registers: the verifier
/// tracks a register's range through every branch, so each extension would multiply the
/// states it checks (it gave up at 1M instructions); a value loaded from map memory is
/// simply unknown, and the loop costs it one pass per round. Within a round of
/// `ROUND_EXTENSIONS` they stay in registers: the trip through memory, a store and a load
/// on the loop's one chain of dependent steps, is paid once per round (4 per round: a
/// 1.8 KB hello 172 -> 152 ns; 8 per round gained nothing more).
#[inline(always)]
fn extensions(j: &mut Judging, data: usize, end: usize, at: u32, total: u32) -> Option<()> {
    let c = &raw mut j.fast;
    // SAFETY: fields of a per-CPU map value, used by this CPU only while this packet is
    // judged; volatile so that each round reloads them (see above).
    unsafe {
        (&raw mut (*c).at).write_volatile(at);
        (&raw mut (*c).left).write_volatile(total);
        (&raw mut (*c).sni_at).write_volatile(0);
        (&raw mut (*c).sni_len).write_volatile(0);
        (&raw mut (*c).ech).write_volatile(0);
        (&raw mut (*c).ech_before_sni).write_volatile(0);
    }
    for _ in 0..EXTENSIONS_MAX / ROUND_EXTENSIONS {
        // SAFETY: as above.
        let (mut at, mut left) = unsafe {
            (
                (&raw const (*c).at).read_volatile(),
                (&raw const (*c).left).read_volatile(),
            )
        };
        // A few extensions in registers, then back to memory (see above).
        for _ in 0..ROUND_EXTENSIONS {
            if left == 0 {
                return Some(());
            }
            let h = bytes::<4>(data, end, at)?;
            let (kind, len) = (be16([h[0], h[1]]) as u16, be16([h[2], h[3]]));
            if 4 + len > left {
                return None;
            }
            let body = at + 4;
            left -= 4 + len;
            at = body + len;
            // SAFETY: as above.
            unsafe {
                if kind == EXT_SERVER_NAME && len > 0 {
                    // A second one is the walker's to read (it matches every name it meets).
                    if (&raw const (*c).sni_len).read_volatile() != 0 {
                        return None;
                    }
                    (&raw mut (*c).sni_at).write_volatile(body);
                    (&raw mut (*c).sni_len).write_volatile(len);
                } else if kind == EXT_ECH {
                    (&raw mut (*c).ech).write_volatile(1);
                    if (&raw const (*c).sni_len).read_volatile() == 0 {
                        (&raw mut (*c).ech_before_sni).write_volatile(1);
                    }
                }
            }
        }
        // SAFETY: as above.
        unsafe {
            (&raw mut (*c).left).write_volatile(left);
            (&raw mut (*c).at).write_volatile(at);
        }
    }
    // More extensions than the loop walks: the walker's.
    // SAFETY: as above.
    (unsafe { (&raw const (*c).left).read_volatile() } == 0).then_some(())
}

/// Reads the one host name of the `server_name` extension, matches it and says what the
/// walker would have concluded.
#[inline(always)]
fn conclude(ctx: &XdpContext, data: usize, end: usize) -> Option<Reason> {
    let j = judging::judging()?;
    j.app = NO_APP;
    j.exempt = 0;
    let found = j.fast;
    if found.sni_len == 0 {
        j.walk.flags = if found.ech != 0 { WALK_ECH_SEEN } else { 0 };
        return Some(walk_reason(Step::Done, j.walk.flags, false, false));
    }
    // One entry, a host name, filling the list exactly; any other list is the walker's.
    let list = bytes::<5>(data, end, found.sni_at)?;
    let name_len = be16([list[3], list[4]]);
    if be16([list[0], list[1]]) + 2 != found.sni_len
        || list[2] != SNI_HOST_NAME
        || name_len + 5 != found.sni_len
        || name_len == 0
        || name_len > NAME_MAX as u32
    {
        return None;
    }
    let n = ((core::hint::black_box(name_len) - 1) & (NAME_BUF as u32 - 1)) + 1;
    // SAFETY: at most NAME_BUF bytes into the name buffer of the judging state.
    let rc = unsafe {
        bpf_xdp_load_bytes(
            ctx.ctx,
            found.sni_at + 5,
            j.walk.name.as_mut_ptr().cast(),
            n,
        )
    };
    if rc != 0 {
        return None;
    }
    j.walk.name_len = n as u16;
    // The walker stops at a blocking name, before the extensions after it.
    j.walk.flags = WALK_SNI_SEEN | WALK_NAME_SEEN;
    if found.ech_before_sni != 0 {
        j.walk.flags |= WALK_ECH_SEEN;
    }
    if crate::rules::judge_name(true) {
        return Some(Reason::HelloBlocked);
    }
    let j = judging::judging()?;
    if found.ech != 0 {
        j.walk.flags |= WALK_ECH_SEEN;
    }
    Some(walk_reason(
        Step::Done,
        j.walk.flags,
        j.monitored_app != NO_APP,
        j.exempt != 0,
    ))
}

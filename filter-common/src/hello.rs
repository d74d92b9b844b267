//! A streaming ClientHello walker. Fed a flow's TCP payload chunk by chunk, it steps over TLS
//! records and ClientHello fields by their lengths and stops at each server name it reads.
//!
//! The walker never looks at a byte twice and keeps all of its state in [`HelloWalk`], so a
//! hello split across records or TCP segments at any byte is read the same as a whole one.
//! It indexes its input with masked indices and runs a bounded number of steps per call,
//! which is what the verifier needs to accept it inside the XDP program.

use crate::{Reason, name::NAME_BUF};

/// Size of the buffer one packet's payload is copied into before walking: a power of two
/// (masked indices) above the largest payload of a 9000-byte jumbo frame.
pub const SCRATCH_LEN: usize = 16384;
const SCRATCH_MASK: usize = SCRATCH_LEN - 1;

/// Host-name bytes [`HelloWalk::take_name`] copies per call: in the program each call is one
/// round of a `bpf_loop`, and a copy loop of this many bytes (not of a whole name's 255) is
/// what the verifier walks there. Most names fit in one call.
pub const NAME_CHUNK: u32 = 32;

/// Walker steps per call in userspace. A step reads one record header, one field or skips
/// one span; Chrome's 1.8 KB hello takes about 50. The program takes fewer per call (each
/// unrolled step multiplies the paths the verifier explores) and bounds the calls itself.
pub const WALK_STEPS_MAX: u32 = 64;

/// Largest TLS record: `TLSPlaintext.length` MUST NOT exceed 2^14 (RFC 8446 §5.1).
pub const RECORD_LEN_MAX: u32 = 1 << 14;

/// Largest ClientHello walked. Real hellos are 0.2-2 KB (Chrome's post-quantum one ~1.8 KB;
/// padding can take them to 16 KiB); anything above this is not read to the end.
pub const HELLO_LEN_MAX: u32 = 1 << 16;

const TLS_CONTENT_HANDSHAKE: u8 = 22;
const HANDSHAKE_CLIENT_HELLO: u8 = 1;
const EXT_SERVER_NAME: u16 = 0;
/// `encrypted_client_hello` (draft-ietf-tls-esni, code point 0xfe0d).
const EXT_ECH: u16 = 0xfe0d;
const SNI_HOST_NAME: u8 = 0;
/// `legacy_version` (2) and `random` (32) after the handshake header.
const HELLO_FIXED_LEN: u32 = 34;

// Stages of the walk.
const ST_HS_HEADER: u8 = 0;
const ST_SESSION_ID_LEN: u8 = 1;
const ST_CIPHERS_LEN: u8 = 2;
const ST_COMPRESSION_LEN: u8 = 3;
const ST_EXTENSIONS_LEN: u8 = 4;
const ST_EXT_HEADER: u8 = 5;
const ST_SNI_LIST_LEN: u8 = 6;
const ST_SNI_ENTRY: u8 = 7;
const ST_NAME: u8 = 8;
const ST_DONE: u8 = 9;

/// The hello carried an `encrypted_client_hello` extension (real or GREASE).
pub const WALK_ECH_SEEN: u8 = 1;
/// The hello carried a `server_name` extension.
pub const WALK_SNI_SEEN: u8 = 2;
/// At least one host name was read.
pub const WALK_NAME_SEEN: u8 = 4;
/// The last host name read was completed in a TCP segment after the hello's first (set by
/// the program, which knows segments).
pub const WALK_NAME_LATER: u8 = 8;

/// Stream bytes of a hello kept to compare retransmissions and overlaps with: Chrome's
/// post-quantum hello is ~1.8 KB; an overlap beyond this is uninspectable.
pub const HELLO_KEEP: usize = 4096;

/// TCP segments one hello may span before it is uninspectable (real ones take 1-2; the
/// evasion tools split into more).
pub const HELLO_SEGMENTS_MAX: u16 = 32;

/// A hello whose next segment has not come for this long is forgotten. Servers wait about
/// as long for a handshake (nginx `ssl_handshake_timeout` 60 s), so a slower hello gains
/// nothing: its later segments are no longer a handshake the server accepts.
pub const HELLO_IDLE_NS: u64 = 60_000_000_000;

/// A flow that sent conflicting bytes is remembered longer than TCP's largest
/// retransmission interval (`TCP_RTO_MAX`, 120 s), so that a retransmission of the
/// conflicting bytes is never taken for plain data once the state is gone.
pub const HELLO_CONFLICT_IDLE_NS: u64 = 180_000_000_000;

/// A hello being reassembled across segments, in the `HELLOS` table.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct HelloFlow {
    /// `bpf_ktime_get_ns` when the state was created or last refreshed by a conflict.
    pub touched_ns: u64,
    /// Non-zero while a CPU works on this flow (claimed with an atomic exchange; 64 bits
    /// because the BPF target has no 32-bit atomics).
    pub busy: u64,
    pub walk: HelloWalk,
    /// Sequence numbers of the hello's first byte and of the next byte expected.
    pub start_seq: u32,
    pub next_seq: u32,
    pub segments: u16,
    /// 1 once the walk reached the hello's end; kept to check overlaps.
    pub done: u8,
    /// Once bytes conflicted with the kept ones or passed the bounds: the uninspectable
    /// `Reason` (as `u8`) every later segment gets; the state is kept longer (see
    /// `HELLO_CONFLICT_IDLE_NS`). 0: none.
    pub conflict: u8,
    /// The first monitored app (or `NO_APP`), reported when the hello ends.
    pub monitored_app: u16,
    /// 1 once an uninspectable event was emitted for this flow.
    pub reported: u8,
    // 9 bytes: `kept` starts 8-byte aligned, so overlaps are compared by words.
    pub _pad: [u8; 9],
    /// Stream bytes from `start_seq`. Only the first `HELLO_KEEP` are used; the rest is
    /// slack so that a copy of up to `HELLO_KEEP` bytes at any offset below `HELLO_KEEP`
    /// stays inside the value for the verifier.
    pub kept: [u8; 2 * HELLO_KEEP],
}

/// The reason a hello's walk concludes with, from the step that ended it and what its names
/// matched (`monitored`: a name matched a monitor rule; `exempt`: a name matched an app that
/// exempts this client). One mapping for the program's walker, its fast path and the
/// daemon's QUIC judge; a blocking name ends the walk before this is asked.
#[inline(always)]
pub fn walk_reason(step: Step, flags: u8, monitored: bool, exempt: bool) -> Reason {
    match step {
        Step::Done if monitored => Reason::HelloMonitored,
        Step::Done if exempt => Reason::HelloExempt,
        Step::Done if flags & WALK_NAME_SEEN != 0 => Reason::HelloAllowed,
        Step::Done => Reason::HelloNoSni,
        Step::NeedMore => Reason::HelloIncomplete,
        Step::NotHandshake => Reason::TcpNotHandshake,
        Step::NotClientHello => Reason::NotClientHello,
        Step::Malformed | Step::NameBytes => Reason::UninspectableMalformed,
        Step::TooComplex | Step::Paused => Reason::UninspectableTooLong,
    }
}

/// What one call to [`HelloWalk::feed`] ended with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// The chunk is used up and the hello goes on.
    NeedMore,
    /// Bytes of a host name are next: call [`HelloWalk::take_name`], then `feed` again.
    NameBytes,
    /// The hello has been walked to its end.
    Done,
    /// The stream does not start with a TLS handshake record.
    NotHandshake,
    /// The handshake message is not a ClientHello.
    NotClientHello,
    /// A length or type contradicts the structure (RFC 8446 §4.1.2).
    Malformed,
    /// The step bound was reached: call `feed` again to go on.
    Paused,
    /// A hello above [`HELLO_LEN_MAX`].
    TooComplex,
}

/// The walk's state between chunks. Zeroed memory is the start of a stream.
#[repr(C, align(8))]
#[derive(Clone, Copy)]
pub struct HelloWalk {
    /// The last host name read (raw bytes from the wire).
    pub name: [u8; NAME_BUF],
    /// Bytes of the current record still to come; 0 when a record header is next.
    record_left: u32,
    /// Bytes to step over before the next field.
    skip: u32,
    /// Bytes of the ClientHello body not yet accounted for by a field.
    body_left: u32,
    /// Bytes of the extensions block not yet accounted for.
    ext_left: u32,
    /// Bytes of the `server_name` extension body not yet accounted for.
    sni_left: u32,
    pub name_len: u16,
    name_have: u16,
    /// TLS records seen.
    pub records: u16,
    stage: u8,
    /// `WALK_*` bits.
    pub flags: u8,
    /// Bytes of the field being gathered, and how many it needs (at most 4).
    field: [u8; 4],
    field_have: u8,
    field_need: u8,
    /// Bytes of the record header being gathered.
    header_have: u8,
    _pad0: u8,
    header: [u8; 8],
}

impl Default for HelloWalk {
    fn default() -> Self {
        Self::new()
    }
}

impl HelloWalk {
    pub const fn new() -> Self {
        Self {
            name: [0; NAME_BUF],
            record_left: 0,
            skip: 0,
            body_left: 0,
            ext_left: 0,
            sni_left: 0,
            name_len: 0,
            name_have: 0,
            records: 0,
            stage: ST_HS_HEADER,
            flags: 0,
            field: [0; 4],
            field_have: 0,
            field_need: 4,
            header_have: 0,
            _pad0: 0,
            header: [0; 8],
        }
    }

    /// Resets to the start of a stream without touching the name buffer.
    #[inline(always)]
    pub fn reset(&mut self) {
        // The counters from `record_left` to `field` are 32 bytes at an aligned offset:
        // zeroed as four words (see `copy_words`), the name buffer left as it is.
        const {
            assert!(core::mem::offset_of!(HelloWalk, record_left).is_multiple_of(8));
            assert!(
                core::mem::offset_of!(HelloWalk, field_have)
                    == core::mem::offset_of!(HelloWalk, record_left) + 32
            );
        }
        // SAFETY: 32 bytes of plain integers inside `self`, 8-byte aligned (the struct is,
        // and the offset is checked above).
        #[allow(clippy::cast_ptr_alignment)]
        unsafe {
            crate::zero_words((&raw mut self.record_left).cast::<[u64; 4]>());
        };
        self.stage = ST_HS_HEADER;
        self.field_have = 0;
        self.field_need = 4;
        self.header_have = 0;
    }

    /// Whether the walk has passed the end of the hello.
    pub fn is_done(&self) -> bool {
        self.stage == ST_DONE
    }

    /// Whether the walk has read past the first record header and handshake header, i.e.
    /// the bytes so far are the start of a real ClientHello.
    pub fn past_hello_header(&self) -> bool {
        self.stage != ST_HS_HEADER
    }

    /// Walks `buf[*pos..end]` for up to `STEPS` steps, advancing `*pos` over what it consumed.
    #[inline(always)]
    pub fn feed<const STEPS: u32>(
        &mut self,
        buf: &[u8; SCRATCH_LEN],
        pos: &mut u32,
        end: u32,
    ) -> Step {
        let end = if end > SCRATCH_LEN as u32 {
            SCRATCH_LEN as u32
        } else {
            end
        };
        for _ in 0..STEPS {
            // The last extension's body may still be to skip: the hello ends after it.
            if self.stage == ST_DONE && self.skip == 0 {
                return Step::Done;
            }
            if *pos >= end {
                return Step::NeedMore;
            }
            if self.record_left == 0 {
                match self.record_header(buf, pos, end) {
                    Ok(()) => continue,
                    Err(step) => return step,
                }
            }
            let avail = min(end - *pos, self.record_left);
            if self.skip > 0 {
                let n = min(self.skip, avail);
                self.skip -= n;
                self.consume(pos, n);
                continue;
            }
            if self.stage == ST_NAME {
                // Copying is left to `take_name`, outside this loop, so that the verifier
                // walks the copy loop once per call instead of once per step.
                return Step::NameBytes;
            }
            let n = min((self.field_need - self.field_have) as u32, avail);
            copy_field(buf, *pos, &mut self.field, self.field_have as u32, n);
            self.field_have += n as u8;
            self.consume(pos, n);
            if self.field_have < self.field_need {
                continue;
            }
            self.field_have = 0;
            if let Err(step) = self.on_field() {
                return step;
            }
        }
        Step::Paused
    }

    /// Copies the host-name bytes available at `*pos` into `name`, at most [`NAME_CHUNK`]
    /// per call. Returns true when the name is complete in `name[..name_len]`.
    #[inline(always)]
    pub fn take_name(&mut self, buf: &[u8; SCRATCH_LEN], pos: &mut u32, end: u32) -> bool {
        let end = if end > SCRATCH_LEN as u32 {
            SCRATCH_LEN as u32
        } else {
            end
        };
        if self.stage != ST_NAME || *pos >= end || self.name_have >= self.name_len {
            return false;
        }
        let n = min(
            min(
                min((self.name_len - self.name_have) as u32, end - *pos),
                self.record_left,
            ),
            NAME_CHUNK,
        );
        copy_name(buf, *pos, &mut self.name, self.name_have as u32, n);
        self.name_have += n as u16;
        self.consume(pos, n);
        if self.name_have < self.name_len {
            return false;
        }
        self.flags |= WALK_NAME_SEEN;
        self.after_sni_entry();
        true
    }

    /// Walks on to the next complete host name (true) or to the end of what can be read
    /// from this chunk (false, with the step that ended it). For userspace callers; the
    /// program drives `feed` and `take_name` itself to keep its loops bounded.
    pub fn next_name(
        &mut self,
        buf: &[u8; SCRATCH_LEN],
        pos: &mut u32,
        end: u32,
    ) -> Result<(), Step> {
        loop {
            match self.feed::<WALK_STEPS_MAX>(buf, pos, end) {
                Step::NameBytes => {
                    if self.take_name(buf, pos, end) {
                        return Ok(());
                    }
                }
                Step::Paused => {}
                step => return Err(step),
            }
        }
    }

    #[inline(always)]
    fn consume(&mut self, pos: &mut u32, n: u32) {
        *pos += n;
        self.record_left -= n;
    }

    /// Gathers a 5-byte record header (it may be split across chunks) and opens the record.
    #[inline(always)]
    fn record_header(
        &mut self,
        buf: &[u8; SCRATCH_LEN],
        pos: &mut u32,
        end: u32,
    ) -> Result<(), Step> {
        let n = min(5 - self.header_have as u32, end - *pos);
        for k in 0..5u32 {
            if k >= n {
                break;
            }
            self.header[((self.header_have as u32 + k) & 7) as usize] =
                buf[((*pos + k) as usize) & SCRATCH_MASK];
        }
        self.header_have += n as u8;
        *pos += n;
        if self.header_have < 5 {
            return Err(Step::NeedMore);
        }
        self.header_have = 0;
        // Handshake messages must not be interleaved with other record types (RFC 8446 §5.1),
        // so a non-handshake record before the hello's end is as wrong as a malformed length.
        // The record version is read as leniently as the most lenient server: OpenSSL wants
        // major 3, but Go's crypto/tls takes any version below 0x1000 in a client's first
        // record, so a hello that claimed version 0x0001 to skip a strict reader would
        // reach such a server unread.
        if self.header[0] != TLS_CONTENT_HANDSHAKE || self.header[1] >= 0x10 {
            return Err(if self.records == 0 {
                Step::NotHandshake
            } else {
                Step::Malformed
            });
        }
        let len = be16(self.header[3], self.header[4]);
        // Zero-length handshake fragments MUST NOT be sent (RFC 8446 §5.1).
        if len == 0 || len > RECORD_LEN_MAX {
            return Err(if self.records == 0 {
                Step::NotHandshake
            } else {
                Step::Malformed
            });
        }
        self.record_left = len;
        self.records = self.records.saturating_add(1);
        Ok(())
    }

    #[inline(always)]
    fn expect(&mut self, stage: u8, need: u8) {
        self.stage = stage;
        self.field_need = need;
    }

    /// Accounts `n` bytes of the hello body, failing if the hello is shorter.
    #[inline(always)]
    fn take_body(&mut self, n: u32) -> Result<(), Step> {
        if n > self.body_left {
            return Err(Step::Malformed);
        }
        self.body_left -= n;
        Ok(())
    }

    /// Acts on a complete field of the current stage: one arm per field of RFC 8446 §4.1.2.
    #[inline(always)]
    #[allow(clippy::too_many_lines)]
    fn on_field(&mut self) -> Result<(), Step> {
        let f = self.field;
        match self.stage {
            ST_HS_HEADER => {
                if f[0] != HANDSHAKE_CLIENT_HELLO {
                    return Err(Step::NotClientHello);
                }
                let len = ((f[1] as u32) << 16) | be16(f[2], f[3]);
                if len > HELLO_LEN_MAX {
                    return Err(Step::TooComplex);
                }
                self.body_left = len;
                self.take_body(HELLO_FIXED_LEN)?;
                self.skip = HELLO_FIXED_LEN;
                self.expect(ST_SESSION_ID_LEN, 1);
            }
            ST_SESSION_ID_LEN => {
                // legacy_session_id is at most 32 bytes (RFC 8446 §4.1.2).
                if f[0] > 32 {
                    return Err(Step::Malformed);
                }
                self.take_body(1 + f[0] as u32)?;
                self.skip = f[0] as u32;
                self.expect(ST_CIPHERS_LEN, 2);
            }
            ST_CIPHERS_LEN => {
                let n = be16(f[0], f[1]);
                // cipher_suites<2..2^16-2>, two bytes each.
                if n < 2 || n & 1 != 0 {
                    return Err(Step::Malformed);
                }
                self.take_body(2 + n)?;
                self.skip = n;
                self.expect(ST_COMPRESSION_LEN, 1);
            }
            ST_COMPRESSION_LEN => {
                if f[0] == 0 {
                    return Err(Step::Malformed);
                }
                self.take_body(1 + f[0] as u32)?;
                self.skip = f[0] as u32;
                if self.body_left == 0 {
                    // A hello without extensions (SSL 3.0 style) has no server name.
                    self.stage = ST_DONE;
                } else {
                    self.expect(ST_EXTENSIONS_LEN, 2);
                }
            }
            ST_EXTENSIONS_LEN => {
                let n = be16(f[0], f[1]);
                self.take_body(2)?;
                // The extensions fill the rest of the hello exactly.
                if n != self.body_left {
                    return Err(Step::Malformed);
                }
                self.body_left = 0;
                self.ext_left = n;
                self.next_extension();
            }
            ST_EXT_HEADER => {
                let kind = be16(f[0], f[1]) as u16;
                let len = be16(f[2], f[3]);
                if 4 + len > self.ext_left {
                    return Err(Step::Malformed);
                }
                self.ext_left -= 4 + len;
                if kind == EXT_SERVER_NAME && len > 0 {
                    self.flags |= WALK_SNI_SEEN;
                    self.sni_left = len;
                    self.expect(ST_SNI_LIST_LEN, 2);
                } else {
                    if kind == EXT_ECH {
                        self.flags |= WALK_ECH_SEEN;
                    }
                    self.skip = len;
                    self.next_extension();
                }
            }
            ST_SNI_LIST_LEN => {
                let n = be16(f[0], f[1]);
                if n + 2 != self.sni_left {
                    return Err(Step::Malformed);
                }
                self.sni_left = n;
                self.after_sni_entry();
            }
            ST_SNI_ENTRY => {
                let kind = f[0];
                let len = be16(f[1], f[2]);
                if 3 + len > self.sni_left {
                    return Err(Step::Malformed);
                }
                self.sni_left -= 3 + len;
                if kind == SNI_HOST_NAME {
                    if len == 0 || len as usize > crate::name::NAME_MAX {
                        return Err(Step::Malformed);
                    }
                    self.name_len = len as u16;
                    self.name_have = 0;
                    self.stage = ST_NAME;
                } else {
                    self.skip = len;
                    self.after_sni_entry();
                }
            }
            _ => return Err(Step::Malformed),
        }
        Ok(())
    }

    #[inline(always)]
    fn next_extension(&mut self) {
        if self.ext_left == 0 {
            self.stage = ST_DONE;
        } else {
            self.expect(ST_EXT_HEADER, 4);
        }
    }

    #[inline(always)]
    fn after_sni_entry(&mut self) {
        if self.sni_left == 0 {
            self.next_extension();
        } else {
            self.expect(ST_SNI_ENTRY, 3);
        }
    }
}

#[inline(always)]
const fn min(a: u32, b: u32) -> u32 {
    if a < b { a } else { b }
}

#[inline(always)]
const fn be16(hi: u8, lo: u8) -> u32 {
    ((hi as u32) << 8) | lo as u32
}

#[inline(always)]
fn copy_field(buf: &[u8; SCRATCH_LEN], pos: u32, dst: &mut [u8; 4], at: u32, n: u32) {
    for k in 0..4u32 {
        if k >= n {
            break;
        }
        dst[((at + k) & 3) as usize] = buf[((pos + k) as usize) & SCRATCH_MASK];
    }
}

#[inline(always)]
fn copy_name(buf: &[u8; SCRATCH_LEN], pos: u32, dst: &mut [u8; NAME_BUF], at: u32, n: u32) {
    for k in 0..NAME_CHUNK {
        if k >= n {
            break;
        }
        dst[((at + k) as usize) & (NAME_BUF - 1)] = buf[((pos + k) as usize) & SCRATCH_MASK];
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::boxed::Box;
    use std::string::String;
    use std::vec;
    use std::vec::Vec;

    /// A minimal TLS 1.2-style ClientHello record carrying `names` in one SNI extension.
    fn hello(names: &[&str], extra_ext: &[(u16, usize)]) -> Vec<u8> {
        let mut exts = Vec::new();
        for (kind, len) in extra_ext {
            exts.extend_from_slice(&kind.to_be_bytes());
            exts.extend_from_slice(&(*len as u16).to_be_bytes());
            exts.extend(std::iter::repeat_n(0xab, *len));
        }
        if !names.is_empty() {
            let mut list = Vec::new();
            for n in names {
                list.push(0);
                list.extend_from_slice(&(n.len() as u16).to_be_bytes());
                list.extend_from_slice(n.as_bytes());
            }
            exts.extend_from_slice(&0u16.to_be_bytes());
            exts.extend_from_slice(&((list.len() + 2) as u16).to_be_bytes());
            exts.extend_from_slice(&(list.len() as u16).to_be_bytes());
            exts.extend_from_slice(&list);
        }
        let mut body = vec![3, 3];
        body.extend_from_slice(&[7; 32]);
        body.push(32);
        body.extend_from_slice(&[9; 32]);
        body.extend_from_slice(&[0, 4, 0x13, 0x01, 0x13, 0x02]);
        body.extend_from_slice(&[1, 0]);
        body.extend_from_slice(&(exts.len() as u16).to_be_bytes());
        body.extend_from_slice(&exts);
        let mut hs = vec![1];
        hs.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
        hs.extend_from_slice(&body);
        records(&hs, hs.len())
    }

    fn records(hs: &[u8], size: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for part in hs.chunks(size) {
            out.extend_from_slice(&[22, 3, 1]);
            out.extend_from_slice(&(part.len() as u16).to_be_bytes());
            out.extend_from_slice(part);
        }
        out
    }

    fn handshake(record: &[u8]) -> Vec<u8> {
        record[5..].to_vec()
    }

    /// Walks `stream` cut into chunks at `cuts`, returning the names and the last step.
    fn walk(stream: &[u8], cuts: &[usize]) -> (Vec<String>, Step) {
        let mut w = Box::new(HelloWalk::new());
        let mut names = Vec::new();
        let mut bounds = vec![0];
        bounds.extend(cuts.iter().copied().filter(|&c| c > 0 && c < stream.len()));
        bounds.push(stream.len());
        let mut last = Step::NeedMore;
        for pair in bounds.windows(2) {
            let mut buf = Box::new([0u8; SCRATCH_LEN]);
            let chunk = &stream[pair[0]..pair[1]];
            buf[..chunk.len()].copy_from_slice(chunk);
            let mut pos = 0;
            loop {
                match w.next_name(&buf, &mut pos, chunk.len() as u32) {
                    Ok(()) => {
                        names.push(String::from_utf8_lossy(&w.name[..w.name_len as usize]).into());
                    }
                    Err(step) => {
                        last = step;
                        break;
                    }
                }
            }
            if last != Step::NeedMore {
                break;
            }
        }
        (names, last)
    }

    #[test]
    fn reads_the_name_of_a_whole_hello() {
        let h = hello(&["www.tiktok.com"], &[(10, 8), (EXT_ECH, 40)]);
        let (names, step) = walk(&h, &[]);
        assert_eq!(names, ["www.tiktok.com"]);
        assert_eq!(step, Step::Done);
    }

    #[test]
    fn the_hello_ends_after_the_last_extension_body() {
        // The last extension is 300 bytes of padding: cut inside it, the walk must want more
        // (the rest is still the hello) and end only after its last byte.
        let h = hello(&["a.example"], &[(21, 300)]);
        let names_end = h.len() - 300;
        let (_, step) = walk(&h[..names_end], &[]);
        assert_eq!(step, Step::NeedMore, "cut after the padding header");
        assert_eq!(walk(&h, &[names_end + 10]).1, Step::Done);
    }

    #[test]
    fn reads_every_name_of_a_list() {
        let h = hello(&["a.example", "b.tiktok.com"], &[]);
        assert_eq!(walk(&h, &[]).0, ["a.example", "b.tiktok.com"]);
    }

    #[test]
    fn split_at_every_byte_reads_the_same() {
        let h = hello(&["www.tiktok.com"], &[(21, 300), (43, 7)]);
        for cut in 1..h.len() {
            let (names, step) = walk(&h, &[cut]);
            assert_eq!(names, ["www.tiktok.com"], "cut at {cut}");
            assert_eq!(step, Step::Done, "cut at {cut}");
        }
    }

    #[test]
    fn one_byte_chunks_read_the_same() {
        let h = hello(&["x.tiktok.com"], &[(5, 20)]);
        let cuts: Vec<usize> = (1..h.len()).collect();
        assert_eq!(walk(&h, &cuts), (vec!["x.tiktok.com".into()], Step::Done));
    }

    #[test]
    fn hello_over_many_records_reads_the_same() {
        let h = hello(&["www.tiktok.com"], &[(21, 100)]);
        for size in [1usize, 2, 3, 7, 64, 100] {
            let r = records(&handshake(&h), size);
            let cuts: Vec<usize> = (1..r.len()).step_by(97).collect();
            let (names, step) = walk(&r, &cuts);
            assert_eq!(names, ["www.tiktok.com"], "records of {size}");
            assert_eq!(step, Step::Done, "records of {size}");
        }
    }

    #[test]
    fn ech_and_missing_sni_are_reported() {
        let h = hello(&[], &[(EXT_ECH, 100)]);
        let mut w = Box::new(HelloWalk::new());
        let mut buf = Box::new([0u8; SCRATCH_LEN]);
        buf[..h.len()].copy_from_slice(&h);
        let mut pos = 0;
        assert_eq!(w.next_name(&buf, &mut pos, h.len() as u32), Err(Step::Done));
        assert_eq!(w.flags & WALK_ECH_SEEN, WALK_ECH_SEEN);
        assert_eq!(w.flags & WALK_NAME_SEEN, 0);
    }

    #[test]
    fn record_versions_a_server_may_take_are_read() {
        let mut h = hello(&["a.b"], &[]);
        h[1] = 0;
        h[2] = 1;
        assert_eq!(walk(&h, &[]), (vec![String::from("a.b")], Step::Done));
        h[1] = 0x10;
        assert_eq!(walk(&h, &[]).1, Step::NotHandshake);
    }

    #[test]
    fn non_tls_and_non_hello_streams_are_told_apart() {
        assert_eq!(
            walk(b"GET / HTTP/1.1\r\nHost: tiktok.com\r\n\r\n", &[]).1,
            Step::NotHandshake
        );
        let mut h = hello(&["a.b"], &[]);
        h[5] = 2; // ServerHello
        assert_eq!(walk(&h, &[]).1, Step::NotClientHello);
    }

    #[test]
    fn inconsistent_lengths_are_malformed_not_misread() {
        let h = hello(&["www.tiktok.com"], &[]);
        // Each length field in turn made one larger than the bytes that follow.
        for (at, what) in [(43, "session id"), (76, "ciphers"), (82, "compression")] {
            let mut m = h.clone();
            m[at] = m[at].wrapping_add(200);
            let (names, step) = walk(&m, &[]);
            assert!(names.is_empty(), "{what}: read {names:?}");
            assert!(
                matches!(step, Step::Malformed | Step::NeedMore),
                "{what}: {step:?}"
            );
        }
    }
}

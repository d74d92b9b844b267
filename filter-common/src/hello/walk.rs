//! The ClientHello walker's state and its stream: TLS record headers, the chunks fed to it
//! and the host-name bytes it copies out (the ClientHello's own fields are read in `fields`).
//!
//! It indexes its input with masked indices and runs a bounded number of steps per call,
//! which is what the verifier needs to accept it inside the XDP program.

use crate::{name::NAME_BUF, reason::Reason, wire::TLS_CONTENT_HANDSHAKE};

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

// Stages of the walk.
pub(super) const ST_HS_HEADER: u8 = 0;
pub(super) const ST_SESSION_ID_LEN: u8 = 1;
pub(super) const ST_CIPHERS_LEN: u8 = 2;
pub(super) const ST_COMPRESSION_LEN: u8 = 3;
pub(super) const ST_EXTENSIONS_LEN: u8 = 4;
pub(super) const ST_EXT_HEADER: u8 = 5;
pub(super) const ST_SNI_LIST_LEN: u8 = 6;
pub(super) const ST_SNI_ENTRY: u8 = 7;
pub(super) const ST_NAME: u8 = 8;
pub(super) const ST_DONE: u8 = 9;

/// The hello carried an `encrypted_client_hello` extension (real or GREASE).
pub const WALK_ECH_SEEN: u8 = 1;
/// The hello carried a `server_name` extension.
pub const WALK_SNI_SEEN: u8 = 2;
/// At least one host name was read.
pub const WALK_NAME_SEEN: u8 = 4;
/// The last host name read was completed in a TCP segment after the hello's first (set by
/// the program, which knows segments).
pub const WALK_NAME_LATER: u8 = 8;

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
    pub(super) skip: u32,
    /// Bytes of the ClientHello body not yet accounted for by a field.
    pub(super) body_left: u32,
    /// Bytes of the extensions block not yet accounted for.
    pub(super) ext_left: u32,
    /// Bytes of the `server_name` extension body not yet accounted for.
    pub(super) sni_left: u32,
    pub name_len: u16,
    pub(super) name_have: u16,
    /// TLS records seen.
    pub records: u16,
    pub(super) stage: u8,
    /// `WALK_*` bits.
    pub flags: u8,
    /// Bytes of the field being gathered, and how many it needs (at most 4).
    pub(super) field: [u8; 4],
    field_have: u8,
    pub(super) field_need: u8,
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
            crate::words::zero_words((&raw mut self.record_left).cast::<[u64; 4]>());
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
}

#[inline(always)]
const fn min(a: u32, b: u32) -> u32 {
    if a < b { a } else { b }
}

#[inline(always)]
pub(super) const fn be16(hi: u8, lo: u8) -> u32 {
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

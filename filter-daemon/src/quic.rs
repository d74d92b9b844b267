//! QUIC client Initials: the keys derived from the Destination Connection ID (RFC 9001 §5.2,
//! RFC 9369 §3.3.1 for version 2), header protection removed (RFC 9001 §5.4), the payload
//! decrypted (AES-128-GCM, RFC 9001 §5.3), the frames read (RFC 9000 §19), the CRYPTO stream
//! reassembled across Initials and out of order, and the ClientHello judged by the same
//! walker and rule tables as the program's TCP path.
//!
//! The ciphers are ring's; this module only lays out labels, nonces and headers.

use std::{
    collections::{HashMap, VecDeque},
    net::IpAddr,
};

use filter_common::{
    Action, AppScope, EVENT_ECH, FlowKey, NO_APP, Reason,
    hello::{HelloWalk, SCRATCH_LEN, Step, WALK_ECH_SEEN, walk_reason},
    name::NAME_BUF,
};
use ring::{aead, hkdf};

use crate::{
    Error,
    rules::{RuleSet, Tables},
};

/// QUIC version 1 (RFC 9000) and version 2 (RFC 9369).
pub const V1: u32 = 1;
pub const V2: u32 = 0x6b33_43cf;

/// RFC 9001 §5.2.
const SALT_V1: [u8; 20] = [
    0x38, 0x76, 0x2c, 0xf7, 0xf5, 0x59, 0x34, 0xb3, 0x4d, 0x17, 0x9a, 0xe6, 0xa4, 0xc8, 0x0c, 0xad,
    0xcc, 0xbb, 0x7f, 0x0a,
];
/// RFC 9369 §3.3.1.
const SALT_V2: [u8; 20] = [
    0x0d, 0xed, 0xe3, 0xde, 0xf7, 0x00, 0xa6, 0xdb, 0x81, 0x93, 0x81, 0xbe, 0x6e, 0x26, 0x9d, 0xcb,
    0xf9, 0xbd, 0x2e, 0xd9,
];

/// Longest connection ID in version 1 and 2 (RFC 9000 §17.2).
const CID_MAX: usize = 20;
/// Header protection samples 16 bytes, starting 4 bytes after the packet number's start.
const SAMPLE_LEN: usize = 16;
const TAG_LEN: usize = 16;

/// Bytes of CRYPTO stream kept per flow: far above real `ClientHello`s (Chromium's
/// post-quantum hello is about 1.8 KB), and what the program's bound on Initials per flow
/// can bring anyway.
pub const CRYPTO_MAX: usize = 16 * 1024;
/// Out-of-order CRYPTO chunks kept per flow.
const CHUNKS_MAX: usize = 64;
/// Flows whose hello is being reassembled at once; the oldest is dropped for a new one.
pub const FLOWS_MAX: usize = 4096;
/// A reassembly silent this long (nanoseconds) is dropped.
pub const FLOW_IDLE_NS: u64 = 10_000_000_000;

/// Who sent a packet: the keys differ (RFC 9001 §5.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sender {
    Client,
    Server,
}

/// The Initial keys of one direction.
pub struct InitialKeys {
    key: aead::LessSafeKey,
    iv: [u8; 12],
    hp: aead::quic::HeaderProtectionKey,
}

/// The key, IV and header protection key, as RFC 9001 Appendix A lists them.
#[derive(Debug, PartialEq, Eq)]
pub struct KeyMaterial {
    pub secret: Vec<u8>,
    pub key: Vec<u8>,
    pub iv: Vec<u8>,
    pub hp: Vec<u8>,
}

struct Len(usize);

impl hkdf::KeyType for Len {
    fn len(&self) -> usize {
        self.0
    }
}

/// HKDF-Expand-Label of TLS 1.3 (RFC 8446 §7.1) with an empty context.
fn expand_label(prk: &hkdf::Prk, label: &[u8], len: usize) -> Vec<u8> {
    let out_len = u16::try_from(len).unwrap_or(u16::MAX).to_be_bytes();
    let label_len = [u8::try_from(6 + label.len()).unwrap_or(u8::MAX)];
    let info: [&[u8]; 5] = [&out_len, &label_len, b"tls13 ", label, &[0]];
    let mut out = vec![0; len];
    // Lengths here are 12 to 32 bytes, far below HKDF-SHA256's limit of 255 * 32.
    prk.expand(&info, Len(len))
        .and_then(|okm| okm.fill(&mut out))
        .expect("HKDF output lengths are within bounds");
    out
}

/// The Initial key material of `sender` for a connection whose client chose `dcid`.
pub fn key_material(version: u32, dcid: &[u8], sender: Sender) -> Option<KeyMaterial> {
    let (salt, labels): (&[u8], [&[u8]; 3]) = match version {
        V1 => (&SALT_V1, [b"quic key", b"quic iv", b"quic hp"]),
        V2 => (&SALT_V2, [b"quicv2 key", b"quicv2 iv", b"quicv2 hp"]),
        _ => return None,
    };
    let initial = hkdf::Salt::new(hkdf::HKDF_SHA256, salt).extract(dcid);
    let label: &[u8] = match sender {
        Sender::Client => b"client in",
        Sender::Server => b"server in",
    };
    let secret = expand_label(&initial, label, 32);
    let prk = hkdf::Prk::new_less_safe(hkdf::HKDF_SHA256, &secret);
    Some(KeyMaterial {
        key: expand_label(&prk, labels[0], 16),
        iv: expand_label(&prk, labels[1], 12),
        hp: expand_label(&prk, labels[2], 16),
        secret,
    })
}

impl InitialKeys {
    pub fn new(version: u32, dcid: &[u8], sender: Sender) -> Option<Self> {
        let m = key_material(version, dcid, sender)?;
        let key = aead::UnboundKey::new(&aead::AES_128_GCM, &m.key).ok()?;
        let hp = aead::quic::HeaderProtectionKey::new(&aead::quic::AES_128, &m.hp).ok()?;
        Some(Self {
            key: aead::LessSafeKey::new(key),
            iv: m.iv.try_into().ok()?,
            hp,
        })
    }
}

/// Why a datagram yielded no Initial.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpenError {
    /// Not a long-header Initial of version 1 or 2.
    NotInitial,
    /// A header field runs past the datagram or breaks a limit.
    Truncated,
    /// No candidate connection ID gave keys that authenticate the packet.
    Undecryptable,
    /// The decrypted payload holds a frame an Initial may not carry, or a malformed one.
    BadFrame,
}

/// One decrypted Initial.
#[derive(Debug)]
pub struct Opened {
    pub version: u32,
    /// The Destination Connection ID in the packet's header.
    pub dcid: Vec<u8>,
    /// The connection ID whose keys opened it.
    pub key_dcid: Vec<u8>,
    pub packet_number: u64,
    /// The frames, decrypted.
    pub payload: Vec<u8>,
}

/// A QUIC variable-length integer (RFC 9000 §16) at `*pos`.
fn varint(b: &[u8], pos: &mut usize) -> Option<u64> {
    let first = *b.get(*pos)?;
    let len = 1usize << (first >> 6);
    let bytes = b.get(*pos..*pos + len)?;
    let mut v = u64::from(first & 0x3f);
    for &x in &bytes[1..] {
        v = (v << 8) | u64::from(x);
    }
    *pos += len;
    Some(v)
}

fn take<'a>(b: &'a [u8], pos: &mut usize, len: usize) -> Option<&'a [u8]> {
    let s = b.get(*pos..pos.checked_add(len)?)?;
    *pos += len;
    Some(s)
}

/// Where the fields of a long-header packet lie.
struct LongHeader<'a> {
    version: u32,
    initial: bool,
    dcid: &'a [u8],
    /// Offset of the packet number.
    pn_offset: usize,
    /// Offset just past the packet (the Length field covers number and payload).
    end: usize,
}

fn long_header(d: &[u8]) -> Result<LongHeader<'_>, OpenError> {
    let first = *d.first().ok_or(OpenError::Truncated)?;
    if first & 0x80 == 0 {
        return Err(OpenError::NotInitial);
    }
    let mut pos = 1;
    let version = take(d, &mut pos, 4).ok_or(OpenError::Truncated)?;
    let version = u32::from_be_bytes([version[0], version[1], version[2], version[3]]);
    let kind = (first >> 4) & 3;
    let initial = match version {
        V1 => kind == 0,
        V2 => kind == 1,
        _ => return Err(OpenError::NotInitial),
    };
    // Retry (v1 type 3, v2 type 0) has no Length field: nothing after it can be read.
    let retry = (version == V1 && kind == 3) || (version == V2 && kind == 0);
    if retry {
        return Err(OpenError::NotInitial);
    }
    let dcid_len = usize::from(*d.get(pos).ok_or(OpenError::Truncated)?);
    pos += 1;
    let dcid = take(d, &mut pos, dcid_len).ok_or(OpenError::Truncated)?;
    let scid_len = usize::from(*d.get(pos).ok_or(OpenError::Truncated)?);
    pos += 1;
    take(d, &mut pos, scid_len).ok_or(OpenError::Truncated)?;
    if dcid_len > CID_MAX || scid_len > CID_MAX {
        return Err(OpenError::Truncated);
    }
    if initial {
        let token = varint(d, &mut pos).ok_or(OpenError::Truncated)?;
        take(
            d,
            &mut pos,
            usize::try_from(token).map_err(|_| OpenError::Truncated)?,
        )
        .ok_or(OpenError::Truncated)?;
    }
    let length = varint(d, &mut pos).ok_or(OpenError::Truncated)?;
    let end = usize::try_from(length)
        .ok()
        .and_then(|l| pos.checked_add(l))
        .filter(|&e| e <= d.len())
        .ok_or(OpenError::Truncated)?;
    Ok(LongHeader {
        version,
        initial,
        dcid,
        pn_offset: pos,
        end,
    })
}

/// Removes header protection and decrypts one packet (`packet` is exactly the packet).
fn open_with(keys: &InitialKeys, packet: &[u8], pn_offset: usize) -> Option<(u64, Vec<u8>)> {
    let sample = packet.get(pn_offset + 4..pn_offset + 4 + SAMPLE_LEN)?;
    let mask = keys.hp.new_mask(sample).ok()?;
    let mut buf = packet.to_vec();
    buf[0] ^= mask[0] & 0x0f;
    let pn_len = usize::from(buf[0] & 0x03) + 1;
    let mut pn = 0u64;
    for i in 0..pn_len {
        let b = buf.get_mut(pn_offset + i)?;
        *b ^= mask[1 + i];
        pn = (pn << 8) | u64::from(*b);
    }
    let header_len = pn_offset + pn_len;
    if buf.len() < header_len + TAG_LEN {
        return None;
    }
    // The first Initials of a connection number from 0: the truncated number is the number
    // (RFC 9000 §A.3 with no packet acknowledged yet).
    let mut nonce = keys.iv;
    for (n, p) in nonce[4..].iter_mut().zip(pn.to_be_bytes()) {
        *n ^= p;
    }
    let (header, payload) = buf.split_at_mut(header_len);
    let plain = keys
        .key
        .open_in_place(
            aead::Nonce::assume_unique_for_key(nonce),
            aead::Aad::from(&*header),
            payload,
        )
        .ok()?;
    Some((pn, plain.to_vec()))
}

/// Decrypts every Initial in a datagram (packets may be coalesced, RFC 9000 §12.2), trying
/// the connection IDs in `candidates` first and then each packet's own.
pub fn open_initials(
    datagram: &[u8],
    candidates: &[&[u8]],
    sender: Sender,
) -> Result<Vec<Opened>, OpenError> {
    let mut out = Vec::new();
    let mut rest = datagram;
    let mut first_error = OpenError::NotInitial;
    while !rest.is_empty() {
        let h = match long_header(rest) {
            Ok(h) => h,
            // Padding or a short-header packet ends the long-header packets.
            Err(e) => {
                if out.is_empty() && rest.len() == datagram.len() {
                    first_error = e;
                }
                break;
            }
        };
        let packet = &rest[..h.end];
        if h.initial {
            let mut opened = None;
            for dcid in candidates.iter().copied().chain([h.dcid]) {
                if let Some(keys) = InitialKeys::new(h.version, dcid, sender)
                    && let Some((pn, payload)) = open_with(&keys, packet, h.pn_offset)
                {
                    opened = Some(Opened {
                        version: h.version,
                        dcid: h.dcid.to_vec(),
                        key_dcid: dcid.to_vec(),
                        packet_number: pn,
                        payload,
                    });
                    break;
                }
            }
            match opened {
                Some(o) => out.push(o),
                None if out.is_empty() => first_error = OpenError::Undecryptable,
                None => {}
            }
        }
        rest = &rest[h.end..];
    }
    if out.is_empty() {
        Err(first_error)
    } else {
        Ok(out)
    }
}

/// The CRYPTO frames of a decrypted Initial, as `(offset, data)`; the other frames an
/// Initial may carry (RFC 9000 §12.4: `PADDING`, `PING`, `ACK`, `CONNECTION_CLOSE`) are stepped over.
pub fn crypto_frames(payload: &[u8]) -> Result<Vec<(u64, &[u8])>, OpenError> {
    let bad = OpenError::BadFrame;
    let mut pos = 0;
    let mut out = Vec::new();
    while pos < payload.len() {
        let kind = varint(payload, &mut pos).ok_or(bad)?;
        match kind {
            0x00 | 0x01 => {}
            0x02 | 0x03 => {
                // Largest acknowledged, delay, range count, first range; then the ranges.
                varint(payload, &mut pos).ok_or(bad)?;
                varint(payload, &mut pos).ok_or(bad)?;
                let ranges = varint(payload, &mut pos).ok_or(bad)?;
                varint(payload, &mut pos).ok_or(bad)?;
                // Each range takes at least two bytes: a count beyond that is malformed.
                if ranges > payload.len() as u64 {
                    return Err(bad);
                }
                for _ in 0..ranges * 2 {
                    varint(payload, &mut pos).ok_or(bad)?;
                }
                if kind == 0x03 {
                    for _ in 0..3 {
                        varint(payload, &mut pos).ok_or(bad)?;
                    }
                }
            }
            0x06 => {
                let offset = varint(payload, &mut pos).ok_or(bad)?;
                let len = varint(payload, &mut pos).ok_or(bad)?;
                let data =
                    take(payload, &mut pos, usize::try_from(len).map_err(|_| bad)?).ok_or(bad)?;
                out.push((offset, data));
            }
            0x1c | 0x1d => {
                varint(payload, &mut pos).ok_or(bad)?;
                if kind == 0x1c {
                    varint(payload, &mut pos).ok_or(bad)?;
                }
                let len = varint(payload, &mut pos).ok_or(bad)?;
                take(payload, &mut pos, usize::try_from(len).map_err(|_| bad)?).ok_or(bad)?;
            }
            _ => return Err(bad),
        }
    }
    Ok(out)
}

/// The CRYPTO stream of one flow: the bytes contiguous from offset 0, and chunks that
/// arrived ahead of a gap.
#[derive(Debug, Default)]
pub struct CryptoStream {
    data: Vec<u8>,
    ahead: Vec<(u64, Vec<u8>)>,
}

/// What the stream holds so far.
#[derive(Debug, PartialEq, Eq)]
pub enum Progress {
    /// More bytes are needed.
    Incomplete,
    /// The whole ClientHello message (handshake header included).
    Hello(Vec<u8>),
    /// The first handshake message is not a ClientHello.
    NotClientHello,
    /// The hello needs more than `CRYPTO_MAX` bytes or chunks.
    TooLong,
}

impl CryptoStream {
    /// Adds a chunk; overlapping bytes keep their first copy (as servers do).
    pub fn add(&mut self, offset: u64, bytes: &[u8]) -> Result<(), Progress> {
        let end = offset.saturating_add(bytes.len() as u64);
        if end > CRYPTO_MAX as u64 {
            return Err(Progress::TooLong);
        }
        if offset > self.data.len() as u64 {
            if self.ahead.len() >= CHUNKS_MAX {
                return Err(Progress::TooLong);
            }
            self.ahead.push((offset, bytes.to_vec()));
            return Ok(());
        }
        self.append(offset, bytes);
        // Chunks that the new bytes reached join in turn.
        while let Some(i) = self
            .ahead
            .iter()
            .position(|(o, _)| *o <= self.data.len() as u64)
        {
            let (o, b) = self.ahead.swap_remove(i);
            self.append(o, &b);
        }
        Ok(())
    }

    fn append(&mut self, offset: u64, bytes: &[u8]) {
        let have = self.data.len() as u64;
        let end = offset + bytes.len() as u64;
        if end > have {
            // offset <= have here; `have - offset` is within `bytes`.
            let skip = usize::try_from(have - offset).unwrap_or(usize::MAX);
            self.data.extend_from_slice(&bytes[skip..]);
        }
    }

    pub fn progress(&self) -> Progress {
        let d = &self.data;
        if d.is_empty() {
            return Progress::Incomplete;
        }
        if d[0] != 1 {
            return Progress::NotClientHello;
        }
        if d.len() < 4 {
            return Progress::Incomplete;
        }
        let total = 4 + (usize::from(d[1]) << 16 | usize::from(d[2]) << 8 | usize::from(d[3]));
        if total > CRYPTO_MAX {
            Progress::TooLong
        } else if d.len() >= total {
            Progress::Hello(d[..total].to_vec())
        } else {
            Progress::Incomplete
        }
    }
}

/// What a name matched, as the program's `action_for_name` decides it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NameMatch {
    Blocked(u16, Action),
    Monitored(u16),
    /// An app matched whose rules exempt this client.
    Exempt,
    None,
}

/// Who sent a hello, where: for exemptions and scopes.
#[derive(Clone, Copy, Debug)]
pub struct Client {
    pub addr: IpAddr,
    pub ifindex: u32,
    pub vlan: u16,
}

/// The rules of a rule set in the program's table form, matched in userspace.
pub struct Matcher {
    set: RuleSet,
    tables: Tables,
    seed: u64,
}

impl Matcher {
    pub fn new(set: &RuleSet) -> Result<Self, Error> {
        let seed = 0x5155_4943_5345_4544;
        Ok(Self {
            tables: set.tables(seed)?,
            set: set.clone(),
            seed,
        })
    }

    pub fn app_names(&self) -> Vec<String> {
        self.set.apps.iter().map(|a| a.name.clone()).collect()
    }

    pub fn action_for_name(&self, name: &[u8], client: &Client) -> NameMatch {
        let mut buf = [0u8; NAME_BUF];
        let len = name.len().min(filter_common::name::NAME_MAX);
        buf[..len].copy_from_slice(&name[..len]);
        let Some(rule) = filter_common::name::match_name(&buf, len, self.seed, &self.tables) else {
            return NameMatch::None;
        };
        let Some(app) = self.set.apps.get(usize::from(rule.app)) else {
            return NameMatch::None;
        };
        let scope = filter_common::app_scope(
            &app.policy,
            || {
                app.interfaces
                    .iter()
                    .any(|i| crate::state::ifindex(i) == Some(client.ifindex))
            },
            || app.vlans.contains(&client.vlan),
            || app.exempt_sources.iter().any(|n| n.contains(&client.addr)),
        );
        match scope {
            AppScope::Applies => {}
            AppScope::Outside => return NameMatch::None,
            AppScope::Exempt => return NameMatch::Exempt,
        }
        match Action::from_u8(app.policy.action) {
            Some(a @ (Action::Drop | Action::Reject)) => NameMatch::Blocked(rule.app, a),
            Some(Action::Monitor) => NameMatch::Monitored(rule.app),
            None => NameMatch::None,
        }
    }
}

/// The verdict on a QUIC flow's ClientHello.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// One of the hello reasons: `hello_blocked`, `hello_allowed`, `hello_no_sni`,
    /// `hello_monitored`, `hello_exempt`, `not_client_hello`, or an uninspectable one.
    pub reason: Reason,
    /// The app that blocked or monitored the flow, or `NO_APP`.
    pub app: u16,
    pub action: Action,
    /// The first server name read (the one that decided, when one did).
    pub name: Vec<u8>,
    /// `EVENT_*` bits.
    pub flags: u8,
    /// The connection ID whose keys opened the flow's Initials (the client's first choice),
    /// and the one the deciding Initial's header carried.
    pub key_dcid: Vec<u8>,
    pub dcid: Vec<u8>,
}

impl Verdict {
    fn of(reason: Reason) -> Self {
        Self {
            reason,
            app: NO_APP,
            action: Action::Monitor,
            name: Vec::new(),
            flags: 0,
            key_dcid: Vec::new(),
            dcid: Vec::new(),
        }
    }
}

/// Whether `datagram`'s first Initial opens under the keys of `dcid`: a packet of the
/// connection whose client first chose `dcid`, whatever connection ID its header carries.
pub fn opens_with(datagram: &[u8], dcid: &[u8]) -> bool {
    let Ok(h) = long_header(datagram) else {
        return false;
    };
    h.initial
        && InitialKeys::new(h.version, dcid, Sender::Client)
            .and_then(|keys| open_with(&keys, &datagram[..h.end], h.pn_offset))
            .is_some()
}

/// The Destination Connection ID in a long header.
pub fn header_dcid(datagram: &[u8]) -> Option<Vec<u8>> {
    long_header(datagram).ok().map(|h| h.dcid.to_vec())
}

/// Walks a whole ClientHello message (as the CRYPTO stream carries it: no record layer)
/// with the program's walker, judging every server name with `matcher`.
pub fn judge_hello(hello: &[u8], matcher: &Matcher, client: &Client) -> Verdict {
    // The walker reads TLS records: wrap the message in handshake records.
    let mut stream = Vec::with_capacity(hello.len() + 5 * (hello.len() / 16384 + 1));
    for chunk in hello.chunks(1 << 14) {
        stream.extend_from_slice(&[0x16, 0x03, 0x01]);
        stream.extend_from_slice(&(chunk.len() as u16).to_be_bytes());
        stream.extend_from_slice(chunk);
    }
    let mut walk = HelloWalk::new();
    let mut buf = Box::new([0u8; SCRATCH_LEN]);
    let mut first_name: Option<Vec<u8>> = None;
    let mut monitored = NO_APP;
    let mut exempt = false;
    let mut end_step = Step::NeedMore;
    'windows: for window in stream.chunks(SCRATCH_LEN) {
        buf[..window.len()].copy_from_slice(window);
        let mut pos = 0u32;
        let end = window.len() as u32;
        loop {
            match walk.next_name(&buf, &mut pos, end) {
                Ok(()) => {
                    let name = walk.name[..usize::from(walk.name_len)].to_vec();
                    let decided = match matcher.action_for_name(&name, client) {
                        NameMatch::Blocked(app, action) => Some((app, action)),
                        NameMatch::Monitored(app) => {
                            if monitored == NO_APP {
                                monitored = app;
                            }
                            None
                        }
                        NameMatch::Exempt => {
                            exempt = true;
                            None
                        }
                        NameMatch::None => None,
                    };
                    if let Some((app, action)) = decided {
                        return Verdict {
                            app,
                            action,
                            name,
                            flags: ech_flag(&walk),
                            ..Verdict::of(Reason::HelloBlocked)
                        };
                    }
                    first_name.get_or_insert(name);
                }
                Err(Step::NeedMore) => continue 'windows,
                Err(step) => {
                    end_step = step;
                    break 'windows;
                }
            }
        }
    }
    // The CRYPTO stream held the whole message: a hello that ends before its declared
    // length, or that is no handshake, is malformed here.
    let end_step = match end_step {
        Step::NeedMore | Step::NotHandshake => Step::Malformed,
        step => step,
    };
    let mut v = Verdict::of(walk_reason(
        end_step,
        walk.flags,
        monitored != NO_APP,
        exempt,
    ));
    if v.reason == Reason::HelloMonitored {
        v.app = monitored;
    }
    v.name = first_name.unwrap_or_default();
    v.flags = ech_flag(&walk);
    v
}

fn ech_flag(walk: &HelloWalk) -> u8 {
    if walk.flags & WALK_ECH_SEEN != 0 {
        EVENT_ECH
    } else {
        0
    }
}

/// A client Initial as the program hands it on.
#[derive(Clone, Debug)]
pub struct Datagram<'a> {
    pub flow: FlowKey,
    pub client: Client,
    /// When it arrived (`CLOCK_MONOTONIC` nanoseconds).
    pub ts_ns: u64,
    pub data: &'a [u8],
}

/// What one datagram led to.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The flow's hello goes on in later Initials.
    Incomplete,
    /// The flow is judged.
    Judged(Verdict),
    /// Nothing could be read (junk, a packet of another connection, a lost first Initial):
    /// no state was kept.
    Unreadable(OpenError),
}

struct Pending {
    /// The Destination Connection ID of the flow's first Initial: the client's choice,
    /// from which the keys of all its Initials derive (RFC 9001 §5.2).
    dcid: Vec<u8>,
    stream: CryptoStream,
    last_ns: u64,
}

/// Counts of what the reassembly did, for the daemon's records.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReassemblyStats {
    pub datagrams: u64,
    pub judged: u64,
    pub unreadable: u64,
    /// Reassemblies dropped for idleness or to make room.
    pub abandoned: u64,
}

/// The hellos of QUIC flows being reassembled: bounded in flows, bytes and time.
#[derive(Default)]
pub struct Reassembly {
    flows: HashMap<FlowKey, Pending>,
    /// Flows in the order they began; entries of flows since finished are skipped.
    order: VecDeque<FlowKey>,
    pub stats: ReassemblyStats,
}

impl Reassembly {
    pub fn new() -> Self {
        Self::default()
    }

    /// Flows being reassembled.
    pub fn len(&self) -> usize {
        self.flows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.flows.is_empty()
    }

    /// Reads one datagram of a flow; judges the flow once its ClientHello is complete.
    pub fn feed(&mut self, d: &Datagram, matcher: &Matcher) -> Outcome {
        self.stats.datagrams += 1;
        self.expire(d.ts_ns);
        let known: Vec<&[u8]> = self
            .flows
            .get(&d.flow)
            .map(|p| vec![p.dcid.as_slice()])
            .unwrap_or_default();
        let opened = match open_initials(d.data, &known, Sender::Client) {
            Ok(o) => o,
            Err(e) => {
                self.stats.unreadable += 1;
                return Outcome::Unreadable(e);
            }
        };
        // Opened under other keys than the hello being read: another connection on the same
        // ports (a new one, or the same client after a Retry). Its bytes must not fill the
        // earlier connection's stream, nor the earlier bytes decide for it.
        if self
            .flows
            .get(&d.flow)
            .is_some_and(|p| p.dcid != opened[0].key_dcid)
        {
            self.flows.remove(&d.flow);
            self.stats.abandoned += 1;
        }
        let mut frames = Vec::new();
        for o in &opened {
            match crypto_frames(&o.payload) {
                Ok(f) => frames.extend(f.into_iter().map(|(off, b)| (off, b.to_vec()))),
                Err(_) => {
                    return self.finish(
                        d.flow,
                        Verdict::of(Reason::UninspectableMalformed),
                        &opened[0],
                    );
                }
            }
        }
        if frames.is_empty() && !self.flows.contains_key(&d.flow) {
            // An Initial without handshake bytes (an ACK): nothing to keep.
            return Outcome::Incomplete;
        }
        if !self.flows.contains_key(&d.flow) {
            if self.flows.len() >= FLOWS_MAX {
                self.evict_oldest();
            }
            self.order.push_back(d.flow);
        }
        let pending = self.flows.entry(d.flow).or_insert_with(|| Pending {
            dcid: opened[0].key_dcid.clone(),
            stream: CryptoStream::default(),
            last_ns: d.ts_ns,
        });
        pending.last_ns = d.ts_ns;
        for (off, bytes) in &frames {
            if let Err(p) = pending.stream.add(*off, bytes) {
                return self.finish(d.flow, Verdict::of(progress_reason(&p)), &opened[0]);
            }
        }
        match pending.stream.progress() {
            Progress::Incomplete => Outcome::Incomplete,
            Progress::Hello(hello) => {
                let v = judge_hello(&hello, matcher, &d.client);
                self.finish(d.flow, v, &opened[0])
            }
            p => self.finish(d.flow, Verdict::of(progress_reason(&p)), &opened[0]),
        }
    }

    fn finish(&mut self, flow: FlowKey, mut v: Verdict, opened: &Opened) -> Outcome {
        let pending = self.flows.remove(&flow);
        v.key_dcid = pending.map_or_else(|| opened.key_dcid.clone(), |p| p.dcid);
        v.dcid.clone_from(&opened.dcid);
        self.stats.judged += 1;
        Outcome::Judged(v)
    }

    /// Drops reassemblies idle longer than `FLOW_IDLE_NS` as of `now_ns`.
    pub fn expire(&mut self, now_ns: u64) {
        while let Some(front) = self.order.front() {
            match self.flows.get(front) {
                None => {
                    self.order.pop_front();
                }
                Some(p) if now_ns.saturating_sub(p.last_ns) > FLOW_IDLE_NS => {
                    let key = *front;
                    self.flows.remove(&key);
                    self.order.pop_front();
                    self.stats.abandoned += 1;
                }
                Some(_) => break,
            }
        }
        // Keys of finished flows pile up behind a live one: compact now and then.
        if self.order.len() > 4 * FLOWS_MAX {
            let flows = &self.flows;
            self.order.retain(|k| flows.contains_key(k));
        }
    }

    fn evict_oldest(&mut self) {
        while let Some(key) = self.order.pop_front() {
            if self.flows.remove(&key).is_some() {
                self.stats.abandoned += 1;
                return;
            }
        }
    }
}

fn progress_reason(p: &Progress) -> Reason {
    match p {
        Progress::NotClientHello => Reason::NotClientHello,
        Progress::TooLong => Reason::UninspectableTooLong,
        Progress::Incomplete | Progress::Hello(_) => Reason::UninspectableMalformed,
    }
}

pub mod worker;

#[cfg(test)]
mod tests;

//! Opening client Initials: the keys derived from the Destination Connection ID (RFC 9001
//! §5.2, RFC 9369 §3.3.1), the long header read, header protection removed (RFC 9001 §5.4)
//! and the payload decrypted (AES-128-GCM, RFC 9001 §5.3).

use filter_common::wire::{QUIC_V1, QUIC_V2};
use ring::{aead, hkdf};

/// Who sent a packet: the keys differ (RFC 9001 §5.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sender {
    Client,
    Server,
}

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
        QUIC_V1 => (&SALT_V1, [b"quic key", b"quic iv", b"quic hp"]),
        QUIC_V2 => (&SALT_V2, [b"quicv2 key", b"quicv2 iv", b"quicv2 hp"]),
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
pub(super) fn varint(b: &[u8], pos: &mut usize) -> Option<u64> {
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

pub(super) fn take<'a>(b: &'a [u8], pos: &mut usize, len: usize) -> Option<&'a [u8]> {
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
        QUIC_V1 => kind == 0,
        QUIC_V2 => kind == 1,
        _ => return Err(OpenError::NotInitial),
    };
    // Retry (v1 type 3, v2 type 0) has no Length field: nothing after it can be read.
    let retry = (version == QUIC_V1 && kind == 3) || (version == QUIC_V2 && kind == 0);
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

//! The CRYPTO frames of decrypted Initials (RFC 9000 §19.6) and the stream they carry,
//! put back in order up to a whole ClientHello.

use super::keys::{OpenError, take, varint};

/// Bytes of CRYPTO stream kept per flow: far above real `ClientHello`s (Chromium's
/// post-quantum hello is about 1.8 KB), and what the program's bound on Initials per flow
/// can bring anyway.
pub const CRYPTO_MAX: usize = 16 * 1024;
/// Out-of-order CRYPTO chunks kept per flow.
const CHUNKS_MAX: usize = 64;

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

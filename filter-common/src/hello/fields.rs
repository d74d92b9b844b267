//! The ClientHello's fields as the walker reads them, one arm per field of RFC 8446 §4.1.2:
//! lengths checked against what encloses them, extensions skipped but for the server name.

use super::walk::{
    HELLO_LEN_MAX, HelloWalk, ST_CIPHERS_LEN, ST_COMPRESSION_LEN, ST_DONE, ST_EXT_HEADER,
    ST_EXTENSIONS_LEN, ST_HS_HEADER, ST_NAME, ST_SESSION_ID_LEN, ST_SNI_ENTRY, ST_SNI_LIST_LEN,
    Step, WALK_ECH_SEEN, WALK_SNI_SEEN, be16,
};
use crate::wire::{EXT_ECH, EXT_SERVER_NAME, HANDSHAKE_CLIENT_HELLO, SNI_HOST_NAME};

/// `legacy_version` (2) and `random` (32) after the handshake header.
const HELLO_FIXED_LEN: u32 = 34;

impl HelloWalk {
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
    pub(super) fn on_field(&mut self) -> Result<(), Step> {
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
    pub(super) fn after_sni_entry(&mut self) {
        if self.sni_left == 0 {
            self.next_extension();
        } else {
            self.expect(ST_SNI_ENTRY, 3);
        }
    }
}

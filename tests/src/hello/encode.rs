//! The byte-level helpers of the hello builder: length-prefixed vectors, big-endian integers,
//! and the seeded generator and GREASE picker that make every hello rebuild byte for byte.

use super::GREASE_VALUES;

/// Hands out distinct GREASE values in a seeded order, as a browser does per connection.
pub(super) struct GreasePicker {
    values: [u16; 16],
    next: usize,
}

impl GreasePicker {
    pub(super) fn new(rng: &mut SplitMix) -> Self {
        let mut values = GREASE_VALUES;
        for i in (1..values.len()).rev() {
            let j = (rng.next_u64() % (i as u64 + 1)) as usize;
            values.swap(i, j);
        }
        Self { values, next: 0 }
    }

    pub(super) fn next(&mut self) -> u16 {
        let value = self.values[self.next % self.values.len()];
        self.next += 1;
        value
    }
}

/// splitmix64: a tiny seeded generator, enough for filler bytes.
pub(super) struct SplitMix(pub(super) u64);

impl SplitMix {
    pub(super) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub(super) fn bytes(&mut self, len: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(len + 8);
        while out.len() < len {
            out.extend_from_slice(&self.next_u64().to_le_bytes());
        }
        out.truncate(len);
        out
    }
}

pub(super) fn encoded_len(extensions: &[(u16, Vec<u8>)]) -> usize {
    extensions.iter().map(|(_, body)| 4 + body.len()).sum()
}

pub(super) fn put_u16(out: &mut Vec<u8>, value: u16) {
    out.extend_from_slice(&value.to_be_bytes());
}

pub(super) fn put_u24(out: &mut Vec<u8>, value: usize) {
    out.extend_from_slice(&(value as u32).to_be_bytes()[1..]);
}

/// Appends `data` with a one-byte length prefix.
pub(super) fn put_vec8(out: &mut Vec<u8>, data: &[u8]) {
    out.push(data.len() as u8);
    out.extend_from_slice(data);
}

/// Appends `data` with a two-byte length prefix.
pub(super) fn put_vec16(out: &mut Vec<u8>, data: &[u8]) {
    put_u16(out, data.len() as u16);
    out.extend_from_slice(data);
}

pub(super) fn vec8(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 1);
    put_vec8(&mut out, data);
    out
}

pub(super) fn vec16(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 2);
    put_vec16(&mut out, data);
    out
}

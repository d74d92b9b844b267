//! Client Initials sealed by rustls's QUIC implementation (not the daemon's decryption), for
//! the daemon's tests, the program tests and the benchmarks.

use rustls::{
    Side,
    quic::{Keys, Version},
};

use filter_common::wire::{QUIC_V1, QUIC_V2};

/// A CRYPTO frame (RFC 9000 §19.6) with 4-byte offset and 2-byte length fields.
pub fn crypto_frame(offset: u64, data: &[u8]) -> Vec<u8> {
    let mut f = vec![0x06];
    f.extend_from_slice(&((offset as u32 & 0x3fff_ffff) | 0x8000_0000).to_be_bytes());
    f.extend_from_slice(&((data.len() as u16 & 0x3fff) | 0x4000).to_be_bytes());
    f.extend_from_slice(data);
    f
}

/// A client Initial of `version` (1 or 2) with packet number `pn`, sealed under the keys of
/// `key_dcid` while its header names `dcid`, its frames padded so that the datagram is
/// `datagram_len` bytes (at least the frames and headers).
///
/// # Panics
/// On a version other than 1 and 2, or frames longer than a 2-byte Length field allows.
pub fn seal_client_initial(
    version: u32,
    key_dcid: &[u8],
    dcid: &[u8],
    pn: u32,
    frames: &[u8],
    datagram_len: usize,
) -> Vec<u8> {
    let (v, first) = match version {
        QUIC_V1 => (Version::V1, 0xc3),
        QUIC_V2 => (Version::V2, 0xd3),
        _ => panic!("QUIC version {version:#x} has no Initial keys here"),
    };
    let suite = rustls::crypto::ring::cipher_suite::TLS13_AES_128_GCM_SHA256
        .tls13()
        .expect("a TLS 1.3 suite");
    let keys = Keys::initial(
        v,
        suite,
        suite.quic.expect("QUIC keys"),
        key_dcid,
        Side::Client,
    );
    let mut header = vec![first];
    header.extend_from_slice(&version.to_be_bytes());
    header.push(dcid.len() as u8);
    header.extend_from_slice(dcid);
    // No source connection ID, no token.
    header.extend_from_slice(&[0, 0]);
    let fixed = header.len() + 2 + 4 + 16;
    let mut payload = frames.to_vec();
    if payload.len() + fixed < datagram_len {
        payload.resize(datagram_len - fixed, 0);
    }
    let length = u16::try_from(4 + payload.len() + 16).expect("an Initial under 16 KiB") | 0x4000;
    header.extend_from_slice(&length.to_be_bytes());
    let pn_offset = header.len();
    header.extend_from_slice(&pn.to_be_bytes());
    let tag = keys
        .local
        .packet
        .encrypt_in_place(u64::from(pn), &header, &mut payload)
        .expect("sealing");
    payload.extend_from_slice(tag.as_ref());
    // With a 4-byte packet number the sample starts at the payload's first byte.
    let sample = payload[..16].to_vec();
    let (first, rest) = header.split_at_mut(1);
    keys.local
        .header
        .encrypt_in_place(&sample, &mut first[0], &mut rest[pn_offset - 1..])
        .expect("header protection");
    header.extend_from_slice(&payload);
    header
}

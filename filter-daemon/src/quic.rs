//! QUIC client Initials: the keys derived from the Destination Connection ID (RFC 9001 §5.2,
//! RFC 9369 §3.3.1 for version 2), header protection removed (RFC 9001 §5.4), the payload
//! decrypted (AES-128-GCM, RFC 9001 §5.3), the frames read (RFC 9000 §19), the CRYPTO stream
//! reassembled across Initials and out of order, and the ClientHello judged by the same
//! walker and rule tables as the program's TCP path.
//!
//! The ciphers are ring's; this module only lays out labels, nonces and headers.

mod crypto;
mod judge;
mod keys;
mod reassembly;

pub use crypto::{CRYPTO_MAX, CryptoStream, Progress, crypto_frames};
pub use judge::{Client, Matcher, NameVerdict, Verdict, judge_hello};
pub use keys::{
    InitialKeys, KeyMaterial, OpenError, Opened, Sender, header_dcid, key_material, open_initials,
    opens_with,
};
pub use reassembly::{Datagram, FLOW_IDLE_NS, FLOWS_MAX, Outcome, Reassembly, ReassemblyStats};

pub mod worker;

#[cfg(test)]
mod tests;

//! What the techniques are made of: the hellos for the banned and the allowed names (each
//! with a session id of its own), and the builders of sessions that cut, fragment, fake and
//! re-record them.

use std::time::Duration;

use sni_filter_lab::{
    craft::{Segment, Session},
    hello::{ClientHelloBuilder, find, tls_records},
};

use super::common::{ALLOWED, BANNED};

/// How long a session waits for the server's answer after its last segment.
pub const WAIT: Duration = Duration::from_millis(700);

/// The hellos techniques are made of; every one has a session id of its own.
pub struct Hellos {
    /// Chrome-like hello for the banned name, one record that fits one frame.
    pub banned: Vec<u8>,
    /// Chrome's post-quantum hello for the banned name (~1.8 KB: two segments).
    pub post_quantum: Vec<u8>,
    /// The same hello's handshake message, for techniques that make records of their own.
    pub banned_handshake: Vec<u8>,
    /// A small hello for the banned name, one record.
    pub small: Vec<u8>,
    pub small_handshake: Vec<u8>,
    /// A hello for the allowed name with the same length as `banned` (a fake).
    pub fake: Vec<u8>,
    /// Where the banned name starts in `banned`.
    pub name_at: usize,
    /// The banned name in mixed case, and with a trailing dot.
    pub mixed_case: Vec<u8>,
    pub trailing_dot: Vec<u8>,
    /// A banned hello padded so that 50-byte segments make more than 32 of them.
    pub padded: Vec<u8>,
}

pub fn hello(builder: &ClientHelloBuilder) -> (Vec<u8>, Vec<u8>) {
    let handshake = builder.build();
    (tls_records(&handshake, 16384), handshake)
}

impl Hellos {
    pub fn new() -> Self {
        // Without the post-quantum key share a Chrome-like hello fits one frame (~700 B).
        let chrome = |name: &str, seed| {
            ClientHelloBuilder::chrome(name)
                .post_quantum(false)
                .seed(seed)
        };
        let (banned, banned_handshake) = hello(&chrome(BANNED, 1));
        let (post_quantum, _) = hello(&ClientHelloBuilder::chrome(BANNED).seed(7));
        let (small, small_handshake) = hello(&ClientHelloBuilder::minimal(BANNED).seed(2));
        let (fake, _) = hello(&chrome(ALLOWED, 3));
        let name_at = find(&banned, BANNED.as_bytes()).expect("the name is in the hello");
        let (mixed_case, _) = hello(&chrome("wWw.TikTok.CoM", 4));
        let (trailing_dot, _) = hello(&chrome("www.tiktok.com.", 5));
        let (padded, _) = hello(&chrome(BANNED, 6).pad_to(2200));
        Self {
            banned,
            post_quantum,
            banned_handshake,
            small,
            small_handshake,
            fake,
            name_at,
            mixed_case,
            trailing_dot,
            padded,
        }
    }
}

pub fn session(segments: Vec<Segment>) -> Session {
    Session {
        segments,
        wait: WAIT,
        ..Session::default()
    }
}

/// The banned hello in two segments, the first (400 bytes) cut into two IP fragments, the
/// first fragment carrying `first` bytes after the IP header.
pub fn fragmented(h: &Hellos, first: usize) -> Session {
    let mut s = Segment::data(0, &h.banned[..400]);
    s.fragment_first = Some(first);
    session(vec![s, Segment::data(400, &h.banned[400..])])
}

/// `data` cut at `offsets`, as consecutive segments.
pub fn split(data: &[u8], offsets: &[usize]) -> Vec<Segment> {
    let mut out = Vec::new();
    let mut start = 0;
    for &o in offsets.iter().chain(std::iter::once(&data.len())) {
        out.push(Segment::data(start as u32, &data[start..o]));
        start = o;
    }
    out
}

pub fn chunks(data: &[u8], size: usize) -> Vec<Segment> {
    let offsets: Vec<usize> = (size..data.len()).step_by(size).collect();
    split(data, &offsets)
}

/// A fake hello (the allowed name) at the real hello's sequence number, changed by
/// `spoil` so that the server does not take it, then the real hello.
pub fn fake_first(h: &Hellos, spoil: impl Fn(&mut Segment)) -> Session {
    let mut fake = Segment::data(0, &h.fake);
    spoil(&mut fake);
    session(vec![fake, Segment::data(0, &h.banned)])
}

/// The records of a handshake, each with `version` as its record version.
pub fn with_record_version(records: &[u8], version: [u8; 2]) -> Vec<u8> {
    let mut out = records.to_vec();
    let mut at = 0;
    while at + 5 <= out.len() {
        out[at + 1..at + 3].copy_from_slice(&version);
        let len = usize::from(u16::from_be_bytes([out[at + 3], out[at + 4]]));
        at += 5 + len;
    }
    out
}

//! Crafted TLS `ClientHello`s and the frames that carry them, for tests of the hello walker and of
//! the XDP program: Chrome-like hellos with any names, GREASE, ECH, padding and a post-quantum
//! key share; record fragmentation; Ethernet (0-2 VLAN tags) / IPv4 or IPv6 / TCP or UDP frames.
//!
//! Everything is deterministic: "random" fields come from a seeded generator, so a failing
//! case rebuilds byte for byte.

mod encode;
mod frames;

pub use frames::{
    IpPair, Link, TPID_8021AD, TPID_8021Q, TcpFlags, TcpSegment, UdpDatagram, VlanTag,
};

use encode::{
    GreasePicker, SplitMix, encoded_len, put_u16, put_u24, put_vec8, put_vec16, vec8, vec16,
};

/// Extension types (IANA registry "TLS `ExtensionType` Values").
pub mod ext {
    pub const SERVER_NAME: u16 = 0;
    pub const STATUS_REQUEST: u16 = 5;
    pub const SUPPORTED_GROUPS: u16 = 10;
    pub const EC_POINT_FORMATS: u16 = 11;
    pub const SIGNATURE_ALGORITHMS: u16 = 13;
    pub const ALPN: u16 = 16;
    pub const SIGNED_CERTIFICATE_TIMESTAMP: u16 = 18;
    pub const PADDING: u16 = 21;
    pub const EXTENDED_MASTER_SECRET: u16 = 23;
    pub const COMPRESS_CERTIFICATE: u16 = 27;
    pub const SESSION_TICKET: u16 = 35;
    pub const SUPPORTED_VERSIONS: u16 = 43;
    pub const PSK_KEY_EXCHANGE_MODES: u16 = 45;
    pub const KEY_SHARE: u16 = 51;
    /// `application_settings` (ALPS) as Chrome sends it.
    pub const APPLICATION_SETTINGS: u16 = 0x44cd;
    /// `encrypted_client_hello` (draft-ietf-tls-esni).
    pub const ENCRYPTED_CLIENT_HELLO: u16 = 0xfe0d;
    pub const RENEGOTIATION_INFO: u16 = 0xff01;
}

/// Named groups used in `supported_groups` and `key_share`.
pub mod group {
    pub const SECP256R1: u16 = 0x0017;
    pub const SECP384R1: u16 = 0x0018;
    pub const X25519: u16 = 0x001d;
    /// Hybrid post-quantum group Chrome offers first (draft-kwiatkowski-tls-ecdhe-mlkem).
    pub const X25519_MLKEM768: u16 = 0x11ec;
}

/// Key share sizes: ML-KEM-768 encapsulation key (1184) plus an X25519 share (32).
pub const X25519_MLKEM768_SHARE_LEN: usize = 1184 + 32;
const X25519_SHARE_LEN: usize = 32;

/// The 16 GREASE values of RFC 8701: 0x0a0a, 0x1a1a, ... 0xfafa.
pub const GREASE_VALUES: [u16; 16] = {
    let mut values = [0u16; 16];
    let mut i = 0;
    while i < 16 {
        let byte = (i as u16) << 4 | 0x0a;
        values[i] = byte << 8 | byte;
        i += 1;
    }
    values
};

/// TLS record content type of handshake messages.
pub const CONTENT_HANDSHAKE: u8 = 22;
/// Largest record fragment a sender may use (RFC 8446 §5.1).
pub const RECORD_FRAGMENT_MAX: usize = 1 << 14;
/// Record-layer version of a `ClientHello` record, as browsers send it.
const RECORD_VERSION: u16 = 0x0301;
const HANDSHAKE_CLIENT_HELLO: u8 = 1;

/// Where the `server_name` extension goes among the others.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SniPosition {
    /// Second, after the leading GREASE extension, as in an unshuffled Chrome hello.
    #[default]
    Early,
    /// The very first extension.
    First,
    /// The very last extension (after any padding): deep in the hello, in a later segment.
    Last,
    /// At this index in the extension list (clamped to its end).
    Index(usize),
}

/// Builds `ClientHello` handshake messages. [`ClientHelloBuilder::chrome`] is a ~1.8 KB hello
/// shaped like Chrome's; [`ClientHelloBuilder::minimal`] is the smallest useful one.
#[derive(Clone, Debug)]
pub struct ClientHelloBuilder {
    names: Vec<Vec<u8>>,
    sni_position: SniPosition,
    grease: bool,
    ech_payload: Option<usize>,
    post_quantum: bool,
    browser_extensions: bool,
    extra: Vec<(u16, Vec<u8>)>,
    pad_to: Option<usize>,
    seed: u64,
}

impl Default for ClientHelloBuilder {
    fn default() -> Self {
        Self::chrome_without_names()
    }
}

impl ClientHelloBuilder {
    /// A Chrome-like hello for `name`: GREASE, X25519MLKEM768 key share, GREASE ECH, the
    /// extensions Chrome sends. About 1.8 KB, so it spans two TCP segments.
    pub fn chrome(name: &str) -> Self {
        Self::chrome_without_names().server_name(name)
    }

    fn chrome_without_names() -> Self {
        Self {
            names: Vec::new(),
            sni_position: SniPosition::Early,
            grease: true,
            ech_payload: Some(208),
            post_quantum: true,
            browser_extensions: true,
            extra: Vec::new(),
            pad_to: None,
            seed: 0x5eed,
        }
    }

    /// A small hello for `name`: TLS 1.3 with an X25519 key share, no GREASE, no ECH.
    pub fn minimal(name: &str) -> Self {
        Self {
            names: Vec::new(),
            sni_position: SniPosition::Early,
            grease: false,
            ech_payload: None,
            post_quantum: false,
            browser_extensions: false,
            extra: Vec::new(),
            pad_to: None,
            seed: 0x5eed,
        }
        .server_name(name)
    }

    /// Adds a host name to the `server_name` list (several names make a list of several).
    #[must_use]
    pub fn server_name(self, name: &str) -> Self {
        self.raw_server_name(name.as_bytes())
    }

    /// Adds a host name given as raw bytes, which need not be valid (for malformed cases).
    #[must_use]
    pub fn raw_server_name(mut self, name: &[u8]) -> Self {
        self.names.push(name.to_vec());
        self
    }

    /// Drops every name: the hello carries no `server_name` extension.
    #[must_use]
    pub fn no_server_name(mut self) -> Self {
        self.names.clear();
        self
    }

    #[must_use]
    pub fn sni_position(mut self, position: SniPosition) -> Self {
        self.sni_position = position;
        self
    }

    /// GREASE values in cipher suites, groups, versions, key shares and extensions (RFC 8701).
    #[must_use]
    pub fn grease(mut self, on: bool) -> Self {
        self.grease = on;
        self
    }

    /// An `encrypted_client_hello` outer extension (0xfe0d) like Chrome's GREASE ECH.
    #[must_use]
    pub fn ech(mut self, on: bool) -> Self {
        self.ech_payload = on.then_some(208);
        self
    }

    /// The X25519MLKEM768 key share (1216 bytes) in front of the X25519 one.
    #[must_use]
    pub fn post_quantum(mut self, on: bool) -> Self {
        self.post_quantum = on;
        self
    }

    /// Adds an extension with the given body, after the built-in ones.
    #[must_use]
    pub fn extension(mut self, ext_type: u16, body: &[u8]) -> Self {
        self.extra.push((ext_type, body.to_vec()));
        self
    }

    /// Adds an extension with a zero-filled body of `len` bytes.
    #[must_use]
    pub fn extension_of_len(self, ext_type: u16, len: usize) -> Self {
        self.extension(ext_type, &vec![0; len])
    }

    /// Adds a `padding` extension (RFC 7685) so the handshake message is `len` bytes long;
    /// one 4 bytes longer than needed when `len` is within 3 bytes of the unpadded size.
    #[must_use]
    pub fn pad_to(mut self, len: usize) -> Self {
        self.pad_to = Some(len);
        self
    }

    /// Seed of the random, session id and key share bytes.
    #[must_use]
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// The `ClientHello` handshake message: type, 24-bit length, body.
    pub fn build(&self) -> Vec<u8> {
        let mut rng = SplitMix(self.seed);
        let mut grease = GreasePicker::new(&mut rng);

        let mut body = Vec::with_capacity(2048);
        put_u16(&mut body, 0x0303); // legacy_version: TLS 1.2
        body.extend_from_slice(&rng.bytes(32)); // random
        put_vec8(&mut body, &rng.bytes(32)); // legacy_session_id: middlebox compatibility
        let mut suites = Vec::new();
        if self.grease {
            put_u16(&mut suites, grease.next());
        }
        for suite in [
            0x1301, 0x1302, 0x1303, 0xc02b, 0xc02f, 0xc02c, 0xc030, 0xcca9, 0xcca8, 0xc013, 0xc014,
            0x009c, 0x009d, 0x002f, 0x0035,
        ] {
            put_u16(&mut suites, suite);
        }
        put_vec16(&mut body, &suites);
        put_vec8(&mut body, &[0]); // legacy_compression_methods: null

        let mut extensions = self.extensions(&mut rng, &mut grease);
        let unpadded = body.len() + 4 + 2 + encoded_len(&extensions);
        if let Some(target) = self.pad_to {
            // The padding extension's own 4-byte header counts towards the target.
            if target > unpadded {
                let padding = (ext::PADDING, vec![0; target.saturating_sub(unpadded + 4)]);
                // Padding goes last, unless the name was asked to be the very last.
                let at = if self.sni_position == SniPosition::Last && !self.names.is_empty() {
                    extensions.len() - 1
                } else {
                    extensions.len()
                };
                extensions.insert(at, padding);
            }
        }
        let mut ext_bytes = Vec::new();
        for (ext_type, ext_body) in &extensions {
            put_u16(&mut ext_bytes, *ext_type);
            put_vec16(&mut ext_bytes, ext_body);
        }
        put_vec16(&mut body, &ext_bytes);

        let mut hello = Vec::with_capacity(body.len() + 4);
        hello.push(HANDSHAKE_CLIENT_HELLO);
        put_u24(&mut hello, body.len());
        hello.extend_from_slice(&body);
        hello
    }

    /// The extensions in order, without padding.
    fn extensions(&self, rng: &mut SplitMix, grease: &mut GreasePicker) -> Vec<(u16, Vec<u8>)> {
        let mut list: Vec<(u16, Vec<u8>)> = Vec::new();
        if self.grease {
            list.push((grease.next(), Vec::new()));
        }
        if self.browser_extensions {
            list.push((ext::EXTENDED_MASTER_SECRET, Vec::new()));
            list.push((ext::RENEGOTIATION_INFO, vec![0]));
        }
        let mut groups = Vec::new();
        let group_grease = grease.next();
        if self.grease {
            put_u16(&mut groups, group_grease);
        }
        if self.post_quantum {
            put_u16(&mut groups, group::X25519_MLKEM768);
        }
        for g in [group::X25519, group::SECP256R1, group::SECP384R1] {
            put_u16(&mut groups, g);
        }
        list.push((ext::SUPPORTED_GROUPS, vec16(&groups)));
        if self.browser_extensions {
            list.push((ext::EC_POINT_FORMATS, vec![1, 0]));
            list.push((ext::SESSION_TICKET, Vec::new()));
            let mut alpn = Vec::new();
            for proto in [&b"h2"[..], b"http/1.1"] {
                put_vec8(&mut alpn, proto);
            }
            list.push((ext::ALPN, vec16(&alpn)));
            list.push((ext::STATUS_REQUEST, vec![1, 0, 0, 0, 0]));
        }
        let mut sig_algs = Vec::new();
        for alg in [
            0x0403, 0x0804, 0x0401, 0x0503, 0x0805, 0x0501, 0x0806, 0x0601,
        ] {
            put_u16(&mut sig_algs, alg);
        }
        list.push((ext::SIGNATURE_ALGORITHMS, vec16(&sig_algs)));
        if self.browser_extensions {
            list.push((ext::SIGNED_CERTIFICATE_TIMESTAMP, Vec::new()));
        }
        let mut shares = Vec::new();
        if self.grease {
            put_u16(&mut shares, group_grease);
            put_vec16(&mut shares, &[0]);
        }
        if self.post_quantum {
            put_u16(&mut shares, group::X25519_MLKEM768);
            put_vec16(&mut shares, &rng.bytes(X25519_MLKEM768_SHARE_LEN));
        }
        put_u16(&mut shares, group::X25519);
        put_vec16(&mut shares, &rng.bytes(X25519_SHARE_LEN));
        list.push((ext::KEY_SHARE, vec16(&shares)));
        list.push((ext::PSK_KEY_EXCHANGE_MODES, vec![1, 1]));
        let mut versions = Vec::new();
        if self.grease {
            put_u16(&mut versions, grease.next());
        }
        put_u16(&mut versions, 0x0304);
        put_u16(&mut versions, 0x0303);
        list.push((ext::SUPPORTED_VERSIONS, vec8(&versions)));
        if self.browser_extensions {
            // brotli certificate compression
            list.push((ext::COMPRESS_CERTIFICATE, vec![2, 0, 2]));
            let mut alps = Vec::new();
            put_vec8(&mut alps, b"h2");
            list.push((ext::APPLICATION_SETTINGS, vec16(&alps)));
        }
        if let Some(payload_len) = self.ech_payload {
            let mut ech = vec![0]; // ECHClientHello type: outer
            put_u16(&mut ech, 0x0001); // KDF: HKDF-SHA256
            put_u16(&mut ech, 0x0001); // AEAD: AES-128-GCM
            ech.push(rng.bytes(1)[0]); // config_id
            put_vec16(&mut ech, &rng.bytes(32)); // enc: an X25519 public key
            put_vec16(&mut ech, &rng.bytes(payload_len));
            list.push((ext::ENCRYPTED_CLIENT_HELLO, ech));
        }
        list.extend(self.extra.iter().cloned());
        if self.grease {
            list.push((grease.next(), vec![0]));
        }

        if !self.names.is_empty() {
            let mut entries = Vec::new();
            for name in &self.names {
                entries.push(0); // NameType: host_name
                put_vec16(&mut entries, name);
            }
            let at = match self.sni_position {
                SniPosition::Early => usize::from(self.grease),
                SniPosition::First => 0,
                SniPosition::Last => list.len(),
                SniPosition::Index(i) => i.min(list.len()),
            };
            list.insert(at, (ext::SERVER_NAME, vec16(&entries)));
        }
        list
    }
}

/// Wraps a handshake message into TLS handshake records of at most `max_fragment` bytes of
/// payload each (at least 1), concatenated as they would follow each other on the wire.
pub fn tls_records(handshake: &[u8], max_fragment: usize) -> Vec<u8> {
    tls_record_list(handshake, max_fragment).concat()
}

/// Like [`tls_records`], one `Vec` per record.
pub fn tls_record_list(handshake: &[u8], max_fragment: usize) -> Vec<Vec<u8>> {
    let size = max_fragment.clamp(1, RECORD_FRAGMENT_MAX);
    handshake
        .chunks(size)
        .map(|fragment| {
            let mut record = Vec::with_capacity(fragment.len() + 5);
            record.push(CONTENT_HANDSHAKE);
            put_u16(&mut record, RECORD_VERSION);
            put_vec16(&mut record, fragment);
            record
        })
        .collect()
}

/// Splits `data` at the given offsets (ascending, each within `data`), e.g. to cut a hello in
/// the middle of its server name.
pub fn split_at_offsets<'a>(data: &'a [u8], offsets: &[usize]) -> Vec<&'a [u8]> {
    let mut parts = Vec::with_capacity(offsets.len() + 1);
    let mut start = 0;
    for &offset in offsets {
        let offset = offset.clamp(start, data.len());
        parts.push(&data[start..offset]);
        start = offset;
    }
    parts.push(&data[start..]);
    parts
}

/// The offset of the first occurrence of `needle` in `haystack`.
pub fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return Some(0);
    }
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::{NetSlice, SlicedPacket, TransportSlice};
    use tls_parser::{
        TlsExtension, TlsMessage, TlsMessageHandshake, parse_tls_client_hello_extensions,
        parse_tls_message_handshake, parse_tls_raw_record,
    };

    /// Reads the records back with tls-parser, reassembles the handshake and returns the names
    /// of its `server_name` extension and the list of extension types.
    fn parse(records: &[u8]) -> (Vec<Vec<u8>>, Vec<u16>, usize) {
        let mut handshake = Vec::new();
        let mut rest = records;
        while !rest.is_empty() {
            let (next, record) = parse_tls_raw_record(rest).expect("a TLS record");
            assert_eq!(record.hdr.record_type.0, CONTENT_HANDSHAKE);
            handshake.extend_from_slice(record.data);
            rest = next;
        }
        let (left, msg) = parse_tls_message_handshake(&handshake).expect("a handshake message");
        assert!(left.is_empty(), "bytes after the hello");
        let TlsMessage::Handshake(TlsMessageHandshake::ClientHello(hello)) = msg else {
            panic!("not a ClientHello: {msg:?}");
        };
        let (left, exts) =
            parse_tls_client_hello_extensions(hello.ext.expect("extensions")).expect("extensions");
        assert!(left.is_empty());
        let mut names = Vec::new();
        let mut types = Vec::new();
        for e in &exts {
            types.push(u16::from(tls_parser::TlsExtensionType::from(e)));
            if let TlsExtension::SNI(list) = e {
                names.extend(list.iter().map(|(_, n)| n.to_vec()));
            }
        }
        (names, types, handshake.len())
    }

    #[test]
    fn chrome_hello_parses_back_with_its_name() {
        let hello = ClientHelloBuilder::chrome("www.tiktok.com").build();
        let (names, types, len) = parse(&tls_records(&hello, RECORD_FRAGMENT_MAX));
        assert_eq!(names, vec![b"www.tiktok.com".to_vec()]);
        // Chrome's post-quantum hello is about 1.8 KB: more than one 1448-byte segment.
        assert!((1700..2100).contains(&len), "hello of {len} bytes");
        assert!(types.contains(&ext::ENCRYPTED_CLIENT_HELLO));
        assert!(types.contains(&ext::KEY_SHARE));
        assert_eq!(
            types[1],
            ext::SERVER_NAME,
            "SNI second, after GREASE: {types:?}"
        );
        assert!(GREASE_VALUES.contains(&types[0]));
    }

    #[test]
    fn several_names_and_raw_bytes() {
        let hello = ClientHelloBuilder::minimal("a.example")
            .server_name("www.TikTok.com.")
            .raw_server_name(b"\xffbad")
            .build();
        let (names, _, _) = parse(&tls_records(&hello, 100));
        assert_eq!(
            names,
            vec![
                b"a.example".to_vec(),
                b"www.TikTok.com.".to_vec(),
                b"\xffbad".to_vec()
            ]
        );
    }

    #[test]
    fn no_server_name_means_no_extension() {
        let hello = ClientHelloBuilder::chrome("x.example")
            .no_server_name()
            .build();
        let (names, types, _) = parse(&tls_records(&hello, RECORD_FRAGMENT_MAX));
        assert!(names.is_empty());
        assert!(!types.contains(&ext::SERVER_NAME));
    }

    #[test]
    fn sni_positions() {
        for (position, expect_at) in [
            (SniPosition::First, Some(0)),
            (SniPosition::Index(3), Some(3)),
        ] {
            let hello = ClientHelloBuilder::chrome("p.example")
                .sni_position(position)
                .build();
            let (_, types, _) = parse(&tls_records(&hello, RECORD_FRAGMENT_MAX));
            assert_eq!(types.iter().position(|&t| t == ext::SERVER_NAME), expect_at);
        }
        let hello = ClientHelloBuilder::chrome("p.example")
            .sni_position(SniPosition::Last)
            .pad_to(3000)
            .build();
        let (names, types, len) = parse(&tls_records(&hello, RECORD_FRAGMENT_MAX));
        assert_eq!(names, vec![b"p.example".to_vec()]);
        assert_eq!(types.last(), Some(&ext::SERVER_NAME));
        assert_eq!(types[types.len() - 2], ext::PADDING);
        assert_eq!(len, 3000);
        // The name sits past the first 1448-byte segment.
        assert!(find(&hello, b"p.example").unwrap() > 1448);
    }

    #[test]
    fn padding_reaches_the_target_exactly() {
        for target in [600, 1000, 4096, 16000] {
            let hello = ClientHelloBuilder::minimal("pad.example")
                .pad_to(target)
                .build();
            assert_eq!(hello.len(), target);
            let (names, types, _) = parse(&tls_records(&hello, RECORD_FRAGMENT_MAX));
            assert_eq!(names, vec![b"pad.example".to_vec()]);
            assert!(types.contains(&ext::PADDING));
        }
        // A target below the unpadded size adds nothing.
        let plain = ClientHelloBuilder::minimal("pad.example").build();
        let small = ClientHelloBuilder::minimal("pad.example")
            .pad_to(10)
            .build();
        assert_eq!(plain, small);
    }

    #[test]
    fn extra_extensions_and_switches() {
        let hello = ClientHelloBuilder::chrome("e.example")
            .grease(false)
            .ech(false)
            .post_quantum(false)
            .extension(0x1234, b"abc")
            .extension_of_len(0x2345, 300)
            .build();
        let (_, types, len) = parse(&tls_records(&hello, RECORD_FRAGMENT_MAX));
        assert!(types.contains(&0x1234) && types.contains(&0x2345));
        assert!(!types.contains(&ext::ENCRYPTED_CLIENT_HELLO));
        assert!(!types.iter().any(|t| GREASE_VALUES.contains(t)));
        assert!(len < 1000);
        assert!(find(&hello, &group::X25519_MLKEM768.to_be_bytes()).is_none());
    }

    #[test]
    fn records_respect_the_fragment_size() {
        let hello = ClientHelloBuilder::chrome("r.example").build();
        for size in [1, 7, 100, 512, RECORD_FRAGMENT_MAX] {
            let list = tls_record_list(&hello, size);
            assert!(list.iter().all(|r| r.len() <= size + 5));
            assert_eq!(list.iter().map(|r| r.len() - 5).sum::<usize>(), hello.len());
            let (names, _, _) = parse(&list.concat());
            assert_eq!(names, vec![b"r.example".to_vec()]);
        }
    }

    #[test]
    fn builds_are_deterministic_per_seed() {
        let a = ClientHelloBuilder::chrome("d.example").build();
        assert_eq!(a, ClientHelloBuilder::chrome("d.example").build());
        assert_ne!(a, ClientHelloBuilder::chrome("d.example").seed(7).build());
    }

    /// Ones'-complement sum over the pseudo-header and the transport segment: 0xffff if the
    /// checksum in the segment is right.
    fn transport_checksum_ok(src: &[u8], dst: &[u8], protocol: u8, segment: &[u8]) -> bool {
        let mut sum: u64 = 0;
        let mut add = |bytes: &[u8]| {
            for pair in bytes.chunks(2) {
                let word = u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)]);
                sum += u64::from(word);
            }
        };
        add(src);
        add(dst);
        add(&[0, protocol]);
        add(&(segment.len() as u32).to_be_bytes()[2..]);
        add(segment);
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        sum == 0xffff
    }

    #[test]
    fn tcp_frames_parse_back_with_checksums() {
        let hello = tls_records(&ClientHelloBuilder::chrome("f.example").build(), 16384);
        for ip in [IpPair::v4_example(), IpPair::v6_example()] {
            for vlans in [
                vec![],
                vec![VlanTag::dot1q(10)],
                vec![VlanTag::dot1ad(20), VlanTag::dot1q(30)],
            ] {
                let mut segment = TcpSegment::new(ip, 40000, 443);
                segment.link = Link::with_vlans(&vlans);
                let frames = segment.frames(&hello, 1448);
                assert_eq!(frames.len(), hello.len().div_ceil(1448));
                let mut payload = Vec::new();
                let mut seq = segment.seq;
                for frame in &frames {
                    let packet = SlicedPacket::from_ethernet(frame).expect("a frame");
                    let tags: Vec<u16> = match packet.vlan {
                        None => vec![],
                        Some(etherparse::VlanSlice::SingleVlan(v)) => {
                            vec![v.vlan_identifier().value()]
                        }
                        Some(etherparse::VlanSlice::DoubleVlan(v)) => vec![
                            v.outer().vlan_identifier().value(),
                            v.inner().vlan_identifier().value(),
                        ],
                    };
                    assert_eq!(tags, vlans.iter().map(|t| t.vid).collect::<Vec<_>>());
                    if vlans.len() == 2 {
                        assert_eq!(&frame[12..14], &TPID_8021AD.to_be_bytes());
                        assert_eq!(&frame[16..18], &TPID_8021Q.to_be_bytes());
                    }
                    let Some(TransportSlice::Tcp(tcp)) = packet.transport else {
                        panic!("no TCP");
                    };
                    assert_eq!(tcp.sequence_number(), seq);
                    assert!(tcp.psh() && tcp.ack());
                    let (src, dst, l4): (Vec<u8>, Vec<u8>, &[u8]) = match packet.net {
                        Some(NetSlice::Ipv4(v4)) => {
                            let h = v4.header();
                            assert_eq!(h.to_header().calc_header_checksum(), h.header_checksum());
                            (
                                h.source().to_vec(),
                                h.destination().to_vec(),
                                v4.payload().payload,
                            )
                        }
                        Some(NetSlice::Ipv6(v6)) => {
                            let h = v6.header();
                            (
                                h.source().to_vec(),
                                h.destination().to_vec(),
                                v6.payload().payload,
                            )
                        }
                        _ => panic!("no IP"),
                    };
                    assert!(transport_checksum_ok(&src, &dst, 6, l4), "TCP checksum");
                    seq = seq.wrapping_add(tcp.payload().len() as u32);
                    payload.extend_from_slice(tcp.payload());
                }
                assert_eq!(payload, hello);
                let (names, _, _) = parse(&payload);
                assert_eq!(names, vec![b"f.example".to_vec()]);
            }
        }
    }

    #[test]
    fn split_frames_cut_inside_the_name() {
        let hello = tls_records(&ClientHelloBuilder::minimal("cut.example").build(), 16384);
        let at = find(&hello, b"cut.example").unwrap() + 3;
        let frames = TcpSegment::new(IpPair::v4_example(), 1, 443).frames_split(&hello, &[at]);
        assert_eq!(frames.len(), 2);
        let first = SlicedPacket::from_ethernet(&frames[0]).unwrap();
        let Some(TransportSlice::Tcp(tcp)) = first.transport else {
            panic!("no TCP");
        };
        assert!(tcp.payload().ends_with(b"cut"));
    }

    #[test]
    fn udp_frames_carry_checksums() {
        for ip in [IpPair::v4_example(), IpPair::v6_example()] {
            let frame = UdpDatagram::new(ip, 50000, 443).frame(&[0xc3; 1200]);
            let packet = SlicedPacket::from_ethernet(&frame).unwrap();
            let Some(TransportSlice::Udp(udp)) = packet.transport else {
                panic!("no UDP");
            };
            assert_eq!(udp.payload().len(), 1200);
            let (src, dst, l4) = match packet.net {
                Some(NetSlice::Ipv4(v4)) => (
                    v4.header().source().to_vec(),
                    v4.header().destination().to_vec(),
                    v4.payload().payload,
                ),
                Some(NetSlice::Ipv6(v6)) => (
                    v6.header().source().to_vec(),
                    v6.header().destination().to_vec(),
                    v6.payload().payload,
                ),
                _ => panic!("no IP"),
            };
            assert!(transport_checksum_ok(&src, &dst, 17, l4), "UDP checksum");
        }
    }

    #[test]
    fn grease_values_follow_rfc_8701() {
        assert_eq!(GREASE_VALUES[0], 0x0a0a);
        assert_eq!(GREASE_VALUES[15], 0xfafa);
    }
}

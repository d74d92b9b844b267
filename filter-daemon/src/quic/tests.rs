//! The RFC test vectors (RFC 9001 Appendix A, RFC 9369 Appendix A), and client Initials
//! sealed by rustls's own QUIC implementation, opened and judged here.

use std::{
    net::{IpAddr, Ipv4Addr},
    path::Path,
};

use filter_common::{
    FlowKey, Reason,
    wire::{QUIC_V1, QUIC_V2},
};

use sni_filter_lab::quic_craft::{crypto_frame, seal_client_initial};

use super::*;
use crate::{config::Config, rules::RuleSet};

fn hex(s: &str) -> Vec<u8> {
    let s: String = s.split_whitespace().collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

/// The client's Destination Connection ID of both RFCs' examples.
const DCID: &str = "8394c8f03e515708";

#[test]
fn v1_keys_match_rfc9001_appendix_a1() {
    let client = key_material(QUIC_V1, &hex(DCID), Sender::Client).unwrap();
    assert_eq!(
        client,
        KeyMaterial {
            secret: hex("c00cf151ca5be075ed0ebfb5c80323c42d6b7db67881289af4008f1f6c357aea"),
            key: hex("1f369613dd76d5467730efcbe3b1a22d"),
            iv: hex("fa044b2f42a3fd3b46fb255c"),
            hp: hex("9f50449e04a0e810283a1e9933adedd2"),
        }
    );
    let server = key_material(QUIC_V1, &hex(DCID), Sender::Server).unwrap();
    assert_eq!(
        server,
        KeyMaterial {
            secret: hex("3c199828fd139efd216c155ad844cc81fb82fa8d7446fa7d78be803acdda951b"),
            key: hex("cf3a5331653c364c88f0f379b6067e37"),
            iv: hex("0ac1493ca1905853b0bba03e"),
            hp: hex("c206b8d9b9f0f37644430b490eeaa314"),
        }
    );
}

#[test]
fn v2_keys_match_rfc9369_appendix_a1() {
    let client = key_material(QUIC_V2, &hex(DCID), Sender::Client).unwrap();
    assert_eq!(
        client,
        KeyMaterial {
            secret: hex("14ec9d6eb9fd7af83bf5a668bc17a7e283766aade7ecd0891f70f9ff7f4bf47b"),
            key: hex("8b1a0bc121284290a29e0971b5cd045d"),
            iv: hex("91f73e2351d8fa91660e909f"),
            hp: hex("45b95e15235d6f45a6b19cbcb0294ba9"),
        }
    );
    let server = key_material(QUIC_V2, &hex(DCID), Sender::Server).unwrap();
    assert_eq!(
        server,
        KeyMaterial {
            secret: hex("0263db1782731bf4588e7e4d93b7463907cb8cd8200b5da55a8bd488eafc37c1"),
            key: hex("82db637861d55e1d011f19ea71d5d2a7"),
            iv: hex("dd13c276499c0249d3310652"),
            hp: hex("edf6d05c83121201b436e16877593c3a"),
        }
    );
    assert_eq!(key_material(0xff00_001d, &hex(DCID), Sender::Client), None);
}

/// The server's Initial of both examples carries this ACK and CRYPTO (ServerHello).
const SERVER_PAYLOAD: &str = "02000000000600405a020000560303eefce7f7b37ba1d1632e96677825ddf73988
    cfc79825df566dc5430b9a045a1200130100002e00330024001d00209d3c940d89690b84d08a60993c144eca68
    4d1081287c834d5311bcf32bb9da1a002b00020304";

fn open_server_packet(packet: &str, version: u32) {
    let packet = hex(packet);
    let opened = open_initials(&packet, &[&hex(DCID)], Sender::Server).expect("opens");
    assert_eq!(opened.len(), 1);
    let o = &opened[0];
    assert_eq!(o.version, version);
    assert_eq!(o.packet_number, 1);
    // The server's Initial names no DCID: the client chose an empty SCID.
    assert!(o.dcid.is_empty());
    assert_eq!(o.payload, hex(SERVER_PAYLOAD));
    let frames = crypto_frames(&o.payload).unwrap();
    assert_eq!(frames.len(), 1);
    assert_eq!(frames[0].0, 0);
    assert_eq!(frames[0].1[0], 2, "a ServerHello");
    // One flipped bit anywhere fails authentication.
    for at in [0, 20, packet.len() / 2, packet.len() - 1] {
        let mut bad = packet.clone();
        bad[at] ^= 0x10;
        assert!(
            open_initials(&bad, &[&hex(DCID)], Sender::Server).is_err(),
            "bit flipped at {at}"
        );
    }
}

#[test]
fn v1_server_initial_of_rfc9001_appendix_a3_decrypts() {
    open_server_packet(
        "cf000000010008f067a5502a4262b5004075c0d95a482cd0991cd25b0aac406a
         5816b6394100f37a1c69797554780bb38cc5a99f5ede4cf73c3ec2493a1839b3
         dbcba3f6ea46c5b7684df3548e7ddeb9c3bf9c73cc3f3bded74b562bfb19fb84
         022f8ef4cdd93795d77d06edbb7aaf2f58891850abbdca3d20398c276456cbc4
         2158407dd074ee",
        QUIC_V1,
    );
}

#[test]
fn v2_server_initial_of_rfc9369_appendix_a3_decrypts() {
    open_server_packet(
        "dc6b3343cf0008f067a5502a4262b5004075d92faaf16f05d8a4398c47089698
         baeea26b91eb761d9b89237bbf87263017915358230035f7fd3945d88965cf17
         f9af6e16886c61bfc703106fbaf3cb4cfa52382dd16a393e42757507698075b2
         c984c707f0a0812d8cd5a6881eaf21ceda98f4bd23f6fe1a3e2c43edd9ce7ca8
         4bed8521e2e140",
        QUIC_V2,
    );
}

/// A minimal TLS 1.3 ClientHello (handshake message, no record) naming `name`, padded
/// with a padding extension to about `len` bytes.
fn client_hello(name: &str, len: usize) -> Vec<u8> {
    let mut ext = Vec::new();
    let n = name.as_bytes();
    let entry_len = n.len() + 3;
    ext.extend_from_slice(&[0, 0]);
    ext.extend_from_slice(&((entry_len + 2) as u16).to_be_bytes());
    ext.extend_from_slice(&(entry_len as u16).to_be_bytes());
    ext.push(0);
    ext.extend_from_slice(&(n.len() as u16).to_be_bytes());
    ext.extend_from_slice(n);
    // supported_versions: TLS 1.3.
    ext.extend_from_slice(&[0x00, 0x2b, 0x00, 0x03, 0x02, 0x03, 0x04]);
    let pad = len.saturating_sub(ext.len() + 60);
    ext.extend_from_slice(&[0x00, 0x15]);
    ext.extend_from_slice(&(pad as u16).to_be_bytes());
    ext.extend(std::iter::repeat_n(0u8, pad));
    let mut body = vec![0x03, 0x03];
    body.extend_from_slice(&[0x5a; 32]);
    body.push(0);
    body.extend_from_slice(&[0x00, 0x02, 0x13, 0x01, 0x01, 0x00]);
    body.extend_from_slice(&(ext.len() as u16).to_be_bytes());
    body.extend_from_slice(&ext);
    let mut msg = vec![1];
    msg.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    msg.extend_from_slice(&body);
    msg
}

/// A client Initial sealed by rustls, 1200 bytes.
fn seal(version: u32, key_dcid: &[u8], dcid: &[u8], pn: u32, frames: &[u8]) -> Vec<u8> {
    seal_client_initial(version, key_dcid, dcid, pn, frames, 1200)
}

fn matcher() -> Matcher {
    let config = Config::parse(
        Path::new("/etc/sni-filter/filter.toml"),
        "[apps.tiktok]\naction = \"drop\"\ndomains = [\"tiktok.com\"]\n\
         [apps.watch]\naction = \"monitor\"\ndomains = [\"watched.example\"]\n",
    )
    .unwrap();
    Matcher::new(&RuleSet::compile(&config).unwrap()).unwrap()
}

fn datagram(data: &[u8], sport: u16) -> Datagram<'_> {
    let mut flow = FlowKey {
        sport,
        dport: 443,
        family: 4,
        proto: 17,
        ..FlowKey::default()
    };
    flow.saddr[..4].copy_from_slice(&[10, 0, 0, 2]);
    Datagram {
        flow,
        client: Client {
            addr: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)),
            ifindex: 1,
            vlan: 0,
        },
        ts_ns: 1,
        data,
    }
}

#[test]
fn a_hello_in_one_initial_is_judged_by_the_rules() {
    let rules = matcher();
    for (version, name, reason) in [
        (QUIC_V1, "www.tiktok.com", Reason::HelloBlocked),
        (QUIC_V2, "www.tiktok.com", Reason::HelloBlocked),
        (QUIC_V1, "example.org", Reason::HelloAllowed),
        (QUIC_V1, "watched.example", Reason::HelloMonitored),
        (QUIC_V1, "nottiktok.com", Reason::HelloAllowed),
    ] {
        let dcid = [7u8; 8];
        let packet = seal(
            version,
            &dcid,
            &dcid,
            0,
            &crypto_frame(0, &client_hello(name, 300)),
        );
        let mut r = Reassembly::new();
        let Outcome::Judged(v) = r.feed(&datagram(&packet, 40000), &rules) else {
            panic!("{name}: not judged");
        };
        assert_eq!(v.reason, reason, "{name} over {version:#x}");
        assert_eq!(v.name, name.as_bytes());
        assert!(r.is_empty());
    }
}

#[test]
fn a_hello_over_two_initials_out_of_order_is_reassembled() {
    let rules = matcher();
    let hello = client_hello("video.tiktok.com", 1800);
    let dcid = [9u8; 12];
    let (a, b) = hello.split_at(1000);
    let second = seal(QUIC_V1, &dcid, &dcid, 1, &crypto_frame(1000, b));
    let first = seal(QUIC_V1, &dcid, &dcid, 0, &crypto_frame(0, a));
    let mut r = Reassembly::new();
    assert_eq!(r.feed(&datagram(&second, 1), &rules), Outcome::Incomplete);
    assert_eq!(r.len(), 1);
    let Outcome::Judged(v) = r.feed(&datagram(&first, 1), &rules) else {
        panic!("not judged");
    };
    assert_eq!(v.reason, Reason::HelloBlocked);
    assert_eq!(v.app, 0);
}

#[test]
fn later_initials_under_a_server_chosen_dcid_use_the_clients_keys() {
    // RFC 9001 §5.2: keys stay those of the client's first DCID even when later Initials
    // carry the connection ID the server chose.
    let rules = matcher();
    let hello = client_hello("www.tiktok.com", 1500);
    let (a, b) = hello.split_at(700);
    let client_dcid = [1u8; 8];
    let server_cid = [2u8; 16];
    let first = seal(QUIC_V1, &client_dcid, &client_dcid, 0, &crypto_frame(0, a));
    let second = seal(QUIC_V1, &client_dcid, &server_cid, 1, &crypto_frame(700, b));
    let mut r = Reassembly::new();
    assert_eq!(r.feed(&datagram(&first, 2), &rules), Outcome::Incomplete);
    assert!(
        matches!(r.feed(&datagram(&second, 2), &rules), Outcome::Judged(v) if v.reason == Reason::HelloBlocked)
    );
}

#[test]
fn an_initial_after_a_retry_opens_with_its_own_dcid() {
    // After a Retry the client's keys derive from the Retry's connection ID, which only the
    // packet itself shows.
    let rules = matcher();
    let retry_cid = [3u8; 18];
    let packet = seal(
        QUIC_V1,
        &retry_cid,
        &retry_cid,
        0,
        &crypto_frame(0, &client_hello("m.tiktok.com", 400)),
    );
    let mut r = Reassembly::new();
    assert!(
        matches!(r.feed(&datagram(&packet, 3), &rules), Outcome::Judged(v) if v.reason == Reason::HelloBlocked)
    );
}

#[test]
fn junk_and_foreign_packets_keep_no_state() {
    let rules = matcher();
    let mut r = Reassembly::new();
    // A well-formed long header around random bytes.
    let mut junk = vec![
        0xc3, 0, 0, 0, 1, 8, 1, 2, 3, 4, 5, 6, 7, 8, 0, 0, 0x44, 0x90,
    ];
    junk.extend((0..1168u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8));
    assert_eq!(
        r.feed(&datagram(&junk, 4), &rules),
        Outcome::Unreadable(OpenError::Undecryptable)
    );
    assert_eq!(
        r.feed(&datagram(&[0x40; 1200], 4), &rules),
        Outcome::Unreadable(OpenError::NotInitial)
    );
    // Sealed under other keys than its header names (a spoofed or corrupted Initial).
    let wrong = seal(
        QUIC_V1,
        &[5u8; 8],
        &[6u8; 8],
        0,
        &crypto_frame(0, &client_hello("x.tiktok.com", 300)),
    );
    assert_eq!(
        r.feed(&datagram(&wrong, 4), &rules),
        Outcome::Unreadable(OpenError::Undecryptable)
    );
    assert!(r.is_empty());
    assert_eq!(r.stats.unreadable, 3);
}

#[test]
fn reassemblies_are_bounded_in_flows_and_time() {
    let rules = matcher();
    let mut r = Reassembly::new();
    let hello = client_hello("a.example", 1500);
    let dcid = [4u8; 8];
    let first = seal(QUIC_V1, &dcid, &dcid, 0, &crypto_frame(0, &hello[..600]));
    for port in 0..(FLOWS_MAX as u16 + 10) {
        let mut d = datagram(&first, port);
        d.ts_ns = 1 + u64::from(port);
        assert_eq!(r.feed(&d, &rules), Outcome::Incomplete);
    }
    assert_eq!(r.len(), FLOWS_MAX);
    assert_eq!(r.stats.abandoned, 10);
    r.expire(FLOWS_MAX as u64 + 20 + FLOW_IDLE_NS);
    assert!(r.is_empty());
}

#[test]
fn crypto_beyond_the_bound_is_uninspectable() {
    let rules = matcher();
    let dcid = [8u8; 8];
    let far = seal(
        QUIC_V1,
        &dcid,
        &dcid,
        0,
        &crypto_frame(CRYPTO_MAX as u64, &[1; 16]),
    );
    let mut r = Reassembly::new();
    assert!(
        matches!(r.feed(&datagram(&far, 5), &rules), Outcome::Judged(v) if v.reason == Reason::UninspectableTooLong)
    );
    let mut frames = vec![0x1e]; // HANDSHAKE_DONE may not appear in an Initial
    frames.extend_from_slice(&crypto_frame(0, &client_hello("a.example", 300)));
    let bad = seal(QUIC_V1, &dcid, &dcid, 0, &frames);
    assert!(
        matches!(r.feed(&datagram(&bad, 6), &rules), Outcome::Judged(v) if v.reason == Reason::UninspectableMalformed)
    );
}

#[test]
fn a_new_connection_never_reads_through_the_stream_of_an_earlier_one() {
    // Half an allowed hello on one connection, then a banned hello on another connection
    // of the same ports: the banned bytes must be judged, not hidden behind the first ones.
    let rules = matcher();
    let allowed = client_hello("www.example.org", 1500);
    let banned = client_hello("www.tiktok.com", 1500);
    let first = seal(
        QUIC_V1,
        &[1; 8],
        &[1; 8],
        0,
        &crypto_frame(0, &allowed[..700]),
    );
    let second = seal(
        QUIC_V1,
        &[2; 8],
        &[2; 8],
        0,
        &crypto_frame(0, &banned[..700]),
    );
    let rest = seal(
        QUIC_V1,
        &[2; 8],
        &[2; 8],
        1,
        &crypto_frame(700, &banned[700..]),
    );
    let mut r = Reassembly::new();
    assert_eq!(r.feed(&datagram(&first, 9), &rules), Outcome::Incomplete);
    assert_eq!(r.feed(&datagram(&second, 9), &rules), Outcome::Incomplete);
    let Outcome::Judged(v) = r.feed(&datagram(&rest, 9), &rules) else {
        panic!("not judged");
    };
    assert_eq!(v.reason, Reason::HelloBlocked);
    assert_eq!(v.key_dcid, [2; 8]);
}

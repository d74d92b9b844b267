//! The frames the benchmarks send: Chrome-sized hellos (~1.8 KB, post-quantum key share)
//! with the server name first or last, and the packets that are not hellos.

use sni_filter_lab::hello::{
    ClientHelloBuilder, IpPair, SniPosition, TcpFlags, TcpSegment, UdpDatagram, tls_records,
};

/// A name no rule matches.
pub const ALLOWED: &str = "www.allowed.example";
/// A name under a `monitor` rule: read and matched, passed, no verdict kept.
pub const WATCHED: &str = "www.watched.example";
/// A name under a `drop` rule.
pub const BANNED: &str = "www.blocked.example";

/// The configuration of the per-packet benchmark (names above, port 443 inspected).
pub const CONFIG: &str = r#"
[filter]
inspected_ports = [443]
uninspectable = "pass"

[apps.blocked]
action = "drop"
domains = ["blocked.example"]

[apps.watched]
action = "monitor"
domains = ["watched.example"]
"#;

/// Where a first segment of a split hello ends: a full 1448-byte segment, as Chrome's
/// hello arrives on a 1500-byte MTU path.
pub const SPLIT_AT: usize = 1448;

/// The TLS records of a Chrome-like hello for `name`.
pub fn hello(name: &str, first: bool) -> Vec<u8> {
    let position = if first {
        SniPosition::First
    } else {
        SniPosition::Last
    };
    tls_records(
        &ClientHelloBuilder::chrome(name)
            .sni_position(position)
            .build(),
        16384,
    )
}

/// A data segment of the flow from client port `sport` to `dport`.
pub fn tcp(sport: u16, dport: u16) -> TcpSegment {
    TcpSegment::new(IpPair::v4_example(), sport, dport)
}

/// The hello in one frame (as a GSO super-packet or a jumbo frame carries it).
pub fn hello_frame(sport: u16, name: &str, first: bool) -> Vec<u8> {
    tcp(sport, 443).frame(&hello(name, first))
}

/// The same with SYN set (a TCP Fast Open hello): a SYN ends the flow's standing verdict,
/// so each run judges the hello afresh.
pub fn syn_hello_frame(sport: u16, name: &str, first: bool) -> Vec<u8> {
    let mut seg = tcp(sport, 443);
    seg.flags = TcpFlags {
        syn: true,
        ..TcpFlags::PSH_ACK
    };
    seg.frame(&hello(name, first))
}

/// The two segments of the hello cut at [`SPLIT_AT`], and the first data segment after it.
pub fn split_hello(sport: u16, name: &str, first: bool) -> [Vec<u8>; 3] {
    let payload = hello(name, first);
    let seg = tcp(sport, 443);
    let mut frames = seg.frames_split(&payload, &[SPLIT_AT]);
    let mut after = seg.clone();
    after.seq = seg.seq.wrapping_add(payload.len() as u32);
    let data = after.frame(&app_data(100));
    let second = frames.pop().expect("two segments");
    let first_seg = frames.pop().expect("two segments");
    [first_seg, second, data]
}

/// The most walking one segment can ask of the program: the first full segment (1448 B) of
/// a Chrome-like hello sent in 1-byte TLS records (as record-fragmenting evasion tools
/// do), so every 6 bytes are a record header and one byte of the hello.
pub fn one_byte_records_segment(sport: u16, name: &str) -> Vec<u8> {
    let hello = ClientHelloBuilder::chrome(name)
        .sni_position(SniPosition::Last)
        .build();
    let stream = tls_records(&hello, 1);
    tcp(sport, 443)
        .frames_split(&stream, &[SPLIT_AT])
        .swap_remove(0)
}

/// A TLS application-data record of `len` bytes in all.
pub fn app_data(len: usize) -> Vec<u8> {
    let body = len.saturating_sub(5);
    let mut v = vec![0x17, 0x03, 0x03];
    v.extend_from_slice(&(body as u16).to_be_bytes());
    v.extend(std::iter::repeat_n(0xa5, body));
    v
}

/// A connection as a gateway sees most of them: its SYN, its hello (whole, allowed), its
/// first data segment, and the next data segment, which is the one to time.
pub fn connection_past_hello(sport: u16, name: &str) -> [Vec<u8>; 4] {
    let payload = hello(name, false);
    let seg = tcp(sport, 443);
    let mut syn = seg.clone();
    syn.seq = seg.seq.wrapping_sub(1);
    syn.flags = TcpFlags::SYN;
    let mut data = seg.clone();
    data.seq = seg.seq.wrapping_add(payload.len() as u32);
    let mut next = data.clone();
    next.seq = data.seq.wrapping_add(1448);
    [
        syn.frame(&[]),
        seg.frame(&payload),
        data.frame(&app_data(1448)),
        next.frame(&app_data(1448)),
    ]
}

/// A payload-less SYN of the flow: ends a standing verdict (cleanup between runs).
pub fn syn(sport: u16) -> Vec<u8> {
    let mut seg = tcp(sport, 443);
    seg.flags = TcpFlags::SYN;
    seg.frame(&[])
}

/// An ARP request: not IP.
pub fn arp() -> Vec<u8> {
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&[2, 0, 0, 0, 0, 1, 0x08, 0x06]);
    f.extend_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]);
    f.extend_from_slice(&[2, 0, 0, 0, 0, 1, 192, 0, 2, 1]);
    f.extend_from_slice(&[0, 0, 0, 0, 0, 0, 198, 51, 100, 1]);
    f
}

/// A DNS-sized UDP datagram to port 53.
pub fn udp_dns() -> Vec<u8> {
    UdpDatagram::new(IpPair::v4_example(), 40000, 53).frame(&[0x42; 40])
}

/// An IPv4 frame cut inside its IP header.
pub fn truncated_ip() -> Vec<u8> {
    let mut f = tcp(40001, 443).frame(&[]);
    f.truncate(14 + 10);
    f
}

//! The table's rows about what lies around a hello: frames that are not IP or not TCP,
//! VLAN tags, IPv6, IPv4 and IPv6 fragments, IPv6 extension headers, urgent data and
//! truncated headers.

use filter_common::Reason;
use sni_filter_lab::hello::{
    ClientHelloBuilder, IpPair, Link, TcpFlags, TcpSegment, UdpDatagram, VlanTag, tls_records,
};

use super::common::program::{Case, XDP_DROP, XDP_PASS, case, strict};
use super::frames::{
    tiny_first_fragment, with_ipv6_extensions, with_ipv6_fragment, with_tcp_flags,
};
use super::{hello_frame, tcp};

// One table: long by nature.
#[allow(clippy::too_many_lines)]
pub fn cases() -> Vec<Case> {
    let v4 = IpPair::v4_example();
    let v6 = IpPair::v6_example();
    let chrome = tls_records(&ClientHelloBuilder::chrome("www.tiktok.com").build(), 16384);
    let mut syn = tcp(v4);
    syn.flags = TcpFlags::SYN;
    let mut first_fragment = hello_frame("www.tiktok.com");
    first_fragment[20] = 0x20; // more fragments, offset 0
    let mut fragment = hello_frame("www.tiktok.com");
    // IPv4 flags/fragment offset (bytes 20-21 of the frame): offset 185 (x8 bytes).
    fragment[20] = 0x00;
    fragment[21] = 185;
    let qinq = TcpSegment {
        link: Link::with_vlans(&[VlanTag::dot1ad(100), VlanTag::dot1q(42)]),
        ..tcp(v4)
    };
    let dot1q = TcpSegment {
        link: Link::with_vlans(&[VlanTag::dot1q(7)]),
        ..tcp(v4)
    };
    let arp = {
        let mut f = vec![0xff; 6];
        f.extend_from_slice(&[2, 0, 0, 0, 0, 1, 0x08, 0x06]);
        f.extend_from_slice(&[0; 28]);
        f
    };
    vec![
        case(
            "ARP passes untouched",
            vec![arp],
            XDP_PASS,
            &[(Reason::NotIp, 1)],
        ),
        case(
            "UDP passes",
            vec![UdpDatagram::new(v4, 5353, 53).frame(b"dns?")],
            XDP_PASS,
            &[(Reason::UdpPortNotInspected, 1)],
        ),
        case(
            "SYN without payload passes",
            vec![syn.frame(&[])],
            XDP_PASS,
            &[(Reason::TcpNoPayload, 1)],
        ),
        case(
            "HTTP naming a banned host passes (not TLS)",
            vec![tcp(v4).frame(b"GET / HTTP/1.1\r\nHost: www.tiktok.com\r\n\r\n")],
            XDP_PASS,
            &[(Reason::TcpNotHandshake, 1)],
        ),
        case(
            "IPv6 banned name drops",
            vec![tcp(v6).frame(&chrome)],
            XDP_DROP,
            &[(Reason::HelloBlocked, 1)],
        ),
        case(
            "802.1Q tagged banned name drops",
            vec![dot1q.frame(&chrome)],
            XDP_DROP,
            &[(Reason::HelloBlocked, 1)],
        ),
        case(
            "QinQ tagged banned name drops",
            vec![qinq.frame(&chrome)],
            XDP_DROP,
            &[(Reason::HelloBlocked, 1)],
        ),
        case(
            "non-first IPv4 fragment passes",
            vec![fragment],
            XDP_PASS,
            &[(Reason::IpFragment, 1)],
        ),
        strict(
            "urgent data in a hello is uninspectable",
            vec![with_tcp_flags(&hello_frame("www.tiktok.com"), 0x20)],
            XDP_DROP,
            &[(Reason::UninspectableUrgent, 1)],
        ),
        strict(
            "a first fragment too short for the TCP header is uninspectable",
            vec![tiny_first_fragment(&hello_frame("www.tiktok.com"))],
            XDP_DROP,
            &[(Reason::UninspectableFragment, 1)],
        ),
        strict(
            "the first IPv4 fragment of a hello is uninspectable",
            vec![first_fragment],
            XDP_DROP,
            &[(Reason::UninspectableFragment, 1)],
        ),
        case(
            "IPv6 extension headers in front of TCP are walked",
            vec![with_ipv6_extensions(&tcp(v6).frame(&chrome), 2)],
            XDP_DROP,
            &[(Reason::HelloBlocked, 1)],
        ),
        strict(
            "the first IPv6 fragment of a hello is uninspectable",
            vec![with_ipv6_fragment(&tcp(v6).frame(&chrome), 0, true)],
            XDP_DROP,
            &[(Reason::UninspectableFragment, 1)],
        ),
        case(
            "a later IPv6 fragment passes",
            vec![with_ipv6_fragment(&tcp(v6).frame(&chrome), 185, false)],
            XDP_PASS,
            &[(Reason::IpFragment, 1)],
        ),
        strict(
            "an IPv6 chain beyond the bound is uninspectable",
            vec![with_ipv6_extensions(&tcp(v6).frame(&chrome), 7)],
            XDP_DROP,
            &[(Reason::UninspectableIpv6Chain, 1)],
        ),
        case(
            "truncated IP header passes, counted",
            vec![hello_frame("www.tiktok.com")[..20].to_vec()],
            XDP_PASS,
            &[(Reason::HeaderMalformed, 1)],
        ),
    ]
}

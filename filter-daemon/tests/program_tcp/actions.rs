//! What a verdict does and whom the rules cover: a reject answered with a TCP reset, the
//! events of blocked and monitored flows, the inspected ports, exempted sources and the
//! VLANs and interfaces an app is limited to.

use filter_common::{EventAction, Note, Reason};
use sni_filter_lab::hello::{ClientHelloBuilder, IpPair, Link, TcpSegment, VlanTag, tls_records};

use super::common::program::{XDP_DROP, XDP_PASS, XDP_TX};
use super::{RULES, banned_flow, counters, filter, hello_frame, tcp};

#[test]
fn reject_answers_the_client_with_a_reset() {
    let f = filter("[apps.tiktok]\naction = \"reject\"\ndomains = [\"tiktok.com\"]\n");
    for ip in [IpPair::v4_example(), IpPair::v6_example()] {
        let seg = TcpSegment {
            ack: 777_000,
            ..tcp(ip)
        };
        let hello = tls_records(
            &ClientHelloBuilder::minimal("www.tiktok.com").build(),
            16384,
        );
        let (action, out) = f.run_frame_out(&seg.frame(&hello)).unwrap();
        assert_eq!(action, XDP_TX, "{ip:?}");
        let parsed = etherparse::SlicedPacket::from_ethernet(&out).expect("the reset parses");
        let Some(etherparse::TransportSlice::Tcp(t)) = parsed.transport else {
            panic!("no TCP in the reset")
        };
        assert!(t.rst() && t.ack(), "RST|ACK expected");
        assert_eq!(t.source_port(), seg.dst_port);
        assert_eq!(t.destination_port(), seg.src_port);
        assert_eq!(t.sequence_number(), 777_000, "seq = the client's ACK");
        assert_eq!(
            t.acknowledgment_number(),
            seg.seq + hello.len() as u32,
            "ack covers the hello"
        );
        assert!(t.payload().is_empty());
        match parsed.net {
            Some(etherparse::NetSlice::Ipv4(v4)) => {
                let h = v4.header();
                assert_eq!(h.source(), [198, 51, 100, 1], "addresses swapped");
                let fixed = h.to_header();
                assert_eq!(
                    fixed.header_checksum,
                    fixed.calc_header_checksum(),
                    "IPv4 header checksum"
                );
                assert_eq!(
                    t.calc_checksum_ipv4(fixed.source, fixed.destination)
                        .unwrap(),
                    t.checksum(),
                    "TCP checksum"
                );
            }
            Some(etherparse::NetSlice::Ipv6(v6)) => {
                let h = v6.header().to_header();
                assert_eq!(
                    t.calc_checksum_ipv6(h.source, h.destination).unwrap(),
                    t.checksum(),
                    "TCP checksum"
                );
            }
            _ => panic!("no IP in the reset"),
        }
    }
}

#[test]
fn blocked_and_monitored_flows_emit_one_event_and_allowed_ones_none() {
    let mut f = filter(RULES);
    let _ = f.drain_events().unwrap();
    let (s, hello, later) = banned_flow(IpPair::v4_example());
    f.run_frame(&s.frame(&hello)).unwrap();
    f.run_frame(&later.frame(b"more")).unwrap();
    f.run_frame(&hello_frame("www.example.org")).unwrap();
    f.run_frame(&hello_frame("x.watched.example")).unwrap();
    let events = f.drain_events().unwrap();
    let names: Vec<(String, u8)> = events
        .iter()
        .map(|e| {
            (
                String::from_utf8_lossy(&e.sni[..e.sni_len as usize]).into_owned(),
                e.action,
            )
        })
        .collect();
    assert_eq!(
        names,
        [
            ("www.tiktok.com".to_string(), EventAction::Drop as u8),
            ("x.watched.example".to_string(), EventAction::Monitor as u8)
        ]
    );
    assert_eq!(events[0].flow.sport, s.src_port);
    assert_eq!(events[0].flow.dport, 443);
    assert_eq!(&events[0].flow.saddr[..4], &[192, 0, 2, 1]);
}

#[test]
fn events_the_ring_has_no_room_for_are_counted_lost() {
    let mut f = filter(RULES);
    let _ = f.drain_events().unwrap();
    let lost = |f: &sni_filter::filter::Filter| f.notes().unwrap()[Note::EventLost as usize];
    // One event per blocked flow (each on ports of its own), and nothing drains the ring
    // until it is full.
    let mut blocked = 0u64;
    while blocked < 60_000 {
        let (s, hello, _) = banned_flow(IpPair::v6_example());
        assert_eq!(f.run_frame(&s.frame(&hello)).unwrap(), XDP_DROP);
        blocked += 1;
        if lost(&f) >= 10 {
            break;
        }
    }
    assert!(
        lost(&f) >= 10,
        "the ring never filled in {blocked} blocked flows"
    );
    let kept = f.drain_events().unwrap().len() as u64;
    assert_eq!(
        kept + lost(&f),
        blocked,
        "each event is in the ring or counted lost"
    );
}

#[test]
fn only_configured_ports_are_inspected() {
    let f = filter(&format!("[filter]\ninspected_ports = [443]\n{RULES}"));
    let hello = tls_records(
        &ClientHelloBuilder::minimal("www.tiktok.com").build(),
        16384,
    );
    assert_eq!(
        f.run_frame(&tcp(IpPair::v4_example()).frame(&hello))
            .unwrap(),
        XDP_DROP
    );
    let other = TcpSegment {
        dst_port: 8443,
        ..tcp(IpPair::v4_example())
    };
    let before = counters(&f)[Reason::TcpPortNotInspected as usize].packets;
    assert_eq!(f.run_frame(&other.frame(&hello)).unwrap(), XDP_PASS);
    assert_eq!(
        counters(&f)[Reason::TcpPortNotInspected as usize].packets,
        before + 1
    );
}

#[test]
fn exempted_clients_and_out_of_scope_vlans_pass() {
    let f = filter(
        "[apps.tiktok]\naction = \"drop\"\ndomains = [\"tiktok.com\"]\nexempt_sources = [\"192.0.2.0/28\", \"2001:db8::1\"]\n\
         [apps.staff]\naction = \"drop\"\ndomains = [\"staff-only.example\"]\nvlans = [42]\n\
         [apps.local]\naction = \"drop\"\ndomains = [\"local-only.example\"]\ninterfaces = [\"lo\"]\n",
    );
    let hello = |name: &str| tls_records(&ClientHelloBuilder::minimal(name).build(), 16384);
    let reason_delta = |r: Reason, run: &dyn Fn() -> u32| {
        let before = counters(&f)[r as usize].packets;
        let action = run();
        (action, counters(&f)[r as usize].packets - before)
    };
    // The example pairs send from 192.0.2.1 and 2001:db8::1: both exempted.
    for ip in [IpPair::v4_example(), IpPair::v6_example()] {
        let got = reason_delta(Reason::HelloExempt, &|| {
            f.run_frame(&tcp(ip).frame(&hello("www.tiktok.com")))
                .unwrap()
        });
        assert_eq!(got, (XDP_PASS, 1), "{ip:?}");
    }
    // Another client of the same network family is not exempted.
    let IpPair::V4 { dst, .. } = IpPair::v4_example() else {
        unreachable!()
    };
    let other = TcpSegment {
        ip: IpPair::V4 {
            src: std::net::Ipv4Addr::new(192, 0, 2, 77),
            dst,
        },
        ..tcp(IpPair::v4_example())
    };
    assert_eq!(
        f.run_frame(&other.frame(&hello("www.tiktok.com"))).unwrap(),
        XDP_DROP
    );

    let tagged = |vid| TcpSegment {
        link: Link::with_vlans(&[VlanTag::dot1q(vid)]),
        ..tcp(IpPair::v4_example())
    };
    assert_eq!(
        f.run_frame(&tagged(42).frame(&hello("staff-only.example")))
            .unwrap(),
        XDP_DROP
    );
    assert_eq!(
        f.run_frame(&tagged(43).frame(&hello("staff-only.example")))
            .unwrap(),
        XDP_PASS
    );
    assert_eq!(
        f.run_frame(&tcp(IpPair::v4_example()).frame(&hello("staff-only.example")))
            .unwrap(),
        XDP_PASS
    );
    // BPF_PROG_TEST_RUN runs on the loopback interface.
    assert_eq!(
        f.run_frame(&tcp(IpPair::v4_example()).frame(&hello("local-only.example")))
            .unwrap(),
        XDP_DROP
    );
}

//! The classes timed by repeating one frame per call: each a kind of packet, the frames
//! that set its flow up, the counter it must move and its target.

use filter_common::Reason;

use crate::bench::bpf::{XDP_DROP, XDP_PASS};
use crate::bench::frames::{self, ALLOWED, BANNED, WATCHED};

/// A kind of packet, timed by repeating its frame.
pub(super) struct Class {
    pub(super) key: &'static str,
    pub(super) label: &'static str,
    pub(super) reason: Reason,
    pub(super) action: u32,
    /// Sent once before the timing (untimed), on the class's own flow.
    pub(super) prime: Vec<Vec<u8>>,
    pub(super) frame: Vec<u8>,
    /// The target for the net cost, in ns.
    pub(super) target: Option<f64>,
}

// One table of classes: long by nature.
#[allow(clippy::too_many_lines)]
pub(super) fn classes() -> Vec<Class> {
    let blocked = frames::split_hello(30000, BANNED, false);
    let allowed_split = frames::split_hello(30001, ALLOWED, false);
    let retrans = frames::split_hello(30002, ALLOWED, false);
    let [syn, hello, first_data, data] = frames::connection_past_hello(30003, ALLOWED);
    vec![
        Class {
            key: "not_ip",
            label: "not IP (ARP)",
            reason: Reason::NotIp,
            action: XDP_PASS,
            prime: vec![],
            frame: frames::arp(),
            target: None,
        },
        Class {
            key: "udp",
            label: "UDP, not QUIC (DNS)",
            reason: Reason::UdpPortNotInspected,
            action: XDP_PASS,
            prime: vec![],
            frame: frames::udp_dns(),
            target: None,
        },
        Class {
            key: "tcp_port_not_inspected",
            label: "TCP to a port not inspected (8080)",
            reason: Reason::TcpPortNotInspected,
            action: XDP_PASS,
            prime: vec![],
            frame: frames::tcp(30010, 8080).frame(&frames::app_data(1448)),
            target: Some(5.0),
        },
        Class {
            key: "tcp_not_handshake",
            label: "TCP data on 443, not a hello (1448 B)",
            reason: Reason::TcpNotHandshake,
            action: XDP_PASS,
            prime: vec![],
            frame: frames::tcp(30011, 443).frame(&frames::app_data(1448)),
            target: Some(30.0),
        },
        Class {
            key: "tcp_data_known_flow",
            label: "TCP data on 443 after the connection's SYN and hello (1448 B)",
            reason: Reason::TcpNotHandshake,
            action: XDP_PASS,
            prime: vec![syn, hello, first_data],
            frame: data,
            target: Some(30.0),
        },
        Class {
            key: "blocked_flow",
            label: "packet of a blocked flow",
            reason: Reason::BlockedFlow,
            action: XDP_DROP,
            prime: vec![blocked[0].clone(), blocked[1].clone()],
            frame: blocked[2].clone(),
            target: Some(35.0),
        },
        Class {
            key: "hello_allowed_first",
            label: "hello 1.8 KB, SNI first, allowed",
            reason: Reason::HelloAllowed,
            action: XDP_PASS,
            prime: vec![],
            frame: frames::hello_frame(30020, ALLOWED, true),
            target: None,
        },
        Class {
            key: "hello_allowed_last",
            label: "hello 1.8 KB, SNI last, allowed",
            reason: Reason::HelloAllowed,
            action: XDP_PASS,
            prime: vec![],
            frame: frames::hello_frame(30021, ALLOWED, false),
            target: Some(150.0),
        },
        Class {
            key: "hello_matched_first",
            label: "hello 1.8 KB, SNI first, matched (monitor rule)",
            reason: Reason::HelloMonitored,
            action: XDP_PASS,
            prime: vec![],
            frame: frames::hello_frame(30022, WATCHED, true),
            target: None,
        },
        Class {
            key: "hello_matched_last",
            label: "hello 1.8 KB, SNI last, matched (monitor rule)",
            reason: Reason::HelloMonitored,
            action: XDP_PASS,
            prime: vec![],
            frame: frames::hello_frame(30023, WATCHED, false),
            target: None,
        },
        Class {
            key: "hello_blocked_first",
            label: "hello 1.8 KB, SNI first, blocked (SYN-flagged: fresh verdict each repeat)",
            reason: Reason::HelloBlocked,
            action: XDP_DROP,
            prime: vec![],
            frame: frames::syn_hello_frame(30024, BANNED, true),
            target: None,
        },
        Class {
            key: "hello_blocked_last",
            label: "hello 1.8 KB, SNI last, blocked (SYN-flagged: fresh verdict each repeat)",
            reason: Reason::HelloBlocked,
            action: XDP_DROP,
            prime: vec![],
            frame: frames::syn_hello_frame(30025, BANNED, false),
            target: None,
        },
        Class {
            key: "split_first_resent",
            label: "split hello, 1st segment (1448 B) resent: compared with the kept copy",
            reason: Reason::HelloRetransmit,
            action: XDP_PASS,
            prime: vec![retrans[0].clone()],
            frame: retrans[0].clone(),
            target: Some(300.0),
        },
        Class {
            key: "split_second_resent",
            label: "split hello, 2nd segment resent after the hello concluded",
            reason: Reason::HelloRetransmit,
            action: XDP_PASS,
            prime: vec![allowed_split[0].clone(), allowed_split[1].clone()],
            frame: allowed_split[1].clone(),
            target: None,
        },
        Class {
            key: "header_malformed",
            label: "malformed: IPv4 header cut short",
            reason: Reason::HeaderMalformed,
            action: XDP_PASS,
            prime: vec![],
            frame: frames::truncated_ip(),
            target: None,
        },
    ]
}

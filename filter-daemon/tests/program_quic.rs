//! Group: program tests (the compiled program through `BPF_PROG_TEST_RUN`, no namespaces;
//! see `filter-daemon/tests/README.md`).
//!
//! The QUIC path of the real compiled program and the daemon's judge together, through
//! `BPF_PROG_TEST_RUN`: Initials handed on, verdicts written, later packets dropped, the
//! program's own decisions (ports, sizes, versions, budget, heartbeat, policies), and
//! monitor mode passing all it would drop.
//! Needs root (loading BPF programs).

mod common;

use std::sync::atomic::{AtomicU16, Ordering};

use common::program::{XDP_DROP, XDP_PASS, case, load_with, run_frames, run_table};
use filter_common::{
    EVENT_MONITOR, EventAction, Note, QUIC_INITIALS_PER_FLOW, Reason,
    wire::{QUIC_V1, QUIC_V2},
};
use sni_filter::{
    filter::Filter,
    quic::{
        Matcher,
        worker::{Judge, Policy},
    },
};
use sni_filter_lab::hello::{ClientHelloBuilder, IpPair, UdpDatagram};
use sni_filter_lab::quic_craft::{crypto_frame, seal_client_initial};

const RULES: &str = r#"
[apps.tiktok]
action = "reject"
domains = ["tiktok.com"]

[apps.watch]
action = "monitor"
domains = ["watched.example"]
"#;

struct Rig {
    filter: Filter,
    judge: Judge,
    matcher: Matcher,
    policy: Policy,
}

fn rig(filter_section: &str) -> Rig {
    let (filter, config, set) = load_with("quic", &format!("[filter]\n{filter_section}\n{RULES}"));
    let mut judge = Judge::new(&filter).expect("QUIC maps open");
    judge.beat(true).expect("heartbeat");
    Rig {
        filter,
        judge,
        matcher: Matcher::new(&set).expect("matcher"),
        policy: Policy::of(&config),
    }
}

impl Rig {
    /// Runs frames; returns the last action and how much each reason rose.
    fn run(&self, frames: &[Vec<u8>]) -> (u32, Vec<(Reason, u64)>) {
        run_frames(&self.filter, frames)
    }

    fn judge(&mut self) -> Vec<Reason> {
        self.judge
            .drain(&self.matcher, self.policy)
            .iter()
            .map(|j| j.verdict.reason)
            .collect()
    }
}

/// A new client port per flow, so no verdict leaks from one check to another.
fn flow() -> UdpDatagram {
    static NEXT: AtomicU16 = AtomicU16::new(30000);
    UdpDatagram::new(
        IpPair::v4_example(),
        NEXT.fetch_add(1, Ordering::Relaxed),
        443,
    )
}

fn initial(name: &str, version: u32) -> Vec<u8> {
    let hello = ClientHelloBuilder::chrome(name).build();
    let dcid = [0x42; 8];
    seal_client_initial(version, &dcid, &dcid, 0, &crypto_frame(0, &hello), 1250)
}

/// A short-header (1-RTT) packet: what a connection sends once its handshake is done.
fn short_packet() -> Vec<u8> {
    let mut p = vec![0x43];
    p.extend_from_slice(&[0x17; 100]);
    p
}

#[test]
fn a_banned_name_blocks_the_flow_and_an_allowed_one_passes() {
    let mut r = rig("");
    for (version, name, reason, later) in [
        (QUIC_V1, "www.tiktok.com", Reason::HelloBlocked, XDP_DROP),
        (QUIC_V2, "m.tiktok.com", Reason::HelloBlocked, XDP_DROP),
        (QUIC_V1, "www.example.org", Reason::HelloAllowed, XDP_PASS),
        (QUIC_V1, "watched.example", Reason::HelloMonitored, XDP_PASS),
    ] {
        let f = flow();
        let (action, moved) = r.run(&[f.frame(&initial(name, version))]);
        assert_eq!(action, XDP_PASS, "{name}: an unjudged Initial passes");
        assert_eq!(moved, vec![(Reason::QuicInitialQueued, 1)], "{name}");
        assert_eq!(r.judge(), vec![reason], "{name}");
        let (action, moved) = r.run(&[f.frame(&short_packet())]);
        assert_eq!(action, later, "{name}: the flow's next packet");
        let want = if later == XDP_DROP {
            Reason::BlockedFlow
        } else {
            Reason::QuicNotInitial
        };
        assert_eq!(moved, vec![(want, 1)], "{name}");
        if later == XDP_PASS {
            // A retransmitted Initial of an allowed flow is not handed on again.
            let (action, moved) = r.run(&[f.frame(&initial(name, version))]);
            assert_eq!(
                (action, moved),
                (XDP_PASS, vec![(Reason::QuicFlowAllowed, 1)])
            );
            assert!(r.judge().is_empty());
        }
    }
}

#[test]
fn a_hello_over_two_initials_is_judged_when_complete() {
    let mut r = rig("");
    let hello = ClientHelloBuilder::chrome("www.tiktok.com")
        .post_quantum(true)
        .build();
    assert!(
        hello.len() > 1200,
        "a post-quantum hello spans two Initials"
    );
    let dcid = [7u8; 8];
    let (a, b) = hello.split_at(1000);
    let f = flow();
    let first = f.frame(&seal_client_initial(
        QUIC_V1,
        &dcid,
        &dcid,
        0,
        &crypto_frame(0, a),
        1250,
    ));
    let second = f.frame(&seal_client_initial(
        QUIC_V1,
        &dcid,
        &dcid,
        1,
        &crypto_frame(1000, b),
        1250,
    ));
    r.run(&[first]);
    assert!(r.judge().is_empty(), "half a hello is no verdict");
    r.run(&[second]);
    assert_eq!(r.judge(), vec![Reason::HelloBlocked]);
    assert_eq!(r.run(&[f.frame(&short_packet())]).0, XDP_DROP);
}

#[test]
fn the_program_sorts_quic_it_cannot_hand_on() {
    let r = rig("");
    let small = {
        let hello = ClientHelloBuilder::minimal("www.tiktok.com").build();
        let dcid = [1u8; 8];
        seal_client_initial(QUIC_V1, &dcid, &dcid, 0, &crypto_frame(0, &hello), 600)
    };
    let mut draft29 = initial("www.tiktok.com", QUIC_V1);
    draft29[1..5].copy_from_slice(&0xff00_001d_u32.to_be_bytes());
    let mut huge = initial("www.tiktok.com", QUIC_V1);
    huge.resize(3000, 0);
    let dns = UdpDatagram::new(IpPair::v4_example(), 5353, 53);
    let one = |reason| [(reason, 1)];
    let cases = vec![
        case(
            "an Initial under 1200 bytes",
            vec![flow().frame(&small)],
            XDP_PASS,
            &one(Reason::QuicInitialTooSmall),
        ),
        case(
            "QUIC draft-29",
            vec![flow().frame(&draft29)],
            XDP_DROP,
            &one(Reason::UninspectableQuicVersion),
        ),
        case(
            "an Initial above the copy size",
            vec![flow().frame(&huge)],
            XDP_DROP,
            &one(Reason::UninspectableQuicTooLarge),
        ),
        case(
            "a short-header packet",
            vec![flow().frame(&short_packet())],
            XDP_PASS,
            &one(Reason::QuicNotInitial),
        ),
        case(
            "DNS",
            vec![dns.frame(b"dns?")],
            XDP_PASS,
            &one(Reason::UdpPortNotInspected),
        ),
    ];
    run_table(cases, |_| &r.filter);
}

#[test]
fn initials_beyond_the_budget_of_a_flow_follow_the_uninspectable_policy() {
    let mut r = rig("uninspectable = \"pass\"");
    // Junk that looks like an Initial: never decrypted, so never judged.
    let mut junk = initial("www.tiktok.com", QUIC_V1);
    let n = junk.len();
    junk[n - 40..].fill(0xee);
    let f = flow();
    let frames: Vec<Vec<u8>> = (0..QUIC_INITIALS_PER_FLOW)
        .map(|_| f.frame(&junk))
        .collect();
    assert_eq!(
        r.run(&frames),
        (
            XDP_PASS,
            vec![(Reason::QuicInitialQueued, u64::from(QUIC_INITIALS_PER_FLOW))]
        )
    );
    assert!(r.judge().is_empty());
    assert_eq!(
        r.judge.stats.reassembly.unreadable,
        u64::from(QUIC_INITIALS_PER_FLOW)
    );
    assert_eq!(
        r.run(&[f.frame(&junk)]),
        (XDP_PASS, vec![(Reason::UninspectableQuicBudget, 1)])
    );
}

#[test]
fn without_a_live_daemon_quic_initials_are_dropped() {
    let mut r = rig("");
    r.judge.beat(false).unwrap();
    assert_eq!(
        r.run(&[flow().frame(&initial("www.example.org", QUIC_V1))]),
        (XDP_DROP, vec![(Reason::QuicDaemonAbsent, 1)])
    );
    assert!(r.judge().is_empty(), "nothing was handed on");
    r.judge.beat(true).unwrap();
    assert_eq!(
        r.run(&[flow().frame(&initial("www.example.org", QUIC_V1))])
            .0,
        XDP_PASS
    );
}

#[test]
fn monitor_mode_passes_what_it_would_drop_and_counts_the_same_reasons() {
    let monitor_passed = |r: &Rig| r.filter.notes().unwrap()[Note::MonitorPassed as usize];
    let mut r = rig("mode = \"monitor\"\nquic_hold = true");
    r.judge.beat(false).unwrap();
    let frame = |name| flow().frame(&initial(name, QUIC_V1));
    assert_eq!(
        r.run(&[frame("www.example.org")]),
        (XDP_PASS, vec![(Reason::QuicDaemonAbsent, 1)]),
        "no live daemon"
    );
    r.judge.beat(true).unwrap();
    let f = flow();
    assert_eq!(
        r.run(&[f.frame(&initial("www.tiktok.com", QUIC_V1))]),
        (XDP_PASS, vec![(Reason::QuicInitialHeld, 1)]),
        "held for its verdict"
    );
    let judged = r.judge.drain(&r.matcher, r.policy);
    let e = judged[0].event.expect("a blocked flow is logged");
    assert_eq!(
        (judged[0].verdict.reason, e.action, e.flags & EVENT_MONITOR),
        (Reason::HelloBlocked, EventAction::Drop as u8, EVENT_MONITOR),
        "the daemon's verdict is written and logged as a drop, marked monitor"
    );
    assert_eq!(
        r.run(&[f.frame(&short_packet())]),
        (XDP_PASS, vec![(Reason::BlockedFlow, 1)]),
        "a packet of the blocked flow"
    );
    assert_eq!(monitor_passed(&r), 3);
    let dropped = r
        .filter
        .counters()
        .unwrap()
        .iter()
        .map(|c| c.dropped)
        .sum::<u64>();
    assert_eq!(dropped, 0);
    let r = rig("mode = \"monitor\"\nquic = \"block\"");
    assert_eq!(
        r.run(&[frame("www.example.org")]),
        (XDP_PASS, vec![(Reason::QuicBlockedByPolicy, 1)])
    );
    assert_eq!(monitor_passed(&r), 1);
}

#[test]
fn hold_drops_initials_until_the_verdict_exists() {
    let mut r = rig("quic_hold = true");
    let f = flow();
    let frame = f.frame(&initial("www.example.org", QUIC_V1));
    assert_eq!(
        r.run(std::slice::from_ref(&frame)),
        (XDP_DROP, vec![(Reason::QuicInitialHeld, 1)])
    );
    assert_eq!(r.judge(), vec![Reason::HelloAllowed]);
    assert_eq!(
        r.run(&[frame]),
        (XDP_PASS, vec![(Reason::QuicFlowAllowed, 1)])
    );
}

#[test]
fn block_and_allow_policies_and_other_ports() {
    let r = rig("quic = \"block\"");
    assert_eq!(
        r.run(&[flow().frame(&initial("www.example.org", QUIC_V1))]),
        (XDP_DROP, vec![(Reason::QuicBlockedByPolicy, 1)])
    );
    let r = rig("quic = \"allow\"");
    assert_eq!(
        r.run(&[flow().frame(&initial("www.tiktok.com", QUIC_V1))]),
        (XDP_PASS, vec![(Reason::QuicNotInspected, 1)])
    );
    let r = rig("quic_ports = [8443]");
    assert_eq!(
        r.run(&[flow().frame(&initial("www.tiktok.com", QUIC_V1))]),
        (XDP_PASS, vec![(Reason::UdpPortNotInspected, 1)]),
        "443 is not inspected when quic_ports does not list it"
    );
    let on_8443 = UdpDatagram::new(IpPair::v4_example(), 41000, 8443);
    assert_eq!(
        r.run(&[on_8443.frame(&initial("www.tiktok.com", QUIC_V1))]),
        (XDP_PASS, vec![(Reason::QuicInitialQueued, 1)])
    );
}

fn sealed(name: &str, key_dcid: &[u8], dcid: &[u8], pn: u32) -> Vec<u8> {
    let hello = ClientHelloBuilder::chrome(name).build();
    seal_client_initial(QUIC_V1, key_dcid, dcid, pn, &crypto_frame(0, &hello), 1250)
}

#[test]
fn a_new_connection_on_the_ports_of_an_allowed_one_is_judged_afresh() {
    // Allowed sites share addresses with banned ones: a client that reuses its port for a
    // new connection must not inherit the verdict on the first.
    let mut r = rig("");
    let f = flow();
    r.run(&[f.frame(&sealed("www.example.org", &[1; 8], &[1; 8], 0))]);
    assert_eq!(r.judge(), vec![Reason::HelloAllowed]);
    let (action, moved) = r.run(&[f.frame(&sealed("www.tiktok.com", &[2; 8], &[2; 8], 0))]);
    assert_eq!(
        (action, moved),
        (XDP_PASS, vec![(Reason::QuicInitialQueued, 1)])
    );
    assert_eq!(r.judge(), vec![Reason::HelloBlocked]);
    assert_eq!(r.run(&[f.frame(&short_packet())]).0, XDP_DROP);
}

#[test]
fn the_allowed_connection_keeps_passing_under_the_servers_connection_id() {
    let mut r = rig("quic_hold = true");
    let f = flow();
    let client_cid = [3u8; 8];
    let server_cid = [4u8; 16];
    r.run(&[f.frame(&sealed("www.example.org", &client_cid, &client_cid, 0))]);
    assert_eq!(r.judge(), vec![Reason::HelloAllowed]);
    // The client's next Initial carries the server's ID, under the same keys: held once,
    // recognised by the daemon, then passed.
    let next = f.frame(&sealed("www.example.org", &client_cid, &server_cid, 1));
    assert_eq!(
        r.run(std::slice::from_ref(&next)),
        (XDP_DROP, vec![(Reason::QuicInitialHeld, 1)])
    );
    assert!(r.judge().is_empty(), "the same connection, no new verdict");
    assert_eq!(
        r.run(std::slice::from_ref(&next)),
        (XDP_PASS, vec![(Reason::QuicFlowAllowed, 1)])
    );
    // The first ID still passes too.
    assert_eq!(
        r.run(&[f.frame(&sealed("www.example.org", &client_cid, &client_cid, 2))])
            .0,
        XDP_PASS
    );
}

#[test]
fn connection_ids_of_every_length_are_compared_whole() {
    let mut r = rig("");
    for len in [0usize, 1, 7, 8, 9, 15, 16, 17, 20] {
        let f = flow();
        let client_cid = [5u8; 8];
        let server_cid: Vec<u8> = (1..=len as u8).collect();
        r.run(&[f.frame(&sealed("www.example.org", &client_cid, &client_cid, 0))]);
        assert_eq!(r.judge(), vec![Reason::HelloAllowed]);
        r.run(&[f.frame(&sealed("www.example.org", &client_cid, &server_cid, 1))]);
        assert!(r.judge().is_empty());
        let (_, moved) = r.run(&[f.frame(&sealed("www.example.org", &client_cid, &server_cid, 2))]);
        assert_eq!(moved, vec![(Reason::QuicFlowAllowed, 1)], "length {len}");
        // The same ID with its last byte changed, and one byte longer: other connections.
        let mut changed = server_cid.clone();
        if let Some(last) = changed.last_mut() {
            *last ^= 0x80;
            let (_, moved) = r.run(&[f.frame(&sealed("www.example.org", &changed, &changed, 0))]);
            assert_eq!(
                moved,
                vec![(Reason::QuicInitialQueued, 1)],
                "length {len}, changed"
            );
        }
        if len < 20 {
            let mut longer = server_cid.clone();
            longer.push(0);
            let (_, moved) = r.run(&[f.frame(&sealed("www.example.org", &longer, &longer, 0))]);
            assert_eq!(
                moved,
                vec![(Reason::QuicInitialQueued, 1)],
                "length {len}, longer"
            );
        }
        r.judge();
    }
}

/// Makes the allowed verdicts of `flow` look older than the first ID's window.
fn age_verdict(r: &Rig, f: &UdpDatagram) {
    use aya::maps::{HashMap, Map, MapData};
    let id = r.filter.map_id(filter_common::names::QUIC_FLOWS).unwrap();
    let map = Map::from_map_data(MapData::from_id(id).unwrap()).unwrap();
    let mut flows: HashMap<MapData, filter_common::FlowKey, filter_common::QuicFlow> =
        HashMap::try_from(map).unwrap();
    let key = flows
        .keys()
        .filter_map(Result::ok)
        .find(|k| k.sport == f.src_port && k.dport == f.dst_port)
        .expect("the flow's entry");
    let mut v = flows.get(&key, 0).unwrap();
    v.since_ns = 1;
    flows.insert(key, v, 0).unwrap();
}

#[test]
fn the_clients_first_id_passes_only_shortly_after_the_verdict() {
    // The client chooses its first ID: a client that reused it for a new connection later
    // must be judged again. The server's ID keeps its verdict.
    let mut r = rig("");
    let f = flow();
    let client_cid = [6u8; 8];
    let server_cid = [7u8; 12];
    r.run(&[f.frame(&sealed("www.example.org", &client_cid, &client_cid, 0))]);
    assert_eq!(r.judge(), vec![Reason::HelloAllowed]);
    let again = f.frame(&sealed("www.example.org", &client_cid, &client_cid, 1));
    assert_eq!(
        r.run(std::slice::from_ref(&again)).1,
        vec![(Reason::QuicFlowAllowed, 1)]
    );
    let under_server = f.frame(&sealed("www.example.org", &client_cid, &server_cid, 2));
    r.run(std::slice::from_ref(&under_server));
    assert!(r.judge().is_empty());
    age_verdict(&r, &f);
    assert_eq!(
        r.run(std::slice::from_ref(&under_server)).1,
        vec![(Reason::QuicFlowAllowed, 1)]
    );
    let reused = f.frame(&sealed("www.tiktok.com", &client_cid, &client_cid, 0));
    assert_eq!(r.run(&[reused]).1, vec![(Reason::QuicInitialQueued, 1)]);
    assert_eq!(r.judge(), vec![Reason::HelloBlocked]);
    assert_eq!(r.run(&[f.frame(&short_packet())]).0, XDP_DROP);
}

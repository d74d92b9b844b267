//! Group: end-to-end lab tests (network namespaces, real servers, clients and daemons; see
//! `filter-daemon/tests/README.md`).
//!
//! 802.1Q end to end: the client — gateway link carries its frames tagged with VLAN 42 (the
//! tag inside the frame, the senders' `txvlan` offload off), the filter is attached to the
//! gateway's veth that receives them, and the banned name still fails, the allowed one is
//! served over IPv4 and IPv6, and the interface's `vlan` column and the `vlan_tagged` note
//! count the tagged frames. Needs root.

mod common;

#[allow(clippy::wildcard_imports)]
use common::{lab::*, *};
use std::process::Stdio;
use std::thread;
use std::time::Duration;

use sni_filter_lab::{
    ChildGuard, CurlOpts, FetchOpts, Lab, LabOptions, Node, TlsClient, TlsServer, curl, fetch,
};

const VID: u16 = 42;
/// How long a client waits before a silently dropped flow counts as failed.
const PATIENCE: Duration = Duration::from_secs(2);
/// How long an allowed fetch may take (it ends as soon as it is served).
const GENEROUS: Duration = Duration::from_secs(8);

/// The link-level headers of a few frames of a TLS connection the client opens, read by
/// tcpdump at the gateway: the tag must be in the frames the filter sees.
fn frames_seen_by_the_gateway(lab: &Lab, opts: &CurlOpts) -> String {
    let tcpdump = ChildGuard::spawn(
        lab.exec(Node::Gateway, "timeout")
            .args(["3", "tcpdump", "-e", "-n", "-Q", "in", "-c", "3", "-i"])
            .arg(lab.gateway_client_if())
            .args(["vlan", &VID.to_string(), "and", "tcp", "port", "443"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null()),
    )
    .expect("tcpdump starts");
    thread::sleep(Duration::from_millis(500));
    assert!(curl(lab, ALLOWED, opts).unwrap().served());
    let out = tcpdump.wait_with_output().expect("tcpdump ends");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn tagged_frames_are_read_through_their_vlan_header() {
    let lab = Lab::with_options("vlan", &LabOptions::default().client_vlan(VID)).expect("lab");
    assert_eq!(lab.client_vlan(), Some(VID));
    let server = TlsServer::start(&lab, &[BANNED, ALLOWED]).expect("nginx");
    let seen = frames_seen_by_the_gateway(&lab, &CurlOpts::new(server.ca_path()));
    assert!(
        seen.lines().count() >= 3
            && seen
                .lines()
                .all(|l| l.contains("ethertype 802.1Q") && l.contains(&format!("vlan {VID},"))),
        "the client's frames do not arrive tagged at the gateway:\n{seen}"
    );
    let daemon = shipped_daemon(&lab);
    let ifname = lab.gateway_client_if();

    for ipv6 in [false, true] {
        let opts = CurlOpts::new(server.ca_path())
            .ipv6(ipv6)
            .max_time(PATIENCE);
        let before = daemon.status().unwrap();
        let blocked = curl(&lab, BANNED, &opts).unwrap();
        assert!(
            !blocked.served(),
            "ipv6={ipv6}: {BANNED} was served: {}",
            blocked.summary()
        );
        let allowed = curl(&lab, ALLOWED, &opts).unwrap();
        assert_served(&allowed, ALLOWED, &format!("ipv6={ipv6}"));
        // Chromium's two-segment hello, tagged.
        let chromium_opts = FetchOpts::new(server.ca_path()).ipv6(ipv6);
        let chromium = fetch(
            &lab,
            TlsClient::Chromium,
            BANNED,
            &chromium_opts.clone().timeout(PATIENCE),
        )
        .unwrap();
        assert!(!chromium.got_body(), "ipv6={ipv6}: {}", chromium.summary());
        let chromium = fetch(
            &lab,
            TlsClient::Chromium,
            ALLOWED,
            &chromium_opts.timeout(GENEROUS),
        )
        .unwrap();
        assert!(chromium.served(), "ipv6={ipv6}: {}", chromium.summary());

        let after = daemon.status().unwrap();
        let column =
            |name: &str| after.interface_count(ifname, name) - before.interface_count(ifname, name);
        let tagged = column("vlan");
        let frames = column("ipv4") + column("ipv6") + column("other");
        let family = column(if ipv6 { "ipv6" } else { "ipv4" });
        println!(
            "ipv6={ipv6}: frames +{frames} (this family +{family}), vlan +{tagged}, \
             vlan_tagged +{}",
            after.note("vlan_tagged") - before.note("vlan_tagged")
        );
        // Every frame the client sends is tagged, so every frame the program saw counts.
        assert!(
            family > 0 && tagged == frames,
            "ipv6={ipv6}: {frames} frames arrived, all tagged, but vlan moved by {tagged}:\n{}",
            after.text
        );
        assert!(
            after.note("vlan_tagged") > before.note("vlan_tagged"),
            "ipv6={ipv6}: the vlan_tagged note did not move:\n{}",
            after.text
        );
        for reason in ["hello_blocked", "hello_allowed"] {
            assert!(
                after.reason_packets(reason) >= before.reason_packets(reason) + 2,
                "ipv6={ipv6}: {reason} did not move for curl and chromium:\n{}",
                after.text
            );
        }
    }
    assert_never_served(&server, BANNED);
    println!("{}", daemon.status().unwrap().text);
    // Each blocked flow's record names the tag its frames carried.
    let (_, log) = daemon.stop().unwrap();
    let flows: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("event action=drop"))
        .collect();
    assert!(
        flows.len() >= 4 && flows.iter().all(|l| l.contains(&format!(" vlan={VID}"))),
        "blocked flows without vlan={VID}:\n{log}"
    );
}

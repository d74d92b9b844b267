//! Group: end-to-end lab tests (network namespaces, real servers, clients and daemons; see
//! `filter-daemon/tests/README.md`).
//!
//! QUIC end to end through a real gateway: the aioquic HTTP/3 server in the server
//! namespace, the real `sni-filter` daemon on the gateway with the shipped configuration,
//! and QUIC clients written by others (aioquic, quinn, headless Chromium forced onto QUIC,
//! whose hello spans two Initials) in the client namespace. Needs root.

mod common;

#[allow(clippy::wildcard_imports)]
use common::{lab::*, *};
use std::time::Duration;

use sni_filter_lab::{CurlOpts, Daemon, Lab, QuicClient, QuicServer, TlsServer, curl, quic_fetch};

const TIMEOUT: Duration = Duration::from_secs(5);

/// Requests the QUIC server answered for `host`.
fn quic_requests(server: &QuicServer, host: &str) -> usize {
    server.requests().iter().filter(|r| r.host == host).count()
}

/// Every client: the banned name fails, the allowed one completes a request.
fn check_clients(lab: &Lab, server: &QuicServer, clients: &[QuicClient], context: &str) {
    for &client in clients {
        let banned = quic_fetch(lab, client, BANNED, server, false, TIMEOUT).unwrap();
        assert!(
            !banned.served(),
            "{context}: {BANNED} was served over QUIC to {}: {}",
            client.name(),
            banned.summary()
        );
        let allowed = quic_fetch(lab, client, ALLOWED, server, false, TIMEOUT).unwrap();
        assert!(
            allowed.served(),
            "{context}: {ALLOWED} over QUIC to {}: {}\n--- server log\n{}",
            client.name(),
            allowed.summary(),
            server.log()
        );
    }
    assert_eq!(
        quic_requests(server, BANNED),
        0,
        "{context}: {}",
        server.log()
    );
}

#[test]
fn over_quic_banned_names_fail_and_allowed_names_complete() {
    let lab = Lab::new("qgw").expect("lab");
    let server = QuicServer::start(&lab, &[BANNED, ALLOWED], false).expect("QUIC server");
    // Without the filter both names are served: the lab itself is not what blocks.
    let baseline = quic_fetch(&lab, QuicClient::Quinn, BANNED, &server, false, TIMEOUT).unwrap();
    assert!(baseline.served(), "baseline: {}", baseline.summary());
    let banned_baseline = quic_requests(&server, BANNED);
    let daemon = shipped_daemon(&lab);
    let before = daemon.status().unwrap();
    for &client in &QuicClient::ALL {
        let banned = quic_fetch(&lab, client, BANNED, &server, false, TIMEOUT).unwrap();
        assert!(!banned.served(), "{}: {}", client.name(), banned.summary());
        let allowed = quic_fetch(&lab, client, ALLOWED, &server, false, TIMEOUT).unwrap();
        assert!(allowed.served(), "{}: {}", client.name(), allowed.summary());
    }
    // IPv6 too.
    let banned6 = quic_fetch(&lab, QuicClient::Aioquic, BANNED, &server, true, TIMEOUT).unwrap();
    assert!(!banned6.served(), "IPv6: {}", banned6.summary());
    let allowed6 = quic_fetch(&lab, QuicClient::Aioquic, ALLOWED, &server, true, TIMEOUT).unwrap();
    assert!(allowed6.served(), "IPv6: {}", allowed6.summary());

    assert_eq!(
        quic_requests(&server, BANNED),
        banned_baseline,
        "{}",
        server.log()
    );
    let after = daemon.status().unwrap();
    assert!(moved(&before, &after, "quic_initial_queued") >= 8);
    assert!(moved(&before, &after, "blocked_flow") >= 1);
    assert!(
        moved(&before, &after, "quic_flow_allowed") + moved(&before, &after, "quic_not_initial")
            >= 1
    );
    let log = daemon.log();
    let flows: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("transport=quic") && l.contains("reason=hello_blocked"))
        .collect();
    // One record per blocked connection: three clients and IPv6 (a client may retry).
    assert!(flows.len() >= 4, "QUIC flow records:\n{log}");
    assert!(
        flows
            .iter()
            .all(|l| l.contains(&format!("sni={BANNED}")) && l.contains("app=tiktok"))
    );
}

#[test]
fn after_a_retry_the_verdict_still_holds() {
    let lab = Lab::new("qrt").expect("lab");
    let server = QuicServer::start(&lab, &[BANNED, ALLOWED], true).expect("QUIC server");
    let _daemon = shipped_daemon(&lab);
    check_clients(&lab, &server, &QuicClient::ALL, "with Retry");
    assert!(
        server.requests().iter().all(|r| r.retried),
        "every connection went through a Retry: {}",
        server.log()
    );
}

#[test]
fn with_the_daemon_killed_quic_is_dropped_and_tcp_is_still_judged() {
    let lab = Lab::new("qkl").expect("lab");
    let quic = QuicServer::start(&lab, &[BANNED, ALLOWED], false).expect("QUIC server");
    let tls = TlsServer::start(&lab, &[BANNED, ALLOWED]).expect("nginx");
    let mut daemon = shipped_daemon(&lab);
    check_clients(&lab, &quic, &[QuicClient::Quinn], "daemon alive");
    daemon.kill().unwrap();
    // The heartbeat goes stale within 3 s.
    std::thread::sleep(Duration::from_millis(3500));
    let before = daemon.status().unwrap();
    for client in [QuicClient::Quinn, QuicClient::Aioquic] {
        let run = quic_fetch(&lab, client, ALLOWED, &quic, false, TIMEOUT).unwrap();
        assert!(
            !run.served(),
            "QUIC passed with no daemon to judge it: {}",
            run.summary()
        );
    }
    let after = daemon.status().unwrap();
    assert!(moved(&before, &after, "quic_daemon_absent") >= 2);
    // TCP, where clients fall back, is judged by the program alone.
    let opts = CurlOpts::new(tls.ca_path()).max_time(Duration::from_secs(3));
    assert!(!curl(&lab, BANNED, &opts).unwrap().served());
    assert_served(&curl(&lab, ALLOWED, &opts).unwrap(), ALLOWED, "no daemon:");
    assert_never_served(&tls, BANNED);
}

#[test]
fn with_hold_initials_wait_for_the_verdict_and_allowed_names_still_complete() {
    let lab = Lab::new("qhd").expect("lab");
    let server = QuicServer::start(&lab, &[BANNED, ALLOWED], false).expect("QUIC server");
    let dir = tempfile::tempdir().unwrap();
    let config = config_copy(dir.path(), ("quic_hold = false", "quic_hold = true"));
    let daemon = Daemon::start(&lab, &bin(), &config, Vec::<String>::new()).expect("daemon");
    let before = daemon.status().unwrap();
    check_clients(
        &lab,
        &server,
        &[QuicClient::Quinn, QuicClient::Aioquic],
        "hold",
    );
    let after = daemon.status().unwrap();
    // Each connection's first Initial waited; the retransmission found the verdict.
    assert!(moved(&before, &after, "quic_initial_held") >= 4);
    assert_eq!(moved(&before, &after, "quic_initial_queued"), 0);
}

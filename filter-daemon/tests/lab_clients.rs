//! Group: end-to-end lab tests (network namespaces, real servers, clients and daemons; see
//! `filter-daemon/tests/README.md`).
//!
//! End to end with the TLS clients people use, each written by others: curl, `openssl
//! s_client`, `gnutls-cli`, Python's `ssl` and headless Chromium (whose post-quantum hello
//! takes two TCP segments), over IPv4 and IPv6, through the real daemon on the lab's
//! gateway. Each client must fail on the banned name, complete the handshake with a
//! certificate valid for the allowed name and get its body, and move the counters. Needs
//! root and the lab's Debian packages (`cargo xtask setup`).

mod common;

#[allow(clippy::wildcard_imports)]
use common::{lab::*, *};
use std::time::{Duration, Instant};

use sni_filter_lab::{CurlOpts, FetchOpts, Lab, TlsClient, TlsServer, curl, fetch, response_body};

/// How long a client waits before a silently dropped flow counts as failed.
const PATIENCE: Duration = Duration::from_secs(2);
/// How long an allowed fetch may take (it ends as soon as it is served): two Chromiums
/// starting at once on a small machine are slow.
const GENEROUS: Duration = Duration::from_secs(8);

fn check_clients(ipv6: bool) {
    let started = Instant::now();
    let lab = Lab::new(if ipv6 { "cli6" } else { "cli4" }).expect("lab");
    let server = TlsServer::start(&lab, &[BANNED, ALLOWED]).expect("nginx");
    let opts = FetchOpts::new(server.ca_path())
        .ipv6(ipv6)
        .timeout(PATIENCE);
    let allowed_opts = opts.clone().timeout(GENEROUS);
    let curl_opts = CurlOpts::new(server.ca_path())
        .ipv6(ipv6)
        .max_time(PATIENCE);

    // Without the filter every client reaches the banned name: the lab is not what blocks.
    for client in TlsClient::ALL {
        let run = fetch(&lab, client, BANNED, &allowed_opts).expect("client starts");
        assert!(run.served(), "baseline: {}", run.summary());
    }
    assert!(curl(&lab, BANNED, &curl_opts).unwrap().served());
    let baseline_banned = requests_for(&server, BANNED);

    let daemon = shipped_daemon(&lab);

    // curl first, as the reference every other client is compared with.
    let before = daemon.status().unwrap();
    let blocked = curl(&lab, BANNED, &curl_opts).unwrap();
    assert!(!blocked.served(), "curl {BANNED}: {}", blocked.summary());
    let allowed = curl(&lab, ALLOWED, &curl_opts).unwrap();
    assert_eq!(
        allowed.http_status,
        Some(200),
        "curl {ALLOWED}: {}",
        allowed.summary()
    );
    assert_eq!(allowed.body, response_body(ALLOWED));
    let after = daemon.status().unwrap();
    assert_moved(&before, &after, "hello_blocked", "curl");
    assert_moved(&before, &after, "hello_allowed", "curl");

    for client in TlsClient::ALL {
        let before = daemon.status().unwrap();
        let blocked = fetch(&lab, client, BANNED, &opts).expect("client starts");
        assert!(
            !blocked.served() && !blocked.got_body() && !blocked.verified,
            "{BANNED} got through the filter: {}",
            blocked.summary()
        );
        let allowed = fetch(&lab, client, ALLOWED, &allowed_opts).expect("client starts");
        assert!(allowed.served(), "{ALLOWED}: {}", allowed.summary());
        let after = daemon.status().unwrap();
        println!(
            "{client:<16} ipv6={ipv6:<5} {BANNED}: failed in {:.2} s; {ALLOWED}: served in {:.2} s",
            blocked.elapsed.as_secs_f64(),
            allowed.elapsed.as_secs_f64()
        );
        assert_moved(&before, &after, "hello_blocked", &format!("{client}"));
        assert_moved(&before, &after, "hello_allowed", &format!("{client}"));
        assert!(
            after.app_count("tiktok", "flows") > before.app_count("tiktok", "flows"),
            "{client}: the app's flows did not move:\n{}",
            after.text
        );
        if client == TlsClient::Chromium {
            // Its ~1.8 KB hello arrives as two segments: the program must have carried the
            // first over to the second to read the name.
            let later =
                after.note("sni_from_later_segment") - before.note("sni_from_later_segment");
            let incomplete = moved(&before, &after, "hello_incomplete");
            assert!(
                later >= 1 || incomplete >= 1,
                "chromium's hello was not reassembled (sni_from_later_segment and \
                 hello_incomplete did not move):\n{}",
                after.text
            );
            println!("chromium: hello_incomplete +{incomplete}, sni_from_later_segment +{later}");
        }
    }
    // No request for the banned name reached the server through the filter.
    assert_eq!(
        requests_for(&server, BANNED),
        baseline_banned,
        "{}",
        server.access_log()
    );
    println!("{}", daemon.status().unwrap().text);
    println!(
        "clients ipv6={ipv6}: {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

#[test]
fn every_client_fails_on_the_banned_name_and_gets_the_allowed_one_over_ipv4() {
    check_clients(false);
}

#[test]
fn every_client_fails_on_the_banned_name_and_gets_the_allowed_one_over_ipv6() {
    check_clients(true);
}

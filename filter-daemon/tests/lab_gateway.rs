//! Group: end-to-end lab tests (network namespaces, real servers, clients and daemons; see
//! `filter-daemon/tests/README.md`).
//!
//! End to end through a real gateway: client, gateway and server namespaces, nginx serving
//! both names, the real `sni-filter` daemon attached to the gateway's client-facing
//! interface, and curl as the client. Needs root.

mod common;

#[allow(clippy::wildcard_imports)]
use common::{lab::*, *};
use std::time::Duration;

use sni_filter_lab::{CurlOpts, Daemon, Lab, TlsServer, curl, response_body};

/// `sni-filter status` of the lab's daemon, as text.
fn status(daemon: &Daemon) -> String {
    let out = daemon.command(["status"]).output().expect("status runs");
    assert!(
        out.status.success(),
        "status failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The packets column of a reason's row in `status`.
fn packets(status: &str, reason: &str) -> u64 {
    status
        .lines()
        .find(|l| l.split_whitespace().next() == Some(reason))
        .and_then(|l| l.split_whitespace().nth(1))
        .map_or(0, |n| n.parse().expect("packets is a number"))
}

fn check_gateway(ipv6: bool) {
    let lab = Lab::new("e2e").expect("lab");
    let server = TlsServer::start(&lab, &[BANNED, ALLOWED]).expect("nginx");
    let opts = CurlOpts::new(server.ca_path())
        .ipv6(ipv6)
        .max_time(Duration::from_secs(3));
    // Without the filter both names are served: the lab itself is not what blocks.
    assert!(
        curl(&lab, BANNED, &opts).unwrap().served(),
        "baseline: {BANNED} must be served"
    );

    let banned_requests = || {
        server
            .access_log()
            .matches(&format!("sni={BANNED}"))
            .count()
    };
    let baseline_requests = banned_requests();
    let daemon = shipped_daemon(&lab);
    let before = packets(&status(&daemon), "hello_blocked");

    let blocked = curl(&lab, BANNED, &opts).unwrap();
    assert!(
        !blocked.served(),
        "{BANNED} was served through the filter: {}",
        blocked.summary()
    );
    let allowed = curl(&lab, ALLOWED, &opts).unwrap();
    assert_eq!(
        allowed.http_status,
        Some(200),
        "{ALLOWED}: {}",
        allowed.summary()
    );
    assert_eq!(allowed.body, response_body(ALLOWED));

    let after = status(&daemon);
    assert!(
        packets(&after, "hello_blocked") > before,
        "hello_blocked did not move:\n{after}"
    );
    assert!(
        packets(&after, "hello_allowed") >= 1,
        "hello_allowed did not move:\n{after}"
    );
    // The server never completed a handshake for the banned name through the filter.
    assert_eq!(
        banned_requests(),
        baseline_requests,
        "{}",
        server.access_log()
    );
    println!("{after}");
}

#[test]
fn banned_name_fails_and_allowed_name_is_served_over_ipv4() {
    check_gateway(false);
}

#[test]
fn banned_name_fails_and_allowed_name_is_served_over_ipv6() {
    check_gateway(true);
}

/// Waits up to 10 s for the daemon's log to contain `text`.
fn wait_for_log(daemon: &Daemon, text: &str) -> bool {
    for _ in 0..100 {
        if daemon.log().contains(text) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

#[test]
fn flows_lists_the_blocked_flow_and_a_bad_reload_keeps_the_rules() {
    let lab = Lab::new("ops").expect("lab");
    let server = TlsServer::start(&lab, &[BANNED, ALLOWED]).expect("nginx");
    let opts = CurlOpts::new(server.ca_path()).max_time(Duration::from_secs(2));
    // A copy of the shipped configuration, to break it.
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("lists")).unwrap();
    let shipped = repo_config();
    let config_dir = shipped.parent().unwrap();
    for f in ["lists/tiktok.txt", "lists/bytedance.txt"] {
        std::fs::copy(config_dir.join(f), dir.path().join(f)).unwrap();
    }
    let config = dir.path().join("filter.toml");
    std::fs::copy(&shipped, &config).unwrap();
    let daemon =
        Daemon::start(&lab, &bin(), &config, Vec::<String>::new()).expect("daemon attaches");

    assert!(!curl(&lab, BANNED, &opts).unwrap().served());
    let out = daemon.command(["flows"]).output().unwrap();
    let flows = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        flows.contains(&format!("{}:443", lab.server_addr(false))) && flows.contains("tiktok"),
        "{flows}"
    );
    assert!(flows.contains("1 blocked flows"), "{flows}");

    // An invalid configuration is refused with its file and line; the rules stay in force.
    // `reload` says so too, and exits 78 (EX_CONFIG).
    std::fs::write(&config, "[filter]\nxdp_mdoe = \"native\"\n").unwrap();
    let out = daemon.command(["reload"]).output().unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{said}");
    assert!(said.contains("filter.toml:2"), "{said}");
    assert!(
        wait_for_log(&daemon, "filter.toml:2"),
        "no refusal naming the line:\n{}",
        daemon.log()
    );
    assert!(
        !curl(&lab, BANNED, &opts).unwrap().served(),
        "the rules were lost on a bad reload"
    );
    assert_eq!(curl(&lab, ALLOWED, &opts).unwrap().http_status, Some(200));
}

#[test]
fn another_xdp_program_on_the_interface_is_never_replaced() {
    let lab = Lab::new("busy").expect("lab");
    let iface = lab.gateway_client_if().to_string();
    let gateway = |args: &[&str]| {
        lab.exec(sni_filter_lab::Node::Gateway, bin())
            .args(args)
            .output()
            .unwrap()
    };
    // With nothing attached, doctor finds no failure.
    let clean = gateway(&["doctor", &iface]);
    assert!(
        clean.status.success(),
        "{}",
        String::from_utf8_lossy(&clean.stdout)
    );
    // Someone else's XDP program on the interface: doctor fails, and run refuses to start.
    let _foreign = sni_filter_lab::attach_xdp_pass(lab.gateway_ns(), &iface)
        .expect("a foreign program attaches");
    let busy = gateway(&["doctor", &iface]);
    let text = String::from_utf8_lossy(&busy.stdout);
    assert!(
        !busy.status.success() && text.contains("lab_xdp_pass") && text.contains("never replaces"),
        "{text}"
    );
    let config = repo_config();
    let run = gateway(&[
        "--instance",
        "busy-test",
        "run",
        "--config",
        config.to_str().unwrap(),
        "--interface",
        &iface,
    ]);
    let err = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(1), "{err}");
    assert!(err.contains("never replaces another program"), "{err}");
}

//! Group: end-to-end lab tests (network namespaces, real servers, clients and daemons; see
//! `filter-daemon/tests/README.md`).
//!
//! Events to the centre with the shipped rsyslog snippets (`config/rsyslog/`): the real
//! daemon on the gateway sends to the gateway's own rsyslog (`gateway.conf`: a RELP
//! forwarder with a disk-assisted queue), which relays to a central rsyslog (`central.conf`:
//! `imrelp`, one file per host) in the server namespace. The central server is stopped for
//! [`OUTAGE`] while banned clients make blocked flows; once the centre is back, every FLOW
//! record the gateway counted must be in the central file. (Restarting the gateway's
//! rsyslog during the outage is not part of it: see the limit in `gateway.conf`.) Needs
//! root and Debian's rsyslog-relp.

#[path = "common/mod.rs"]
mod common;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};
use std::{fs, thread};

use common::fleet::{RELAY_PORT, central, central_files, central_flow_lines, gateway_relay, param};
use common::{BANNED, bin, lab::metric, lab::scrape};
use sni_filter_lab::{CurlOpts, Daemon, Lab, TlsServer, curl};

/// How long the central syslog server is away: the outage the fleet must ride out.
const OUTAGE: Duration = Duration::from_mins(1);
/// Blocked flows made while the centre is away.
const FLOWS_IN_OUTAGE: u32 = 20;
/// An enterprise number other than the default, to see it kept all the way to the centre.
const ENTERPRISE: u32 = 64_999;
/// How long records may take to reach the centre once it is back: omrelp retries every
/// `action.resumeInterval` (10 s in the snippet), less often as the outage lasts.
const CATCH_UP: Duration = Duration::from_secs(90);

/// The clients (`ADDRESS:PORT`) of the FLOW records received at the centre.
fn central_flows(dir: &Path) -> BTreeSet<String> {
    central_flow_lines(dir)
        .iter()
        .map(|l| {
            format!(
                "{}:{}",
                param(l, "client").unwrap(),
                param(l, "client_port").unwrap()
            )
        })
        .collect()
}

/// The clients (`ADDRESS:PORT`) of the flow events the daemon wrote on stderr.
fn logged_flows(daemon: &Daemon) -> BTreeSet<String> {
    daemon
        .log()
        .lines()
        .filter(|l| l.contains("sni-filter: event action=drop"))
        .map(|l| {
            let client = l.split(' ').find_map(|w| w.strip_prefix("client="));
            client
                .unwrap_or_else(|| panic!("no client in {l}"))
                .to_owned()
        })
        .collect()
}

fn blocked_flow(lab: &Lab, server: &TlsServer) {
    let opts = CurlOpts::new(server.ca_path()).max_time(Duration::from_secs(1));
    let out = curl(lab, BANNED, &opts).unwrap();
    assert!(!out.served(), "{BANNED} was served: {}", out.summary());
}

/// Waits until the centre holds every flow of `want`, and returns what it holds.
fn wait_at_centre(dir: &Path, want: &BTreeSet<String>, within: Duration) -> BTreeSet<String> {
    let deadline = Instant::now() + within;
    loop {
        let got = central_flows(dir);
        if got.is_superset(want) || Instant::now() > deadline {
            return got;
        }
        thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn no_flow_record_is_lost_while_the_central_syslog_server_is_away() {
    let lab = Lab::new("fleet").unwrap();
    let server = TlsServer::start(&lab, &[BANNED]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let centre_dir = dir.path().join("centre");
    let mut centre = central(&lab, &centre_dir);
    let relay = gateway_relay(&lab, lab.server_v4(), &dir.path().join("relay"));
    let metrics = SocketAddr::from(([127, 0, 0, 1], 9464));
    let config = dir.path().join("filter.toml");
    fs::write(
        &config,
        format!(
            "[filter]\nsummary_interval_secs = 5\n\n\
             [apps.tiktok]\naction = \"drop\"\ndomains = [\"tiktok.com\"]\n\n\
             [logging]\ndestination = \"tcp://127.0.0.1:{RELAY_PORT}\"\n\
             client_privacy = \"full\"\nsd_enterprise_number = {ENTERPRISE}\n\n\
             [metrics]\nlisten = \"{metrics}\"\n"
        ),
    )
    .unwrap();
    let mut daemon = Daemon::start(&lab, &bin(), &config, Vec::<String>::new()).unwrap();

    // The path works: a first blocked flow reaches the centre.
    blocked_flow(&lab, &server);
    let first = logged_flows(&daemon);
    assert_eq!(first.len(), 1, "{}", daemon.log());
    let got = wait_at_centre(&centre_dir, &first, Duration::from_secs(30));
    assert!(
        got.is_superset(&first),
        "the first flow did not reach the centre: {got:?}\n--- relay:\n{}\n--- centre:\n{}",
        relay.console(),
        centre.console()
    );

    // The centre goes away; banned clients keep coming.
    let outage = Instant::now();
    assert!(centre.stop().unwrap().is_some_and(|s| s.success()));
    for _ in 0..FLOWS_IN_OUTAGE {
        blocked_flow(&lab, &server);
    }
    let expected = 1 + FLOWS_IN_OUTAGE;
    let deadline = Instant::now() + Duration::from_secs(10);
    while logged_flows(&daemon).len() < usize::try_from(expected).unwrap() {
        assert!(Instant::now() < deadline, "{}", daemon.log());
        thread::sleep(Duration::from_millis(100));
    }
    // None of them is at the centre yet: the outage is real.
    assert_eq!(central_flows(&centre_dir).len(), 1);
    let left = OUTAGE.saturating_sub(outage.elapsed());
    assert!(
        left > Duration::ZERO,
        "the flows took longer than the outage"
    );
    thread::sleep(left);
    centre.restart(&lab).unwrap();
    let back = Instant::now();

    // Every flow the gateway counted arrives (duplicates allowed, none lost).
    let logged = logged_flows(&daemon);
    assert_eq!(
        logged.len(),
        usize::try_from(expected).unwrap(),
        "{}",
        daemon.log()
    );
    let got = wait_at_centre(&centre_dir, &logged, CATCH_UP);
    let missing: Vec<_> = logged.difference(&got).collect();
    assert!(
        missing.is_empty(),
        "{} of {expected} flows missing at the centre after {CATCH_UP:?}: {missing:?}\n\
         --- relay:\n{}\n--- centre:\n{}",
        missing.len(),
        relay.console(),
        centre.console()
    );
    println!(
        "{expected} flows, {FLOWS_IN_OUTAGE} made during a {OUTAGE:?} outage: all at the \
         centre {:.1} s after it came back",
        back.elapsed().as_secs_f64()
    );

    // The daemon's own count agrees: each flow logged once, nothing dropped on the way to
    // the relay, and `status` counted the same flows.
    let text = scrape(&lab, metrics);
    assert_eq!(
        metric(&text, "sni_filter_events_logged_total"),
        Some(f64::from(expected)),
        "{text}"
    );
    assert_eq!(
        metric(&text, "sni_filter_syslog_dropped_total"),
        Some(0.0),
        "{text}"
    );
    let status = daemon.status().unwrap();
    let tiktok = status.apps.iter().find(|a| a.key == "tiktok").unwrap();
    assert_eq!(tiktok.count("flows"), u64::from(expected), "{status:?}");

    check_central_file(&centre_dir, daemon.pid());
    assert!(daemon.running());
}

/// One file per host at the centre, each FLOW line RFC 5424 as the daemon (`pid`) wrote it,
/// under the configured enterprise number.
fn check_central_file(dir: &Path, pid: u32) {
    let files = central_files(dir);
    assert_eq!(
        files.len(),
        1,
        "{:?}",
        files.iter().map(|f| &f.0).collect::<Vec<_>>()
    );
    let (name, lines) = &files[0];
    let host = lines[0].split(' ').nth(2).unwrap();
    assert_eq!(name, &format!("{host}.log"));
    for l in lines.iter().filter(|l| l.contains(" FLOW [")) {
        assert!(l.starts_with("<29>1 "), "{l}");
        assert!(
            l.contains(&format!(" sni-filter {pid} FLOW [sni-filter@{ENTERPRISE} ")),
            "{l}"
        );
        assert_eq!(param(l, "sni"), Some(BANNED), "{l}");
    }
}

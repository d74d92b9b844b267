//! Group: end-to-end lab tests (network namespaces, real servers, clients and daemons; see
//! `filter-daemon/tests/README.md`).
//!
//! The daemon's syslog output as a real syslog server receives it: rsyslog in the lab's
//! server namespace (UDP, TCP and TLS listeners writing each message raw to a file), the real
//! `sni-filter` daemon on the gateway sending to it, and a blocked flow made by curl. Every
//! received line must parse as RFC 5424 with the expected MSGIDs and structured data. Needs
//! root.
//!
//! This file holds the lab tests; the RFC 5424 parser is in `rfc5424.rs`, rsyslog and its
//! certificates in `rsyslog.rs`, the checks of what arrived in `checks.rs`.

#[path = "../common/mod.rs"]
mod common;

mod checks;
mod rfc5424;
mod rsyslog;

use std::{
    fs,
    net::SocketAddr,
    path::{Path, PathBuf},
    thread,
    time::{Duration, Instant, SystemTime},
};

use sni_filter::syslog::rfc3339;
use sni_filter_lab::{CurlOpts, Daemon, Lab, Listen, TlsServer, curl};

use checks::{
    by_msgid, check_flow, check_metrics, check_summaries, flow_of, lifecycle, status_packets,
};
use common::{BANNED, bin};
use rsyslog::{Rsyslog, issue_certificates};

/// A configuration blocking tiktok.com, summarising every second, sending to `destination`.
fn write_config(dir: &Path, logging: &str, more: &str) -> PathBuf {
    let path = dir.join("filter.toml");
    fs::write(
        &path,
        format!(
            "[filter]\nsummary_interval_secs = 1\n\n\
             [apps.tiktok]\naction = \"drop\"\ndomains = [\"tiktok.com\"]\n\n\
             [logging]\n{logging}\n{more}"
        ),
    )
    .unwrap();
    path
}

/// curl to the banned name, which the filter drops: one blocked flow and its event.
fn blocked_flow(lab: &Lab, server: &TlsServer) {
    let opts = CurlOpts::new(server.ca_path()).max_time(Duration::from_secs(1));
    let out = curl(lab, BANNED, &opts).unwrap();
    assert!(!out.served(), "{BANNED} was served: {}", out.summary());
}

#[test]
fn udp_carries_lifecycle_flows_and_summaries_with_clients_truncated() {
    let lab = Lab::new("slu").unwrap();
    let server = TlsServer::start(&lab, &[BANNED]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let rsyslog = Rsyslog::start(&lab, dir.path(), &Listen::Plain(5514));
    let metrics: SocketAddr = "127.0.0.1:9464".parse().unwrap();
    let config = write_config(
        dir.path(),
        &format!("destination = \"udp://{}:5514\"", lab.server_v4()),
        &format!("[metrics]\nlisten = \"{metrics}\"\n"),
    );
    let daemon = Daemon::start(&lab, &bin(), &config, Vec::<String>::new()).unwrap();
    let before_flow = rfc3339(SystemTime::now());
    blocked_flow(&lab, &server);

    let msgs = rsyslog.wait_for("blocked flow and its app summary", &daemon, |m| {
        flow_of(m).is_some()
            && by_msgid(m, "APP_SUMMARY")
                .iter()
                .any(|a| a.own("flows_total").is_some_and(|n| n != "0"))
    });
    for event in ["attached", "started"] {
        assert!(lifecycle(&msgs, event).is_some(), "no LIFECYCLE {event}");
    }
    let started = lifecycle(&msgs, "started").unwrap();
    assert_eq!(started.own("client_privacy"), Some("truncated"));
    assert_eq!(started.own("rules"), Some("1"));
    // The verifier's work on this kernel, within the bound, for both programs.
    for program in ["sni_filter", "sni_judge"] {
        let n: u32 = started
            .own(&format!("verified_insns_{program}"))
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no verified_insns_{program} in {started:?}"));
        assert!((1..=200_000).contains(&n), "{program}: {n}");
    }

    let flow = flow_of(&msgs).unwrap();
    check_flow(flow, &lab);
    // The program's monotonic timestamp became wall-clock time: between the curl and now
    // (RFC 3339 UTC strings of one width sort in time order).
    let now = rfc3339(SystemTime::now());
    assert!(
        before_flow <= flow.timestamp && flow.timestamp <= now,
        "{before_flow} <= {} <= {now}",
        flow.timestamp
    );
    // Truncated by default: the client's /24, no port.
    let net = format!("10.{}.1.0/24", lab.client_v4().octets()[1]);
    assert_eq!(flow.own("client"), Some(net.as_str()), "{flow:?}");
    assert_eq!(flow.own("client_port"), None, "{flow:?}");
    let client = lab.client_v4().to_string();
    assert!(
        !rsyslog.lines().iter().any(|l| l.contains(&client)),
        "the client's full address {client} reached syslog"
    );

    check_summaries(&msgs);
    check_metrics(&lab, metrics);

    // Stopping is reported too.
    let (status, log) = daemon.stop().unwrap();
    assert!(status.success(), "{log}");
    let deadline = Instant::now() + Duration::from_secs(5);
    while lifecycle(&rsyslog.messages(), "left_attached").is_none() {
        assert!(
            Instant::now() < deadline,
            "no LIFECYCLE left_attached:\n{}",
            rsyslog.lines().join("\n")
        );
        thread::sleep(Duration::from_millis(100));
    }
    let msgs = rsyslog.messages();
    assert!(lifecycle(&msgs, "stopping").is_some());
    println!("{}", rsyslog.lines().join("\n"));
    // Stderr keeps its lines.
    assert!(log.contains("sni-filter: summary: "), "{log}");
    assert!(
        log.contains("sni-filter: event action=drop app=tiktok"),
        "{log}"
    );
}

#[test]
fn tcp_sink_down_at_start_reconnects_and_reports_the_gap() {
    let lab = Lab::new("slt").unwrap();
    let server = TlsServer::start(&lab, &[BANNED]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    // Nothing listens yet.
    let config = write_config(
        dir.path(),
        &format!(
            "destination = \"tcp://{}:5515\"\nclient_privacy = \"hashed\"",
            lab.server_v4()
        ),
        "",
    );
    let mut daemon = Daemon::start(&lab, &bin(), &config, Vec::<String>::new()).unwrap();
    // The filter works and counts while its syslog server is away.
    blocked_flow(&lab, &server);
    assert!(daemon.running(), "{}", daemon.log());
    assert!(status_packets(&daemon, "hello_blocked") >= 1);
    assert!(
        daemon.log().contains(&format!(
            "syslog tcp://{}:5515: cannot connect",
            lab.server_v4()
        )),
        "{}",
        daemon.log()
    );

    let rsyslog = Rsyslog::start(&lab, dir.path(), &Listen::Plain(5515));
    let msgs = rsyslog.wait_for("the queued flow after reconnecting", &daemon, |m| {
        flow_of(m).is_some() && lifecycle(m, "started").is_some()
    });
    // The first message on the new connection reports the gap.
    let sink = &msgs[0];
    assert_eq!(sink.msgid, "SINK", "{msgs:?}");
    assert_eq!(sink.own("event"), Some("reconnected"));
    assert_eq!(
        sink.own("destination"),
        Some(format!("tcp://{}:5515", lab.server_v4()).as_str())
    );
    let down: f64 = sink.own("down_secs").unwrap().parse().unwrap();
    assert!(down > 0.0, "{sink:?}");
    assert!(sink.own("error").unwrap().contains("refused"), "{sink:?}");
    // Nothing was dropped: the queue held everything from the outage.
    assert_eq!(sink.number("dropped_total"), 0, "{sink:?}");
    // What was logged during the outage arrives, in order, after the report.
    let started = msgs.iter().position(|m| m.own("event") == Some("started"));
    let flow = msgs.iter().position(|m| m.msgid == "FLOW");
    assert!(started < flow, "{msgs:?}");
    let flow = flow_of(&msgs).unwrap();
    check_flow(flow, &lab);
    // Hashed: a token, no address, no port.
    let token = flow.own("client").unwrap();
    assert!(
        token.len() == 18
            && token.starts_with("h:")
            && token[2..].bytes().all(|b| b.is_ascii_hexdigit()),
        "{flow:?}"
    );
    assert_eq!(flow.own("client_port"), None);
    assert!(
        !rsyslog
            .lines()
            .iter()
            .any(|l| l.contains(&lab.client_v4().to_string())),
        "the client's address reached syslog"
    );
    assert!(!by_msgid(&msgs, "SUMMARY").is_empty());
    assert!(daemon.running());
    assert!(
        daemon.log().contains("reachable again after"),
        "{}",
        daemon.log()
    );
    println!(
        "{}\n--- daemon:\n{}",
        rsyslog.lines().join("\n"),
        daemon.log()
    );
}

#[test]
fn tls_carries_rfc5424_to_a_server_verified_by_the_configured_ca() {
    let lab = Lab::new("sls").unwrap();
    let dir = tempfile::tempdir().unwrap();
    issue_certificates(dir.path(), lab.server_v4().into());
    let rsyslog = Rsyslog::start(&lab, dir.path(), &Listen::Tls(6514));

    // A CA that did not sign the server's certificate: no connection, nothing sent, and the
    // filter runs on.
    let untrusted = write_config(
        dir.path(),
        &format!(
            "destination = \"tls://{}\"\nca_file = \"other-ca.crt\"",
            lab.server_v4()
        ),
        "",
    );
    let mut daemon = Daemon::start(&lab, &bin(), &untrusted, Vec::<String>::new()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !daemon.log().contains("TLS handshake failed") {
        assert!(Instant::now() < deadline, "{}", daemon.log());
        thread::sleep(Duration::from_millis(50));
    }
    assert!(daemon.running());
    let (status, _) = daemon.stop().unwrap();
    assert!(status.success());
    assert!(rsyslog.lines().is_empty(), "{:?}", rsyslog.lines());

    let config = write_config(
        dir.path(),
        &format!(
            "destination = \"tls://{}\"\nca_file = \"ca.crt\"\nclient_privacy = \"none\"",
            lab.server_v4()
        ),
        "",
    );
    let daemon = Daemon::start(&lab, &bin(), &config, Vec::<String>::new()).unwrap();
    let msgs = rsyslog.wait_for("lifecycle and a summary over TLS", &daemon, |m| {
        lifecycle(m, "started").is_some() && !by_msgid(m, "SUMMARY").is_empty()
    });
    assert!(lifecycle(&msgs, "attached").is_some());
    assert_eq!(
        lifecycle(&msgs, "started").unwrap().own("client_privacy"),
        Some("none")
    );
    // Connected at the first attempt: no gap to report.
    assert!(by_msgid(&msgs, "SINK").is_empty(), "{msgs:?}");
    assert!(!daemon.log().contains("cannot connect"), "{}", daemon.log());

    // SIGHUP with a wrong [logging] key: refused with file and line, over the same sink.
    let tls = format!(
        "destination = \"tls://{}\"\nca_file = \"ca.crt\"",
        lab.server_v4()
    );
    write_config(dir.path(), &format!("{tls}\nfacility = \"local9\""), "");
    hangup(&daemon);
    let msgs = rsyslog.wait_for("reload_refused", &daemon, |m| {
        lifecycle(m, "reload_refused").is_some()
    });
    let refused = lifecycle(&msgs, "reload_refused").unwrap();
    let at = format!("{}:11:", config.canonicalize().unwrap().display());
    assert!(refused.own("error").unwrap().contains(&at), "{refused:?}");
    assert!(
        refused.own("error").unwrap().contains("local9"),
        "{refused:?}"
    );
    // A valid change of [logging]: a new sink to the same server takes over.
    write_config(dir.path(), &format!("{tls}\nclient_privacy = \"full\""), "");
    hangup(&daemon);
    rsyslog.wait_for("reloaded", &daemon, |m| lifecycle(m, "reloaded").is_some());
}

fn hangup(daemon: &Daemon) {
    let pid = libc::pid_t::try_from(daemon.pid()).unwrap();
    // SAFETY: kill has no memory-safety preconditions.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGHUP) }, 0);
}

//! Group: end-to-end lab tests (network namespaces, real servers, clients and daemons; see
//! `filter-daemon/tests/README.md`).
//!
//! `mode = "monitor"`, the whole filter's dry run, end to end: with a drop app and a reject
//! app, every banned client — curl over TCP to a name of each app, a QUIC client over
//! HTTP/3, QUIC with Initials held and with no daemon alive — completes its request, while
//! `status` counts each decision as enforcement would have made it and rsyslog receives
//! `FLOW` records marked `mode="monitor"`. A reload to `mode = "enforce"` then blocks the
//! same clients. Needs root.

mod common;

#[allow(clippy::wildcard_imports)]
use common::{lab::*, *};
use std::{
    fs,
    path::{Path, PathBuf},
    thread,
    time::{Duration, Instant},
};

use sni_filter_lab::{
    CurlOpts, Daemon, Lab, Listen, QuicClient, QuicServer, Rsyslog, Status, TlsServer, curl,
    quic_fetch,
};

/// A name of the reject app.
const REJECTED: &str = "www.bounce.example";
const TIMEOUT: Duration = Duration::from_secs(5);
/// How long a record or a reload may take to show.
const PATIENCE: Duration = Duration::from_secs(15);

/// The configuration in `mode`: tiktok dropped, bounce rejected, QUIC Initials held for
/// their verdict, hellos the program cannot read dropped; records to rsyslog over UDP.
fn write_config(path: &Path, mode: &str, syslog: &str) {
    fs::write(
        path,
        format!(
            "[filter]\nmode = \"{mode}\"\nuninspectable = \"drop\"\nquic_hold = true\n\
             summary_interval_secs = 1\n\n\
             [apps.tiktok]\naction = \"drop\"\ndomains = [\"tiktok.com\"]\n\n\
             [apps.bounce]\naction = \"reject\"\ndomains = [\"bounce.example\"]\n\n\
             [logging]\ndestination = \"udp://{syslog}:5514\"\n"
        ),
    )
    .unwrap();
}

/// Waits until rsyslog has received a line for which `wanted` holds; returns it.
fn wait_for(
    rsyslog: &Rsyslog,
    daemon: &Daemon,
    what: &str,
    wanted: impl Fn(&str) -> bool,
) -> String {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(l) = rsyslog.lines().into_iter().find(|l| wanted(l)) {
            return l;
        }
        assert!(
            Instant::now() < deadline,
            "no {what}; received:\n{}\n--- daemon:\n{}",
            rsyslog.lines().join("\n"),
            daemon.log()
        );
        thread::sleep(Duration::from_millis(100));
    }
}

/// As [`wait_for`], for a line holding every one of `parts`.
fn wait_for_line(rsyslog: &Rsyslog, daemon: &Daemon, parts: &[&str]) -> String {
    wait_for(rsyslog, daemon, &format!("record with {parts:?}"), |l| {
        parts.iter().all(|p| l.contains(p))
    })
}

/// Sum of the `dropped` column of the reasons table.
fn dropped(status: &Status) -> u64 {
    status.reasons.iter().map(|r| r.count("dropped")).sum()
}

struct Rig {
    lab: Lab,
    tls: TlsServer,
    quic: QuicServer,
    rsyslog: Rsyslog,
    config: PathBuf,
    _dir: tempfile::TempDir,
}

fn rig(prefix: &str) -> Rig {
    let lab = Lab::new(prefix).expect("lab");
    let tls = TlsServer::start(&lab, &[BANNED, REJECTED]).expect("nginx");
    let quic = QuicServer::start(&lab, &[BANNED], false).expect("QUIC server");
    let dir = tempfile::tempdir().unwrap();
    let rsyslog = Rsyslog::start(&lab, dir.path(), &Listen::Plain(5514)).expect("rsyslogd");
    let config = dir.path().join("filter.toml");
    write_config(&config, "monitor", &lab.server_v4().to_string());
    Rig {
        lab,
        tls,
        quic,
        rsyslog,
        config,
        _dir: dir,
    }
}

impl Rig {
    fn curl(&self, host: &str) -> sni_filter_lab::CurlOutcome {
        let opts = CurlOpts::new(self.tls.ca_path()).max_time(Duration::from_secs(3));
        curl(&self.lab, host, &opts).unwrap()
    }

    fn quic(&self) -> sni_filter_lab::QuicRun {
        quic_fetch(
            &self.lab,
            QuicClient::Quinn,
            BANNED,
            &self.quic,
            false,
            TIMEOUT,
        )
        .unwrap()
    }
}

#[test]
fn monitor_mode_serves_every_banned_client_counting_and_logging_it_then_enforce_blocks_them() {
    let r = rig("mon");
    let daemon = Daemon::start(&r.lab, &bin(), &r.config, Vec::<String>::new()).expect("daemon");
    let before = daemon.status().unwrap();
    for host in [BANNED, REJECTED] {
        assert_served(&r.curl(host), host, "monitor mode:");
    }
    let quic = r.quic();
    assert!(quic.served(), "monitor mode, QUIC: {}", quic.summary());

    let after = daemon.status().unwrap();
    // Each decision counted as enforcement would have made it...
    assert!(
        moved(&before, &after, "hello_blocked") >= 2,
        "{}",
        after.text
    );
    assert!(
        moved(&before, &after, "blocked_flow") >= 2,
        "{}",
        after.text
    );
    assert!(
        moved(&before, &after, "quic_initial_held") >= 1,
        "{}",
        after.text
    );
    assert!(after.app_count("tiktok", "flows") >= 1, "{}", after.text);
    assert!(after.app_count("bounce", "flows") >= 1, "{}", after.text);
    // ...and none carried out.
    assert_eq!(dropped(&after), 0, "{}", after.text);
    assert_eq!(after.app_count("tiktok", "dropped"), 0, "{}", after.text);
    assert_eq!(after.app_count("bounce", "resets"), 0, "{}", after.text);
    assert_eq!(after.note("reset_sent"), 0, "{}", after.text);
    let passed = after.note("monitor_passed");
    assert!(
        passed >= moved(&before, &after, "hello_blocked") + moved(&before, &after, "blocked_flow"),
        "{}",
        after.text
    );

    // The records a SIEM reads tell the dry run apart.
    let server = format!("server=\"{}\"", r.lab.server_v4());
    for (what, action) in [
        ("app=\"tiktok\"", "action=\"drop\""),
        ("app=\"bounce\"", "action=\"reject\""),
        ("transport=\"quic\"", "action=\"drop\""),
    ] {
        let line = wait_for_line(&r.rsyslog, &daemon, &[" FLOW [", what, action, &server]);
        assert!(line.contains("mode=\"monitor\""), "{line}");
    }
    wait_for_line(
        &r.rsyslog,
        &daemon,
        &["LIFECYCLE", "event=\"started\"", "mode=\"monitor\""],
    );
    wait_for_line(&r.rsyslog, &daemon, &[" SUMMARY [", "mode=\"monitor\""]);

    // The CLI says it too: `status` names the mode, and `check` answers "passes" (exit 1)
    // for a name the rules block, since nothing is dropped.
    let out = daemon.command(["status", "--json"]).output().unwrap();
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["mode"], "monitor", "{status}");
    let out = std::process::Command::new(bin())
        .args(["check", "--json", "--config"])
        .arg(&r.config)
        .arg(BANNED)
        .output()
        .unwrap();
    let check: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(1), "{check}");
    assert_eq!(
        (check["would_block"].as_bool(), check["blocked"].as_bool()),
        (Some(true), Some(false))
    );

    // A reload to enforce: the same clients are blocked.
    write_config(&r.config, "enforce", &r.lab.server_v4().to_string());
    assert!(daemon.command(["reload"]).status().unwrap().success());
    wait_for_line(
        &r.rsyslog,
        &daemon,
        &["LIFECYCLE", "event=\"reloaded\"", "mode=\"enforce\""],
    );
    let before = daemon.status().unwrap();
    for host in [BANNED, REJECTED] {
        let out = r.curl(host);
        assert!(
            !out.served(),
            "enforce: {host} was served: {}",
            out.summary()
        );
    }
    let quic = r.quic();
    assert!(!quic.served(), "enforce, QUIC: {}", quic.summary());
    let after = daemon.status().unwrap();
    assert!(dropped(&after) > dropped(&before), "{}", after.text);
    assert!(after.app_count("bounce", "resets") >= 1, "{}", after.text);
    assert_eq!(
        after.note("monitor_passed"),
        before.note("monitor_passed"),
        "{}",
        after.text
    );
    wait_for(&r.rsyslog, &daemon, "enforced FLOW record", |l| {
        l.contains(" FLOW [") && l.contains("action=\"reject\"") && !l.contains("mode=")
    });
}

#[test]
fn monitor_mode_passes_quic_while_no_daemon_is_alive() {
    let r = rig("monk");
    let mut daemon =
        Daemon::start(&r.lab, &bin(), &r.config, Vec::<String>::new()).expect("daemon");
    daemon.kill().unwrap();
    // The heartbeat goes stale within 3 s.
    thread::sleep(Duration::from_millis(3500));
    let before = daemon.status().unwrap();
    let quic = r.quic();
    assert!(quic.served(), "no daemon, monitor mode: {}", quic.summary());
    let after = daemon.status().unwrap();
    assert!(
        moved(&before, &after, "quic_daemon_absent") >= 1,
        "{}",
        after.text
    );
    assert!(
        after.note("monitor_passed") > before.note("monitor_passed"),
        "{}",
        after.text
    );
    assert_eq!(dropped(&after), 0, "{}", after.text);
}

//! What the tests check in the messages received and around them: messages picked by MSGID
//! or event, the FLOW record of the blocked flow, the summaries, and the same counters in
//! `status` and on `/metrics`.

use std::net::SocketAddr;

use sni_filter_lab::{Daemon, Lab};

use super::common::{
    BANNED,
    lab::{metric, scrape},
};
use super::rfc5424::Message;

pub fn by_msgid<'a>(msgs: &'a [Message], msgid: &str) -> Vec<&'a Message> {
    msgs.iter().filter(|m| m.msgid == msgid).collect()
}

pub fn flow_of(msgs: &[Message]) -> Option<&Message> {
    msgs.iter()
        .find(|m| m.msgid == "FLOW" && m.own("sni") == Some(BANNED))
}

pub fn lifecycle<'a>(msgs: &'a [Message], event: &str) -> Option<&'a Message> {
    msgs.iter()
        .find(|m| m.msgid == "LIFECYCLE" && m.own("event") == Some(event))
}

/// The FLOW record of the blocked flow says what happened, where, to whom.
pub fn check_flow(m: &Message, lab: &Lab) {
    assert_eq!(m.own("action"), Some("drop"), "{m:?}");
    assert_eq!(m.own("app"), Some("tiktok"), "{m:?}");
    assert_eq!(m.own("reason"), Some("hello_blocked"), "{m:?}");
    assert_eq!(m.own("iface"), Some(lab.gateway_client_if()), "{m:?}");
    assert_eq!(
        m.own("server"),
        Some(lab.server_v4().to_string().as_str()),
        "{m:?}"
    );
    assert_eq!(m.own("server_port"), Some("443"), "{m:?}");
    assert_eq!(m.own("proto"), Some("tcp"), "{m:?}");
    // The rule that matched, and the rule set: 12 hex digits of its hash.
    assert_eq!(m.own("rule"), Some("tiktok.com"), "{m:?}");
    let sha = m.own("rules_sha256").unwrap_or_default();
    assert!(
        sha.len() == 12 && sha.bytes().all(|b| b.is_ascii_hexdigit()),
        "{m:?}"
    );
    // notice (5) for a drop, facility daemon (3).
    assert_eq!(m.pri, 3 * 8 + 5, "{m:?}");
    assert!(m.msg.starts_with("event action=drop app=tiktok"), "{m:?}");
}

/// Runs `sni-filter status` in the daemon's namespaces: packets of a reason.
pub fn status_packets(daemon: &Daemon, reason: &str) -> u64 {
    let out = daemon.command(["status"]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find(|l| l.split_whitespace().next() == Some(reason))
        .and_then(|l| l.split_whitespace().nth(1))
        .map_or(0, |n| n.parse().unwrap())
}

/// The latest summaries show the blocked flow, per app and per reason.
pub fn check_summaries(msgs: &[Message]) {
    let app = by_msgid(msgs, "APP_SUMMARY")
        .into_iter()
        .rev()
        .find(|a| a.own("app") == Some("tiktok"))
        .unwrap();
    assert_eq!(app.own("action"), Some("drop"));
    assert!(app.number("flows_total") >= 1, "{app:?}");
    assert!(app.number("packets_dropped_total") >= 1, "{app:?}");
    for key in [
        "flows",
        "packets_dropped",
        "bytes_dropped",
        "bytes_dropped_total",
        "resets",
        "resets_total",
        "interval_secs",
    ] {
        app.number(key);
    }
    let summary = by_msgid(msgs, "SUMMARY")
        .into_iter()
        .rev()
        .find(|s| s.sd.contains_key("hello_blocked@32473"))
        .expect("a SUMMARY with hello_blocked");
    assert!(summary.number("packets_total") >= summary.number("dropped_total"));
    let blocked: u64 = summary
        .param("hello_blocked@32473", "packets_total")
        .unwrap()
        .parse()
        .unwrap();
    assert!(blocked >= 1, "{summary:?}");
    assert!(summary.msg.starts_with("summary: "), "{summary:?}");
}

/// `/metrics` shows the same counters.
pub fn check_metrics(lab: &Lab, metrics: SocketAddr) {
    let text = scrape(lab, metrics);
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    assert!(
        metric(&text, r#"sni_filter_app_flows_total{app="tiktok"}"#).is_some_and(|n| n >= 1.0),
        "{text}"
    );
    assert!(
        metric(&text, r#"sni_filter_packets_total{reason="hello_blocked"}"#)
            .is_some_and(|n| n >= 1.0),
        "{text}"
    );
    assert!(
        metric(&text, "sni_filter_events_logged_total").is_some_and(|n| n >= 1.0),
        "{text}"
    );
    assert!(
        text.contains("sni_filter_syslog_messages_total{outcome=\"sent\"}"),
        "{text}"
    );
}

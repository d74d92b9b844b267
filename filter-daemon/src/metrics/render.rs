//! The Prometheus text exposition (format 0.0.4) of [`DaemonMetrics`]: everything a scrape
//! shows is gathered into a [`Scrape`] first, then written by pure functions, so that the
//! text's shape (HELP and TYPE of every family, `_total` on counters alone, escaped label
//! values) is tested without a kernel.

use std::sync::atomic::Ordering;

use filter_common::{AppCounters, Counter, IfaceCounters, Note, Reason};

use super::{
    DaemonMetrics, Fill, Rules,
    exposition::{counter, gauge, labels, one, real},
    lock,
};
use crate::{Error, build_info, counters::Snapshot, iface};

/// Everything one scrape shows.
struct Scrape {
    snap: Snapshot,
    /// The attached interfaces' counters, by name.
    ifaces: Vec<(String, IfaceCounters)>,
    rules: Rules,
    tables: Vec<Fill>,
    quic: QuicView,
    events_logged: u64,
    events_suppressed: u64,
    sink: Option<SinkView>,
    sink_dropped: u64,
    reloads: ReloadView,
    started: f64,
}

/// The QUIC worker's figures and the freshness of its heartbeat.
#[derive(Default)]
struct QuicView {
    datagrams: u64,
    blocked: u64,
    allowed: u64,
    unreadable: u64,
    abandoned: u64,
    write_failures: u64,
    /// Verdict latency percentiles in seconds, `None` before the first verdict.
    p50: Option<f64>,
    p99: Option<f64>,
    alive: bool,
    /// Seconds since the worker last wrote the heartbeat the program reads.
    heartbeat_age: f64,
}

struct SinkView {
    outcomes: [(&'static str, u64); 5],
    connected: bool,
    waiting: u64,
}

struct ReloadView {
    applied: u64,
    refused: u64,
    last_at: f64,
    last_ok: bool,
    failures: Vec<(&'static str, u64)>,
}

impl DaemonMetrics {
    /// Prometheus text exposition of every counter and gauge.
    pub fn render(&self) -> Result<String, Error> {
        Ok(write(&self.scrape()?))
    }

    fn scrape(&self) -> Result<Scrape, Error> {
        let snap = self.snapshot()?;
        let ifaces = snap
            .ifaces
            .iter()
            .map(|(index, c)| (iface::name(*index), *c))
            .collect();
        let tables = self.table_fill();
        let mut quic = QuicView {
            alive: self.quic.beating(),
            heartbeat_age: self.quic.beat_age().as_secs_f64(),
            ..QuicView::default()
        };
        {
            let q = lock(&self.quic.stats);
            let secs = |p| q.latency_percentile(p).map(|ns| real(ns) / 1e9);
            quic.datagrams = q.reassembly.datagrams;
            quic.blocked = q.blocked;
            quic.allowed = q.allowed;
            quic.unreadable = q.reassembly.unreadable;
            quic.abandoned = q.reassembly.abandoned;
            quic.write_failures = q.write_failures;
            quic.p50 = secs(50);
            quic.p99 = secs(99);
        }
        let sink = lock(&self.sink).as_ref().map(|s| SinkView {
            outcomes: [
                ("sent", s.sent.load(Ordering::Relaxed)),
                ("queue_full", s.queue_full.load(Ordering::Relaxed)),
                ("failed", s.failed.load(Ordering::Relaxed)),
                ("refused", s.refused.load(Ordering::Relaxed)),
                ("report", s.reports.load(Ordering::Relaxed)),
            ],
            connected: s.connected.load(Ordering::Relaxed),
            waiting: s.waiting(),
        });
        let r = &self.reloads;
        Ok(Scrape {
            snap,
            ifaces,
            rules: lock(&self.rules).clone(),
            tables,
            quic,
            events_logged: self.events_logged.load(Ordering::Relaxed),
            events_suppressed: self.events_suppressed.load(Ordering::Relaxed),
            sink,
            sink_dropped: self.sink_dropped(),
            reloads: ReloadView {
                applied: r.applied.load(Ordering::Relaxed),
                refused: r.refused.load(Ordering::Relaxed),
                last_at: f64::from_bits(r.last_at.load(Ordering::Relaxed)),
                last_ok: r.last_ok.load(Ordering::Relaxed),
                failures: lock(&r.failures).clone(),
            },
            started: self.started,
        })
    }
}

/// A counter family sampled from a field of `C`: its name, its help and the field.
type Family<C> = (&'static str, &'static str, fn(&C) -> u64);

fn write(s: &Scrape) -> String {
    let mut out = String::with_capacity(16 * 1024);
    write_program(&mut out, s);
    write_rules(&mut out, s);
    write_quic(&mut out, &s.quic);
    write_daemon(&mut out, s);
    out
}

/// The program's counters: by reason, app, note and interface.
fn write_program(out: &mut String, s: &Scrape) {
    let by_reason: [Family<Counter>; 3] = [
        (
            "sni_filter_packets_total",
            "Packets the XDP program judged, by reason.",
            |c| c.packets,
        ),
        (
            "sni_filter_bytes_total",
            "Bytes of the packets the XDP program judged, by reason.",
            |c| c.bytes,
        ),
        (
            "sni_filter_dropped_packets_total",
            "Of the packets judged, those dropped, by reason.",
            |c| c.dropped,
        ),
    ];
    for (name, help, value) in by_reason {
        let samples = Reason::ALL.iter().zip(&s.snap.reasons);
        counter(
            out,
            name,
            help,
            samples.map(|(r, c)| (labels(&[("reason", r.name())]), value(c))),
        );
    }
    // No action label: a reload that changes an app's action keeps its series (the action
    // is on `sni_filter_app_info`).
    let by_app: [Family<AppCounters>; 4] = [
        (
            "sni_filter_app_flows_total",
            "Flows whose ClientHello matched the app's rules.",
            |c| c.flows,
        ),
        (
            "sni_filter_app_dropped_packets_total",
            "Packets of the app's flows dropped.",
            |c| c.packets_dropped,
        ),
        (
            "sni_filter_app_dropped_bytes_total",
            "Bytes of the app's flows dropped.",
            |c| c.bytes_dropped,
        ),
        (
            "sni_filter_app_resets_total",
            "TCP resets sent to clients of the app (action reject).",
            |c| c.resets,
        ),
    ];
    for (name, help, value) in by_app {
        let samples = s.snap.apps.iter();
        counter(
            out,
            name,
            help,
            samples.map(|(a, c)| (labels(&[("app", &a.name)]), value(c))),
        );
    }
    counter(
        out,
        "sni_filter_notes_total",
        "Things counted besides verdicts (ECH seen, VLAN tags, table full...).",
        Note::ALL
            .iter()
            .zip(&s.snap.notes)
            .map(|(n, v)| (labels(&[("note", n.name())]), *v)),
    );
    let iface = |name: &str| labels(&[("interface", name)]);
    counter(
        out,
        "sni_filter_interface_packets_total",
        "Packets the XDP program saw on each attached interface, by family (ipv4, ipv6, other).",
        s.ifaces.iter().flat_map(|(name, c)| {
            [("ipv4", c.ipv4), ("ipv6", c.ipv6), ("other", c.other)]
                .map(|(f, v)| (labels(&[("interface", name), ("family", f)]), v))
        }),
    );
    counter(
        out,
        "sni_filter_interface_vlan_tagged_packets_total",
        "Packets with an 802.1Q or 802.1ad tag seen on each attached interface.",
        s.ifaces
            .iter()
            .map(|(name, c)| (iface(name), c.vlan_tagged)),
    );
    counter(
        out,
        "sni_filter_interface_dropped_packets_total",
        "Packets the XDP program dropped on each attached interface.",
        s.ifaces.iter().map(|(name, c)| (iface(name), c.dropped)),
    );
}

/// The rule set in force and the tables' fill.
fn write_rules(out: &mut String, s: &Scrape) {
    let r = &s.rules;
    let apps = || r.apps.iter().zip(r.enabled.iter().zip(&r.per_app));
    gauge(
        out,
        "sni_filter_enforcing",
        "1: the filter acts on its verdicts (mode = \"enforce\"); 0: a dry run (mode = \"monitor\"): \
         verdicts are counted and logged, nothing is dropped.",
        [(String::new(), if r.enforcing { 1.0 } else { 0.0 })],
    );
    gauge(
        out,
        "sni_filter_rules_info",
        "The rule set in force (always 1): sha256 over its compiled rules and the settings that \
         change verdicts, and the versions its lists' headers give (FILE VERSION, ...; empty \
         when none does). Gateways enforcing the same rules show the same sha256.",
        [(
            labels(&[("version", &r.id.version), ("sha256", &r.id.sha256)]),
            1.0,
        )],
    );
    gauge(
        out,
        "sni_filter_rules_loaded_timestamp_seconds",
        "When the rule set in force was put in force (the start or the last applied reload), \
         in seconds since the Unix epoch.",
        one(r.loaded_at),
    );
    gauge(
        out,
        "sni_filter_app_info",
        "Each app of the rule set in force, with its action and whether it is enabled (always 1).",
        apps().map(|(a, (enabled, _))| {
            let enabled = if *enabled { "true" } else { "false" };
            let l = labels(&[
                ("app", &a.name),
                ("action", &a.action),
                ("enabled", enabled),
            ]);
            (l, 1.0)
        }),
    );
    gauge(
        out,
        "sni_filter_app_rules",
        "Rules (names and wildcards) of each app in the rule set in force.",
        apps().map(|(a, (_, n))| (labels(&[("app", &a.name)]), real(*n as u64))),
    );
    gauge(
        out,
        "sni_filter_table_entries",
        &format!(
            "Entries in each table: blocked_flows (verdicts), hellos (being read), quic_flows \
             (QUIC flows handed on or allowed), rules (loaded). The flow tables are counted at \
             most every {} s; scrapes in between see the last count.",
            super::COUNT_REUSE.as_secs()
        ),
        s.tables
            .iter()
            .map(|f| (labels(&[("table", f.table)]), real(f.entries))),
    );
    gauge(
        out,
        "sni_filter_table_max_entries",
        "The most entries each table holds (rules: rules_max of the configuration).",
        s.tables
            .iter()
            .map(|f| (labels(&[("table", f.table)]), real(f.max))),
    );
}

/// The QUIC worker: what it judged and whether the program takes it to be alive.
fn write_quic(out: &mut String, q: &QuicView) {
    counter(
        out,
        "sni_filter_quic_datagrams_total",
        "QUIC Initial datagrams the worker read.",
        one(q.datagrams),
    );
    counter(
        out,
        "sni_filter_quic_flows_total",
        "QUIC flows the worker judged, by verdict (blocked, allowed).",
        [("blocked", q.blocked), ("allowed", q.allowed)]
            .map(|(v, n)| (labels(&[("verdict", v)]), n)),
    );
    counter(
        out,
        "sni_filter_quic_unreadable_total",
        "QUIC flows whose ClientHello could not be read.",
        one(q.unreadable),
    );
    counter(
        out,
        "sni_filter_quic_abandoned_total",
        "QUIC hello reassemblies given up (idle, or to make room).",
        one(q.abandoned),
    );
    counter(
        out,
        "sni_filter_quic_write_failures_total",
        "QUIC verdicts that could not be written (table full or map error).",
        one(q.write_failures),
    );
    let none = f64::NAN;
    gauge(
        out,
        "sni_filter_quic_verdict_p50_seconds",
        "Median time from the deciding Initial to its verdict in the table, over the last 8192 verdicts (NaN before the first).",
        [(String::new(), q.p50.unwrap_or(none))],
    );
    gauge(
        out,
        "sni_filter_quic_verdict_p99_seconds",
        "99th percentile of the time from the deciding Initial to its verdict in the table, over the last 8192 verdicts (NaN before the first).",
        [(String::new(), q.p99.unwrap_or(none))],
    );
    gauge(
        out,
        "sni_filter_quic_worker_alive",
        "1 while the QUIC worker's heartbeat is fresh enough for the program to hand it Initials; 0 and the program drops them.",
        [(String::new(), f64::from(u8::from(q.alive)))],
    );
    gauge(
        out,
        "sni_filter_quic_heartbeat_age_seconds",
        "Age of the QUIC worker's last heartbeat, the one the program reads; over 3 s, the program drops QUIC Initials.",
        [(String::new(), q.heartbeat_age)],
    );
}

/// The daemon's own figures: build, start, reloads, flow events and the syslog sink.
fn write_daemon(out: &mut String, s: &Scrape) {
    gauge(
        out,
        "sni_filter_build_info",
        "The daemon's version and the commit it was built from (always 1).",
        [(
            labels(&[
                ("version", build_info::VERSION),
                ("commit", build_info::COMMIT),
            ]),
            1.0,
        )],
    );
    gauge(
        out,
        "sni_filter_start_time_seconds",
        "When the daemon started, in seconds since the Unix epoch.",
        one(s.started),
    );
    let r = &s.reloads;
    gauge(
        out,
        "sni_filter_reload_last_timestamp_seconds",
        "When the configuration was last loaded or a reload refused (the start counts), in seconds since the Unix epoch.",
        one(r.last_at),
    );
    gauge(
        out,
        "sni_filter_reload_last_success",
        "Whether the last reload was applied (1) or refused, the running rules staying in force (0).",
        one(f64::from(u8::from(r.last_ok))),
    );
    counter(
        out,
        "sni_filter_reloads_total",
        "Reloads asked for (SIGHUP), by result: applied, refused.",
        [("applied", r.applied), ("refused", r.refused)]
            .map(|(k, v)| (labels(&[("result", k)]), v)),
    );
    counter(
        out,
        "sni_filter_reload_failures_total",
        "Refused reloads by reason: config (the configuration file), list (a rule list), \
         signature (a list's signature does not verify), rollback (a list older than the one \
         in force), other. The running rules stayed in force each time.",
        r.failures
            .iter()
            .map(|(k, v)| (labels(&[("reason", k)]), *v)),
    );
    counter(
        out,
        "sni_filter_events_logged_total",
        "Flow events logged.",
        one(s.events_logged),
    );
    counter(
        out,
        "sni_filter_events_suppressed_total",
        "Flow events held back by the rate limit.",
        one(s.events_suppressed),
    );
    let Some(sink) = &s.sink else {
        return;
    };
    counter(
        out,
        "sni_filter_syslog_messages_total",
        "Syslog messages by outcome: sent; refused (sent, then refused by a UDP \
         server); queue_full (dropped, the queue was full); failed (could not be \
         sent); report (the sink's own SINK records).",
        sink.outcomes.map(|(o, v)| (labels(&[("outcome", o)]), v)),
    );
    counter(
        out,
        "sni_filter_syslog_dropped_total",
        "Syslog messages that never reached the server (queue_full, failed, refused), sinks replaced on reload included.",
        one(s.sink_dropped),
    );
    gauge(
        out,
        "sni_filter_syslog_connected",
        "Whether the syslog sink has a working connection.",
        one(f64::from(u8::from(sink.connected))),
    );
    gauge(
        out,
        "sni_filter_syslog_waiting",
        "Syslog messages queued, not sent yet.",
        one(real(sink.waiting)),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{counters::AppInfo, identity::RuleSetId};

    fn scrape(action: &str) -> Scrape {
        let app = AppInfo {
            name: "tik\"tok".into(),
            action: action.into(),
        };
        let flows = AppCounters {
            flows: 4,
            ..AppCounters::default()
        };
        Scrape {
            snap: Snapshot {
                reasons: vec![Counter::default(); Reason::ALL.len()],
                apps: vec![(app.clone(), flows)],
                notes: vec![0; Note::ALL.len()],
                ifaces: Vec::new(),
            },
            ifaces: vec![(
                "eth0".into(),
                IfaceCounters {
                    ipv4: 7,
                    ipv6: 2,
                    other: 1,
                    vlan_tagged: 3,
                    dropped: 5,
                },
            )],
            rules: Rules {
                apps: vec![app],
                enabled: vec![true],
                per_app: vec![12],
                loaded: 12,
                max: 1000,
                enforcing: false,
                id: RuleSetId {
                    sha256: "ab".repeat(32),
                    version: "tiktok.txt 2026.12.07".into(),
                },
                loaded_at: 1_700_000_100.0,
            },
            tables: vec![Fill {
                table: "blocked_flows",
                entries: 9,
                max: 65536,
            }],
            quic: QuicView {
                p99: Some(0.000_25),
                heartbeat_age: 4.5,
                ..QuicView::default()
            },
            events_logged: 1,
            events_suppressed: 0,
            sink: None,
            sink_dropped: 0,
            reloads: ReloadView {
                applied: 2,
                refused: 1,
                last_at: 1_700_000_000.5,
                last_ok: false,
                failures: vec![("config", 0), ("list", 1)],
            },
            started: 1_700_000_000.0,
        }
    }

    /// Every sample line belongs to the family whose HELP and TYPE came just before it;
    /// counters, and only they, end in `_total`.
    #[test]
    fn every_family_has_help_and_type_and_counters_alone_end_in_total() {
        let text = write(&scrape("drop"));
        let mut family: Option<(String, String)> = None;
        let mut seen = std::collections::HashSet::new();
        let mut help_of = None;
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let name = rest.split(' ').next().unwrap().to_owned();
                assert!(seen.insert(name.clone()), "{name} twice");
                help_of = Some(name);
            } else if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').unwrap();
                assert_eq!(help_of.as_deref(), Some(name), "TYPE without HELP: {line}");
                assert_eq!(
                    name.ends_with("_total"),
                    kind == "counter",
                    "{name} is a {kind}"
                );
                assert!(kind == "counter" || kind == "gauge", "{line}");
                family = Some((name.to_owned(), kind.to_owned()));
            } else {
                let (name, _) = family.as_ref().expect("a sample before any TYPE");
                let series = line.split([' ', '{']).next().unwrap();
                assert_eq!(series, name, "{line}");
                let value = line.rsplit(' ').next().unwrap();
                assert!(
                    value.parse::<f64>().is_ok() || ["NaN", "+Inf"].contains(&value),
                    "{line}"
                );
            }
        }
        assert!(seen.len() > 30, "{} families", seen.len());
    }

    #[test]
    fn new_series_carry_their_labels_and_values() {
        let text = write(&scrape("drop"));
        for line in [
            r#"sni_filter_interface_packets_total{interface="eth0",family="ipv4"} 7"#,
            r#"sni_filter_interface_packets_total{interface="eth0",family="other"} 1"#,
            r#"sni_filter_interface_vlan_tagged_packets_total{interface="eth0"} 3"#,
            r#"sni_filter_interface_dropped_packets_total{interface="eth0"} 5"#,
            r#"sni_filter_app_flows_total{app="tik\"tok"} 4"#,
            r#"sni_filter_app_info{app="tik\"tok",action="drop",enabled="true"} 1"#,
            r#"sni_filter_app_rules{app="tik\"tok"} 12"#,
            "sni_filter_enforcing 0",
            r#"sni_filter_table_entries{table="blocked_flows"} 9"#,
            r#"sni_filter_table_max_entries{table="blocked_flows"} 65536"#,
            "sni_filter_quic_verdict_p50_seconds NaN",
            "sni_filter_quic_verdict_p99_seconds 0.00025",
            "sni_filter_quic_heartbeat_age_seconds 4.5",
            "sni_filter_quic_worker_alive 0",
            "sni_filter_reload_last_success 0",
            "sni_filter_reload_last_timestamp_seconds 1700000000.5",
            r#"sni_filter_reloads_total{result="refused"} 1"#,
            "sni_filter_start_time_seconds 1700000000",
            r#"sni_filter_reload_failures_total{reason="list"} 1"#,
            r#"sni_filter_reload_failures_total{reason="config"} 0"#,
            "sni_filter_rules_loaded_timestamp_seconds 1700000100",
        ] {
            assert!(text.lines().any(|l| l == line), "no {line} in\n{text}");
        }
        let info = format!(
            r#"sni_filter_rules_info{{version="tiktok.txt 2026.12.07",sha256="{}"}} 1"#,
            "ab".repeat(32)
        );
        assert!(text.lines().any(|l| l == info), "no {info} in\n{text}");
        let build = format!(
            "sni_filter_build_info{{version=\"{}\",commit=\"{}\"}} 1",
            build_info::VERSION,
            build_info::COMMIT
        );
        assert!(text.contains(&build), "{text}");
        // A changed action changes the info series only, never the counters' labels.
        let after = write(&scrape("monitor"));
        assert!(after.contains(r#"sni_filter_app_info{app="tik\"tok",action="monitor","#));
        let counters = |t: &str| {
            t.lines()
                .filter(|l| l.starts_with("sni_filter_app_") && l.contains("_total{"))
                .map(str::to_owned)
                .collect::<Vec<_>>()
        };
        assert_eq!(counters(&text), counters(&after));
        // Without a sink no syslog family is shown.
        assert!(!text.contains("sni_filter_syslog_"));
    }
}

//! The counters as the daemon logs them every summary interval: one `SUMMARY` record of
//! the totals by reason and one `APP_SUMMARY` per app, deltas beside totals.

use std::{fmt::Write as _, time::Duration};

use filter_common::{AppCounters, Counter, Note, Reason};

use crate::{
    counters::{self, Snapshot},
    syslog::{MsgId, Record, Severity},
};

/// `+delta` and total of one counter.
fn delta(before: u64, now: u64) -> u64 {
    now - before.min(now)
}

/// The `SUMMARY` record: totals over all reasons in the record's element, then one element
/// per reason seen (`hello_blocked@32473`), the notes seen (`notes@32473`), and the syslog
/// records dropped. The text is the stderr summary line of old.
pub fn summary(
    prev: &Snapshot,
    now: &Snapshot,
    interval: Duration,
    sink_dropped: (u64, u64),
) -> Record {
    let mut text = format!(
        "summary: {}",
        counters::summary_line(&prev.reasons, &now.reasons)
    );
    let (sink_delta, sink_total) = sink_dropped;
    if sink_delta > 0 {
        let _ = write!(text, " (syslog: {sink_delta} messages not sent)");
    }
    let zero = Counter::default();
    let sum = |s: &Snapshot| s.reasons.iter().fold(zero, counters::add_counter);
    let (b, n) = (sum(prev), sum(now));
    let mut r = Record::new(MsgId::Summary, Severity::Info, text)
        .param("interval_secs", interval.as_secs_f64().round())
        .param("packets", delta(b.packets, n.packets))
        .param("packets_total", n.packets)
        .param("bytes", delta(b.bytes, n.bytes))
        .param("bytes_total", n.bytes)
        .param("dropped", delta(b.dropped, n.dropped))
        .param("dropped_total", n.dropped)
        .param("syslog_dropped", sink_delta)
        .param("syslog_dropped_total", sink_total);
    for (i, (reason, c)) in Reason::ALL.iter().zip(&now.reasons).enumerate() {
        if c.packets == 0 {
            continue;
        }
        let p = prev.reasons.get(i).unwrap_or(&zero);
        r = r.element(
            reason.name(),
            vec![
                ("packets".into(), delta(p.packets, c.packets).to_string()),
                ("packets_total".into(), c.packets.to_string()),
                ("bytes".into(), delta(p.bytes, c.bytes).to_string()),
                ("bytes_total".into(), c.bytes.to_string()),
                ("dropped".into(), delta(p.dropped, c.dropped).to_string()),
                ("dropped_total".into(), c.dropped.to_string()),
            ],
        );
    }
    let notes: Vec<(String, String)> = Note::ALL
        .iter()
        .zip(&now.notes)
        .filter(|(_, v)| **v > 0)
        .map(|(n, v)| (n.name().to_owned(), v.to_string()))
        .collect();
    if !notes.is_empty() {
        r = r.element("notes", notes);
    }
    r
}

/// One `APP_SUMMARY` record per app, deltas against the same app's counters in `prev` (by
/// name: a reload may reorder apps). Apps whose counters did not move are not shown on
/// stderr; syslog gets every app every interval.
pub fn app_summaries(prev: &Snapshot, now: &Snapshot, interval: Duration) -> Vec<Record> {
    now.apps
        .iter()
        .map(|(app, c)| {
            let p = prev
                .apps
                .iter()
                .find(|(a, _)| a.name == app.name)
                .map(|(_, c)| *c)
                .unwrap_or_default();
            let d = AppCounters {
                flows: delta(p.flows, c.flows),
                packets_dropped: delta(p.packets_dropped, c.packets_dropped),
                bytes_dropped: delta(p.bytes_dropped, c.bytes_dropped),
                resets: delta(p.resets, c.resets),
            };
            let text = format!(
                "app {} ({}): flows=+{}/{} packets_dropped=+{}/{} bytes_dropped=+{}/{} resets=+{}/{}",
                app.name,
                app.action,
                d.flows,
                c.flows,
                d.packets_dropped,
                c.packets_dropped,
                d.bytes_dropped,
                c.bytes_dropped,
                d.resets,
                c.resets
            );
            let mut r = Record::new(MsgId::AppSummary, Severity::Info, text)
                .param("app", &app.name)
                .param("action", &app.action)
                .param("interval_secs", interval.as_secs_f64().round())
                .param("flows", d.flows)
                .param("flows_total", c.flows)
                .param("packets_dropped", d.packets_dropped)
                .param("packets_dropped_total", c.packets_dropped)
                .param("bytes_dropped", d.bytes_dropped)
                .param("bytes_dropped_total", c.bytes_dropped)
                .param("resets", d.resets)
                .param("resets_total", c.resets);
            r.on_stderr = d != AppCounters::default();
            r
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::counters::AppInfo;

    fn snapshot(blocked: u64, flows: u64) -> Snapshot {
        let mut reasons = vec![Counter::default(); Reason::ALL.len()];
        reasons[Reason::HelloBlocked as usize] = Counter {
            packets: blocked,
            bytes: blocked * 500,
            dropped: blocked,
        };
        let mut notes = vec![0; Note::ALL.len()];
        notes[Note::EchSeen as usize] = 2;
        Snapshot {
            reasons,
            apps: vec![
                (
                    AppInfo {
                        name: "tiktok".into(),
                        action: "drop".into(),
                    },
                    AppCounters {
                        flows,
                        packets_dropped: blocked,
                        bytes_dropped: blocked * 500,
                        resets: 0,
                    },
                ),
                (
                    AppInfo {
                        name: "quiet".into(),
                        action: "monitor".into(),
                    },
                    AppCounters::default(),
                ),
            ],
            notes,
            ifaces: Vec::new(),
        }
    }

    #[test]
    fn summaries_carry_deltas_and_totals() {
        let (a, b) = (snapshot(2, 1), snapshot(5, 3));
        let r = summary(&a, &b, Duration::from_mins(1), (0, 7));
        assert_eq!(r.msgid, MsgId::Summary);
        assert_eq!(r.text, "summary: hello_blocked=+3/5");
        assert_eq!(r.get("packets"), Some("3"));
        assert_eq!(r.get("packets_total"), Some("5"));
        assert_eq!(r.get("interval_secs"), Some("60"));
        assert_eq!(r.get("syslog_dropped_total"), Some("7"));
        let blocked = &r.sd[1];
        assert_eq!(blocked.id, "hello_blocked@32473");
        assert!(blocked.params.contains(&("bytes".into(), "1500".into())));
        assert_eq!(r.sd[2].id, "notes@32473");
        assert_eq!(r.sd[2].params, [("ech_seen".into(), "2".into())]);

        let apps = app_summaries(&a, &b, Duration::from_mins(1));
        assert_eq!(apps.len(), 2);
        assert_eq!(apps[0].get("app"), Some("tiktok"));
        assert_eq!(apps[0].get("flows"), Some("2"));
        assert_eq!(apps[0].get("flows_total"), Some("3"));
        assert_eq!(apps[0].get("bytes_dropped"), Some("1500"));
        assert!(apps[0].on_stderr);
        // An app that did not move is still sent to syslog, not shown on stderr.
        assert_eq!(apps[1].get("flows"), Some("0"));
        assert!(!apps[1].on_stderr);
    }
}

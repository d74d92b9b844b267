//! What the daemon reports of its counters (read by `counters` from the pinned maps):
//! summaries logged every interval, and Prometheus text served on an optional `/metrics`.

use std::{
    fmt::Write as _,
    net::SocketAddr,
    sync::{
        Arc, Mutex, MutexGuard, PoisonError,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use aya::maps::MapData;
use filter_common::{AppCounters, Counter, Note, Reason};
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::{TcpListener, TcpStream},
    sync::Semaphore,
};

use crate::{
    Error,
    counters::{self, AppInfo, CounterMaps, Snapshot},
    state::Instance,
    syslog::{MsgId, Record, Severity, sink::SinkStats},
};

/// What the daemon counts and exposes: the program's counters, read when asked, and the
/// daemon's own (events, syslog sink). Shared by the daemon loop and the `/metrics` server.
pub struct DaemonMetrics {
    maps: Mutex<CounterMaps<MapData>>,
    apps: Mutex<Vec<AppInfo>>,
    sink: Mutex<Option<Arc<SinkStats>>>,
    /// Syslog records dropped by sinks replaced on reload, so totals never go back.
    sink_dropped_before: AtomicU64,
    pub events_logged: AtomicU64,
    pub events_suppressed: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Plain data: a panic elsewhere leaves it usable.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl DaemonMetrics {
    /// Opens the running filter's pinned counter maps.
    pub fn open(instance: &Instance, apps: Vec<AppInfo>) -> Result<Self, Error> {
        Ok(Self {
            maps: Mutex::new(CounterMaps::pinned(instance)?),
            apps: Mutex::new(apps),
            sink: Mutex::new(None),
            sink_dropped_before: AtomicU64::new(0),
            events_logged: AtomicU64::new(0),
            events_suppressed: AtomicU64::new(0),
        })
    }

    /// The apps in slot order, after a reload.
    pub fn set_apps(&self, apps: Vec<AppInfo>) {
        *lock(&self.apps) = apps;
    }

    /// The sink whose numbers are reported; the dropped records of the one it replaces stay
    /// in the totals.
    pub fn set_sink(&self, sink: Option<Arc<SinkStats>>) {
        let mut cur = lock(&self.sink);
        if let Some(old) = cur.as_ref() {
            self.sink_dropped_before
                .fetch_add(old.dropped(), Ordering::Relaxed);
        }
        *cur = sink;
    }

    /// Syslog records dropped since the daemon started.
    pub fn sink_dropped(&self) -> u64 {
        self.sink_dropped_before.load(Ordering::Relaxed)
            + lock(&self.sink).as_ref().map_or(0, |s| s.dropped())
    }

    pub fn snapshot(&self) -> Result<Snapshot, Error> {
        let apps = lock(&self.apps).clone();
        lock(&self.maps).snapshot(&apps, &[])
    }

    /// Prometheus text exposition (format 0.0.4) of every counter.
    pub fn render(&self) -> Result<String, Error> {
        let snap = self.snapshot()?;
        let mut out = String::with_capacity(8192);
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
            let samples = Reason::ALL.iter().zip(&snap.reasons);
            family(
                &mut out,
                name,
                help,
                samples.map(|(r, c)| (labels(&[("reason", r.name())]), value(c))),
            );
        }
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
            let samples = snap.apps.iter().map(|(a, c)| {
                let l = labels(&[("app", &a.name), ("action", &a.action)]);
                (l, value(c))
            });
            family(&mut out, name, help, samples);
        }
        family(
            &mut out,
            "sni_filter_notes_total",
            "Things counted besides verdicts (ECH seen, VLAN tags, table full...).",
            Note::ALL
                .iter()
                .zip(&snap.notes)
                .map(|(n, v)| (labels(&[("note", n.name())]), *v)),
        );
        self.render_own(&mut out);
        Ok(out)
    }

    /// The daemon's own counters: flow events and the syslog sink.
    fn render_own(&self, out: &mut String) {
        family(
            out,
            "sni_filter_events_logged_total",
            "Flow events logged.",
            [(String::new(), self.events_logged.load(Ordering::Relaxed))],
        );
        family(
            out,
            "sni_filter_events_suppressed_total",
            "Flow events held back by the rate limit.",
            [(
                String::new(),
                self.events_suppressed.load(Ordering::Relaxed),
            )],
        );
        if let Some(s) = lock(&self.sink).as_ref() {
            family(
                out,
                "sni_filter_syslog_messages_total",
                "Syslog messages by outcome: sent; refused (sent, then refused by a UDP \
                 server); queue_full (dropped, the queue was full); failed (could not be \
                 sent); report (the sink's own SINK records).",
                [
                    ("sent", s.sent.load(Ordering::Relaxed)),
                    ("queue_full", s.queue_full.load(Ordering::Relaxed)),
                    ("failed", s.failed.load(Ordering::Relaxed)),
                    ("refused", s.refused.load(Ordering::Relaxed)),
                    ("report", s.reports.load(Ordering::Relaxed)),
                ]
                .map(|(o, v)| (labels(&[("outcome", o)]), v)),
            );
            let _ = writeln!(
                out,
                "# HELP sni_filter_syslog_connected Whether the syslog sink has a working connection.\n\
                 # TYPE sni_filter_syslog_connected gauge\n\
                 sni_filter_syslog_connected {}\n\
                 # HELP sni_filter_syslog_waiting Syslog messages queued, not sent yet.\n\
                 # TYPE sni_filter_syslog_waiting gauge\n\
                 sni_filter_syslog_waiting {}",
                u8::from(s.connected.load(Ordering::Relaxed)),
                s.waiting()
            );
        }
    }
}

/// A counter family of `/metrics`: its name, its help and the field of `C` it samples.
type Family<C> = (&'static str, &'static str, fn(&C) -> u64);

/// `{a="x",b="y"}` with values escaped as the exposition format wants (`\`, `"`, newline).
fn labels(pairs: &[(&str, &str)]) -> String {
    let mut out = String::from("{");
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let v = v
            .replace('\\', r"\\")
            .replace('"', "\\\"")
            .replace('\n', r"\n");
        let _ = write!(out, "{k}=\"{v}\"");
    }
    out.push('}');
    out
}

/// One counter family: HELP, TYPE and a sample per label set.
fn family(
    out: &mut String,
    name: &str,
    help: &str,
    samples: impl IntoIterator<Item = (String, u64)>,
) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
    for (labels, v) in samples {
        let _ = writeln!(out, "{name}{labels} {v}");
    }
}

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

/// Most scrapes served at once; more connections are closed at once.
const SCRAPES_MAX: usize = 8;
/// Longest request head read.
const REQUEST_MAX: usize = 8192;
/// A client that sends no complete request head within this is dropped.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Binds the `/metrics` listener (at start, so a taken port stops the daemon at once).
pub fn bind(addr: SocketAddr) -> Result<TcpListener, Error> {
    let std = std::net::TcpListener::bind(addr)
        .and_then(|l| l.set_nonblocking(true).map(|()| l))
        .map_err(|e| Error::system(format!("metrics: cannot listen on {addr}"), e))?;
    TcpListener::from_std(std)
        .map_err(|e| Error::system(format!("metrics: listening on {addr}"), e))
}

/// Serves `GET /metrics` until the task is dropped.
pub async fn serve(listener: TcpListener, metrics: Arc<DaemonMetrics>) {
    let slots = Arc::new(Semaphore::new(SCRAPES_MAX));
    loop {
        let Ok((sock, _)) = listener.accept().await else {
            // Out of descriptors and the like: try again shortly.
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            continue;
        };
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let _ = tokio::time::timeout(REQUEST_TIMEOUT, answer(sock, &metrics)).await;
            drop(permit);
        });
    }
}

/// Reads one request head and answers it; the connection is closed after.
async fn answer(mut sock: TcpStream, metrics: &DaemonMetrics) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && !head.ends_with(b"\n\n") {
        let n = sock.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
        if head.len() > REQUEST_MAX {
            return respond(&mut sock, "431 Request Header Fields Too Large", "", false).await;
        }
    }
    let line = String::from_utf8_lossy(head.split(|&b| b == b'\n').next().unwrap_or_default())
        .trim_end()
        .to_owned();
    let mut parts = line.split(' ');
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    match (method, path) {
        ("GET" | "HEAD", "/metrics") => match metrics.render() {
            Ok(body) => respond(&mut sock, "200 OK", &body, method == "HEAD").await,
            Err(e) => {
                respond(
                    &mut sock,
                    "500 Internal Server Error",
                    &format!("{e}\n"),
                    false,
                )
                .await
            }
        },
        ("GET" | "HEAD", _) => respond(&mut sock, "404 Not Found", "try /metrics\n", false).await,
        _ => respond(&mut sock, "405 Method Not Allowed", "", false).await,
    }
}

async fn respond(
    sock: &mut TcpStream,
    status: &str,
    body: &str,
    head_only: bool,
) -> std::io::Result<()> {
    let mut out = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    if !head_only {
        out.push_str(body);
    }
    sock.write_all(out.as_bytes()).await?;
    sock.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(
            labels(&[("app", "a\"b\\c\nd"), ("x", "y")]),
            r#"{app="a\"b\\c\nd",x="y"}"#
        );
        let mut out = String::new();
        family(&mut out, "m_total", "Help.", [(labels(&[("k", "v")]), 3)]);
        assert_eq!(
            out,
            "# HELP m_total Help.\n# TYPE m_total counter\nm_total{k=\"v\"} 3\n"
        );
    }
}

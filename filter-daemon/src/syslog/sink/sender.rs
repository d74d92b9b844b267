//! The sender task: takes records off the queue, keeps a connection with backoff, and
//! writes a `SINK` record for each outage or run of drops once the way is open again.

use std::{
    fmt::{self, Write as _},
    io::ErrorKind,
    sync::{Arc, atomic::Ordering},
    time::{Duration, Instant},
};

use tokio::sync::{mpsc, watch};

use super::{
    SinkConfig, SinkStats,
    connection::{self, Connection, message_too_large},
};
use crate::syslog::{MsgId, Record, Severity};

/// First wait after a failed connection or send; doubled up to [`BACKOFF_MAX`].
const BACKOFF_MIN: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// A connection that lived this long before breaking resets the backoff.
const STABLE_AFTER: Duration = Duration::from_secs(10);
/// A send that waits longer (a server that stopped reading) counts as a broken connection.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// At most one `SINK` record per this period about messages dropped while connected.
const DROP_REPORT_EVERY: Duration = Duration::from_secs(10);

/// An unreachable or failing destination, since when and why.
struct Outage {
    since: Instant,
    reason: String,
}

/// The sender's way to the destination and its retry schedule.
struct Link {
    conn: Option<Connection>,
    /// When `conn` was opened.
    since: Instant,
    outage: Option<Outage>,
    /// The wait before the next attempt after this one fails.
    backoff: Duration,
    /// No attempt before this.
    retry_at: Option<Instant>,
}

impl Link {
    fn retry_later(&mut self) {
        self.retry_at = Some(Instant::now() + self.backoff);
        self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
    }
}

/// The sender task's state.
pub(super) struct Sender {
    cfg: SinkConfig,
    tls: Option<tokio_rustls::TlsConnector>,
    stats: Arc<SinkStats>,
    closing: watch::Receiver<bool>,
    /// Drops already reported in a `SINK` record.
    reported_dropped: u64,
    last_drop_report: Option<Instant>,
}

impl Sender {
    pub(super) fn new(
        cfg: SinkConfig,
        tls: Option<tokio_rustls::TlsConnector>,
        stats: Arc<SinkStats>,
        closing: watch::Receiver<bool>,
    ) -> Self {
        Self {
            cfg,
            tls,
            stats,
            closing,
            reported_dropped: 0,
            last_drop_report: None,
        }
    }

    pub(super) async fn run(mut self, mut rx: mpsc::Receiver<Record>) {
        let mut link = Link {
            conn: None,
            since: Instant::now(),
            outage: None,
            backoff: BACKOFF_MIN,
            retry_at: None,
        };
        // The record in hand: kept across reconnections until it is sent.
        let mut next: Option<Record> = None;
        loop {
            if next.is_none() {
                let received = match link.conn.as_mut() {
                    Some(c) => tokio::select! {
                        r = rx.recv() => r,
                        reason = c.closed() => {
                            self.lost(&mut link, &reason);
                            continue;
                        }
                    },
                    None => rx.recv().await,
                };
                match received {
                    Some(r) => next = Some(r),
                    // Closed and drained: the daemon is stopping.
                    None => return,
                }
            }
            if link.conn.is_none() {
                if let Some(at) = link.retry_at
                    && !self
                        .wait(at.saturating_duration_since(Instant::now()))
                        .await
                {
                    return;
                }
                match self.connect().await {
                    Ok(c) => {
                        link.conn = Some(c);
                        link.since = Instant::now();
                        link.retry_at = None;
                        self.stats.connected.store(true, Ordering::Relaxed);
                    }
                    Err(reason) => {
                        self.note_outage(&mut link.outage, reason);
                        link.retry_later();
                        continue;
                    }
                }
            }
            let Some(c) = link.conn.as_mut() else {
                continue;
            };
            if let Some(report) = self.report(link.outage.as_ref()) {
                match self.send_one(c, &report).await {
                    Ok(()) => {
                        self.stats.reports.fetch_add(1, Ordering::Relaxed);
                        self.reported();
                        eprintln!("sni-filter: {}", report.text);
                    }
                    Err(e) => {
                        self.lost(&mut link, &e);
                        continue;
                    }
                }
            }
            link.outage = None;
            let Some(r) = next.as_ref() else { continue };
            match self.send_one(c, r).await {
                Ok(()) => {
                    self.stats.sent.fetch_add(1, Ordering::Relaxed);
                    next = None;
                }
                Err(SendError::TooLarge) => {
                    self.stats.failed.fetch_add(1, Ordering::Relaxed);
                    next = None;
                }
                Err(e) => self.lost(&mut link, &e),
            }
        }
    }

    /// Writes one record to the connection.
    async fn send_one(&self, c: &mut Connection, r: &Record) -> Result<(), SendError> {
        let bytes = c.encode(&self.cfg.origin, r);
        // A UDP send may report that an earlier datagram was refused (ICMP port
        // unreachable): that one is lost and counted, this one is sent again, once.
        for _ in 0..2 {
            match tokio::time::timeout(SEND_TIMEOUT, c.send(&bytes)).await {
                Ok(Ok(())) => return Ok(()),
                Ok(Err(e))
                    if matches!(c, Connection::Udp(_))
                        && e.kind() == ErrorKind::ConnectionRefused =>
                {
                    self.stats.refused.fetch_add(1, Ordering::Relaxed);
                }
                Ok(Err(e)) if message_too_large(&e) => return Err(SendError::TooLarge),
                Ok(Err(e)) => return Err(SendError::Broken(format!("sending failed: {e}"))),
                Err(_) => {
                    return Err(SendError::Broken(format!(
                        "sending took longer than {} s",
                        SEND_TIMEOUT.as_secs()
                    )));
                }
            }
        }
        Err(SendError::Broken("the server refuses datagrams".into()))
    }

    /// The connection broke: note the outage and schedule the next attempt.
    fn lost(&self, link: &mut Link, reason: &dyn fmt::Display) {
        link.conn = None;
        self.stats.connected.store(false, Ordering::Relaxed);
        self.note_outage(&mut link.outage, reason.to_string());
        // A connection that held a while was fine: reconnect soon. One that broke at once
        // (a server that accepts and closes) keeps backing off.
        if link.since.elapsed() >= STABLE_AFTER {
            link.backoff = BACKOFF_MIN;
        }
        link.retry_later();
    }

    /// Waits `d` unless the daemon is stopping; `false` when it is (records still queued
    /// without a connection are then left behind, and counted by `close`).
    async fn wait(&mut self, d: Duration) -> bool {
        if *self.closing.borrow() {
            return false;
        }
        tokio::select! {
            () = tokio::time::sleep(d) => true,
            _ = self.closing.changed() => false,
        }
    }

    /// Starts an outage (once: a line on stderr) unless one is under way.
    fn note_outage(&self, outage: &mut Option<Outage>, reason: String) {
        if outage.is_none() {
            eprintln!(
                "sni-filter: syslog {}: {reason}; retrying with backoff (up to {} messages wait, then they are dropped and counted)",
                self.cfg.destination, self.cfg.capacity
            );
            *outage = Some(Outage {
                since: Instant::now(),
                reason,
            });
        }
    }

    /// A `SINK` record when an outage just ended or messages were dropped since the last
    /// report (at most once per [`DROP_REPORT_EVERY`] while connected).
    fn report(&self, outage: Option<&Outage>) -> Option<Record> {
        let dropped = self.stats.dropped();
        let new_drops = dropped - self.reported_dropped.min(dropped);
        let due = self
            .last_drop_report
            .is_none_or(|t| t.elapsed() >= DROP_REPORT_EVERY);
        if outage.is_none() && (new_drops == 0 || !due) {
            return None;
        }
        let full = self.stats.queue_full.load(Ordering::Relaxed);
        let failed = self.stats.failed.load(Ordering::Relaxed);
        let refused = self.stats.refused.load(Ordering::Relaxed);
        let mut text = format!("syslog {}", self.cfg.destination);
        let mut r = Record::new(MsgId::Sink, Severity::Warning, String::new())
            .param("destination", &self.cfg.destination);
        if let Some(o) = outage {
            let down = o.since.elapsed().as_secs_f64();
            let _ = write!(text, ": reachable again after {down:.1} s ({})", o.reason);
            r = r
                .param("event", "reconnected")
                .param("down_secs", format!("{down:.1}"))
                .param("error", &o.reason);
        } else {
            text.push_str(": messages dropped");
            r = r.param("event", "dropped");
        }
        let _ = write!(
            text,
            "; {new_drops} messages could not be sent since the last report ({dropped} since start: {full} queue full, {failed} failed, {refused} refused)"
        );
        r = r
            .param("dropped", new_drops)
            .param("dropped_total", dropped)
            .param("queue_full_total", full)
            .param("failed_total", failed)
            .param("refused_total", refused);
        r.text = text;
        Some(r)
    }

    fn reported(&mut self) {
        self.reported_dropped = self.stats.dropped();
        self.last_drop_report = Some(Instant::now());
    }

    async fn connect(&self) -> Result<Connection, String> {
        connection::connect(&self.cfg.destination, &self.cfg.local, self.tls.as_ref()).await
    }
}

/// Why a record was not sent.
enum SendError {
    /// The record does not fit a datagram: dropped, the connection stays.
    TooLarge,
    Broken(String),
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooLarge => f.write_str("message too large"),
            Self::Broken(e) => f.write_str(e),
        }
    }
}

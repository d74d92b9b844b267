//! Delivery of records to syslog through a bounded queue and one sender task, so that a
//! server that is down or slow never blocks the daemon: a full queue drops and counts, TCP
//! and TLS reconnect with exponential backoff, and a `SINK` record reports each gap.

mod connection;
mod destination;
mod sender;

use std::{
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use tokio::{
    sync::{mpsc, watch},
    task::JoinHandle,
};

use super::{Origin, Record};
use crate::Error;
pub use destination::Destination;
use sender::Sender;

/// Records waiting for the sender. At the default 100 events per second this holds about
/// 40 s of a flood, or hours of summaries, while a server is unreachable.
pub const QUEUE_CAPACITY: usize = 4096;
/// Journald's socket: where it exists, journald owns local logging.
pub const JOURNAL_SOCKET: &str = "/run/systemd/journal/socket";
/// The traditional local syslog socket.
pub const DEV_LOG: &str = "/dev/log";
/// CA bundle of Debian's `ca-certificates`, used for TLS without `ca_file`.
pub const SYSTEM_CA_FILE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// What the sink did, for summaries and `/metrics`.
#[derive(Debug, Default)]
pub struct SinkStats {
    /// Records handed to the sink.
    pub queued: AtomicU64,
    /// Records the server accepted (written to the socket).
    pub sent: AtomicU64,
    /// Records dropped because the queue was full.
    pub queue_full: AtomicU64,
    /// Records dropped because they could not be sent (too large for a datagram).
    pub failed: AtomicU64,
    /// Datagrams the server refused after they were sent (ICMP port unreachable).
    pub refused: AtomicU64,
    /// `SINK` records the sender wrote itself.
    pub reports: AtomicU64,
    /// Whether the sender holds a working connection.
    pub connected: AtomicBool,
}

impl SinkStats {
    /// Records that did not reach the server so far, for whatever reason.
    pub fn dropped(&self) -> u64 {
        self.queue_full.load(Ordering::Relaxed)
            + self.failed.load(Ordering::Relaxed)
            + self.refused.load(Ordering::Relaxed)
    }

    /// Records still waiting in the queue (or in the sender's hands).
    pub fn waiting(&self) -> u64 {
        self.queued.load(Ordering::Relaxed).saturating_sub(
            self.queue_full.load(Ordering::Relaxed)
                + self.sent.load(Ordering::Relaxed)
                + self.failed.load(Ordering::Relaxed),
        )
    }
}

/// Where the local socket paths are; tests point them elsewhere.
#[derive(Clone, Debug)]
pub struct LocalPaths {
    pub journal: PathBuf,
    pub dev_log: PathBuf,
}

impl Default for LocalPaths {
    fn default() -> Self {
        Self {
            journal: JOURNAL_SOCKET.into(),
            dev_log: DEV_LOG.into(),
        }
    }
}

/// Everything the sender needs to reach its destination.
#[derive(Clone)]
pub struct SinkConfig {
    pub destination: Destination,
    /// CA certificates (PEM) that a TLS server's certificate must chain to.
    pub ca_file: Option<PathBuf>,
    pub origin: Origin,
    pub local: LocalPaths,
    pub capacity: usize,
}

/// The producer's side: a bounded queue to the sender task.
pub struct Sink {
    tx: mpsc::Sender<Record>,
    closing: watch::Sender<bool>,
    stats: Arc<SinkStats>,
    task: JoinHandle<()>,
    destination: Destination,
}

impl Sink {
    /// Starts the sender task; needs a tokio runtime context. A TLS destination's CA file is
    /// read here, so that a wrong one stops the daemon at start instead of at first use.
    pub fn start(cfg: SinkConfig) -> Result<Self, Error> {
        let tls = match &cfg.destination {
            Destination::Tls { .. } => Some(connection::tls_connector(
                cfg.ca_file.as_deref().unwrap_or(Path::new(SYSTEM_CA_FILE)),
            )?),
            _ => None,
        };
        let (tx, rx) = mpsc::channel(cfg.capacity.max(1));
        let (closing, closing_rx) = watch::channel(false);
        let stats = Arc::new(SinkStats::default());
        let destination = cfg.destination.clone();
        let sender = Sender::new(cfg, tls, stats.clone(), closing_rx);
        let task = tokio::spawn(sender.run(rx));
        Ok(Self {
            tx,
            closing,
            stats,
            task,
            destination,
        })
    }

    /// Queues a record; when the queue is full the record is dropped and counted. Never
    /// waits.
    pub fn send(&self, r: Record) {
        self.stats.queued.fetch_add(1, Ordering::Relaxed);
        if self.tx.try_send(r).is_err() {
            self.stats.queue_full.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn stats(&self) -> &Arc<SinkStats> {
        &self.stats
    }

    pub fn destination(&self) -> &Destination {
        &self.destination
    }

    /// Lets the sender deliver what is queued for at most `grace` (at once if it has no
    /// connection), then stops it. Records left behind are reported on stderr.
    pub async fn close(self, grace: Duration) {
        let Self {
            tx,
            closing,
            stats,
            mut task,
            destination,
        } = self;
        drop(tx);
        let _ = closing.send(true);
        if tokio::time::timeout(grace, &mut task).await.is_err() {
            task.abort();
            let _ = task.await;
        }
        let s = &stats;
        let left = s.waiting();
        if left > 0 || s.dropped() > 0 {
            eprintln!(
                "sni-filter: syslog {destination}: {} messages not sent ({left} still queued at exit, {} dropped while the queue was full, {} failed, {} refused)",
                left + s.dropped(),
                s.queue_full.load(Ordering::Relaxed),
                s.failed.load(Ordering::Relaxed),
                s.refused.load(Ordering::Relaxed),
            );
        }
    }
}

// The sink end to end against sockets of the test's own: journald and /dev/log, a queue
// that fills while the server is down, refused datagrams, and a TCP gap reported.
#[cfg(test)]
mod tests {
    use std::time::Instant;

    use tokio::{io::AsyncReadExt as _, net::UnixDatagram};

    use super::*;
    use crate::syslog::{Facility, MsgId, Severity};

    fn origin() -> Origin {
        Origin {
            facility: Facility::DAEMON,
            hostname: "gw".into(),
            app_name: "sni-filter".into(),
            procid: 1,
            enterprise: crate::config::SD_ENTERPRISE_DEFAULT,
        }
    }

    fn config(destination: Destination, local: LocalPaths, capacity: usize) -> SinkConfig {
        SinkConfig {
            destination,
            ca_file: None,
            origin: origin(),
            local,
            capacity,
        }
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    /// The next datagram `server` receives, as text.
    async fn received(server: &UnixDatagram) -> String {
        let mut buf = vec![0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(5), server.recv(&mut buf))
            .await
            .unwrap()
            .unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    #[test]
    fn local_goes_to_the_journal_socket_when_it_exists() {
        let dir = tempfile::tempdir().unwrap();
        let journal = dir.path().join("journal.socket");
        let dev_log = dir.path().join("log");
        runtime().block_on(async {
            let server = UnixDatagram::bind(&journal).unwrap();
            let sink = Sink::start(config(
                Destination::Local,
                LocalPaths {
                    journal: journal.clone(),
                    dev_log: dev_log.clone(),
                },
                8,
            ))
            .unwrap();
            sink.send(
                Record::new(MsgId::Lifecycle, Severity::Notice, "started")
                    .param("event", "started"),
            );
            let text = received(&server).await;
            assert!(text.contains("MESSAGE=started\n"), "{text}");
            assert!(text.contains("SNI_FILTER_EVENT=started\n"), "{text}");
            assert!(text.contains("SYSLOG_IDENTIFIER=sni-filter\n"), "{text}");
            sink.close(Duration::from_secs(1)).await;
        });
        // Without journald: RFC 3164 lines to /dev/log.
        runtime().block_on(async {
            let server = UnixDatagram::bind(&dev_log).unwrap();
            let sink = Sink::start(config(
                Destination::Local,
                LocalPaths {
                    journal: dir.path().join("absent"),
                    dev_log: dev_log.clone(),
                },
                8,
            ))
            .unwrap();
            sink.send(Record::new(MsgId::Lifecycle, Severity::Notice, "started"));
            let text = received(&server).await;
            assert!(text.starts_with("<29>"), "{text}");
            assert!(
                text.ends_with("sni-filter[1]: LIFECYCLE: started"),
                "{text}"
            );
            sink.close(Duration::from_secs(1)).await;
        });
    }

    #[test]
    fn an_unreachable_sink_drops_and_counts_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        runtime().block_on(async {
            let sink = Sink::start(config(
                Destination::Local,
                LocalPaths {
                    journal: dir.path().join("none1"),
                    dev_log: dir.path().join("none2"),
                },
                4,
            ))
            .unwrap();
            let start = Instant::now();
            for i in 0..100 {
                sink.send(Record::new(MsgId::Flow, Severity::Info, format!("{i}")));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
            assert!(start.elapsed() < Duration::from_secs(1));
            let s = sink.stats().clone();
            assert_eq!(s.queued.load(Ordering::Relaxed), 100);
            assert_eq!(s.sent.load(Ordering::Relaxed), 0);
            // The queue holds 4 and the sender one in hand.
            assert!(s.queue_full.load(Ordering::Relaxed) >= 95, "{s:?}");
            assert!(!s.connected.load(Ordering::Relaxed));
            // Stopping does not wait for a sink that is down.
            let t = Instant::now();
            sink.close(Duration::from_secs(5)).await;
            assert!(t.elapsed() < Duration::from_secs(1));
        });
    }

    #[test]
    fn refused_datagrams_are_counted_without_an_outage() {
        runtime().block_on(async {
            // A UDP port nobody listens on: loopback answers with ICMP port unreachable.
            let probe = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            let port = probe.local_addr().unwrap().port();
            drop(probe);
            let sink = Sink::start(config(
                Destination::Udp {
                    host: "127.0.0.1".into(),
                    port,
                },
                LocalPaths::default(),
                64,
            ))
            .unwrap();
            for i in 0..10 {
                sink.send(Record::new(MsgId::Flow, Severity::Info, format!("{i}")));
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            let s = sink.stats().clone();
            assert!(s.sent.load(Ordering::Relaxed) >= 10, "{s:?}");
            assert!(s.refused.load(Ordering::Relaxed) >= 5, "{s:?}");
            assert_eq!(s.waiting(), 0, "{s:?}");
            assert!(s.connected.load(Ordering::Relaxed), "{s:?}");
            sink.close(Duration::from_secs(1)).await;
        });
    }

    #[test]
    fn tcp_frames_are_octet_counted_and_a_gap_is_reported_after_reconnecting() {
        runtime().block_on(async {
            // A port that refuses: bind, learn the port, close.
            let probe = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = probe.local_addr().unwrap();
            drop(probe);
            let sink = Sink::start(config(
                Destination::Tcp {
                    host: "127.0.0.1".into(),
                    port: addr.port(),
                },
                LocalPaths::default(),
                2,
            ))
            .unwrap();
            for i in 0..5 {
                sink.send(Record::new(MsgId::Flow, Severity::Info, format!("m{i}")));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
            let (mut conn, _) = tokio::time::timeout(Duration::from_secs(5), listener.accept())
                .await
                .unwrap()
                .unwrap();
            let mut got = String::new();
            let mut buf = [0u8; 4096];
            while got.matches(" FLOW ").count() < 2 {
                let n = tokio::time::timeout(Duration::from_secs(5), conn.read(&mut buf))
                    .await
                    .unwrap()
                    .unwrap();
                assert!(n > 0, "closed early: {got}");
                got.push_str(&String::from_utf8_lossy(&buf[..n]));
            }
            // Every frame is `LEN SP MSG` with LEN the MSG's length in octets.
            let mut rest = got.as_str();
            let mut msgs = Vec::new();
            while !rest.is_empty() {
                let (len, tail) = rest.split_once(' ').unwrap();
                let len: usize = len.parse().unwrap();
                msgs.push(&tail[..len]);
                rest = &tail[len..];
            }
            assert!(msgs[0].contains(" SINK [sni-filter@32473 "), "{msgs:?}");
            assert!(msgs[0].contains("event=\"reconnected\""), "{msgs:?}");
            // 5 queued at once into room for 2: 3 dropped, then m0 and m1 in order.
            assert!(msgs[0].contains("dropped=\"3\""), "{msgs:?}");
            assert!(
                msgs[1].ends_with(" m0") && msgs[2].ends_with(" m1"),
                "{msgs:?}"
            );
            assert_eq!(msgs.len(), 3, "{msgs:?}");
            sink.close(Duration::from_secs(1)).await;
        });
    }
}

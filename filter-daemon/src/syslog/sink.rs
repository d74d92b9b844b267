//! Delivery of records to syslog through a bounded queue and one sender task, so that a
//! server that is down or slow never blocks the daemon: a full queue drops and counts, TCP
//! and TLS reconnect with exponential backoff, and a `SINK` record reports each gap.

use std::{
    fmt::{self, Write as _},
    io::ErrorKind,
    net::SocketAddr,
    path::{Path, PathBuf},
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use rustls::pki_types::{CertificateDer, ServerName, pem::PemObject as _};
use tokio::{
    io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _, ReadHalf, WriteHalf},
    net::{TcpStream, UdpSocket, UnixDatagram},
    sync::{mpsc, watch},
    task::JoinHandle,
};

use super::{MsgId, Origin, Record, Severity};
use crate::Error;

/// Records waiting for the sender. At the default 100 events per second this holds about
/// 40 s of a flood, or hours of summaries, while a server is unreachable.
pub const QUEUE_CAPACITY: usize = 4096;
/// First wait after a failed connection or send; doubled up to [`BACKOFF_MAX`].
const BACKOFF_MIN: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// A connection that lived this long before breaking resets the backoff.
const STABLE_AFTER: Duration = Duration::from_secs(10);
/// A connection (TCP, and the TLS handshake) that takes longer is abandoned and retried.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// A send that waits longer (a server that stopped reading) counts as a broken connection.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// At most one `SINK` record per this period about messages dropped while connected.
const DROP_REPORT_EVERY: Duration = Duration::from_secs(10);
/// Journald's socket: where it exists, journald owns local logging.
pub const JOURNAL_SOCKET: &str = "/run/systemd/journal/socket";
/// The traditional local syslog socket.
pub const DEV_LOG: &str = "/dev/log";
/// CA bundle of Debian's `ca-certificates`, used for TLS without `ca_file`.
pub const SYSTEM_CA_FILE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// Where records go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Destination {
    /// journald's native protocol where journald owns local logging, otherwise `/dev/log`.
    Local,
    /// Nowhere: stderr only.
    Off,
    /// RFC 5424 over UDP (RFC 5426), one message per datagram.
    Udp { host: String, port: u16 },
    /// RFC 5424 over TCP with octet counting (RFC 6587).
    Tcp { host: String, port: u16 },
    /// RFC 5424 over TLS (RFC 5425).
    Tls { host: String, port: u16 },
}

impl Destination {
    /// `local`, `none`, `udp://HOST[:PORT]`, `tcp://HOST[:PORT]` or `tls://HOST[:PORT]`;
    /// an IPv6 host in brackets. Ports default to 514 (UDP, TCP) and 6514 (TLS, RFC 5425).
    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "local" => return Ok(Self::Local),
            "none" => return Ok(Self::Off),
            _ => {}
        }
        let (scheme, rest) = s.split_once("://").ok_or_else(|| {
            format!(
                "destination {s:?} is not \"local\", \"none\", udp://HOST:PORT, \
                 tcp://HOST:PORT or tls://HOST:PORT"
            )
        })?;
        let default_port = match scheme {
            "udp" | "tcp" => 514,
            "tls" => 6514,
            _ => return Err(format!("destination {s:?}: unknown scheme {scheme:?}")),
        };
        let (host, port) = split_host_port(rest)
            .map(|(h, p)| (h, p.unwrap_or(default_port)))
            .ok_or_else(|| format!("destination {s:?}: expected HOST, HOST:PORT or [V6]:PORT"))?;
        let host = host.to_owned();
        Ok(match scheme {
            "udp" => Self::Udp { host, port },
            "tcp" => Self::Tcp { host, port },
            _ => Self::Tls { host, port },
        })
    }
}

/// `host`, `host:port`, `[v6]` or `[v6]:port`; `None` if malformed (empty host, port not a
/// non-zero `u16`, a path, or a bare IPv6 address).
fn split_host_port(s: &str) -> Option<(&str, Option<u16>)> {
    let (host, port) = if let Some(inner) = s.strip_prefix('[') {
        let (h, rest) = inner.split_once(']')?;
        h.parse::<std::net::Ipv6Addr>().ok()?;
        let port = match rest {
            "" => None,
            r => Some(r.strip_prefix(':')?),
        };
        (h, port)
    } else {
        let (h, port) = match s.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        };
        let name = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_');
        if !h.bytes().all(name) {
            return None;
        }
        (h, port)
    };
    if host.is_empty() {
        return None;
    }
    match port {
        None => Some((host, None)),
        Some(p) => Some((host, Some(p.parse::<u16>().ok().filter(|&p| p > 0)?))),
    }
}

impl fmt::Display for Destination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hp = |h: &str, p: u16| {
            if h.contains(':') {
                format!("[{h}]:{p}")
            } else {
                format!("{h}:{p}")
            }
        };
        match self {
            Self::Local => f.write_str("local"),
            Self::Off => f.write_str("none"),
            Self::Udp { host, port } => write!(f, "udp://{}", hp(host, *port)),
            Self::Tcp { host, port } => write!(f, "tcp://{}", hp(host, *port)),
            Self::Tls { host, port } => write!(f, "tls://{}", hp(host, *port)),
        }
    }
}

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
            Destination::Tls { .. } => Some(tls_connector(
                cfg.ca_file.as_deref().unwrap_or(Path::new(SYSTEM_CA_FILE)),
            )?),
            _ => None,
        };
        let (tx, rx) = mpsc::channel(cfg.capacity.max(1));
        let (closing, closing_rx) = watch::channel(false);
        let stats = Arc::new(SinkStats::default());
        let destination = cfg.destination.clone();
        let sender = Sender {
            cfg,
            tls,
            stats: stats.clone(),
            closing: closing_rx,
            reported_dropped: 0,
            last_drop_report: None,
        };
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

/// A stream the sender writes RFC 6587 frames to.
trait Stream: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Stream for T {}

/// An open way to the destination.
enum Connection {
    Udp(UdpSocket),
    /// The read half only tells that the server closed the connection.
    Stream {
        reader: ReadHalf<Pin<Box<dyn Stream>>>,
        writer: WriteHalf<Pin<Box<dyn Stream>>>,
    },
    Journal(UnixDatagram),
    DevLog(UnixDatagram),
}

impl Connection {
    /// The bytes of a record in this connection's format and framing.
    fn encode(&self, origin: &Origin, r: &Record) -> Vec<u8> {
        match self {
            Self::Udp(_) => super::rfc5424(origin, r).into_bytes(),
            Self::Stream { .. } => {
                let msg = super::rfc5424(origin, r);
                // RFC 6587 §3.4.1 octet counting: MSG-LEN SP SYSLOG-MSG (RFC 5425 §4.3 alike).
                format!("{} {msg}", msg.len()).into_bytes()
            }
            Self::Journal(_) => super::journal(origin, r),
            Self::DevLog(_) => super::rfc3164(origin, r).into_bytes(),
        }
    }

    async fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match self {
            Self::Udp(s) => s.send(bytes).await.map(drop),
            Self::Stream { writer, .. } => {
                writer.write_all(bytes).await?;
                writer.flush().await
            }
            Self::Journal(s) | Self::DevLog(s) => s.send(bytes).await.map(drop),
        }
    }

    /// Resolves when the server has closed a stream connection; never for datagrams.
    async fn closed(&mut self) -> String {
        match self {
            Self::Stream { reader, .. } => {
                // Syslog servers send nothing; read (and ignore) until the end.
                let mut buf = [0u8; 512];
                loop {
                    match reader.read(&mut buf).await {
                        Ok(0) => return "the server closed the connection".into(),
                        Ok(_) => {}
                        Err(e) => return e.to_string(),
                    }
                }
            }
            _ => std::future::pending().await,
        }
    }
}

/// Whether a send error is about this one message rather than the connection.
fn message_too_large(e: &std::io::Error) -> bool {
    e.raw_os_error() == Some(libc::EMSGSIZE)
}

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
struct Sender {
    cfg: SinkConfig,
    tls: Option<tokio_rustls::TlsConnector>,
    stats: Arc<SinkStats>,
    closing: watch::Receiver<bool>,
    /// Drops already reported in a `SINK` record.
    reported_dropped: u64,
    last_drop_report: Option<Instant>,
}

impl Sender {
    async fn run(mut self, mut rx: mpsc::Receiver<Record>) {
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
        match &self.cfg.destination {
            Destination::Off => Err("no destination".into()),
            Destination::Local => connect_local(&self.cfg.local),
            Destination::Udp { host, port } => {
                let addr = resolve(host, *port).await?;
                let bind: SocketAddr = if addr.is_ipv4() {
                    "0.0.0.0:0".parse().expect("literal")
                } else {
                    "[::]:0".parse().expect("literal")
                };
                let s = UdpSocket::bind(bind).await.map_err(|e| e.to_string())?;
                s.connect(addr).await.map_err(|e| e.to_string())?;
                Ok(Connection::Udp(s))
            }
            Destination::Tcp { host, port } => {
                let tcp = tcp_connect(host, *port).await?;
                Ok(stream(Box::pin(tcp)))
            }
            Destination::Tls { host, port } => {
                let tcp = tcp_connect(host, *port).await?;
                let name = ServerName::try_from(host.clone())
                    .map_err(|e| format!("{host} is not a TLS server name: {e}"))?;
                let connector = self.tls.as_ref().ok_or("no TLS configuration")?;
                let tls = tokio::time::timeout(CONNECT_TIMEOUT, connector.connect(name, tcp))
                    .await
                    .map_err(|_| "TLS handshake timed out".to_string())?
                    .map_err(|e| format!("TLS handshake failed: {e}"))?;
                Ok(stream(Box::pin(tls)))
            }
        }
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

fn stream(s: Pin<Box<dyn Stream>>) -> Connection {
    let (reader, writer) = tokio::io::split(s);
    Connection::Stream { reader, writer }
}

async fn resolve(host: &str, port: u16) -> Result<SocketAddr, String> {
    tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| format!("cannot resolve {host}: {e}"))?
        .next()
        .ok_or_else(|| format!("{host} has no address"))
}

async fn tcp_connect(host: &str, port: u16) -> Result<TcpStream, String> {
    let addr = resolve(host, port).await?;
    let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr))
        .await
        .map_err(|_| format!("connecting to {addr} timed out"))?
        .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
    // Records are small and each should leave at once.
    let _ = tcp.set_nodelay(true);
    Ok(tcp)
}

/// journald's socket where it exists (journald then owns `/dev/log` too), else `/dev/log`.
fn connect_local(paths: &LocalPaths) -> Result<Connection, String> {
    let (path, journal) = if paths.journal.exists() {
        (&paths.journal, true)
    } else if paths.dev_log.exists() {
        (&paths.dev_log, false)
    } else {
        return Err(format!(
            "neither {} nor {} exists",
            paths.journal.display(),
            paths.dev_log.display()
        ));
    };
    let s = UnixDatagram::unbound().map_err(|e| e.to_string())?;
    s.connect(path)
        .map_err(|e| format!("cannot connect to {}: {e}", path.display()))?;
    Ok(if journal {
        Connection::Journal(s)
    } else {
        Connection::DevLog(s)
    })
}

/// A TLS client that trusts the CA certificates of `ca_file` only.
fn tls_connector(ca_file: &Path) -> Result<tokio_rustls::TlsConnector, Error> {
    let bad =
        |e: &dyn fmt::Display| Error::State(format!("TLS CA file {}: {e}", ca_file.display()));
    let mut roots = rustls::RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(ca_file).map_err(|e| bad(&e))?;
    for cert in certs {
        let cert = cert.map_err(|e| bad(&e))?;
        roots.add(cert).map_err(|e| bad(&e))?;
    }
    if roots.is_empty() {
        return Err(bad(&"no certificates in it"));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::State(format!("TLS: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::syslog::Facility;

    #[test]
    fn destinations_parse_with_default_ports() {
        let d = |s| Destination::parse(s);
        assert_eq!(d("local"), Ok(Destination::Local));
        assert_eq!(d("none"), Ok(Destination::Off));
        assert_eq!(
            d("udp://10.0.0.5:5514"),
            Ok(Destination::Udp {
                host: "10.0.0.5".into(),
                port: 5514
            })
        );
        assert_eq!(
            d("tcp://logs.example.org"),
            Ok(Destination::Tcp {
                host: "logs.example.org".into(),
                port: 514
            })
        );
        assert_eq!(
            d("tls://[2001:db8::5]"),
            Ok(Destination::Tls {
                host: "2001:db8::5".into(),
                port: 6514
            })
        );
        assert_eq!(
            d("tls://[2001:db8::5]:7000").unwrap().to_string(),
            "tls://[2001:db8::5]:7000"
        );
        for bad in [
            "syslog.example.org",
            "http://x:1",
            "udp://",
            "udp://x:0",
            "udp://x:70000",
            "udp://2001:db8::5",
            "tcp://x:514/path",
            "tcp://[nope]:514",
        ] {
            assert!(d(bad).is_err(), "{bad} parsed");
        }
    }

    fn origin() -> Origin {
        Origin {
            facility: Facility::DAEMON,
            hostname: "gw".into(),
            app_name: "sni-filter".into(),
            procid: 1,
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
            let mut buf = vec![0u8; 4096];
            let n = tokio::time::timeout(Duration::from_secs(5), server.recv(&mut buf))
                .await
                .unwrap()
                .unwrap();
            let text = String::from_utf8_lossy(&buf[..n]).into_owned();
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
            let mut buf = vec![0u8; 4096];
            let n = tokio::time::timeout(Duration::from_secs(5), server.recv(&mut buf))
                .await
                .unwrap()
                .unwrap();
            let text = String::from_utf8_lossy(&buf[..n]).into_owned();
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

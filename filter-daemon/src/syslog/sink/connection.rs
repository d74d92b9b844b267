//! Opening the way to a destination: a UDP socket, a TCP or TLS stream, or the local
//! journald or `/dev/log` socket, and each one's encoding and framing of a record.

use std::{fmt, net::SocketAddr, path::Path, pin::Pin, sync::Arc, time::Duration};

use rustls::pki_types::{CertificateDer, ServerName, pem::PemObject as _};
use tokio::{
    io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _, ReadHalf, WriteHalf},
    net::{TcpStream, UdpSocket, UnixDatagram},
};

use super::{Destination, LocalPaths};
use crate::{
    Error,
    syslog::{self, Origin, Record},
};

/// A connection (TCP, and the TLS handshake) that takes longer is abandoned and retried.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A stream the sender writes RFC 6587 frames to.
pub(super) trait Stream: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Stream for T {}

/// An open way to the destination.
pub(super) enum Connection {
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
    pub(super) fn encode(&self, origin: &Origin, r: &Record) -> Vec<u8> {
        match self {
            Self::Udp(_) => syslog::rfc5424(origin, r).into_bytes(),
            Self::Stream { .. } => {
                let msg = syslog::rfc5424(origin, r);
                // RFC 6587 §3.4.1 octet counting: MSG-LEN SP SYSLOG-MSG (RFC 5425 §4.3 alike).
                format!("{} {msg}", msg.len()).into_bytes()
            }
            Self::Journal(_) => syslog::journal(origin, r),
            Self::DevLog(_) => syslog::rfc3164(origin, r).into_bytes(),
        }
    }

    pub(super) async fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
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
    pub(super) async fn closed(&mut self) -> String {
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
pub(super) fn message_too_large(e: &std::io::Error) -> bool {
    e.raw_os_error() == Some(libc::EMSGSIZE)
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
pub(super) fn tls_connector(ca_file: &Path) -> Result<tokio_rustls::TlsConnector, Error> {
    let bad = |e: &dyn fmt::Display| Error::Tls {
        what: format!("CA file {}", ca_file.display()),
        reason: e.to_string(),
    };
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
        .map_err(|e| Error::Tls {
            what: "client configuration".into(),
            reason: e.to_string(),
        })?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

/// Opens a way to `destination`; the error says why there is none.
pub(super) async fn connect(
    destination: &Destination,
    local: &LocalPaths,
    tls: Option<&tokio_rustls::TlsConnector>,
) -> Result<Connection, String> {
    match destination {
        Destination::Off => Err("no destination".into()),
        Destination::Local => connect_local(local),
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
            let connector = tls.ok_or("no TLS configuration")?;
            let tls = tokio::time::timeout(CONNECT_TIMEOUT, connector.connect(name, tcp))
                .await
                .map_err(|_| "TLS handshake timed out".to_string())?
                .map_err(|e| format!("TLS handshake failed: {e}"))?;
            Ok(stream(Box::pin(tls)))
        }
    }
}

//! `quic-fetch`: the lab's HTTP/3 client in Rust (quinn, rustls with ring, h3).
//!
//! ```text
//! quic-fetch HOST ADDR PORT CAFILE TIMEOUT_SECS
//! ```
//! Connects to ADDR:PORT over QUIC with SNI HOST and ALPN `h3`, verifies the server's
//! certificate for HOST against CAFILE (the only root trusted), sends `GET https://HOST/` and
//! writes the response body to stdout. Exit 0 once a 200 response arrived whole; 3 on any
//! failure (handshake, certificate, status); 2 when `TIMEOUT_SECS` passed first; 64 on bad
//! arguments. Progress and errors go to stderr.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use bytes::Buf as _;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject as _;

const USAGE: &str = "usage: quic-fetch HOST ADDR PORT CAFILE TIMEOUT_SECS";

struct Args {
    host: String,
    addr: SocketAddr,
    ca: String,
    timeout: Duration,
}

fn parse_args() -> Result<Args> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [host, addr, port, ca, timeout] = args.as_slice() else {
        bail!("{USAGE}");
    };
    let ip: IpAddr = addr
        .trim_matches(['[', ']'])
        .parse()
        .with_context(|| format!("ADDR {addr:?} is not an IP address"))?;
    let port: u16 = port
        .parse()
        .with_context(|| format!("PORT {port:?} is not a port"))?;
    let secs: f64 = timeout
        .parse()
        .ok()
        .filter(|s: &f64| s.is_finite() && *s > 0.0)
        .with_context(|| format!("TIMEOUT_SECS {timeout:?} is not a positive number"))?;
    Ok(Args {
        host: host.clone(),
        addr: SocketAddr::new(ip, port),
        ca: ca.clone(),
        timeout: Duration::from_secs_f64(secs),
    })
}

/// A client configuration that trusts only the certificates in `ca` and speaks `h3`.
fn client_config(ca: &Path) -> Result<quinn::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca)
        .with_context(|| format!("cannot read {}", ca.display()))?
    {
        roots
            .add(cert.with_context(|| format!("bad certificate in {}", ca.display()))?)
            .context("cannot trust the CA certificate")?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .context("TLS 1.3 is not available")?
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = vec![b"h3".to_vec()];
    let quic = quinn::crypto::rustls::QuicClientConfig::try_from(tls)
        .context("the TLS configuration cannot carry QUIC")?;
    Ok(quinn::ClientConfig::new(Arc::new(quic)))
}

async fn fetch(args: &Args) -> Result<()> {
    let bind: SocketAddr = match args.addr {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let mut endpoint = quinn::Endpoint::client(bind).context("cannot open a UDP socket")?;
    endpoint.set_default_client_config(client_config(Path::new(&args.ca))?);
    let conn = endpoint
        .connect(args.addr, &args.host)
        .context("cannot start the connection")?
        .await
        .context("QUIC handshake failed")?;
    eprintln!(
        "connected to {} as {}, certificate verified",
        args.addr, args.host
    );
    let (mut driver, mut send_request) = h3::client::new(h3_quinn::Connection::new(conn.clone()))
        .await
        .context("cannot open the HTTP/3 connection")?;
    // The driver handles the control streams; it ends when the connection does.
    let drive = tokio::spawn(async move { driver.wait_idle().await });

    let request = http::Request::get(format!("https://{}/", args.host))
        .header("user-agent", "sni-filter-lab quinn")
        .body(())?;
    let mut stream = send_request
        .send_request(request)
        .await
        .context("cannot send the request")?;
    stream.finish().await.context("cannot finish the request")?;
    let response = stream
        .recv_response()
        .await
        .context("no response arrived")?;
    let status = response.status();
    eprintln!("status {}", status.as_u16());
    let mut body = Vec::new();
    while let Some(mut chunk) = stream
        .recv_data()
        .await
        .context("the response body broke off")?
    {
        while chunk.has_remaining() {
            let part = chunk.chunk();
            body.extend_from_slice(part);
            let n = part.len();
            chunk.advance(n);
        }
    }
    {
        use std::io::Write as _;
        let mut out = std::io::stdout().lock();
        out.write_all(&body)?;
        out.flush()?;
    }
    drop(stream);
    drop(send_request);
    conn.close(0u32.into(), b"done");
    drive.abort();
    endpoint.wait_idle().await;
    if !status.is_success() {
        bail!("status {status}");
    }
    Ok(())
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(err) => {
            eprintln!("error: {err:#}");
            return ExitCode::from(64);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start tokio: {err}");
            return ExitCode::from(3);
        }
    };
    let outcome =
        runtime.block_on(async { tokio::time::timeout(args.timeout, fetch(&args)).await });
    // Whatever still runs (a handshake that never finished) is dropped, not awaited.
    runtime.shutdown_background();
    match outcome {
        Ok(Ok(())) => ExitCode::SUCCESS,
        Ok(Err(err)) => {
            eprintln!("error: {err:#}");
            ExitCode::from(3)
        }
        Err(_) => {
            eprintln!("error: timeout after {:?}", args.timeout);
            ExitCode::from(2)
        }
    }
}

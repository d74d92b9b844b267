//! The `/metrics` endpoint: a small HTTP/1.1 server that answers `GET /metrics` with the
//! Prometheus text of [`DaemonMetrics::render`], bounded in connections, size and time.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::{TcpListener, TcpStream},
    sync::Semaphore,
};

use super::DaemonMetrics;
use crate::Error;

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

//! QUIC in the lab: a real HTTP/3 server (aioquic) on UDP 443 of the lab's server, with a
//! certificate for the given names issued at run time by a throwaway CA, and three real HTTP/3
//! clients run from the lab's client namespace: aioquic, quinn (the `quic-fetch` binary of
//! this package) and headless Chromium forced onto QUIC.
//!
//! Each client fetches `https://HOST/` from the server's address with SNI HOST, verifying the
//! server's certificate for HOST against the lab's CA, and the server answers
//! [`response_body`]`(HOST)`, so a run tells whether the name got through.
//!
//! The aioquic scripts live in `tests/fixtures/quic/`; the server runs under
//! [`crate::python3`], the interpreter `cargo xtask setup` installs aioquic for.
//!
//! `quic-fetch` is found next to the running executable (see [`quic_fetch_binary`]): cargo
//! builds a package's binaries before its integration tests, into `target/PROFILE/`, while the
//! tests themselves run from `target/PROFILE/deps/`. `SNI_FILTER_QUIC_FETCH` overrides it.

use std::fmt;
use std::fs::{self, File};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail, ensure};

use crate::child::ChildGuard;
use crate::clients::{python3, run_until, trust_in_nss_db};
use crate::lab::{Lab, Node};
use crate::scratch::ScratchDir;
use crate::tls_server::{issue_certificates, response_body};

/// The UDP port the QUIC server listens on, IPv4 and IPv6.
pub const QUIC_PORT: u16 = 443;
/// How long the server gets to start listening (Python's start-up and imports).
const START_TIMEOUT: Duration = Duration::from_secs(15);
/// What the server prints once its socket is bound.
const LISTENING: &str = "listening";
/// Environment variable naming the `quic-fetch` binary, instead of looking next to the
/// running executable.
pub const QUIC_FETCH_ENV: &str = "SNI_FILTER_QUIC_FETCH";
/// How long a client gets on top of its own timeout to start and to exit, before it is killed.
const PYTHON_EXTRA: Duration = Duration::from_secs(3);
const QUINN_EXTRA: Duration = Duration::from_secs(2);
const CHROMIUM_EXTRA: Duration = Duration::from_secs(10);

/// The folder of the aioquic scripts.
fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/quic")
}

/// aioquic serving HTTP/3 on UDP 443 of the lab's server for a set of names. Stopped on drop,
/// its certificates and log removed.
#[derive(Debug)]
pub struct QuicServer {
    // Field order is drop order: stop the server before its files go.
    server: ChildGuard,
    dir: ScratchDir,
    names: Vec<String>,
    retry: bool,
}

impl QuicServer {
    /// Issues a certificate for `names` and starts the server in `lab`'s server namespace;
    /// returns once it listens. With `retry`, it answers every new connection with a Retry
    /// first, so each client sends its first flight twice.
    pub fn start(lab: &Lab, names: &[&str], retry: bool) -> Result<Self> {
        ensure!(!names.is_empty(), "a QUIC server needs at least one name");
        let dir = ScratchDir::new("quic")?;
        issue_certificates(dir.path(), names).context("cannot issue the lab certificates")?;
        let log = dir.path().join("server.log");
        let stdout = File::create(&log)?;
        let stderr = stdout.try_clone()?;
        let mut cmd = lab.exec(Node::Server, python3());
        cmd.arg("-u")
            .arg(fixtures().join("h3_server.py"))
            .arg("--cert")
            .arg(dir.path().join("chain.crt"))
            .arg("--key")
            .arg(dir.path().join("server.key"))
            .arg("--port")
            .arg(QUIC_PORT.to_string())
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr);
        if retry {
            cmd.arg("--retry");
        }
        let mut server =
            ChildGuard::spawn(&mut cmd)?.graceful(libc::SIGTERM, Duration::from_secs(2));

        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let text = fs::read_to_string(&log).unwrap_or_default();
            if text.lines().any(|l| l.starts_with(LISTENING)) {
                break;
            }
            if let Some(status) = server.try_wait()? {
                let hint = if text.contains("No module named 'aioquic'") {
                    "\n(aioquic is missing: run `cargo xtask setup`)"
                } else {
                    ""
                };
                bail!("the QUIC server exited ({status}) before listening:\n{text}{hint}");
            }
            if Instant::now() > deadline {
                bail!("the QUIC server did not listen within {START_TIMEOUT:?}:\n{text}");
            }
            thread::sleep(Duration::from_millis(20));
        }
        Ok(Self {
            server,
            dir,
            names: names.iter().map(|&n| n.to_owned()).collect(),
            retry,
        })
    }

    /// The CA certificate (PEM) that clients must trust.
    pub fn ca_path(&self) -> PathBuf {
        self.dir.path().join("ca.crt")
    }

    /// The server's certificate (PEM).
    pub fn cert_path(&self) -> PathBuf {
        self.dir.path().join("server.crt")
    }

    /// The names the certificate holds.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// Whether the server sends a Retry first.
    pub fn retry(&self) -> bool {
        self.retry
    }

    /// The temporary directory with the certificates and the log.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// What the server printed: `listening ...`, one `request HOST METHOD PATH retried=yes|no`
    /// line per request, and aioquic's errors.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// The requests that reached the server, in order.
    pub fn requests(&self) -> Vec<QuicRequest> {
        self.log()
            .lines()
            .filter_map(|l| l.strip_prefix("request "))
            .filter_map(|rest| {
                let fields: Vec<&str> = rest.split_whitespace().collect();
                let [host, method, path, retried] = fields.as_slice() else {
                    return None;
                };
                Some(QuicRequest {
                    host: (*host).to_owned(),
                    method: (*method).to_owned(),
                    path: (*path).to_owned(),
                    retried: *retried == "retried=yes",
                })
            })
            .collect()
    }

    /// The server's pid.
    pub fn pid(&self) -> u32 {
        self.server.id()
    }
}

/// A request the QUIC server answered, from its log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QuicRequest {
    /// The `:authority` without its port.
    pub host: String,
    pub method: String,
    pub path: String,
    /// The connection was validated by a Retry: the client sent its first flight twice.
    pub retried: bool,
}

/// A QUIC (HTTP/3) client of the lab.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QuicClient {
    /// `tests/fixtures/quic/h3_client.py`: aioquic, ALPN `h3`.
    Aioquic,
    /// `quic-fetch` of this package: quinn with rustls (ring) and h3.
    Quinn,
    /// `chromium --headless --enable-quic --origin-to-force-quic-on=HOST:443 --dump-dom`, HOST
    /// mapped to the server's address, the lab's CA trusted through an NSS database. Its
    /// post-quantum `ClientHello` spans two Initial packets.
    Chromium,
}

impl QuicClient {
    /// Every client.
    pub const ALL: [Self; 3] = [Self::Aioquic, Self::Quinn, Self::Chromium];

    pub fn name(self) -> &'static str {
        match self {
            Self::Aioquic => "aioquic",
            Self::Quinn => "quinn",
            Self::Chromium => "chromium quic",
        }
    }
}

impl fmt::Display for QuicClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.name())
    }
}

/// How one QUIC client run ended.
#[derive(Clone, Debug)]
pub struct QuicRun {
    pub client: QuicClient,
    pub host: String,
    pub ipv6: bool,
    /// The exit code; `None` if it was killed (at the deadline, or by a signal).
    pub exit_code: Option<i32>,
    /// Killed because it was still running at its own timeout plus some seconds.
    pub killed_at_deadline: bool,
    pub elapsed: Duration,
    pub stdout: String,
    pub stderr: String,
}

impl QuicRun {
    /// Exit 0 and the server's body for the host. Every client verifies the certificate for
    /// the host before it sends the request, so the body means the name verified too.
    pub fn served(&self) -> bool {
        self.exit_code == Some(0) && self.stdout.contains(&response_body(&self.host))
    }

    /// A few lines for failure messages.
    pub fn summary(&self) -> String {
        let tail = |text: &str| {
            let lines: Vec<&str> = text
                .lines()
                // Chromium complains about the missing session bus on every start.
                .filter(|l| !l.contains("dbus") && !l.trim().is_empty())
                .collect();
            lines[lines.len().saturating_sub(8)..].join("\n    ")
        };
        format!(
            "{} {} ({}): exit {:?}{}, served {}, {:.2} s\n  stdout:\n    {}\n  stderr:\n    {}",
            self.client,
            self.host,
            if self.ipv6 { "IPv6" } else { "IPv4" },
            self.exit_code,
            if self.killed_at_deadline {
                " (killed at its deadline)"
            } else {
                ""
            },
            self.served(),
            self.elapsed.as_secs_f64(),
            tail(&self.stdout),
            tail(&self.stderr)
        )
    }
}

/// The `quic-fetch` binary: `$SNI_FILTER_QUIC_FETCH` if set, else `quic-fetch` in the running
/// executable's folder or its parent (an integration test runs from `target/PROFILE/deps/`,
/// cargo puts the package's binaries in `target/PROFILE/`).
pub fn quic_fetch_binary() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os(QUIC_FETCH_ENV) {
        let path = PathBuf::from(path);
        ensure!(
            path.is_file(),
            "{QUIC_FETCH_ENV}={} is not a file",
            path.display()
        );
        return Ok(path);
    }
    let exe = std::env::current_exe().context("cannot tell the running executable")?;
    let candidates: Vec<PathBuf> = exe
        .ancestors()
        .skip(1)
        .take(2)
        .map(|dir| dir.join("quic-fetch"))
        .collect();
    candidates
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .with_context(|| {
            format!(
                "quic-fetch is not in {candidates:?}: build it with \
                 `cargo build -p sni-filter-lab --bin quic-fetch` or set {QUIC_FETCH_ENV}"
            )
        })
}

/// Fetches `https://HOST/` over QUIC with `client` from the lab's client, connecting to
/// `server` at the lab server's address (IPv6 if `ipv6`); the client gives up after `timeout`.
///
/// The result describes whatever happened; only failing to start the client is an error.
pub fn quic_fetch(
    lab: &Lab,
    client: QuicClient,
    host: &str,
    server: &QuicServer,
    ipv6: bool,
    timeout: Duration,
) -> Result<QuicRun> {
    let dir = ScratchDir::new("quic-client")?;
    let addr = lab.server_addr(ipv6);
    let timeout_secs = format!("{:.3}", timeout.as_secs_f64());
    let port = QUIC_PORT.to_string();
    let (mut cmd, deadline) = match client {
        QuicClient::Aioquic => {
            let mut cmd = lab.exec(Node::Client, python3());
            cmd.arg(fixtures().join("h3_client.py"))
                .args([host, &addr.to_string(), &port])
                .arg(server.ca_path())
                .arg(&timeout_secs);
            (cmd, timeout + PYTHON_EXTRA)
        }
        QuicClient::Quinn => {
            let mut cmd = lab.exec(Node::Client, quic_fetch_binary()?);
            cmd.args([host, &addr.to_string(), &port])
                .arg(server.ca_path())
                .arg(&timeout_secs);
            (cmd, timeout + QUINN_EXTRA)
        }
        QuicClient::Chromium => {
            let home = dir.path().join("home");
            trust_in_nss_db(&home, &server.ca_path())?;
            let profile = dir.path().join("profile");
            fs::create_dir_all(&profile)?;
            let mapped = match addr {
                IpAddr::V4(a) => a.to_string(),
                IpAddr::V6(a) => format!("[{a}]"),
            };
            let mut cmd = lab.exec(Node::Client, "chromium");
            cmd.env("HOME", &home)
                .args([
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--no-first-run",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    // QUIC for HOST:443 from the first request on, without waiting for an
                    // Alt-Svc over TCP, and no fallback to TCP.
                    "--enable-quic",
                ])
                .arg(format!("--origin-to-force-quic-on={host}:{QUIC_PORT}"))
                .arg(format!("--user-data-dir={}", profile.display()))
                .arg(format!("--host-resolver-rules=MAP {host} {mapped}"))
                .arg(format!("--timeout={}", timeout.as_millis()))
                .arg("--dump-dom")
                .arg(format!("https://{host}/"));
            (cmd, timeout + CHROMIUM_EXTRA)
        }
    };
    let stdout_path = dir.path().join("stdout");
    let stderr_path = dir.path().join("stderr");
    cmd.stdin(Stdio::null())
        .stdout(File::create(&stdout_path)?)
        .stderr(File::create(&stderr_path)?);
    let start = Instant::now();
    let (exit_code, killed_at_deadline) = run_until(&mut cmd, deadline)?;
    let elapsed = start.elapsed();
    Ok(QuicRun {
        client,
        host: host.to_owned(),
        ipv6,
        exit_code,
        killed_at_deadline,
        elapsed,
        stdout: String::from_utf8_lossy(&fs::read(&stdout_path)?).into_owned(),
        stderr: String::from_utf8_lossy(&fs::read(&stderr_path)?).into_owned(),
    })
}

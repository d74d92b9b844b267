//! TLS clients written by others, run from the lab's client namespace against the lab's
//! server by name: `openssl s_client`, `gnutls-cli`, Python's `ssl` module and headless
//! Chromium. Each fetches `https://HOST/` with `HTTP/1.0` and says whether the server's
//! certificate verified for HOST and whether the server's body arrived.

use std::fmt;
use std::fs::{self, File};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};

use crate::child::ChildGuard;
use crate::lab::{Lab, Node};
use crate::run::run;
use crate::scratch::ScratchDir;
use crate::tls_server::{HTTPS_PORT, response_body};

/// How long Chromium gets on top of its page-load timeout to start and to exit.
const CHROMIUM_EXTRA: Duration = Duration::from_secs(10);
/// How long Python gets on top of its socket timeout to start and to exit.
const PYTHON_EXTRA: Duration = Duration::from_secs(3);

/// A TLS client of the lab.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsClient {
    /// `openssl s_client -connect ADDR:443 -servername HOST -verify_hostname HOST`.
    OpensslSClient,
    /// `gnutls-cli --sni-hostname HOST --verify-hostname HOST ADDR`.
    GnutlsCli,
    /// `ssl.create_default_context(cafile).wrap_socket(server_hostname=HOST)` in python3.
    PythonSsl,
    /// `chromium --headless --dump-dom https://HOST/`, HOST mapped to the server's address,
    /// the lab's CA trusted through an NSS database: a post-quantum hello of ~1.8 KB.
    Chromium,
}

impl TlsClient {
    /// Every client.
    pub const ALL: [Self; 4] = [
        Self::OpensslSClient,
        Self::GnutlsCli,
        Self::PythonSsl,
        Self::Chromium,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::OpensslSClient => "openssl s_client",
            Self::GnutlsCli => "gnutls-cli",
            Self::PythonSsl => "python3 ssl",
            Self::Chromium => "chromium",
        }
    }
}

impl fmt::Display for TlsClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.name())
    }
}

/// What a client fetch is given.
#[derive(Clone, Debug)]
pub struct FetchOpts {
    /// The CA that signed the server's certificate.
    pub ca: PathBuf,
    /// Connect to the server's IPv6 address instead of its IPv4 one.
    pub ipv6: bool,
    /// How long the client waits for the server: a silently dropped flow fails after this.
    pub timeout: Duration,
}

impl FetchOpts {
    /// IPv4, 3 s, trusting `ca`.
    pub fn new(ca: impl Into<PathBuf>) -> Self {
        Self {
            ca: ca.into(),
            ipv6: false,
            timeout: Duration::from_secs(3),
        }
    }

    #[must_use]
    pub fn ipv6(mut self, ipv6: bool) -> Self {
        self.ipv6 = ipv6;
        self
    }

    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}

/// How one client run ended.
#[derive(Clone, Debug)]
pub struct ClientRun {
    pub client: TlsClient,
    pub host: String,
    /// The exit code; `None` if it was killed (at the deadline, or by a signal).
    pub exit_code: Option<i32>,
    /// Killed because it was still waiting at its deadline: what a dropped flow looks like
    /// to a client without a timeout of its own (`openssl s_client`, `gnutls-cli`).
    pub killed_at_deadline: bool,
    /// The client said the certificate verified for the host.
    pub verified: bool,
    pub elapsed: Duration,
    pub stdout: String,
    pub stderr: String,
}

impl ClientRun {
    /// The body the lab's server sends for the host arrived.
    pub fn got_body(&self) -> bool {
        self.stdout.contains(&response_body(&self.host))
    }

    /// Exit 0, certificate verified for the host, and the server's body for the host.
    pub fn served(&self) -> bool {
        self.exit_code == Some(0) && self.verified && self.got_body()
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
            "{} {}: exit {:?}{}, verified {}, body {}, {:.2} s\n  stdout:\n    {}\n  stderr:\n    {}",
            self.client,
            self.host,
            self.exit_code,
            if self.killed_at_deadline {
                " (killed at its deadline)"
            } else {
                ""
            },
            self.verified,
            self.got_body(),
            self.elapsed.as_secs_f64(),
            tail(&self.stdout),
            tail(&self.stderr)
        )
    }
}

/// Fetches `https://HOST/` with `client` from the lab's client, connecting to the lab's server.
///
/// The result describes whatever happened; only failing to start the client is an error.
pub fn fetch(lab: &Lab, client: TlsClient, host: &str, opts: &FetchOpts) -> Result<ClientRun> {
    let dir = ScratchDir::new("client")?;
    let addr = lab.server_addr(opts.ipv6);
    let request = format!("GET / HTTP/1.0\r\nHost: {host}\r\n\r\n");
    fs::write(dir.path().join("request"), &request)?;
    let timeout_secs = format!("{:.3}", opts.timeout.as_secs_f64());
    let (mut cmd, deadline) = match client {
        TlsClient::OpensslSClient => {
            let mut cmd = lab.exec(Node::Client, "openssl");
            cmd.arg("s_client")
                .arg("-connect")
                .arg(socket_text(addr))
                .args(["-servername", host, "-verify_hostname", host])
                .arg("-CAfile")
                .arg(&opts.ca)
                // Fail the handshake unless the certificate verifies; keep reading after
                // the request was sent, until the server closes.
                .args(["-verify_return_error", "-ign_eof"]);
            (cmd, opts.timeout)
        }
        TlsClient::GnutlsCli => {
            let mut cmd = lab.exec(Node::Client, "gnutls-cli");
            cmd.arg(format!("--x509cafile={}", opts.ca.display()))
                .arg(format!("--sni-hostname={host}"))
                .arg(format!("--verify-hostname={host}"))
                .arg(format!("--port={HTTPS_PORT}"))
                .arg(addr.to_string());
            (cmd, opts.timeout)
        }
        TlsClient::PythonSsl => {
            let mut cmd = lab.exec(Node::Client, python3());
            cmd.args(["-c", PYTHON_CLIENT, host])
                .arg(addr.to_string())
                .arg(&opts.ca)
                .arg(&timeout_secs);
            (cmd, opts.timeout + PYTHON_EXTRA)
        }
        TlsClient::Chromium => {
            let home = dir.path().join("home");
            trust_in_nss_db(&home, &opts.ca)?;
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
                ])
                .arg(format!("--user-data-dir={}", profile.display()))
                .arg(format!("--host-resolver-rules=MAP {host} {mapped}"))
                .arg(format!("--timeout={}", opts.timeout.as_millis()))
                .arg("--dump-dom")
                .arg(format!("https://{host}/"));
            (cmd, opts.timeout + CHROMIUM_EXTRA)
        }
    };
    let stdout_path = dir.path().join("stdout");
    let stderr_path = dir.path().join("stderr");
    cmd.stdin(File::open(dir.path().join("request"))?)
        .stdout(File::create(&stdout_path)?)
        .stderr(File::create(&stderr_path)?);
    let start = Instant::now();
    let (exit_code, killed_at_deadline) = run_until(&mut cmd, deadline)?;
    let elapsed = start.elapsed();
    let stdout = String::from_utf8_lossy(&fs::read(&stdout_path)?).into_owned();
    let stderr = String::from_utf8_lossy(&fs::read(&stderr_path)?).into_owned();
    let verified = match client {
        TlsClient::OpensslSClient => stdout.contains("Verify return code: 0 (ok)"),
        TlsClient::GnutlsCli => {
            let all = format!("{stdout}{stderr}");
            all.contains("The certificate is trusted") && all.contains("Handshake was completed")
        }
        TlsClient::PythonSsl => stdout
            .lines()
            .any(|l| l.starts_with("verified ") && l.contains(&format!("'{host}'"))),
        // Chromium shows no page of the server's (an interstitial instead) unless the
        // certificate verified for the name.
        TlsClient::Chromium => stdout.contains(&response_body(host)),
    };
    Ok(ClientRun {
        client,
        host: host.to_owned(),
        exit_code,
        killed_at_deadline,
        verified,
        elapsed,
        stdout,
        stderr,
    })
}

/// Runs `cmd` until it exits or `deadline` passes (then it is killed): its exit code, and
/// whether it was killed at the deadline.
pub(crate) fn run_until(cmd: &mut Command, deadline: Duration) -> Result<(Option<i32>, bool)> {
    let start = Instant::now();
    let mut child = ChildGuard::spawn(cmd)?;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok((status.code(), false));
        }
        if start.elapsed() >= deadline {
            child.stop()?;
            return Ok((None, true));
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// `ADDR:443`, IPv6 in brackets.
fn socket_text(addr: IpAddr) -> String {
    match addr {
        IpAddr::V4(a) => format!("{a}:{HTTPS_PORT}"),
        IpAddr::V6(a) => format!("[{a}]:{HTTPS_PORT}"),
    }
}

/// Debian's python3 when present: a version manager's shim in `PATH` costs a start-up.
pub(crate) fn python3() -> &'static str {
    if Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3"
    } else {
        "python3"
    }
}

/// Chromium on Linux trusts the CAs of the NSS database in `$HOME/.pki/nssdb` (also a local
/// root for QUIC, when an origin is forced onto QUIC).
pub(crate) fn trust_in_nss_db(home: &Path, ca: &Path) -> Result<()> {
    let db = home.join(".pki/nssdb");
    fs::create_dir_all(&db)?;
    let db_arg = format!("sql:{}", db.display());
    run(Command::new("certutil").args(["-N", "--empty-password", "-d", &db_arg]))
        .context("cannot create an NSS database (Debian package libnss3-tools)")?;
    run(Command::new("certutil")
        .args([
            "-A",
            "-t",
            "C,,",
            "-n",
            "sni-filter lab CA",
            "-d",
            &db_arg,
            "-i",
        ])
        .arg(ca))
    .context("cannot add the lab CA to the NSS database")?;
    Ok(())
}

/// Python's `ssl` as a client: `HOST ADDR CAFILE TIMEOUT`. Prints `verified VERSION NAMES`
/// once the handshake completed with a certificate valid for HOST, then the response; a
/// failure prints `error: ...` and exits 3.
const PYTHON_CLIENT: &str = r#"
import socket, ssl, sys
host, addr, cafile, timeout = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
ctx = ssl.create_default_context(cafile=cafile)
try:
    with socket.create_connection((addr, 443), timeout=timeout) as raw:
        with ctx.wrap_socket(raw, server_hostname=host) as tls:
            names = [v for k, v in tls.getpeercert()["subjectAltName"] if k == "DNS"]
            print("verified", tls.version(), names, flush=True)
            tls.sendall(f"GET / HTTP/1.0\r\nHost: {host}\r\n\r\n".encode())
            data = b""
            while chunk := tls.recv(4096):
                data += chunk
            sys.stdout.write(data.decode(errors="replace"))
except Exception as e:
    print(f"error: {type(e).__name__}: {e}", flush=True)
    sys.exit(3)
"#;

//! curl from the lab's client namespace to the lab's server, by name: the client every test and
//! the demo use to see whether a connection was served or blocked.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::Result;

use crate::child::ChildGuard;
use crate::lab::{Lab, Node};
use crate::tls_server::{HTTPS_PORT, TlsServer};

/// Separates the body from the status that `--write-out` appends to stdout.
const STATUS_MARKER: &str = "\n<<sni-filter-lab http_code>>";

/// curl's exit code for "operation timed out": what a silently dropped flow looks like.
pub const CURL_TIMEOUT: i32 = 28;

/// How to run curl.
#[derive(Clone, Debug)]
pub struct CurlOpts {
    /// The CA that signed the server's certificate.
    pub cacert: PathBuf,
    /// Connect to the server's IPv6 address instead of its IPv4 one.
    pub ipv6: bool,
    /// `--max-time`: after this long without an answer the flow counts as blocked.
    pub max_time: Duration,
    /// More curl arguments, e.g. `--tlsv1.2`, `--http1.1`, `--tls-max 1.2`.
    pub extra_args: Vec<String>,
}

impl CurlOpts {
    /// IPv4, 4 s, trusting `cacert`.
    pub fn new(cacert: impl Into<PathBuf>) -> Self {
        Self {
            cacert: cacert.into(),
            ipv6: false,
            max_time: Duration::from_secs(4),
            extra_args: Vec::new(),
        }
    }

    #[must_use]
    pub fn ipv6(mut self, ipv6: bool) -> Self {
        self.ipv6 = ipv6;
        self
    }

    #[must_use]
    pub fn max_time(mut self, max_time: Duration) -> Self {
        self.max_time = max_time;
        self
    }

    #[must_use]
    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.extra_args.push(arg.into());
        self
    }
}

/// What one curl run ended with.
#[derive(Clone, Debug)]
pub struct CurlOutcome {
    /// curl's exit code (`None` if killed by a signal): 0 served, 28 timed out, 35/56 reset.
    pub exit_code: Option<i32>,
    /// The HTTP status, if a response arrived.
    pub http_status: Option<u16>,
    pub body: String,
    pub elapsed: Duration,
    pub stderr: String,
}

impl CurlOutcome {
    /// The server answered with HTTP 200.
    pub fn served(&self) -> bool {
        self.exit_code == Some(0) && self.http_status == Some(200)
    }

    /// No answer within `--max-time`: the gateway dropped the flow silently.
    pub fn timed_out(&self) -> bool {
        self.exit_code == Some(CURL_TIMEOUT)
    }

    /// A one-line account for logs and the demo.
    pub fn summary(&self) -> String {
        match (self.exit_code, self.http_status) {
            (Some(0), Some(status)) => {
                format!("HTTP {status}, {:?}", self.body.trim_end())
            }
            (Some(CURL_TIMEOUT), _) => {
                format!("no answer within {:.0} s", self.elapsed.as_secs_f64())
            }
            (Some(code), _) => format!("curl exit {code}: {}", self.stderr.trim()),
            (None, _) => "curl killed by a signal".to_owned(),
        }
    }
}

/// Fetches `https://HOST/` from the lab's client, resolving HOST to the lab's server address.
///
/// The result describes whatever happened; only failing to start curl is an error.
pub fn curl(lab: &Lab, host: &str, opts: &CurlOpts) -> Result<CurlOutcome> {
    let addr = match lab.server_addr(opts.ipv6) {
        std::net::IpAddr::V4(a) => a.to_string(),
        std::net::IpAddr::V6(a) => format!("[{a}]"),
    };
    let max_time = format!("{:.3}", opts.max_time.as_secs_f64());
    let mut cmd = lab.exec(Node::Client, "curl");
    cmd.arg("--resolve")
        .arg(format!("{host}:{HTTPS_PORT}:{addr}"))
        .arg("--cacert")
        .arg(&opts.cacert)
        .args(["-sS", "--max-time", &max_time])
        .arg("--write-out")
        .arg(format!("{STATUS_MARKER}%{{http_code}}"))
        .args(&opts.extra_args)
        .arg(format!("https://{host}/"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let start = Instant::now();
    let out = ChildGuard::spawn(&mut cmd)?.wait_with_output()?;
    let elapsed = start.elapsed();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let (body, status) = stdout
        .rsplit_once(STATUS_MARKER)
        .unwrap_or((stdout.as_ref(), ""));
    Ok(CurlOutcome {
        exit_code: out.status.code(),
        // curl writes 000 when no response arrived.
        http_status: status.trim().parse().ok().filter(|&s| s != 0),
        body: body.to_owned(),
        elapsed,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

impl TlsServer {
    /// Options for [`curl`] that trust this server's CA.
    pub fn curl_opts(&self) -> CurlOpts {
        CurlOpts::new(self.ca_path())
    }
}

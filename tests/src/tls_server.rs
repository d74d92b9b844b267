//! A real HTTPS server (nginx) in the lab's server namespace, with a certificate for the given
//! names issued at run time by a throwaway CA.

use std::fmt::Write as _;
use std::fs;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail, ensure};

use crate::child::ChildGuard;
use crate::lab::Lab;
use crate::netns::run_in_netns;
use crate::run::run;
use crate::scratch::ScratchDir;

const NGINX: &str = "/usr/sbin/nginx";
/// The port nginx listens on, IPv4 and IPv6.
pub const HTTPS_PORT: u16 = 443;
/// How long nginx gets to start listening.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// The body the lab server answers for `host`, so a client can tell which name it reached.
pub fn response_body(host: &str) -> String {
    format!("served by lab server: {host}\n")
}

/// nginx serving HTTPS on port 443 of the lab's server for a set of names. Stopped on drop.
#[derive(Debug)]
pub struct TlsServer {
    // Field order is drop order: stop nginx before its files go.
    nginx: ChildGuard,
    dir: ScratchDir,
    names: Vec<String>,
}

impl TlsServer {
    /// Issues a certificate for `names` and starts nginx in `lab`'s server namespace; returns
    /// once it accepts connections on IPv4 and IPv6.
    pub fn start(lab: &Lab, names: &[&str]) -> Result<Self> {
        ensure!(!names.is_empty(), "a TLS server needs at least one name");
        ensure!(
            Path::new(NGINX).exists(),
            "{NGINX} is missing: run `cargo xtask setup` (Debian package nginx)"
        );
        let dir = ScratchDir::new("tls")?;
        issue_certificates(dir.path(), names).context("cannot issue the lab certificates")?;
        let targets = [
            SocketAddr::new(lab.server_v4().into(), HTTPS_PORT),
            SocketAddr::new(lab.server_v6().into(), HTTPS_PORT),
        ];
        let nginx = start_nginx(lab, dir.path(), &nginx_config(dir.path()), &targets)?;
        Ok(Self {
            nginx,
            dir,
            names: names.iter().map(|&n| n.to_owned()).collect(),
        })
    }

    /// The CA certificate (PEM) that clients must trust.
    pub fn ca_path(&self) -> PathBuf {
        self.dir.path().join("ca.crt")
    }

    /// The server's certificate and key (PEM), for clients that pin them.
    pub fn cert_path(&self) -> PathBuf {
        self.dir.path().join("server.crt")
    }

    /// The names the certificate holds.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// The temporary directory with the certificates, configuration and logs.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// nginx's access log: one line per request that reached the server, with the SNI.
    pub fn access_log(&self) -> String {
        fs::read_to_string(self.dir.path().join("access.log")).unwrap_or_default()
    }

    /// nginx's error log and console output.
    pub fn logs(&self) -> String {
        read_logs(self.dir.path())
    }

    /// nginx's pid (the master process).
    pub fn pid(&self) -> u32 {
        self.nginx.id()
    }
}

/// Starts nginx with `conf` (written to `dir/nginx.conf`; its paths in `dir`) in `lab`'s
/// server namespace and returns once it accepts connections on every one of `targets`.
pub(crate) fn start_nginx(
    lab: &Lab,
    dir: &Path,
    conf: &str,
    targets: &[SocketAddr],
) -> Result<ChildGuard> {
    let conf_path = dir.join("nginx.conf");
    fs::write(&conf_path, conf).context("cannot write nginx.conf")?;
    let stdout = fs::File::create(dir.join("nginx.out"))?;
    let stderr = stdout.try_clone()?;
    let mut prefix = dir.as_os_str().to_owned();
    prefix.push("/");
    let mut nginx = ChildGuard::spawn(
        lab.exec(crate::Node::Server, NGINX)
            .arg("-p")
            .arg(&prefix)
            .arg("-e")
            .arg(dir.join("error.log"))
            .arg("-c")
            .arg(&conf_path)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr),
    )?
    // SIGQUIT is nginx's graceful shutdown; its workers are in the same group.
    .graceful(libc::SIGQUIT, Duration::from_secs(2));
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Some(status) = nginx.try_wait()? {
            bail!(
                "nginx exited ({status}) before listening:\n{}",
                read_logs(dir)
            );
        }
        let ready = run_in_netns(lab.server_ns(), || {
            targets
                .iter()
                .all(|addr| TcpStream::connect_timeout(addr, Duration::from_millis(200)).is_ok())
        })?;
        if ready {
            return Ok(nginx);
        }
        if Instant::now() > deadline {
            bail!(
                "nginx did not listen on {targets:?} within {START_TIMEOUT:?}:\n{}",
                read_logs(dir)
            );
        }
        thread::sleep(Duration::from_millis(50));
    }
}

fn read_logs(dir: &Path) -> String {
    let mut text = String::new();
    for file in ["nginx.out", "error.log"] {
        let body = fs::read_to_string(dir.join(file)).unwrap_or_default();
        let _ = writeln!(text, "--- {file}\n{}", body.trim_end());
    }
    text
}

/// A CA and a server certificate (P-256) whose `subjectAltName`s are `names`, in `dir`:
/// `ca.crt`, `server.key`, `server.crt` and `chain.crt` (the server's, then the CA's).
pub(crate) fn issue_certificates(dir: &Path, names: &[&str]) -> Result<()> {
    // Arguments without spaces as one string, for reading; the rest as a slice.
    let openssl = |args: &str, more: &[&str]| -> Result<()> {
        run(Command::new("openssl")
            .args(args.split_whitespace())
            .args(more)
            .current_dir(dir))
        .map(|_| ())
    };
    openssl(
        "req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key \
         -out ca.crt -days 7 -addext basicConstraints=critical,CA:TRUE \
         -addext keyUsage=critical,keyCertSign,cRLSign",
        &["-subj", "/CN=sni-filter lab CA"],
    )?;
    openssl(
        "req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout server.key \
         -out server.csr",
        &["-subj", &format!("/CN={}", names[0])],
    )?;
    let sans: Vec<String> = names.iter().map(|n| format!("DNS:{n}")).collect();
    fs::write(
        dir.join("server.ext"),
        format!(
            "subjectAltName={}\nbasicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n\
             extendedKeyUsage=serverAuth\n",
            sans.join(",")
        ),
    )?;
    openssl(
        "x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out server.crt \
         -days 7 -extfile server.ext",
        &[],
    )?;
    // The chain the server sends: its certificate, then the CA's.
    let chain =
        fs::read_to_string(dir.join("server.crt"))? + &fs::read_to_string(dir.join("ca.crt"))?;
    fs::write(dir.join("chain.crt"), chain)?;
    // Check that the certificate verifies against the CA before any client depends on it.
    openssl("verify -CAfile ca.crt server.crt", &[])
}

/// The opening of an nginx configuration whose every path lives in `dir`, up to inside its
/// `http` block: no daemon, one worker, no log outside `dir`.
pub(crate) fn nginx_prelude(dir: &Path) -> String {
    let d = dir.display();
    format!(
        r"# Written by sni-filter-lab; every path lives in {d}.
daemon off;
user root;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log info;

events {{
    worker_connections 256;
}}

http {{
    # Only the server below logs, to its own file: nothing is written under /var/log.
    access_log off;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
"
    )
}

fn nginx_config(dir: &Path) -> String {
    let d = dir.display();
    nginx_prelude(dir)
        + &format!(
            r#"    log_format lab '$remote_addr sni=$ssl_server_name host=$host "$request" $status';

    server {{
        listen 443 ssl default_server;
        listen [::]:443 ssl default_server;
        server_name _;
        ssl_certificate {d}/chain.crt;
        ssl_certificate_key {d}/server.key;
        ssl_protocols TLSv1.2 TLSv1.3;
        access_log {d}/access.log lab;

        location / {{
            default_type text/plain;
            return 200 "served by lab server: $host\n";
        }}
    }}
}}
"#
        )
}

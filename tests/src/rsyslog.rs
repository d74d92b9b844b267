//! rsyslogd, the syslog server administrators run, started in the lab's server namespace to
//! receive what the daemon sends: every message written raw, one per line. Or started in any
//! node with a configuration of the test's own (a relay of the shipped RELP snippets), and
//! stopped and started again to take a syslog server away for a while.

use std::fs;
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Result, ensure};

use crate::child::ChildGuard;
use crate::lab::{Lab, Node};
use crate::netns::run_in_netns;

const RSYSLOGD: &str = "/usr/sbin/rsyslogd";

/// Which listeners rsyslog opens.
pub enum Listen {
    /// UDP and TCP (RFC 6587 octet counting) on one port.
    Plain(u16),
    /// TLS (RFC 5425) with a certificate for the server's address, signed by `ca.crt`.
    Tls(u16),
}

/// A running rsyslogd writing every message it receives, raw, one per line, to a file.
pub struct Rsyslog {
    // Field order is drop order: stop rsyslog before its folder goes.
    process: Option<ChildGuard>,
    dir: PathBuf,
    node: Node,
    /// The TCP listener that answers once rsyslogd is up.
    listens: SocketAddr,
}

impl Rsyslog {
    /// Starts rsyslogd in the lab's server namespace, listening on the server's address as
    /// `listen` says (TLS certificates `ca.crt`, `server.crt`, `server.key` in `dir`), and
    /// waits until it accepts connections.
    pub fn start(lab: &Lab, dir: &Path, listen: &Listen) -> Result<Self> {
        let certs = dir.display().to_string();
        let dir = dir.join("rsyslog");
        fs::create_dir_all(dir.join("work"))?;
        let d = dir.display();
        let addr = lab.server_v4();
        let (global, inputs, port) = match listen {
            Listen::Plain(port) => (
                String::new(),
                format!(
                    "module(load=\"imudp\")\nmodule(load=\"imtcp\")\n\
                     input(type=\"imudp\" address=\"{addr}\" port=\"{port}\")\n\
                     input(type=\"imtcp\" address=\"{addr}\" port=\"{port}\")\n"
                ),
                *port,
            ),
            Listen::Tls(port) => (
                format!(
                    " defaultNetstreamDriverCAFile=\"{certs}/ca.crt\" \
                     defaultNetstreamDriverCertFile=\"{certs}/server.crt\" \
                     defaultNetstreamDriverKeyFile=\"{certs}/server.key\""
                ),
                format!(
                    "module(load=\"imtcp\" streamDriver.name=\"gtls\" streamDriver.mode=\"1\" \
                     streamDriver.authMode=\"anon\")\n\
                     input(type=\"imtcp\" address=\"{addr}\" port=\"{port}\")\n"
                ),
                *port,
            ),
        };
        let conf = format!(
            "global(workDirectory=\"{d}/work\" maxMessageSize=\"64k\"{global})\n{inputs}\
             template(name=\"raw\" type=\"string\" string=\"%rawmsg%\\n\")\n\
             action(type=\"omfile\" file=\"{d}/received.log\" template=\"raw\")\n"
        );
        // Both listeners come from one configuration: the TCP one answering means it is up.
        let target = SocketAddr::new(IpAddr::V4(addr), port);
        Self::start_with_config(lab, Node::Server, &dir, &conf, target)
    }

    /// Starts rsyslogd in `node` with the configuration `conf` (written to `dir`, which also
    /// holds its console output and pid file), and waits until the TCP listener `listens`
    /// (a plain `imtcp` or an `imrelp` one) accepts connections within that node. Paths in
    /// `conf` are the caller's: [`Rsyslog::lines`] reads `dir/received.log`.
    pub fn start_with_config(
        lab: &Lab,
        node: Node,
        dir: &Path,
        conf: &str,
        listens: SocketAddr,
    ) -> Result<Self> {
        ensure!(
            Path::new(RSYSLOGD).exists(),
            "{RSYSLOGD} is missing: run `cargo xtask setup` (Debian package rsyslog)"
        );
        fs::create_dir_all(dir)?;
        fs::write(dir.join("rsyslog.conf"), conf)?;
        let mut rsyslog = Self {
            process: None,
            dir: dir.to_owned(),
            node,
            listens,
        };
        rsyslog.restart(lab)?;
        Ok(rsyslog)
    }

    /// Stops rsyslogd (SIGTERM, as systemd does: it saves what its disk-assisted queues
    /// hold; SIGKILL after 5 s) and returns how it ended, `None` when it was not running.
    /// Its files stay.
    pub fn stop(&mut self) -> Result<Option<ExitStatus>> {
        self.process.take().map(ChildGuard::stop).transpose()
    }

    /// Starts rsyslogd again (or for the first time) with the same configuration and files,
    /// and waits until it listens.
    pub fn restart(&mut self, lab: &Lab) -> Result<()> {
        self.stop()?;
        let dir = &self.dir;
        let out = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("rsyslogd.out"))?;
        let process = ChildGuard::spawn(
            lab.exec(self.node, RSYSLOGD)
                .arg("-n")
                .arg("-f")
                .arg(dir.join("rsyslog.conf"))
                .arg("-i")
                .arg(dir.join("rsyslogd.pid"))
                .stdin(Stdio::null())
                .stdout(out.try_clone()?)
                .stderr(out),
        )?
        .graceful(libc::SIGTERM, Duration::from_secs(5));
        self.process = Some(process);
        let target = self.listens;
        let deadline = Instant::now() + Duration::from_secs(10);
        while !run_in_netns(lab.ns(self.node), || {
            TcpStream::connect_timeout(&target, Duration::from_millis(200)).is_ok()
        })? {
            ensure!(
                Instant::now() < deadline,
                "rsyslogd did not listen on {target}:\n{}",
                self.console()
            );
            thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    /// What rsyslogd itself printed.
    pub fn console(&self) -> String {
        fs::read_to_string(self.dir.join("rsyslogd.out")).unwrap_or_default()
    }

    /// Every message received so far, one per line.
    pub fn lines(&self) -> Vec<String> {
        fs::read_to_string(self.dir.join("received.log"))
            .unwrap_or_default()
            .lines()
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect()
    }
}

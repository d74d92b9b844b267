//! rsyslog in the lab's server namespace, read as this suite reads it (every line must be
//! RFC 5424 from this daemon), and the certificates an RFC 5425 (TLS) listener needs.

use std::{
    fs,
    net::IpAddr,
    path::Path,
    process::{Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use sni_filter_lab::{Daemon, Lab, Listen};

use super::rfc5424::{Message, parse};

/// How long a message may take to reach the file (reconnection backoff included).
pub const ARRIVAL_TIMEOUT: Duration = Duration::from_secs(15);

/// rsyslog from the lab crate, with this suite's reading of what it received.
pub struct Rsyslog(sni_filter_lab::Rsyslog);

impl Rsyslog {
    pub fn start(lab: &Lab, dir: &Path, listen: &Listen) -> Self {
        Self(sni_filter_lab::Rsyslog::start(lab, dir, listen).expect("rsyslogd listens"))
    }

    pub fn lines(&self) -> Vec<String> {
        self.0.lines()
    }

    /// Every message so far, each of which must parse as RFC 5424 from this daemon.
    pub fn messages(&self) -> Vec<Message> {
        self.lines()
            .iter()
            .map(|l| {
                let m = parse(l).unwrap_or_else(|e| panic!("not RFC 5424 ({e}): {l}"));
                assert_eq!(m.app_name, "sni-filter", "{l}");
                assert!(m.procid.parse::<u32>().is_ok(), "{l}");
                assert!(m.sd.contains_key("sni-filter@32473"), "{l}");
                // facility daemon (3): PRI 24..=31.
                assert!((24..=31).contains(&m.pri), "{l}");
                assert!(!m.hostname.is_empty(), "{l}");
                m
            })
            .collect()
    }

    /// Waits until `done` holds for the messages received, and returns them.
    pub fn wait_for(
        &self,
        what: &str,
        daemon: &Daemon,
        done: impl Fn(&[Message]) -> bool,
    ) -> Vec<Message> {
        let deadline = Instant::now() + ARRIVAL_TIMEOUT;
        loop {
            let msgs = self.messages();
            if done(&msgs) {
                return msgs;
            }
            assert!(
                Instant::now() < deadline,
                "no {what} within {ARRIVAL_TIMEOUT:?}; received:\n{}\n--- rsyslogd:\n{}\n--- daemon:\n{}",
                self.lines().join("\n"),
                self.0.console(),
                daemon.log()
            );
            thread::sleep(Duration::from_millis(100));
        }
    }
}

/// A CA and a certificate for the server's address (IP SAN), as an RFC 5425 server has,
/// and a second CA that signed nothing.
pub fn issue_certificates(dir: &Path, ip: IpAddr) {
    // Arguments without spaces as one string, for reading; the rest as a slice.
    let openssl = |args: &str, more: &[&str]| {
        let out = Command::new("openssl")
            .args(args.split_whitespace())
            .args(more)
            .current_dir(dir)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "openssl {args}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let new_ca = |name: &str, cn: &str| {
        openssl(
            &format!(
                "req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout {name}.key \
                 -out {name}.crt -days 2 -addext basicConstraints=critical,CA:TRUE \
                 -addext keyUsage=critical,keyCertSign,cRLSign"
            ),
            &["-subj", cn],
        );
    };
    new_ca("ca", "/CN=syslog test CA");
    new_ca("other-ca", "/CN=another CA");
    openssl(
        "req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout server.key \
         -out server.csr -subj /CN=syslog",
        &[],
    );
    fs::write(
        dir.join("server.ext"),
        format!(
            "subjectAltName=IP:{ip}\nbasicConstraints=CA:FALSE\n\
             keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n"
        ),
    )
    .unwrap();
    openssl(
        "x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out server.crt \
         -days 2 -extfile server.ext",
        &[],
    );
}

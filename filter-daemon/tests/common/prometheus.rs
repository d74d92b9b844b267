//! Prometheus for the fleet's lab tests: Debian's `prometheus` started on a lab node with the
//! shipped scrape job (`config/prometheus/scrape.yml`, its targets the lab's gateways, every
//! second) and alert rules, and instant queries over its HTTP API (`/api/v1/query`).

use std::fs;
use std::io::{Read as _, Write as _};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;
use sni_filter_lab::{ChildGuard, Lab, Node, run_in_netns};

use super::fleet::{adapted, shipped};

/// Prometheus's API, on the centre's loopback.
const PROMETHEUS: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 9090);
/// How long a change may take to show in Prometheus (scraped every second).
const SCRAPED: Duration = Duration::from_secs(20);

/// A URL query value: every byte but the unreserved ones percent-encoded.
fn encoded(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Prometheus on the centre, scraping `targets` (name, address) every second with the
/// shipped scrape job and alert rules.
pub struct Prometheus<'a> {
    hub: &'a Lab,
    _process: ChildGuard,
    dir: PathBuf,
}

impl<'a> Prometheus<'a> {
    pub fn start(hub: &'a Lab, dir: &Path, targets: &[(&str, SocketAddr)]) -> Self {
        let mut conf = shipped("prometheus/scrape.yml");
        conf = adapted(&conf, "scrape_timeout: 10s", "scrape_timeout: 1s").replace("30s", "1s");
        for ((name, addr), (old_addr, old_name)) in targets.iter().zip([
            ("192.0.2.11:9464", "brussels-city-1"),
            ("192.0.2.12:9464", "brussels-city-2"),
            ("198.51.100.21:9464", "ixelles-1"),
        ]) {
            conf = adapted(&conf, old_addr, &addr.to_string());
            conf = adapted(&conf, old_name, name);
        }
        fs::create_dir_all(dir.join("data")).unwrap();
        fs::write(dir.join("prometheus.yml"), conf).unwrap();
        fs::write(dir.join("alerts.yml"), shipped("prometheus/alerts.yml")).unwrap();
        let log = fs::File::create(dir.join("prometheus.log")).unwrap();
        let process = ChildGuard::spawn(
            hub.exec(Node::Server, "prometheus")
                .arg(format!("--config.file={}/prometheus.yml", dir.display()))
                .arg(format!("--storage.tsdb.path={}/data", dir.display()))
                .arg(format!("--web.listen-address={PROMETHEUS}"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log),
        )
        .expect("prometheus runs (Debian package prometheus)");
        let p = Self {
            hub,
            _process: process,
            dir: dir.to_owned(),
        };
        let ready = eventually(Duration::from_secs(30), || {
            p.get("/-/ready").filter(|r| r.starts_with("HTTP/1.0 200"))
        });
        assert!(ready.is_some(), "prometheus not ready: {}", p.log());
        p
    }

    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.join("prometheus.log")).unwrap_or_default()
    }

    /// `GET path` on the centre: the whole answer, or `None` if it cannot connect.
    fn get(&self, path: &str) -> Option<String> {
        run_in_netns(self.hub.server_ns(), || {
            let mut s = TcpStream::connect_timeout(&PROMETHEUS, Duration::from_secs(2)).ok()?;
            s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
            s.write_all(format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").as_bytes())
                .ok()?;
            let mut out = String::new();
            s.read_to_string(&mut out).ok()?;
            Some(out)
        })
        .unwrap()
    }

    /// The result of an instant query (`/api/v1/query`): its series, each with its labels
    /// and value.
    pub fn query(&self, expr: &str) -> Vec<Value> {
        let answer = self
            .get(&format!("/api/v1/query?query={}", encoded(expr)))
            .expect("prometheus answers");
        let body = answer.split_once("\r\n\r\n").map_or("", |(_, b)| b);
        let v: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {answer}"));
        assert_eq!(v["status"], "success", "{expr}: {answer}");
        v["data"]["result"].as_array().unwrap().clone()
    }

    /// Waits until `expr`'s result satisfies `ok`, and returns it (the last one on timeout).
    pub fn until(&self, expr: &str, ok: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let deadline = Instant::now() + SCRAPED;
        loop {
            let got = self.query(expr);
            if ok(&got) || Instant::now() > deadline {
                return got;
            }
            thread::sleep(Duration::from_millis(250));
        }
    }
}

/// `f`'s first `Some`, trying every 100 ms for `within`.
pub fn eventually<T>(within: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(t) = f() {
            return Some(t);
        }
        if Instant::now() > deadline {
            return None;
        }
        thread::sleep(Duration::from_millis(100));
    }
}

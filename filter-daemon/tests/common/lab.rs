//! What the end-to-end lab tests share: what the lab's server answered, how far a
//! `status` counter moved, the assertions on a served or refused name, and `/metrics`
//! scraped on the gateway.

use std::{
    net::{SocketAddr, TcpStream},
    time::Duration,
};

use sni_filter_lab::{Daemon, Lab, Status, TlsServer, run_in_netns};

use super::{bin, repo_config};

/// Requests the server answered for `host` (its access log names the SNI).
pub fn requests_for(server: &TlsServer, host: &str) -> usize {
    server.access_log().matches(&format!("sni={host} ")).count()
}

/// How much a reason's packets moved between two `status` reads.
pub fn moved(before: &Status, after: &Status, reason: &str) -> u64 {
    after.reason_packets(reason) - before.reason_packets(reason)
}

/// The allowed name was served: HTTP 200 with the server's body for it.
pub fn assert_served(outcome: &sni_filter_lab::CurlOutcome, host: &str, context: &str) {
    assert_eq!(
        outcome.http_status,
        Some(200),
        "{context} {host}: {}",
        outcome.summary()
    );
    assert_eq!(
        outcome.body,
        sni_filter_lab::response_body(host),
        "{context} {host}"
    );
}

/// The server never answered a request for `host` (its access log names the SNI).
pub fn assert_never_served(server: &TlsServer, host: &str) {
    assert_eq!(requests_for(server, host), 0, "{}", server.access_log());
}

/// The real daemon on the lab's gateway with the shipped configuration.
pub fn shipped_daemon(lab: &Lab) -> Daemon {
    Daemon::start(lab, &bin(), &repo_config(), Vec::<String>::new()).expect("daemon attaches")
}

/// A reason's packets rose between two `status` reads.
pub fn assert_moved(before: &Status, after: &Status, reason: &str, context: &str) {
    assert!(
        moved(before, after, reason) >= 1,
        "{context}: {reason} did not move:\n{}",
        after.text
    );
}

/// `GET /metrics` from inside the gateway namespace: the whole answer, head and body.
pub fn scrape(lab: &Lab, addr: SocketAddr) -> String {
    use std::io::{Read as _, Write as _};
    run_in_netns(lab.gateway_ns(), || {
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    })
    .unwrap()
}

/// The value of one series (name and labels as exposed) in a scrape.
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

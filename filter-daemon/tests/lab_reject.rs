//! Group: end-to-end lab tests (network namespaces, real servers, clients and daemons; see
//! `filter-daemon/tests/README.md`).
//!
//! `action = "reject"` end to end: the program answers the banned name's `ClientHello` with a
//! TCP RST (`XDP_TX` back out of the gateway's client-facing veth), so clients fail at once
//! instead of waiting for a timeout, over IPv4 and IPv6; the allowed name is still served and
//! the app's `resets` counter moves. Needs root.

mod common;

#[allow(clippy::wildcard_imports)]
use common::{lab::*, *};
use std::fs;
use std::path::PathBuf;
use std::time::Duration;

use sni_filter_lab::{
    CurlOpts, Daemon, FetchOpts, Lab, Node, ScratchDir, TlsClient, TlsServer, curl, fetch,
};

/// A reset must end the attempt well before this; a dropped flow would run into it.
const FAST: Duration = Duration::from_secs(1);
/// curl's patience: far above `FAST`, so a silent drop is told apart from a reset.
const CURL_MAX_TIME: Duration = Duration::from_secs(4);
/// curl's exit codes for a connection reset during the TLS handshake: 35 (SSL connect
/// error) or 56 (failure receiving network data).
const CURL_RESET: [i32; 2] = [35, 56];

/// The repository's tiktok list, with the app's action set to reject.
fn reject_config(dir: &ScratchDir) -> PathBuf {
    let list = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../config/lists/tiktok.txt"
    ));
    let path = dir.path().join("reject.toml");
    fs::write(
        &path,
        format!(
            "[apps.tiktok]\naction = \"reject\"\nenabled = true\nlists = [{:?}]\n",
            list.canonicalize()
                .expect("the tiktok list")
                .display()
                .to_string()
        ),
    )
    .expect("writing the configuration");
    path
}

/// The gateway veth's `XDP_TX` counters, for failure messages: a reset that never reached the
/// client shows up as `xdp_tx_errors`.
fn xdp_tx_stats(lab: &Lab) -> String {
    let out = lab
        .exec(Node::Gateway, "ethtool")
        .args(["-S", lab.gateway_client_if()])
        .output()
        .expect("ethtool runs");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains("xdp_tx"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn reject_resets_the_banned_name_at_once_over_ipv4_and_ipv6() {
    let lab = Lab::new("reject").expect("lab");
    let server = TlsServer::start(&lab, &[BANNED, ALLOWED]).expect("nginx");
    let dir = ScratchDir::new("config").expect("temporary folder");
    let daemon = Daemon::start(&lab, &bin(), &reject_config(&dir), Vec::<String>::new())
        .expect("daemon attaches");

    for ipv6 in [false, true] {
        let opts = CurlOpts::new(server.ca_path())
            .ipv6(ipv6)
            .max_time(CURL_MAX_TIME);
        let before = daemon.status().unwrap();
        let blocked = curl(&lab, BANNED, &opts).unwrap();
        let after = daemon.status().unwrap();
        println!(
            "curl {BANNED} ipv6={ipv6}: exit {:?} after {:.3} s: {}",
            blocked.exit_code,
            blocked.elapsed.as_secs_f64(),
            blocked.stderr.trim()
        );
        assert!(
            blocked.exit_code.is_some_and(|c| CURL_RESET.contains(&c)),
            "ipv6={ipv6}: expected a reset (curl exit 35 or 56): {}\n{}\n{}",
            blocked.summary(),
            xdp_tx_stats(&lab),
            after.text
        );
        assert!(
            blocked.elapsed < FAST,
            "ipv6={ipv6}: the reset took {:?}",
            blocked.elapsed
        );
        assert!(
            after.app_count("tiktok", "resets") > before.app_count("tiktok", "resets"),
            "ipv6={ipv6}: resets did not move:\n{}",
            after.text
        );
        assert_moved(&before, &after, "hello_blocked", &format!("ipv6={ipv6}"));

        // Another client's stack sees the same reset.
        let python = fetch(
            &lab,
            TlsClient::PythonSsl,
            BANNED,
            &FetchOpts::new(server.ca_path())
                .ipv6(ipv6)
                .timeout(CURL_MAX_TIME),
        )
        .unwrap();
        assert!(
            python.stdout.contains("ConnectionResetError") && python.elapsed < FAST,
            "ipv6={ipv6}: {}",
            python.summary()
        );

        let allowed = curl(&lab, ALLOWED, &opts).unwrap();
        assert_served(&allowed, ALLOWED, &format!("ipv6={ipv6}"));
    }
    assert_never_served(&server, BANNED);
    let status = daemon.status().unwrap();
    assert!(status.app_count("tiktok", "resets") >= 4, "{}", status.text);
    assert_eq!(status.app("tiktok").unwrap().text("action"), "reject");
    println!("{}", status.text);
}

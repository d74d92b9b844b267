//! Group: end-to-end lab tests, of the lab itself (network namespaces, real servers and
//! clients, no filter; see `filter-daemon/tests/README.md`).
//!
//! QUIC in the lab, without the filter: the aioquic HTTP/3 server on UDP 443 of the lab's
//! server, and the three QUIC clients (aioquic, quinn, Chromium) fetching through the gateway,
//! with and without a Retry, over IPv4 and IPv6; a name the certificate does not hold fails.
//! Nothing listens on TCP, so every answer came over QUIC. Needs root.

use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use sni_filter_lab::{
    Lab, QUIC_PORT, QuicClient, QuicServer, netns_list, process_exists, quic_fetch, run_in_netns,
};

const PREFIX: &str = "sfquic";
const NAMES: [&str; 2] = ["www.example.org", "www.tiktok.com"];
const ALLOWED: &str = "www.example.org";
/// Not in the certificate.
const UNCOVERED: &str = "other.example";
const TIMEOUT: Duration = Duration::from_secs(5);

#[test]
fn quic_clients_are_served_with_and_without_retry_and_check_the_name() {
    Lab::cleanup_stale(PREFIX).unwrap();
    let started = Instant::now();
    let lab = Lab::new(PREFIX).unwrap();
    let lab_namespaces = [lab.client_ns(), lab.gateway_ns(), lab.server_ns()].map(str::to_owned);

    for retry in [false, true] {
        let server = QuicServer::start(&lab, &NAMES, retry).unwrap();
        // Nothing answers on TCP 443: a page that arrives came over QUIC.
        for ipv6 in [false, true] {
            let addr = SocketAddr::new(lab.server_addr(ipv6), QUIC_PORT);
            let tcp = run_in_netns(lab.client_ns(), || {
                TcpStream::connect_timeout(&addr, Duration::from_secs(2))
            })
            .unwrap();
            assert!(tcp.is_err(), "something listens on TCP {addr}");
        }

        let mut expected = 0;
        for client in QuicClient::ALL {
            for ipv6 in [false, true] {
                let run = quic_fetch(&lab, client, ALLOWED, &server, ipv6, TIMEOUT).unwrap();
                assert!(
                    run.served(),
                    "retry={retry}: {}\n--- server log\n{}",
                    run.summary(),
                    server.log()
                );
                // Chromium asks for /favicon.ico as well; count the pages.
                expected += 1;
                eprintln!("retry={retry} {}", run.summary().lines().next().unwrap());
            }
        }
        let requests = server.requests();
        let pages: Vec<_> = requests.iter().filter(|r| r.path == "/").collect();
        assert_eq!(pages.len(), expected, "{requests:?}");
        for request in &requests {
            assert_eq!(request.host, ALLOWED, "{requests:?}");
            // Every connection went through a Retry exactly when the server asked for one.
            assert_eq!(request.retried, retry, "{requests:?}");
        }

        // A name the certificate does not hold: every client refuses the handshake and no
        // request reaches the server.
        for client in QuicClient::ALL {
            let run = quic_fetch(&lab, client, UNCOVERED, &server, false, TIMEOUT).unwrap();
            assert!(!run.served(), "retry={retry}: {}", run.summary());
            assert!(
                !run.killed_at_deadline,
                "retry={retry}: should fail fast, not hang: {}",
                run.summary()
            );
            match client {
                // Their own exit code for a failed handshake (2 would be their timeout).
                QuicClient::Aioquic | QuicClient::Quinn => {
                    assert_eq!(run.exit_code, Some(3), "{}", run.summary());
                }
                QuicClient::Chromium => assert!(
                    run.stderr.contains("ERR_QUIC_PROTOCOL_ERROR")
                        || run.stderr.contains("ERR_CERT"),
                    "{}",
                    run.summary()
                ),
            }
        }
        assert!(
            !server.requests().iter().any(|r| r.host == UNCOVERED),
            "{}",
            server.log()
        );

        let pid = server.pid();
        drop(server);
        assert!(
            !process_exists(pid),
            "the QUIC server {pid} outlived its guard"
        );
    }

    drop(lab);
    let listed = netns_list();
    for name in &lab_namespaces {
        assert!(!listed.contains(name), "{name} outlived the lab");
    }
    eprintln!("quic lab: {:.1} s", started.elapsed().as_secs_f64());
}

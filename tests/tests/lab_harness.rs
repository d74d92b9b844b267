//! Group: end-to-end lab tests, of the lab itself (network namespaces, real servers and
//! clients, no filter; see `filter-daemon/tests/README.md`).
//!
//! The lab itself, without the filter: namespaces and routing, the TLS server, curl, realistic
//! segmentation, the daemon guard (with a stand-in daemon), and that nothing outlives a lab.
//! Needs root.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt as _;
use std::process::{Command, Stdio};
use std::time::Duration;

use sni_filter_lab::hello::{ClientHelloBuilder, RECORD_FRAGMENT_MAX, tls_records};
use sni_filter_lab::{
    ChildGuard, CurlOpts, Daemon, HTTPS_PORT, Lab, Node, TlsServer, curl, netns_list,
    process_exists, response_body, run_in_netns,
};

const PREFIX: &str = "sflt";

#[test]
fn names_are_served_through_the_gateway_and_nothing_outlives_the_lab() {
    let lab = Lab::new(PREFIX).unwrap();
    let names = [lab.client_ns(), lab.gateway_ns(), lab.server_ns()].map(str::to_owned);
    let listed = netns_list();
    for name in &names {
        assert!(listed.contains(name), "{name} missing from {listed:?}");
    }
    for ifname in [
        lab.client_if(),
        lab.gateway_client_if(),
        lab.gateway_server_if(),
        lab.server_if(),
    ] {
        assert!(ifname.len() <= 15, "{ifname}");
    }

    let server = TlsServer::start(&lab, &["www.example.org", "www.tiktok.com"]).unwrap();
    let nginx = server.pid();
    for host in ["www.example.org", "www.tiktok.com"] {
        for ipv6 in [false, true] {
            let outcome = curl(&lab, host, &server.curl_opts().ipv6(ipv6)).unwrap();
            assert!(outcome.served(), "{host} ipv6={ipv6}: {outcome:?}");
            assert_eq!(outcome.http_status, Some(200));
            assert_eq!(outcome.body, response_body(host));
        }
    }
    // The requests came from the client's addresses, routed by the gateway, with their SNI.
    let log = server.access_log();
    assert!(
        log.contains(&format!("{} sni=www.tiktok.com", lab.client_v4())),
        "{log}"
    );
    assert!(
        log.contains(&format!("{} sni=www.example.org", lab.client_v6())),
        "{log}"
    );

    // A name the certificate does not hold fails verification: curl really checks.
    let outcome = curl(&lab, "other.example", &server.curl_opts()).unwrap();
    assert!(!outcome.served());
    assert_eq!(outcome.exit_code, Some(60), "{outcome:?}");

    drop(server);
    assert!(!process_exists(nginx), "nginx {nginx} outlived its guard");
    drop(lab);
    let listed = netns_list();
    for name in &names {
        assert!(
            !listed.contains(name),
            "{name} outlived the lab: {listed:?}"
        );
    }
}

#[test]
fn offloads_are_set_for_realistic_frames() {
    let lab = Lab::new(PREFIX).unwrap();
    let features = |node, ifname: &str| {
        let out = lab
            .exec(node, "ethtool")
            .args(["-k", ifname])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    for (node, ifname) in [
        (Node::Client, lab.client_if()),
        (Node::Gateway, lab.gateway_client_if()),
        (Node::Gateway, lab.gateway_server_if()),
        (Node::Server, lab.server_if()),
    ] {
        let f = features(node, ifname);
        assert!(f.contains("tcp-segmentation-offload: off"), "{ifname}: {f}");
        assert!(
            f.contains("generic-segmentation-offload: off"),
            "{ifname}: {f}"
        );
    }
    let f = features(Node::Client, lab.client_if());
    assert!(f.contains("generic-receive-offload: on"), "{f}");
    let forwarding = lab
        .exec(Node::Gateway, "sysctl")
        .args(["-n", "net.ipv4.ip_forward", "net.ipv6.conf.all.forwarding"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&forwarding.stdout), "1\n1\n");
}

/// A crafted Chrome-like hello, sent by the client's own TCP stack, reaches the gateway as
/// wire-sized segments (not one GSO super-packet) and nginx answers it with a `ServerHello`.
#[test]
fn crafted_hello_arrives_segmented_and_is_answered() {
    let lab = Lab::new(PREFIX).unwrap();
    let _server = TlsServer::start(&lab, &["www.example.org"]).unwrap();
    let hello = tls_records(
        &ClientHelloBuilder::chrome("www.example.org").build(),
        RECORD_FRAGMENT_MAX,
    );
    assert!(hello.len() > 1448);

    let dump = tempfile::NamedTempFile::new().unwrap();
    let mut tcpdump = lab.exec(Node::Gateway, "tcpdump");
    tcpdump
        .args(["-nn", "-l", "-i", lab.gateway_client_if()])
        .arg(format!("tcp dst port {HTTPS_PORT}"))
        .stdin(Stdio::null())
        .stdout(dump.reopen().unwrap())
        .stderr(Stdio::piped());
    let mut tcpdump = ChildGuard::spawn(&mut tcpdump).unwrap();
    // tcpdump says "listening on IF" once its capture is open.
    let mut stderr = tcpdump.take_stderr().unwrap();
    let mut seen = Vec::new();
    let mut byte = [0u8; 1];
    while !String::from_utf8_lossy(&seen).contains("listening on") {
        assert_eq!(stderr.read(&mut byte).unwrap(), 1, "tcpdump ended early");
        seen.push(byte[0]);
    }

    let target = SocketAddr::new(lab.server_v4().into(), HTTPS_PORT);
    let answer = run_in_netns(lab.client_ns(), || {
        let mut stream = TcpStream::connect_timeout(&target, Duration::from_secs(3)).unwrap();
        stream.set_nodelay(true).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(3)))
            .unwrap();
        stream.write_all(&hello).unwrap();
        let mut answer = [0u8; 6];
        stream.read_exact(&mut answer).unwrap();
        answer
    })
    .unwrap();
    // A handshake record whose first message is a ServerHello (type 2).
    assert_eq!(answer[0], 22, "not a handshake record: {answer:?}");
    assert_eq!(answer[5], 2, "not a ServerHello: {answer:?}");

    std::thread::sleep(Duration::from_millis(300));
    drop(tcpdump);
    let lines = std::fs::read_to_string(dump.path()).unwrap();
    let lengths: Vec<usize> = lines
        .lines()
        .filter_map(|l| {
            l.rsplit_once("length ")
                .and_then(|(_, n)| n.trim().parse().ok())
        })
        .collect();
    let carried: usize = lengths.iter().sum();
    let largest = lengths.iter().copied().max().unwrap_or(0);
    assert!(carried >= hello.len(), "{lines}");
    assert!(
        largest <= 1448,
        "a segment of {largest} bytes: GSO is on?\n{lines}"
    );
    assert!(lengths.iter().filter(|&&n| n > 0).count() >= 2, "{lines}");
}

#[test]
fn labs_in_parallel_do_not_collide() {
    let labs: Vec<Lab> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..3)
            .map(|_| s.spawn(|| Lab::new(PREFIX).unwrap()))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let servers: Vec<TlsServer> = labs
        .iter()
        .map(|lab| TlsServer::start(lab, &["par.example"]).unwrap())
        .collect();
    for (lab, server) in labs.iter().zip(&servers) {
        let outcome = curl(lab, "par.example", &server.curl_opts()).unwrap();
        assert!(outcome.served(), "{outcome:?}");
    }
    let mut names: Vec<&str> = labs.iter().map(Lab::gateway_client_if).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), 3);
}

#[test]
fn stale_namespaces_of_dead_runs_are_removed() {
    // pid_max is at most 2^22, so no process has this pid.
    let stale = format!("{PREFIX}-99999999-0-gw");
    let status = Command::new("ip")
        .args(["netns", "add", &stale])
        .status()
        .unwrap();
    assert!(status.success());
    let stale_files = std::env::temp_dir().join("sni-filter-lab-99999999-tls.test");
    std::fs::create_dir_all(&stale_files).unwrap();
    let live = Lab::new(PREFIX).unwrap();
    let live_server = TlsServer::start(&live, &["live.example"]).unwrap();
    let deleted = Lab::cleanup_stale(PREFIX).unwrap();
    assert!(!stale_files.exists());
    assert!(live_server.ca_path().exists());
    assert!(deleted.contains(&stale), "{deleted:?}");
    let listed = netns_list();
    assert!(!listed.contains(&stale));
    // This process's labs are alive and stay.
    assert!(listed.iter().any(|n| n == live.gateway_ns()));
}

/// Writes a stand-in for `sni-filter`: `run` says it attached and waits for SIGTERM; `status`
/// lists the interfaces it sees.
fn fake_daemon(dir: &std::path::Path, attach: bool) -> std::path::PathBuf {
    let path = dir.join("sni-filter");
    let run = if attach {
        "echo \"filter attached to $5\"; echo warming up >&2\n\
         trap 'echo stopping on TERM; exit 0' TERM\n\
         while :; do sleep 0.05; done"
    } else {
        "echo 'cannot load the program' >&2; exit 3"
    };
    // `--instance NAME` comes first; the rest is `run --config FILE --interface IF ...`.
    let script = format!(
        "#!/bin/sh\n[ \"$1\" = --instance ] && echo \"instance $2\" && shift 2\n\
         case \"$1\" in\nstatus) ls /sys/class/net ;;\nrun)\n{run}\n;;\nesac\n"
    );
    std::fs::write(&path, script).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

#[test]
fn daemon_guard_waits_for_attach_and_stops_with_sigterm() {
    let lab = Lab::new(PREFIX).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("filter.toml");
    std::fs::write(&config, "").unwrap();

    let daemon =
        Daemon::start(&lab, &fake_daemon(dir.path(), true), &config, ["--verbose"]).unwrap();
    assert!(
        daemon
            .stdout()
            .contains(&format!("attached to {}", lab.gateway_client_if()))
    );
    assert!(daemon.stderr().contains("warming up"));
    // `command` sees the gateway's interfaces, as the daemon does.
    let status = daemon.command(["status"]).output().unwrap();
    let seen = String::from_utf8_lossy(&status.stdout);
    assert!(seen.contains(lab.gateway_client_if()), "{seen}");
    assert!(!seen.contains(lab.client_if()), "{seen}");

    let pid = daemon.pid();
    let (exit, log) = daemon.stop().unwrap();
    assert!(exit.success(), "{exit}: {log}");
    assert!(log.contains("stopping on TERM"), "{log}");
    assert!(!process_exists(pid));

    let err = Daemon::start(&lab, &fake_daemon(dir.path(), false), &config, [""; 0]).unwrap_err();
    let err = format!("{err:#}");
    assert!(err.contains("cannot load the program"), "{err}");
}

#[test]
fn curl_reports_a_timeout_when_nothing_answers() {
    let lab = Lab::new(PREFIX).unwrap();
    let server = TlsServer::start(&lab, &["drop.example"]).unwrap();
    // Drop the server's traffic at the gateway: what a blocked flow looks like to curl.
    let status = lab
        .exec(Node::Gateway, "iptables")
        .args(["-A", "FORWARD", "-p", "tcp", "--dport", "443", "-j", "DROP"])
        .status()
        .unwrap();
    assert!(status.success());
    let opts = CurlOpts::new(server.ca_path()).max_time(Duration::from_secs(1));
    let outcome = curl(&lab, "drop.example", &opts).unwrap();
    assert!(outcome.timed_out(), "{outcome:?}");
    assert!(
        outcome.summary().contains("no answer"),
        "{}",
        outcome.summary()
    );
    assert!(outcome.elapsed >= Duration::from_millis(900));
}

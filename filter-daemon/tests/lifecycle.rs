//! The filter's life across daemons, end to end on the lab's gateway: rules reloaded under
//! traffic, the daemon killed with SIGKILL and started again, stopped with SIGTERM, and
//! `unload`. A client loop runs through all of it; not one banned connection may succeed
//! and not one allowed one may fail. Needs root.

mod common;

#[allow(clippy::wildcard_imports)]
use common::*;
use std::{
    path::Path,
    process::Command,
    sync::atomic::{AtomicBool, Ordering},
    time::Duration,
};

use sni_filter_lab::{CurlOpts, Daemon, Lab, Status, TlsServer, curl};

/// What a client loop saw.
#[derive(Default, Debug)]
struct Tally {
    banned_tries: u32,
    banned_served: u32,
    allowed_tries: u32,
    allowed_failed: Vec<String>,
}

/// Requests the banned and the allowed name in turn until `stop` is set.
fn client_loop(lab: &Lab, server: &TlsServer, stop: &AtomicBool) -> Tally {
    let banned = CurlOpts::new(server.ca_path()).max_time(Duration::from_millis(800));
    let allowed = CurlOpts::new(server.ca_path()).max_time(Duration::from_secs(5));
    let mut t = Tally::default();
    while !stop.load(Ordering::SeqCst) {
        t.banned_tries += 1;
        if curl(lab, BANNED, &banned).unwrap().served() {
            t.banned_served += 1;
        }
        t.allowed_tries += 1;
        let outcome = curl(lab, ALLOWED, &allowed).unwrap();
        if outcome.http_status != Some(200) {
            t.allowed_failed.push(outcome.summary());
        }
    }
    t
}

/// The ids of the XDP programs attached to `iface` on the gateway, from `ip -j link`.
fn xdp_programs(lab: &Lab, iface: &str) -> Vec<u64> {
    let out = lab
        .exec(sni_filter_lab::Node::Gateway, "ip")
        .args(["-j", "link", "show", "dev", iface])
        .output()
        .unwrap();
    let links: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let xdp = &links[0]["xdp"];
    let mut ids: Vec<u64> = xdp["prog"]["id"].as_u64().into_iter().collect();
    if let Some(attached) = xdp["attached"].as_array() {
        ids.extend(attached.iter().filter_map(|a| a["prog"]["id"].as_u64()));
    }
    ids.sort_unstable();
    ids.dedup();
    ids
}

fn run(cmd: &mut Command) -> (bool, String) {
    let out = cmd.output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

/// A copy of the shipped configuration and its lists in `dir`, with `replace` applied to
/// its text.
fn config_copy(dir: &Path, replace: (&str, &str)) -> std::path::PathBuf {
    let shipped = repo_config();
    std::fs::create_dir_all(dir.join("lists")).unwrap();
    for f in ["lists/tiktok.txt", "lists/bytedance.txt"] {
        std::fs::copy(shipped.parent().unwrap().join(f), dir.join(f)).unwrap();
    }
    let text = std::fs::read_to_string(&shipped).unwrap();
    assert!(text.contains(replace.0), "{} not in the shipped configuration", replace.0);
    let text = text.replacen(replace.0, replace.1, 1);
    let path = dir.join("filter.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn reloads_a_sigkill_and_a_restart_open_no_gap() {
    let lab = Lab::new("life").expect("lab");
    let server = TlsServer::start(&lab, &[BANNED, ALLOWED]).expect("nginx");
    let dir = tempfile::tempdir().unwrap();
    let config = config_copy(dir.path(), ("", ""));
    let iface = lab.gateway_client_if().to_owned();
    let mut first = Daemon::start(&lab, &bin(), &config, Vec::<String>::new()).expect("daemon");
    let first_ids = xdp_programs(&lab, &iface);
    assert_eq!(first_ids.len(), 1, "{first_ids:?}");

    let stop = AtomicBool::new(false);
    let (tally, second, before_kill, after_kill) = std::thread::scope(|s| {
        let clients = s.spawn(|| client_loop(&lab, &server, &stop));
        let wait_for_rounds = |n: u32| std::thread::sleep(Duration::from_millis(700 * u64::from(n)));
        wait_for_rounds(2);
        // 20 reloads while the clients run, between two rule sets (the ByteDance app off
        // and on): each switches the whole rule set at once.
        let text = std::fs::read_to_string(&config).unwrap();
        let other = text.replacen("enabled = false", "enabled = true", 1);
        assert_ne!(text, other);
        for i in 0..20 {
            std::fs::write(&config, if i % 2 == 0 { &other } else { &text }).unwrap();
            assert!(first.command(["reload"]).status().unwrap().success());
            std::thread::sleep(Duration::from_millis(150));
        }
        let before_kill = first.status().unwrap();
        // A crash: the filter must stay in force with no daemon at all.
        first.kill().unwrap();
        wait_for_rounds(3);
        let after_kill = first.status().unwrap();
        // The next daemon takes the pinned filter over.
        let second =
            Daemon::start(&lab, &bin(), &config, Vec::<String>::new()).expect("second daemon");
        wait_for_rounds(3);
        stop.store(true, Ordering::SeqCst);
        (clients.join().unwrap(), second, before_kill, after_kill)
    });
    println!("client loop: {tally:?}");
    assert_eq!(tally.banned_served, 0, "a banned connection got through: {tally:?}");
    assert!(tally.allowed_failed.is_empty(), "allowed connections failed: {tally:?}");
    assert!(tally.banned_tries >= 5, "too few rounds to mean anything: {tally:?}");
    let reloaded = first.log().matches("reloaded").count();
    assert_eq!(reloaded, 20, "{}", first.log());

    // With no daemon the program went on counting: blocked hellos rose while it was dead.
    assert!(
        after_kill.reason_packets("hello_blocked") > before_kill.reason_packets("hello_blocked"),
        "nothing blocked while the daemon was dead"
    );
    let (_, text) = run(&mut first.command(["status"]));
    assert!(text.contains("daemon running"), "{text}");
    assert!(
        second.log().contains("took over the pinned filter without detaching"),
        "{}",
        second.log()
    );
    // One program on the interface, the second daemon's, replacing the first in place.
    let ids = xdp_programs(&lab, &iface);
    assert_eq!(ids.len(), 1, "{ids:?}");
    assert_ne!(ids, first_ids, "the program was not replaced");
    // Counters continue across daemons.
    let now: Status = second.status().unwrap();
    assert!(
        now.reason_packets("hello_blocked") >= after_kill.reason_packets("hello_blocked"),
        "counters went back"
    );
    assert_never_served(&server, BANNED);
}

#[test]
fn sigterm_leaves_the_filter_and_unload_removes_every_trace() {
    let lab = Lab::new("unld").expect("lab");
    let server = TlsServer::start(&lab, &[BANNED, ALLOWED]).expect("nginx");
    let opts = CurlOpts::new(server.ca_path()).max_time(Duration::from_secs(2));
    let iface = lab.gateway_client_if().to_owned();
    let daemon = Daemon::start(&lab, &bin(), &repo_config(), Vec::<String>::new()).expect("daemon");
    let instance = daemon.instance().to_owned();
    // The CLI of the stopped daemon, on the gateway.
    let cli = |args: &[&str]| {
        let mut cmd = lab.gateway_command(bin()).unwrap();
        cmd.arg("--instance").arg(&instance).args(args);
        run(&mut cmd)
    };
    let on_gateway = |script: &str| {
        let mut cmd = lab.gateway_command("sh").unwrap();
        cmd.args(["-c", script]);
        run(&mut cmd).1
    };

    let (status, log) = daemon.stop().unwrap();
    assert!(status.success(), "{log}");
    assert!(log.contains("the filter stays on"), "{log}");
    assert_eq!(xdp_programs(&lab, &iface).len(), 1, "SIGTERM detached the filter");
    assert!(!curl(&lab, BANNED, &opts).unwrap().served(), "banned served after SIGTERM");
    assert_served(&curl(&lab, ALLOWED, &opts).unwrap(), ALLOWED, "after SIGTERM");
    let (ok, text) = cli(&["status"]);
    assert!(ok && text.contains("daemon NOT running") && text.contains("filter attached"), "{text}");
    let (ok, text) = cli(&["stats", "--json"]);
    assert!(ok, "{text}");
    let stats: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert!(stats["reasons"]["hello_blocked"]["packets"].as_u64().unwrap() >= 1, "{text}");

    let (ok, text) = cli(&["unload"]);
    assert!(ok, "{text}");
    assert!(text.contains(&format!("detached from {iface}")), "{text}");
    assert!(xdp_programs(&lab, &iface).is_empty(), "still attached after unload");
    let left = on_gateway(&format!(
        "test -e /sys/fs/bpf/{instance} && echo pins; test -e /run/{instance} && echo state; ls -A /sys/fs/bpf"
    ));
    assert!(
        !left.contains("pins") && !left.contains("state") && !left.contains(&instance),
        "traces left: {left}"
    );
    assert_served(&curl(&lab, BANNED, &opts).unwrap(), BANNED, "after unload");
    // Unloading twice is not an error; the CLI says there is nothing left.
    let (ok, text) = cli(&["unload"]);
    assert!(ok && text.contains("nothing to unload"), "{text}");
    let (ok, text) = cli(&["stats"]);
    assert!(!ok && text.contains("no filter is loaded"), "{text}");
}

#[test]
fn detach_on_stop_takes_the_filter_away() {
    let lab = Lab::new("dtch").expect("lab");
    let dir = tempfile::tempdir().unwrap();
    let config = config_copy(
        dir.path(),
        ("detach_on_stop = false", "detach_on_stop = true"),
    );
    let iface = lab.gateway_client_if().to_owned();
    let daemon = Daemon::start(&lab, &bin(), &config, Vec::<String>::new()).expect("daemon");
    assert_eq!(xdp_programs(&lab, &iface).len(), 1);
    let (status, log) = daemon.stop().unwrap();
    assert!(status.success(), "{log}");
    assert!(log.contains("detach_on_stop"), "{log}");
    assert!(xdp_programs(&lab, &iface).is_empty(), "still attached: {log}");
}

//! Group: end-to-end lab tests (network namespaces, real servers, clients and daemons; see
//! `filter-daemon/tests/README.md`).
//!
//! The filter's life across daemons, end to end on the lab's gateway: rules reloaded under
//! traffic, the daemon killed with SIGKILL and started again, stopped with SIGTERM, and
//! `unload`. A client loop runs through all of it; not one banned connection may succeed
//! and not one allowed one may fail. Needs root.

mod common;

#[allow(clippy::wildcard_imports)]
use common::{lab::*, *};
use std::{
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
        let wait_for_rounds =
            |n: u32| std::thread::sleep(Duration::from_millis(700 * u64::from(n)));
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
    assert_eq!(
        tally.banned_served, 0,
        "a banned connection got through: {tally:?}"
    );
    assert!(
        tally.allowed_failed.is_empty(),
        "allowed connections failed: {tally:?}"
    );
    assert!(
        tally.banned_tries >= 5,
        "too few rounds to mean anything: {tally:?}"
    );
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
        second
            .log()
            .contains("took over the pinned filter without detaching"),
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
    let daemon = shipped_daemon(&lab);
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
    assert_eq!(
        xdp_programs(&lab, &iface).len(),
        1,
        "SIGTERM detached the filter"
    );
    assert!(
        !curl(&lab, BANNED, &opts).unwrap().served(),
        "banned served after SIGTERM"
    );
    assert_served(
        &curl(&lab, ALLOWED, &opts).unwrap(),
        ALLOWED,
        "after SIGTERM",
    );
    let (ok, text) = cli(&["status"]);
    assert!(
        ok && text.contains("daemon NOT running") && text.contains("filter attached"),
        "{text}"
    );
    let (ok, text) = cli(&["stats", "--json"]);
    assert!(ok, "{text}");
    let sample: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert!(
        sample["reasons"]["hello_blocked"]["packets"]
            .as_u64()
            .unwrap()
            >= 1,
        "{text}"
    );

    let (ok, text) = cli(&["unload"]);
    assert!(ok, "{text}");
    assert!(text.contains(&format!("detached from {iface}")), "{text}");
    assert!(
        xdp_programs(&lab, &iface).is_empty(),
        "still attached after unload"
    );
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
    assert!(
        xdp_programs(&lab, &iface).is_empty(),
        "still attached: {log}"
    );
}

/// The shipped systemd unit.
fn unit_file() -> String {
    std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../config/sni-filter.service"
    ))
    .unwrap()
}

/// The unit's `CapabilityBoundingSet`, as `setpriv --bounding-set` writes it.
fn unit_bounding_set() -> String {
    let unit = unit_file();
    let line = unit
        .lines()
        .find_map(|l| l.strip_prefix("CapabilityBoundingSet="))
        .expect("the unit sets CapabilityBoundingSet");
    let caps: Vec<String> = line
        .split_whitespace()
        .map(|c| format!("+{}", c.trim_start_matches("CAP_").to_lowercase()))
        .collect();
    format!("-all,{}", caps.join(","))
}

/// A capability set of `/proc/PID/status` (`CapEff`, `CapBnd`...), as a bit mask.
fn cap_mask(pid: u32, set: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let hex = status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{set}:\t")))
        .unwrap_or_else(|| panic!("no {set} in {status}"));
    u64::from_str_radix(hex.trim(), 16).unwrap()
}

#[test]
fn under_the_units_capabilities_the_daemon_filters_and_keeps_only_cap_bpf() {
    const CAP_BPF: u64 = 1 << 39;
    let lab = Lab::new("caps").expect("lab");
    let server = TlsServer::start(&lab, &[BANNED, ALLOWED]).expect("nginx");
    let opts = CurlOpts::new(server.ca_path()).max_time(Duration::from_secs(2));
    let dir = tempfile::tempdir().unwrap();
    let config = config_copy(dir.path(), ("", ""));
    // The daemon started as systemd would: root, with only the unit's bounding set.
    let wrapper = dir.path().join("sni-filter");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nexec setpriv --bounding-set={} --inh-caps=-all -- {} \"$@\"\n",
            unit_bounding_set(),
            bin().display()
        ),
    )
    .unwrap();
    Command::new("chmod")
        .arg("755")
        .arg(&wrapper)
        .status()
        .unwrap();
    let daemon = Daemon::start(&lab, &wrapper, &config, Vec::<String>::new()).expect("daemon");
    assert!(daemon.log().contains("kept: CAP_BPF"), "{}", daemon.log());
    let pid = daemon.pid();
    for set in ["CapEff", "CapPrm", "CapBnd"] {
        assert_eq!(cap_mask(pid, set), CAP_BPF, "{set} of the daemon");
    }
    assert_eq!(cap_mask(pid, "CapInh"), 0);
    assert_eq!(cap_mask(pid, "CapAmb"), 0);
    assert!(!curl(&lab, BANNED, &opts).unwrap().served());
    assert_served(
        &curl(&lab, ALLOWED, &opts).unwrap(),
        ALLOWED,
        "with capabilities dropped",
    );
    // What the daemon does after the drop still works: a reload to new rules...
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text.replacen("enabled = true", "enabled = false", 1),
    )
    .unwrap();
    assert!(daemon.command(["reload"]).status().unwrap().success());
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !daemon.log().contains("reloaded") {
        assert!(std::time::Instant::now() < deadline, "{}", daemon.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_served(
        &curl(&lab, BANNED, &opts).unwrap(),
        BANNED,
        "with the app disabled",
    );
    // ...and the stop.
    let (status, log) = daemon.stop().unwrap();
    assert!(status.success() && !log.contains("error"), "{log}");
}

#[test]
fn the_systemd_unit_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let unit = unit_file().replace("/usr/sbin/sni-filter", &bin().display().to_string());
    let path = dir.path().join("sni-filter.service");
    std::fs::write(&path, unit).unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .expect("systemd-analyze runs");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && text.trim().is_empty(), "{text}");
}

/// Removes an instance's pins and state when dropped.
struct Cleared(sni_filter::state::Instance);

impl Drop for Cleared {
    fn drop(&mut self) {
        self.0.clear();
    }
}

#[test]
fn maps_of_another_layout_are_never_misread_nor_adopted() {
    use aya::maps::{Array, Map, MapData};
    use filter_common::{LAYOUT_VERSION, names};
    use sni_filter::{config::Config, filter::Filter, state::Instance};

    let name = format!("sni-filter-layout-{}", std::process::id());
    let guard = Cleared(Instance::new(&name).unwrap());
    let instance = &guard.0;
    instance.prepare().unwrap();
    let config = Config::load(&repo_config()).unwrap();
    let filter = Filter::load_pinned(&config, instance).unwrap();
    let cli = |args: &[&str]| run(Command::new(bin()).arg("--instance").arg(&name).args(args));
    let (ok, text) = cli(&["stats", "--json"]);
    assert!(ok, "{text}");

    // As if an older or newer version had made the pins.
    let data = MapData::from_pin(instance.pin(names::LAYOUT)).unwrap();
    let mut layout: Array<MapData, u32> = Array::try_from(Map::Array(data)).unwrap();
    layout.set(0, LAYOUT_VERSION + 1, 0).unwrap();
    let (ok, text) = cli(&["stats"]);
    assert!(!ok, "{text}");
    assert!(
        text.contains(&format!("uses map layout {}", LAYOUT_VERSION + 1))
            && text.contains(&format!("reads layout {LAYOUT_VERSION}")),
        "{text}"
    );
    // A starting daemon does not adopt them: they start afresh, and it says why.
    drop(filter);
    let notes = instance
        .prune_pins(&[(names::VERDICTS, config.verdicts_max)])
        .unwrap();
    assert!(
        notes.len() == 1 && notes[0].contains("start afresh"),
        "{notes:?}"
    );
    assert!(!instance.pin(names::COUNTERS).exists());
    assert!(!instance.pin(names::LAYOUT).exists());

    // Same layout, another size of the blocked-flow table: that map alone starts afresh.
    let _filter = Filter::load_pinned(&config, instance).unwrap();
    let notes = instance
        .prune_pins(&[(names::VERDICTS, config.verdicts_max * 2)])
        .unwrap();
    assert!(
        notes.len() == 1 && notes[0].contains(names::VERDICTS),
        "{notes:?}"
    );
    assert!(!instance.pin(names::VERDICTS).exists());
    assert!(instance.pin(names::COUNTERS).exists());
}

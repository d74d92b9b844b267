//! Group: end-to-end lab tests (network namespaces, real servers, clients and daemons; see
//! `filter-daemon/tests/README.md`).
//!
//! The operator's side of the CLI and the daemon, as scripts, monitoring checks and systemd
//! see them: exit statuses, `--json` read back, `reload` reporting the daemon's answer, and
//! the daemon's `sd_notify` messages (`READY=1`, `RELOADING=1`, `STOPPING=1`, `WATCHDOG=1`)
//! read on a `NOTIFY_SOCKET` of the test's own, since systemd is not PID 1 here. The hangs
//! that must starve the watchdog are asked of the debug build with `SNI_FILTER_FAULT`.
//! Needs root.

mod common;

#[allow(clippy::wildcard_imports)]
use common::*;
use std::{
    os::unix::net::UnixDatagram,
    path::Path,
    process::{Command, Output, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use serde_json::Value;
use sni_filter_lab::{ChildGuard, CurlOpts, Daemon, Lab, ScratchDir, TlsServer, curl};

/// Runs the CLI with `args` (on the host: the commands here need no namespace).
fn cli(args: &[&str]) -> Output {
    Command::new(bin()).args(args).output().unwrap()
}

/// Both output streams of a command, for messages.
fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

/// The single JSON object a command printed.
fn json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not one JSON object ({e}): {}", text(out)))
}

#[test]
fn check_and_check_config_answer_by_exit_status() {
    let dir = tempfile::tempdir().unwrap();
    let shipped = repo_config();
    let shipped = shipped.to_str().unwrap();
    // The shipped configuration names no interface: refused as `run` would refuse it,
    // unless `run` will be given one.
    let out = cli(&["check-config", shipped]);
    assert_eq!(out.status.code(), Some(78), "{}", text(&out));
    assert!(text(&out).contains("interfaces"), "{}", text(&out));
    let out = cli(&["check-config", shipped, "--interface", "lan0"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        text(&out).contains("lan0 (from --interface)"),
        "{}",
        text(&out)
    );

    let config = config_copy_with(
        dir.path(),
        &[
            ("interfaces = []", "interfaces = [\"lan0\"]"),
            // The ByteDance app on, but only monitored.
            (
                "action = \"drop\"\nenabled = false",
                "action = \"monitor\"\nenabled = true",
            ),
        ],
    );
    let config = config.to_str().unwrap();
    assert_eq!(cli(&["check-config", config]).status.code(), Some(0));
    let check = |host: &str| {
        let out = cli(&["check", "--config", config, host]);
        let verdict = cli(&["check", "--config", config, "--json", host]);
        assert_eq!(out.status.code(), verdict.status.code(), "{}", text(&out));
        (out.status.code(), json(&verdict))
    };
    let (code, v) = check(BANNED);
    assert_eq!(code, Some(0), "blocked is 0: {v}");
    assert_eq!(
        (v["blocked"].as_bool(), v["app"].as_str()),
        (Some(true), Some("tiktok"))
    );
    assert_eq!(v["rule"], "tiktok.com");
    assert!(v["origin"].as_str().unwrap().contains("tiktok.txt:"), "{v}");
    let (code, v) = check(ALLOWED);
    assert_eq!(code, Some(1), "passes is 1: {v}");
    assert!(v["app"].is_null() && v["blocked"] == false, "{v}");
    let (code, v) = check("www.capcut.com");
    assert_eq!(code, Some(1), "a monitored app's name passes: {v}");
    assert_eq!(
        (v["app"].as_str(), v["action"].as_str()),
        (Some("bytedance"), Some("monitor"))
    );

    // A broken configuration: 78 from check-config with file and line, 2 from check.
    let broken = dir.path().join("broken.toml");
    std::fs::write(
        &broken,
        "[filter]\ninterfaces = [\"lan0\"]\nxdp_mode = \"fast\"\n",
    )
    .unwrap();
    let broken = broken.to_str().unwrap();
    let out = cli(&["check-config", broken]);
    assert_eq!(out.status.code(), Some(78), "{}", text(&out));
    assert!(text(&out).contains("broken.toml:3"), "{}", text(&out));
    let out = cli(&["check", "--config", broken, BANNED]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
}

/// `sni-filter --instance NAME ARGS` on the lab's gateway.
fn on_gateway(lab: &Lab, instance: &str, args: &[&str]) -> Output {
    let mut cmd = lab.gateway_command(bin()).unwrap();
    cmd.args(["--instance", instance])
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn status_flows_doctor_and_reload_speak_to_scripts() {
    let lab = Lab::new("oper").expect("lab");
    let server = TlsServer::start(&lab, &[BANNED, ALLOWED]).expect("nginx");
    let dir = tempfile::tempdir().unwrap();
    let config = config_copy(dir.path(), ("", ""));
    let instance = format!("sni-filter-{}", lab.name());
    let gw = |args: &[&str]| on_gateway(&lab, &instance, args);

    let out = gw(&["status"]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "nothing attached yet: {}",
        text(&out)
    );
    assert_eq!(json(&gw(&["status", "--json"]))["health"], "not_attached");
    let out = gw(&["reload"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "no daemon to reload: {}",
        text(&out)
    );

    let mut daemon = Daemon::start(&lab, &bin(), &config, Vec::<String>::new()).expect("daemon");
    let opts = CurlOpts::new(server.ca_path()).max_time(Duration::from_secs(2));
    assert!(!curl(&lab, BANNED, &opts).unwrap().served());

    let out = gw(&["status", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let s = json(&out);
    let iface = lab.gateway_client_if();
    assert_eq!(s["health"], "running");
    assert_eq!(s["attached"][0], iface);
    assert_eq!(s["daemon"]["pid"], daemon.pid());
    let version = String::from_utf8(cli(&["--version"]).stdout).unwrap();
    assert_eq!(
        Some(version.trim()),
        s["daemon"]["version"]
            .as_str()
            .map(|v| format!("sni-filter {v}"))
            .as_deref(),
        "status names the running daemon's version and commit"
    );
    assert!(
        s["counters"]["reasons"]["hello_blocked"]["packets"].as_u64() >= Some(1),
        "{s}"
    );
    assert_eq!(s["tables"]["blocked_flows"]["entries"], 1, "{s}");
    assert_eq!(s["interfaces"][0]["iface"], iface);
    assert!(s["interfaces"][0]["dropped"].as_u64() >= Some(1), "{s}");
    let apps = s["apps"].as_array().unwrap();
    assert!(
        apps.iter()
            .any(|a| a["app"] == "tiktok" && a["rules"].as_u64() > Some(0)),
        "{s}"
    );

    // One JSON object per blocked flow, named as in FLOW records.
    let out = gw(&["flows", "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    let flows: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(flows.len(), 1, "{flows:?}");
    let f = &flows[0];
    assert_eq!(
        (f["app"].as_str(), f["action"].as_str()),
        (Some("tiktok"), Some("drop"))
    );
    assert_eq!(
        (f["server_port"].as_u64(), f["transport"].as_str()),
        (Some(443), Some("tcp"))
    );
    assert_eq!(f["client"], lab.client_v4().to_string());

    // doctor --json: the verdict as exit status, the verifier's figures as numbers.
    let out = gw(&["doctor", "--json", iface]);
    let d = json(&out);
    assert_eq!(out.status.success(), d["ok"] == true, "{d}");
    let programs = d["verifier"].as_array().unwrap();
    assert_eq!(programs.len(), 2, "{d}");
    for p in programs {
        assert!(p["instructions"].as_u64() <= p["bound"].as_u64(), "{d}");
    }

    reloads_report_their_outcome(&gw, &config, &|host| {
        curl(&lab, host, &opts).unwrap().served()
    });

    // The daemon gone, the filter still attached: 1, as LSB says of a dead service.
    daemon.kill().unwrap();
    let out = gw(&["status"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert_eq!(json(&gw(&["status", "--json"]))["health"], "daemon_dead");
    assert_eq!(gw(&["reload"]).status.code(), Some(1));
    assert!(gw(&["unload"]).status.success());
    assert_eq!(gw(&["status"]).status.code(), Some(3));
}

/// `reload` of a configuration that takes (exit 0) and of one that is refused (exit 78 with
/// file and line; the running rules stay), each seen in `status --json`. `served` says
/// whether a client is served a name through the gateway.
fn reloads_report_their_outcome(
    gw: &dyn Fn(&[&str]) -> Output,
    config: &Path,
    served: &dyn Fn(&str) -> bool,
) {
    // A reload that takes: exit 0 and what is now in force.
    let text_before = std::fs::read_to_string(config).unwrap();
    let with_example = text_before.replacen("domains = []", "domains = [\"example.org\"]", 1);
    std::fs::write(config, &with_example).unwrap();
    let out = gw(&["reload"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("reloaded"), "{}", text(&out));
    assert!(!served(ALLOWED), "the new rule is in force");
    let reload = &json(&gw(&["status", "--json"]))["reload"];
    assert_eq!(
        (reload["generation"].as_u64(), reload["result"].as_str()),
        (Some(1), Some("applied"))
    );

    // A reload that is refused: exit 78 with the file and line, the rules in force stay.
    let broken = with_example.replacen("uninspectable = \"drop\"", "uninspectable = \"maybe\"", 1);
    let line = 1 + broken
        .lines()
        .position(|l| l.contains("\"maybe\""))
        .unwrap();
    std::fs::write(config, broken).unwrap();
    let out = gw(&["reload"]);
    assert_eq!(out.status.code(), Some(78), "{}", text(&out));
    assert!(
        text(&out).contains("refused") && text(&out).contains(&format!("filter.toml:{line}")),
        "{}",
        text(&out)
    );
    let reload = &json(&gw(&["status", "--json"]))["reload"];
    assert_eq!(
        (reload["generation"].as_u64(), reload["result"].as_str()),
        (Some(2), Some("refused"))
    );
    assert!(!served(ALLOWED), "the running rules stay");
}

/// The messages a daemon sends to its `NOTIFY_SOCKET`, with when they came.
struct NotifySocket {
    messages: Arc<Mutex<Vec<(Instant, String)>>>,
}

impl NotifySocket {
    fn bind(path: &Path) -> Self {
        let socket = UnixDatagram::bind(path).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let messages = Arc::new(Mutex::new(Vec::new()));
        let sink = messages.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            // Ends when the test drops the last handle (the Arc is then ours alone).
            while Arc::strong_count(&sink) > 1 {
                if let Ok(n) = socket.recv(&mut buf) {
                    let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                    sink.lock().unwrap().push((Instant::now(), text));
                }
            }
        });
        Self { messages }
    }

    /// Waits until a message holding `line` arrives after `since`; returns when it came.
    fn wait_for(&self, line: &str, since: Instant, within: Duration) -> Instant {
        let deadline = Instant::now() + within;
        loop {
            if let Some((at, _)) = self
                .messages
                .lock()
                .unwrap()
                .iter()
                .find(|(at, m)| *at >= since && m.lines().any(|l| l == line))
            {
                return *at;
            }
            assert!(
                Instant::now() < deadline,
                "no {line:?} within {within:?}; got {:?}",
                self.all()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// How many messages holding `line` came within `from..to`.
    fn count(&self, line: &str, from: Instant, to: Instant) -> usize {
        let messages = self.messages.lock().unwrap();
        let hits = messages.iter().filter(|(at, _)| *at >= from && *at < to);
        hits.filter(|(_, m)| m.lines().any(|l| l == line)).count()
    }

    /// The messages with their time since `start`, for failure messages.
    fn timeline(&self, start: Instant) -> Vec<String> {
        let messages = self.messages.lock().unwrap();
        let at = |t: &Instant| t.saturating_duration_since(start).as_secs_f64();
        messages
            .iter()
            .map(|(t, m)| format!("{:.2}s {}", at(t), m.trim()))
            .collect()
    }

    fn all(&self) -> Vec<String> {
        self.messages
            .lock()
            .unwrap()
            .iter()
            .map(|(_, m)| m.clone())
            .collect()
    }
}

/// The watchdog timeout the tests give the daemon: it sends `WATCHDOG=1` every half of it.
const WATCHDOG: Duration = Duration::from_millis(600);

/// The daemon on the lab's gateway as systemd would start it: a `NOTIFY_SOCKET` and a
/// watchdog, and `env` besides (`SNI_FILTER_FAULT`, `JOURNAL_STREAM`). Its output goes to
/// `stdout` and `stderr` in `scratch`.
fn notified_daemon(
    lab: &Lab,
    config: &Path,
    scratch: &ScratchDir,
    env: &[(&str, String)],
) -> (ChildGuard, NotifySocket) {
    let socket_path = scratch.path().join("notify.sock");
    let socket = NotifySocket::bind(&socket_path);
    let mut cmd = lab.gateway_command(bin()).unwrap();
    cmd.args([
        "--instance",
        &format!("sni-filter-{}", lab.name()),
        "run",
        "--config",
    ])
    .arg(config)
    .args(["--interface", lab.gateway_client_if()])
    .env("NOTIFY_SOCKET", &socket_path)
    .env("WATCHDOG_USEC", WATCHDOG.as_micros().to_string())
    .stdin(Stdio::null())
    .stdout(std::fs::File::create(scratch.path().join("stdout")).unwrap())
    .stderr(std::fs::File::create(scratch.path().join("stderr")).unwrap());
    cmd.envs(env.iter().map(|(k, v)| (k, v)));
    let daemon = ChildGuard::spawn(&mut cmd)
        .unwrap()
        .graceful(libc::SIGTERM, Duration::from_secs(5));
    (daemon, socket)
}

#[test]
fn the_daemon_tells_systemd_ready_reloading_stopping_and_feeds_the_watchdog() {
    let lab = Lab::new("ntfy").expect("lab");
    let dir = tempfile::tempdir().unwrap();
    let config = config_copy(dir.path(), ("", ""));
    let scratch = ScratchDir::new("notify").unwrap();
    let started = Instant::now();
    let (daemon, socket) = notified_daemon(&lab, &config, &scratch, &[]);
    let ready = socket.wait_for("READY=1", started, Duration::from_secs(20));
    // Ready means attached: the program is on the interface when systemd hears it.
    let instance = format!("sni-filter-{}", lab.name());
    let s = json(&on_gateway(&lab, &instance, &["status", "--json"]));
    assert_eq!(s["health"], "running", "{s}");
    assert!(
        socket.all().iter().any(|m| m.contains("STATUS=filtering")),
        "{:?}",
        socket.all()
    );

    std::thread::sleep(WATCHDOG * 3);
    let fed = socket.count("WATCHDOG=1", ready, Instant::now());
    assert!(
        fed >= 4,
        "WATCHDOG=1 every {:?}: {fed} in {:?}",
        WATCHDOG / 2,
        WATCHDOG * 3
    );

    // A reload (SIGHUP, as notify-reload sends it): RELOADING=1 with the monotonic time,
    // then READY=1 when it is done.
    let asked = Instant::now();
    let out = on_gateway(&lab, &instance, &["reload"]);
    assert!(out.status.success(), "{}", text(&out));
    let reloading = socket.wait_for("RELOADING=1", asked, Duration::from_secs(5));
    let again = socket.wait_for("READY=1", reloading, Duration::from_secs(5));
    assert!(again >= reloading);
    let reload_message = socket
        .all()
        .into_iter()
        .find(|m| m.contains("RELOADING=1"))
        .unwrap();
    assert!(
        reload_message.contains("MONOTONIC_USEC="),
        "{reload_message}"
    );

    let stopping = Instant::now();
    daemon.stop().unwrap();
    socket.wait_for("STOPPING=1", stopping, Duration::from_secs(5));
    // Not started by systemd's journal: the records are on stderr too.
    let log = std::fs::read_to_string(scratch.path().join("stderr")).unwrap();
    assert!(log.contains("filtering "), "{log}");
}

#[test]
fn records_skip_stderr_when_it_is_the_journal() {
    use std::os::unix::fs::MetadataExt as _;
    let lab = Lab::new("jrnl").expect("lab");
    let dir = tempfile::tempdir().unwrap();
    let config = config_copy(dir.path(), ("", ""));
    let scratch = ScratchDir::new("notify").unwrap();
    let stderr = scratch.path().join("stderr");
    std::fs::write(&stderr, "").unwrap();
    // What systemd sets when it connects stderr to the journal: that stream's device and
    // inode. Here the stream is the file the daemon's stderr goes to.
    let meta = std::fs::metadata(&stderr).unwrap();
    let journal = ("JOURNAL_STREAM", format!("{}:{}", meta.dev(), meta.ino()));
    let started = Instant::now();
    let (daemon, socket) = notified_daemon(&lab, &config, &scratch, &[journal]);
    socket.wait_for("READY=1", started, Duration::from_secs(20));
    daemon.stop().unwrap();
    let log = std::fs::read_to_string(&stderr).unwrap();
    assert!(
        !log.contains("filtering ") && !log.contains("stopped"),
        "{log}"
    );
}

/// Starts a daemon asked for `fault` 1.5 s after it starts, and checks that the watchdog
/// heard from it before, and has heard nothing for three timeouts once the hang is `noticed`
/// (at once for the main loop; the QUIC worker once its heartbeat is as stale as the
/// program's bound, 3 s).
fn watchdog_after_hang(
    lab: &Lab,
    fault: &str,
    noticed: Duration,
) -> (ChildGuard, NotifySocket, ScratchDir) {
    let scratch = ScratchDir::new("notify").unwrap();
    let config = config_copy(scratch.path(), ("", ""));
    let started = Instant::now();
    let asked = ("SNI_FILTER_FAULT", format!("{fault}@1500"));
    let (daemon, socket) = notified_daemon(lab, &config, &scratch, &[asked]);
    let ready = socket.wait_for("READY=1", started, Duration::from_secs(20));
    socket.wait_for("WATCHDOG=1", ready, Duration::from_secs(2));
    // The hang is due 1.5 s after start; give it that and three timeouts of silence.
    let hung = Duration::from_millis(1500).saturating_sub(started.elapsed());
    std::thread::sleep(hung + noticed + WATCHDOG * 4);
    let quiet_from = Instant::now().checked_sub(WATCHDOG * 3).unwrap();
    assert_eq!(
        socket.count("WATCHDOG=1", quiet_from, Instant::now()),
        0,
        "{fault}: the watchdog is still fed: {:?}",
        socket.timeline(started)
    );
    (daemon, socket, scratch)
}

#[test]
fn the_watchdog_starves_when_the_main_loop_hangs() {
    let lab = Lab::new("wdml").expect("lab");
    let (daemon, _socket, _scratch) = watchdog_after_hang(&lab, "hang-main-loop", Duration::ZERO);
    // A hung loop answers nothing; the guard ends it with SIGKILL after its grace.
    drop(daemon);
}

#[test]
fn the_watchdog_starves_when_the_quic_worker_hangs() {
    let lab = Lab::new("wdqw").expect("lab");
    let (daemon, socket, scratch) =
        watchdog_after_hang(&lab, "hang-quic-worker", Duration::from_secs(3));
    // The main loop itself still turns: it answers a reload, and says why it starves the
    // watchdog.
    let instance = format!("sni-filter-{}", lab.name());
    let asked = Instant::now();
    let out = on_gateway(&lab, &instance, &["reload"]);
    assert!(out.status.success(), "{}", text(&out));
    socket.wait_for("READY=1", asked, Duration::from_secs(5));
    let log = std::fs::read_to_string(scratch.path().join("stderr")).unwrap();
    assert!(log.contains("the QUIC worker has not beaten"), "{log}");
    daemon.stop().unwrap();
}

//! `cargo xtask demo`: shows the filter at work in a namespace lab — the banned name served
//! without the filter, then blocked with it, next to an allowed name that stays served; the
//! counters live, and the syslog records an rsyslogd in the server namespace received.
//!
//! Ctrl-C (or SIGTERM) at any point stops every process and deletes every namespace.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use sni_filter_lab::{
    CurlOutcome, Daemon, Lab, Listen, QuicClient, QuicRun, QuicServer, Rsyslog, TlsServer, curl,
    quic_fetch,
};

use crate::shell::{self, cmd};

/// Namespaces of the demo are named `sfdemo-PID-N-*`.
const LAB_PREFIX: &str = "sfdemo";
const BANNED: &str = "www.tiktok.com";
const ALLOWED: &str = "www.example.org";
/// How long curl waits before a name counts as blocked.
const CURL_MAX_TIME: Duration = Duration::from_secs(4);

/// Set once a signal arrived: the handler owns the exit from then on.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

#[derive(clap::Args)]
pub struct Args {
    /// Use this sni-filter binary instead of building one with `cargo build --release`.
    #[arg(long, value_name = "PATH")]
    bin: Option<PathBuf>,
    /// The configuration the daemon runs with.
    #[arg(long, value_name = "FILE", default_value = "config/filter.toml")]
    config: PathBuf,
    /// Skip `cargo xtask setup`.
    #[arg(long)]
    no_setup: bool,
}

pub fn run(args: &Args) -> Result<ExitCode> {
    install_signal_handler()?;
    let result = demo(args);
    yield_to_signal_handler();
    result
}

/// Once a signal arrived, the handler tears the lab down and exits the process; what this
/// thread was doing fails meanwhile, and must neither print nor exit.
fn yield_to_signal_handler() {
    if INTERRUPTED.load(Ordering::SeqCst) {
        loop {
            std::thread::park();
        }
    }
}

/// On SIGINT or SIGTERM: stop every lab process, delete the lab's namespaces, exit 130.
fn install_signal_handler() -> Result<()> {
    let mut signals =
        Signals::new([SIGINT, SIGTERM]).context("cannot install the signal handler")?;
    std::thread::spawn(move || {
        if let Some(signal) = signals.forever().next() {
            INTERRUPTED.store(true, Ordering::SeqCst);
            let name = if signal == SIGINT {
                "SIGINT"
            } else {
                "SIGTERM"
            };
            eprintln!("\ndemo: {name}: stopping the lab");
            let deleted = sni_filter_lab::shutdown();
            eprintln!("demo: removed {} namespaces", deleted.len());
            std::process::exit(130);
        }
    });
    Ok(())
}

fn demo(args: &Args) -> Result<ExitCode> {
    if !sni_filter_lab::is_root() {
        bail!("the demo needs root (network namespaces, XDP): run `sudo cargo xtask demo`");
    }
    let root = shell::workspace_root();
    let config = root.join(&args.config);
    if !config.exists() {
        bail!("no configuration at {}", config.display());
    }
    if !args.no_setup {
        section("setup");
        crate::setup::run(&crate::setup::Args::default())?;
    }
    let bin = if let Some(bin) = &args.bin {
        bin.clone()
    } else {
        section("build");
        shell::run(cmd("cargo", ["build", "--release", "-p", "filter-daemon"]).current_dir(&root))?;
        shell::target_dir().join("release").join("sni-filter")
    };
    let lab = new_lab()?;
    println!(
        "client {} ({}) -> gateway {} -> server {} ({})",
        lab.client_ns(),
        lab.client_v4(),
        lab.gateway_ns(),
        lab.server_ns(),
        lab.server_v4()
    );
    let server = TlsServer::start(&lab, &[BANNED, ALLOWED])?;
    println!(
        "nginx serves {BANNED} and {ALLOWED} on {}:443",
        lab.server_v4()
    );

    let quic = QuicServer::start(&lab, &[BANNED, ALLOWED], false)?;
    println!(
        "aioquic serves {BANNED} and {ALLOWED} over HTTP/3 on UDP {}:443",
        lab.server_v4()
    );

    baseline(&lab, &server, &quic)?;

    // The configuration as given, its logs sent to an rsyslogd on the server's side over
    // TCP (RFC 5424, octet counting) instead of the local journal.
    let work = tempfile::tempdir().context("cannot create a temporary folder")?;
    let rsyslog = Rsyslog::start(&lab, work.path(), &Listen::Plain(SYSLOG_PORT))?;
    let config = config_logging_to(
        &config,
        work.path(),
        &format!("tcp://{}:{SYSLOG_PORT}", lab.server_v4()),
    )?;
    println!(
        "rsyslogd listens on {}:{SYSLOG_PORT} (the daemon's [logging] destination)",
        lab.server_v4()
    );

    section("with sni-filter on the gateway");
    let daemon = Daemon::start(&lab, &bin, &config, std::iter::empty::<&str>())?;
    let daemon_instance = daemon.instance().to_owned();
    let log = daemon.log();
    let attached = log
        .lines()
        .find(|l| l.contains(sni_filter_lab::ATTACHED_MARKER))
        .unwrap_or_default();
    println!(
        "sni-filter runs in {} with {}: {}",
        lab.gateway_ns(),
        args.config.display(),
        attached.trim()
    );
    let through = through_filter(&lab, &server, &quic)?;

    section("counters (sni-filter status)");
    let status = daemon
        .command(["status"])
        .output()
        .context("cannot run `sni-filter status`")?;
    print!("{}", String::from_utf8_lossy(&status.stdout));
    eprint!("{}", String::from_utf8_lossy(&status.stderr));
    if !status.status.success() {
        println!("(sni-filter status exited with {})", status.status);
    }

    live_counters(&lab, &server, &daemon)?;

    section("stop");
    let (exit, _) = daemon.stop()?;
    println!("sni-filter stopped ({exit}); the filter stays attached until unloaded");
    let unload = daemon_cli(&lab, &bin, daemon_instance.as_str(), &["unload"])?;
    print!("{unload}");

    section("syslog: what rsyslogd received (RFC 5424)");
    for line in rsyslog.lines() {
        println!("  {line}");
    }
    println!("\nremoving the lab");
    drop(quic);
    drop(server);
    drop(lab);

    if !through.as_intended() {
        println!(
            "\nRESULT: the filter did not do its job ({BANNED} must be blocked, {ALLOWED} served, over HTTPS and HTTP/3)"
        );
        return Ok(ExitCode::FAILURE);
    }
    println!("\nRESULT: {BANNED} blocked, {ALLOWED} served, over HTTPS (TCP) and HTTP/3 (QUIC)");
    Ok(ExitCode::SUCCESS)
}

/// `sni-filter stats --watch 1` for three seconds while the client tries both names again.
fn live_counters(lab: &Lab, server: &TlsServer, daemon: &Daemon) -> Result<()> {
    section("live counters (sni-filter stats --watch 1), while the client tries again");
    std::thread::scope(|s| -> Result<()> {
        let clients = s.spawn(|| {
            for _ in 0..2 {
                let _ = curl(
                    lab,
                    BANNED,
                    &server.curl_opts().max_time(Duration::from_secs(1)),
                );
                let _ = curl(
                    lab,
                    ALLOWED,
                    &server.curl_opts().max_time(Duration::from_secs(1)),
                );
            }
        });
        let out = daemon
            .command(["stats", "--watch", "1", "--count", "3"])
            .output()
            .context("cannot run `sni-filter stats`")?;
        print!("{}", String::from_utf8_lossy(&out.stdout));
        let _ = clients.join();
        Ok(())
    })?;
    yield_to_signal_handler();

    Ok(())
}

/// What the client got through the filter, over HTTPS and HTTP/3.
struct Through {
    banned: CurlOutcome,
    allowed: CurlOutcome,
    banned_h3: QuicRun,
    allowed_h3: QuicRun,
}

impl Through {
    fn as_intended(&self) -> bool {
        !self.banned.served()
            && self.allowed.served()
            && !self.banned_h3.served()
            && self.allowed_h3.served()
    }
}

/// Both names over HTTPS and HTTP/3, each outcome printed.
fn through_filter(lab: &Lab, server: &TlsServer, quic: &QuicServer) -> Result<Through> {
    let banned = fetch(lab, server, BANNED)?;
    let allowed = fetch(lab, server, ALLOWED)?;
    print_outcome(BANNED, &banned);
    print_outcome(ALLOWED, &allowed);
    let banned_h3 = fetch_h3(lab, quic, BANNED)?;
    let allowed_h3 = fetch_h3(lab, quic, ALLOWED)?;
    print_h3(BANNED, &banned_h3);
    print_h3(ALLOWED, &allowed_h3);
    Ok(Through {
        banned,
        allowed,
        banned_h3,
        allowed_h3,
    })
}

/// Both names are served without the filter: the lab itself is not what blocks.
fn baseline(lab: &Lab, server: &TlsServer, quic: &QuicServer) -> Result<()> {
    section("without the filter");
    for host in [BANNED, ALLOWED] {
        let outcome = fetch(lab, server, host)?;
        print_outcome(host, &outcome);
        if !outcome.served() {
            bail!("the lab does not serve {host} even without the filter");
        }
    }
    for host in [BANNED, ALLOWED] {
        let outcome = fetch_h3(lab, quic, host)?;
        print_h3(host, &outcome);
        if !outcome.served() {
            bail!("the lab does not serve {host} over HTTP/3 even without the filter");
        }
    }
    Ok(())
}

/// An HTTP/3 request with aioquic's client (QUIC only: no fallback to TCP).
fn fetch_h3(lab: &Lab, quic: &QuicServer, host: &str) -> Result<QuicRun> {
    let outcome = quic_fetch(lab, QuicClient::Aioquic, host, quic, false, CURL_MAX_TIME);
    yield_to_signal_handler();
    outcome
}

fn print_h3(host: &str, outcome: &QuicRun) {
    let width = BANNED.len().max(ALLOWED.len()) + 2;
    let verdict = if outcome.served() {
        "SERVED "
    } else {
        "BLOCKED"
    };
    let first = outcome.summary();
    let first = first.lines().next().unwrap_or_default();
    println!("  {host:<width$} {verdict} over HTTP/3 ({first})");
}

/// A fresh lab, after removing what an interrupted earlier run left.
fn new_lab() -> Result<Lab> {
    section("lab");
    let stale = Lab::cleanup_stale(LAB_PREFIX)?;
    if !stale.is_empty() {
        println!(
            "removed namespaces left by an earlier run: {}",
            stale.join(" ")
        );
    }
    Lab::new(LAB_PREFIX)
}

/// The port rsyslogd listens on in the demo.
const SYSLOG_PORT: u16 = 5514;

/// A copy of `config` in `dir` (its rule lists with it) whose `[logging]` destination is
/// `destination`.
fn config_logging_to(
    config: &std::path::Path,
    dir: &std::path::Path,
    destination: &str,
) -> Result<PathBuf> {
    let text =
        std::fs::read_to_string(config).with_context(|| format!("reading {}", config.display()))?;
    let from = config.parent().unwrap_or(std::path::Path::new("."));
    let lists = from.join("lists");
    if lists.is_dir() {
        std::fs::create_dir_all(dir.join("lists"))?;
        for entry in std::fs::read_dir(&lists)? {
            let entry = entry?;
            std::fs::copy(entry.path(), dir.join("lists").join(entry.file_name()))?;
        }
    }
    let mut out = String::new();
    let mut in_logging = false;
    for line in text.lines() {
        if line.starts_with('[') {
            in_logging = line.trim() == "[logging]";
        }
        if in_logging && line.trim_start().starts_with("destination") {
            let _ = writeln!(out, "destination = \"{destination}\"");
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    let path = dir.join("filter.toml");
    std::fs::write(&path, out)?;
    Ok(path)
}

/// `sni-filter --instance NAME ARGS` on the lab's gateway; its output.
fn daemon_cli(lab: &Lab, bin: &std::path::Path, instance: &str, args: &[&str]) -> Result<String> {
    let out = lab
        .gateway_command(bin)?
        .arg("--instance")
        .arg(instance)
        .args(args)
        .output()
        .context("cannot run sni-filter")?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr))
}

fn section(title: &str) {
    println!("\n== {title}");
}

fn fetch(lab: &Lab, server: &TlsServer, host: &str) -> Result<CurlOutcome> {
    let outcome = curl(lab, host, &server.curl_opts().max_time(CURL_MAX_TIME));
    yield_to_signal_handler();
    outcome
}

/// One aligned line per name: `SERVED  (HTTP 200, "...")` or `BLOCKED (why)`.
fn print_outcome(host: &str, outcome: &CurlOutcome) {
    let width = BANNED.len().max(ALLOWED.len()) + 2;
    let verdict = if outcome.served() {
        "SERVED "
    } else {
        "BLOCKED"
    };
    println!("  {host:<width$} {verdict} ({})", outcome.summary());
}

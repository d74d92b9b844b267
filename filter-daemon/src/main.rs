//! `sni-filter`: parses the command line and dispatches to the library.

use std::{path::PathBuf, process::ExitCode};

use clap::{CommandFactory as _, Parser, Subcommand};
use sni_filter::{
    cmd,
    config::XdpMode,
    error::exit,
    state::{DEFAULT_INSTANCE, Instance},
};

/// Drops TLS connections to banned applications by their server name (SNI), in XDP.
#[derive(Parser)]
#[command(name = "sni-filter", version = sni_filter::build_info::LONG_VERSION, about, long_about = None)]
struct Cli {
    /// Name of this filter's pinned state (/sys/fs/bpf/NAME, /run/NAME); one per gateway
    /// normally, several for tests.
    #[arg(long, global = true, default_value = DEFAULT_INSTANCE)]
    instance: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Load the rules, attach the filter and log counters until stopped.
    ///
    /// Example: sni-filter run --config /etc/sni-filter/filter.toml --interface lan0
    Run {
        /// The configuration file.
        #[arg(long, short)]
        config: PathBuf,
        /// Interface to filter at ingress (repeatable); replaces the configuration's list.
        #[arg(long = "interface", short = 'i')]
        interfaces: Vec<String>,
        /// Attach mode; overrides the configuration's `xdp_mode`.
        #[arg(long, value_enum)]
        xdp_mode: Option<XdpMode>,
        /// Accept generic mode where the driver refuses native XDP.
        #[arg(long)]
        allow_generic_fallback: bool,
    },
    /// Show the running filter: interfaces, rules per app and counters.
    ///
    /// Exit status (as LSB `status` actions and `systemctl status`): 0 the filter is
    /// attached and its daemon runs; 1 the filter is attached but no daemon runs (it drops
    /// with the rules it has; nothing is logged, QUIC is not judged); 3 the filter is not
    /// attached; 4 the state could not be read.
    ///
    /// Example: sni-filter status --json
    Status {
        /// One JSON object (field names as in the FLOW records and `stats --json`).
        #[arg(long)]
        json: bool,
    },
    /// Validate a configuration and its rule lists without touching the kernel, as `run`
    /// would take them: a configuration that names no interface is refused unless `run`
    /// will be given --interface (say which here). Exit status 0 valid, 78 invalid.
    ///
    /// Example: sni-filter check-config /etc/sni-filter/filter.toml
    CheckConfig {
        /// The configuration file.
        file: PathBuf,
        /// An interface `run` will be given with --interface (repeatable).
        #[arg(long = "interface", short = 'i')]
        interfaces: Vec<String>,
    },
    /// Say which app and rule match a server name, and whether that configuration is loaded.
    ///
    /// Exit status, as grep's: 0 the name is blocked (an enabled app with action drop or
    /// reject matches it); 1 it passes (no rule matches, or its app is disabled or only
    /// monitored); 2 an error (the configuration is invalid or unreadable).
    ///
    /// Example: sni-filter check --config /etc/sni-filter/filter.toml www.tiktok.com
    Check {
        /// The configuration file.
        #[arg(long, short, default_value = "/etc/sni-filter/filter.toml")]
        config: PathBuf,
        /// One JSON object (field names as in the FLOW records).
        #[arg(long)]
        json: bool,
        /// The server name to judge.
        host: String,
    },
    /// Print the filter's counters (by reason, by app, notes), read from its pinned maps:
    /// works with or without a running daemon. `--watch` prints rates per second every
    /// interval; `--json` prints one JSON object per sample (every reason, zeros too).
    ///
    /// Example: sni-filter stats --watch 5 --json
    Stats {
        /// Sample every SECS seconds (default 1) and print rates per second until stopped.
        #[arg(long, value_name = "SECS", num_args = 0..=1, default_missing_value = "1", value_parser = watch_interval)]
        watch: Option<std::time::Duration>,
        /// With --watch: stop after N samples.
        #[arg(long, value_name = "N", requires = "watch")]
        count: Option<u64>,
        /// One JSON object per sample and line.
        #[arg(long)]
        json: bool,
    },
    /// Take the filter off every interface and remove every trace of it: the pinned links
    /// and maps under /sys/fs/bpf/INSTANCE and the state file. A running daemon is stopped
    /// first (SIGTERM). Stopping the daemon alone leaves the filter in force; this ends it.
    ///
    /// Example: sni-filter unload
    Unload,
    /// Check the kernel and interfaces as `run` does before attaching: kernel version, the
    /// verifier's work for both programs (loaded, not attached: processed instructions
    /// against the bound of 200000 and the limit of 1000000, and the time), the interface
    /// and its driver, offloads that hide VLAN tags or merge segments, MTU, and another XDP
    /// program already attached (never replaced). Exit 1 if a check fails.
    ///
    /// Example: sni-filter doctor lan0 wifi0
    Doctor {
        /// One JSON object: every check, and the verifier's figures per program.
        #[arg(long)]
        json: bool,
        /// Interfaces to check.
        #[arg(required = true)]
        interfaces: Vec<String>,
    },
    /// Ask the running daemon to re-read its configuration (as SIGHUP does) and wait for its
    /// answer. An invalid configuration is refused and the running rules stay in force.
    ///
    /// Exit status: 0 the new configuration is in force; 78 it was refused (the reason is
    /// printed); 1 no daemon runs or it did not answer.
    ///
    /// Example: sni-filter reload
    Reload,
    /// Download the rule lists the configuration gives a URL for ([updates.urls]), each
    /// with a conditional request (an unchanged list costs a 304), check its minisign
    /// signature, compile the configuration with it as check-config does, refuse an older
    /// version, move it in atomically and ask the running daemon to reload. On any failure
    /// the last good list stays. One line per list: `unchanged (304)`, `updated VERSION`, or
    /// the refusal.
    ///
    /// Exit status: 0 every list is current; 78 a list was refused (signature, rollback,
    /// invalid list) or the reload was; 1 a download failed or no daemon answered.
    ///
    /// Example: sni-filter update-lists --config /etc/sni-filter/filter.toml
    UpdateLists {
        /// The configuration file.
        #[arg(long, short, default_value = "/etc/sni-filter/filter.toml")]
        config: PathBuf,
    },
    /// List the blocked flows whose later packets are being dropped.
    ///
    /// Example: sni-filter flows --flush
    Flows {
        /// Forget them all afterwards: their packets are judged afresh within a second (each
        /// CPU answers a blocked flow from a cache of its own for up to a second).
        #[arg(long)]
        flush: bool,
        /// One JSON object per flow and line (field names as in the FLOW records).
        #[arg(long)]
        json: bool,
    },
    /// Run captured traffic through the real compiled XDP program, with maps of its own, and
    /// print the verdict of every flow that carried a ClientHello.
    ///
    /// Reads pcap and pcapng (Ethernet, Linux cooked v1/v2, raw IP and BSD loopback link
    /// types). Packets are run in order with state carried between them as on a gateway; a
    /// summary per capture goes to stderr. Needs the rights to load BPF programs (root).
    ///
    /// Example: sni-filter replay --config /etc/sni-filter/filter.toml --json lan0.pcapng
    Replay {
        /// The configuration whose rules judge the flows; without, every flow passes and
        /// the server names are still read.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// One JSON object per flow and line instead of a table.
        #[arg(long)]
        json: bool,
        /// pcap or pcapng files, replayed one after the other, each on fresh maps.
        #[arg(required = true, value_name = "CAPTURE")]
        captures: Vec<PathBuf>,
    },
    /// Write shell completions or man pages made from these definitions (for packaging).
    #[command(hide = true)]
    Generate {
        #[command(subcommand)]
        what: cmd::generate::Generate,
    },
}

/// The `--watch` interval: seconds, at least 0.1.
fn watch_interval(text: &str) -> Result<std::time::Duration, String> {
    match text.parse::<f64>() {
        Ok(secs) if secs.is_finite() && secs >= 0.1 => Ok(std::time::Duration::from_secs_f64(secs)),
        _ => Err(format!(
            "{text:?} is not a number of seconds of at least 0.1"
        )),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if !matches!(cli.command, Command::Run { .. }) {
        // A CLI piped into `head` ends quietly, as other tools do. The daemon keeps Rust's
        // default (ignored), so a closed syslog connection is an error, not its death.
        // SAFETY: setting a signal disposition before any thread starts.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    }
    let instance = match Instance::new(&cli.instance) {
        Ok(i) => i,
        Err(e) => {
            eprintln!("sni-filter: {e}");
            return ExitCode::from(2);
        }
    };
    let result = match cli.command {
        Command::Run {
            config,
            interfaces,
            xdp_mode,
            allow_generic_fallback,
        } => cmd::run::run(
            &instance,
            &cmd::run::RunOptions {
                config,
                interfaces,
                xdp_mode,
                allow_generic_fallback,
            },
        ),
        Command::Status { json } => {
            return match cmd::status::status(&instance, json) {
                Ok(health) => ExitCode::from(health.exit_code()),
                Err(e) => fail(&e, STATUS_UNKNOWN),
            };
        }
        Command::Check { config, host, json } => {
            return match cmd::check::check(&instance, &config, &host, json) {
                Ok(verdict) => ExitCode::from(verdict.exit_code()),
                Err(e) => fail(&e, CHECK_ERROR),
            };
        }
        Command::Reload => cmd::reload::reload(&instance),
        Command::Unload => cmd::unload::unload(&instance),
        Command::Stats { watch, count, json } => {
            cmd::stats::stats(&instance, &cmd::stats::StatsOptions { watch, count, json })
        }
        Command::Doctor { interfaces, json } => {
            match cmd::doctor::doctor(&instance, &interfaces, json) {
                Ok(true) => Ok(()),
                Ok(false) => return ExitCode::from(exit::FAILURE),
                Err(e) => Err(e),
            }
        }
        Command::UpdateLists { config } => cmd::update_lists::update_lists(&instance, &config),
        Command::Flows { flush, json } => cmd::flows::flows(&instance, flush, json),
        Command::CheckConfig { file, interfaces } => {
            cmd::check_config::check_config(&file, &interfaces)
        }
        Command::Replay {
            config,
            json,
            captures,
        } => cmd::replay::replay(&cmd::replay::ReplayOptions {
            config,
            json,
            captures,
        }),
        Command::Generate { what } => cmd::generate::generate(Cli::command(), &what),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let code = e.exit_code();
            fail(&e, code)
        }
    }
}

/// `status`'s exit status when the state cannot be read (the LSB's "unknown").
const STATUS_UNKNOWN: u8 = 4;
/// `check`'s exit status on any error (as grep's).
const CHECK_ERROR: u8 = 2;

/// Prints the error and ends with `code`.
fn fail(e: &sni_filter::Error, code: u8) -> ExitCode {
    eprintln!("sni-filter: error: {e}");
    ExitCode::from(code)
}

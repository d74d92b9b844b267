//! The daemon's life, from `sni-filter run` to its last log line: [`start`] validates the
//! configuration, loads and attaches the program (taking over a filter an earlier daemon left
//! pinned) and starts the QUIC worker; [`serve`] logs counter summaries and flow events,
//! sweeps idle flows and reloads on SIGHUP ([`reload`]); on SIGTERM or SIGINT every task and
//! thread stops through one [`Shutdown`], and the filter stays attached unless
//! `detach_on_stop` is set.

mod notify;
mod reload;
mod serve;
mod start;

use std::{path::PathBuf, sync::Arc, time::Duration};

use crate::{
    Error,
    config::{Config, XdpMode},
    filter::Filter,
    identity::RuleSetId,
    metrics::{self, DaemonMetrics},
    quic::worker::Worker,
    rules::{RuleIndex, RuleSet},
    shutdown::Shutdown,
    state::{Attachment, Instance, ReloadOutcome},
    syslog::{Logger, MsgId, Record, Severity},
};

/// How long a stopping daemon (or a sink replaced on reload) keeps sending what is queued.
const SINK_CLOSE_GRACE: Duration = Duration::from_secs(2);

pub struct RunOptions {
    pub config: PathBuf,
    /// Overrides the configuration's interfaces when not empty.
    pub interfaces: Vec<String>,
    pub xdp_mode: Option<XdpMode>,
    pub allow_generic_fallback: bool,
}

/// What the daemon runs with: the filter and the configuration it was built from.
struct Running {
    filter: Filter,
    config: Config,
    set: RuleSet,
    /// The identity of `set` under `config`.
    id: RuleSetId,
    /// `set`'s rules by name, to name the matched rule in FLOW records.
    index: RuleIndex,
    attached: Vec<Attachment>,
    /// Judges QUIC Initials and beats the heartbeat the program checks.
    quic: Worker,
    /// Seconds since the Unix epoch.
    started_at: u64,
    /// When `set` was put in force, seconds since the Unix epoch.
    rules_loaded_at: u64,
    last_reload: Option<ReloadOutcome>,
    /// The versions of the signed lists in force: a reload may not go back from them.
    list_versions: crate::signature::ListVersions,
}

/// A `LIFECYCLE` record.
fn lifecycle(event: &str, severity: Severity, text: String) -> Record {
    Record::new(MsgId::Lifecycle, severity, text).param("event", event)
}

/// A `CONFIG` warning.
fn warning(text: &str) -> Record {
    Record::new(MsgId::Config, Severity::Warning, format!("warning: {text}")).param("warning", text)
}

/// Runs the daemon of `instance` until it is asked to stop.
pub fn run(instance: &Instance, opts: &RunOptions) -> Result<(), Error> {
    crate::fault::arm();
    let config = Config::load(&opts.config)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::system("starting the runtime", e))?;
    let _context = runtime.enter();
    let shutdown = Shutdown::new();
    // Before anything is loaded: a SIGTERM that comes while the filter starts is then a
    // request to stop like any other, never the default action that kills the process.
    let reloads = serve::listen_for_signals(&shutdown)?;
    // Both before anything touches the kernel: a wrong CA file or a taken port stops here.
    let logger = Logger::new(
        config.logging.stderr,
        start::sink_for(&config.logging, &config)?,
    );
    let listener = config.metrics_listen.map(metrics::bind).transpose()?;
    let running = match start::start(instance, opts, config, &logger, &shutdown) {
        Ok(r) => r,
        Err(e) => {
            // main prints the error on stderr; syslog learns it too.
            let mut r = lifecycle("start_failed", Severity::Error, format!("not started: {e}"));
            r.on_stderr = false;
            logger.emit(r);
            runtime.block_on(logger.close(SINK_CLOSE_GRACE));
            return Err(e);
        }
    };
    // Before the capabilities go: maps are opened by id with CAP_SYS_ADMIN.
    let result = DaemonMetrics::open(instance, &running.filter, running.quic.shared().clone());
    start::drop_privileges(&logger);
    let result = result.map(|m| {
        let m = Arc::new(m);
        m.set_rules(&running.config, &running.set, &running.id);
        m.set_interfaces(running.attached.iter().map(|a| a.ifindex).collect());
        m.set_sink(logger.sink().map(|s| s.stats().clone()));
        if let Some(l) = listener {
            serve::metrics_server(l, m.clone(), &logger, &shutdown);
        }
        m
    });
    let (running, logger, result) = match result {
        Ok(metrics) => {
            let mut daemon = serve::Daemon::new(instance, opts, running, logger, metrics);
            let result = runtime.block_on(daemon.serve(reloads, &shutdown));
            let (running, logger) = daemon.into_parts();
            (running, logger, result)
        }
        Err(e) => (running, logger, Err(e)),
    };
    // Whatever ended the loop, every task and the worker's thread end with it.
    shutdown.request();
    leave(instance, running, &logger);
    runtime.block_on(logger.close(SINK_CLOSE_GRACE));
    result
}

/// Takes the filter off its interfaces if the configuration says so; otherwise leaves it
/// in force for the next daemon, and says which it did.
fn leave(instance: &Instance, running: Running, logger: &Logger) {
    let interfaces: Vec<String> = running
        .attached
        .iter()
        .map(|a| a.interface.clone())
        .collect();
    let list = interfaces.join(", ");
    if running.config.detach_on_stop {
        instance.clear();
        drop(running);
        logger.emit(
            lifecycle(
                "detached",
                Severity::Notice,
                format!("detached from {list} (detach_on_stop = true)"),
            )
            .param("interfaces", interfaces.join(",")),
        );
    } else {
        let program_id = program_id(&running.filter);
        drop(running);
        logger.emit(
            lifecycle(
                "left_attached",
                Severity::Notice,
                format!(
                    "stopped; the filter stays on {list} (program id {program_id}) with the rules it has; the next daemon takes it over, `sni-filter unload` removes it"
                ),
            )
            .param("interfaces", interfaces.join(","))
            .param("program_id", program_id),
        );
    }
}

/// The loaded program's id as logged (`?` on a kernel that does not say).
fn program_id(filter: &Filter) -> String {
    filter
        .program_id()
        .map_or_else(|| "?".into(), |i| i.to_string())
}

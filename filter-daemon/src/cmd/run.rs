//! `sni-filter run`: validates the configuration, loads and attaches the program (taking over
//! a filter an earlier daemon left pinned), then logs counter summaries and flow events until
//! SIGINT or SIGTERM. SIGHUP reloads the rules. Stopping leaves the filter attached unless
//! `detach_on_stop` is set.

use std::{
    path::PathBuf,
    sync::{Arc, atomic::Ordering},
    time::{Duration, Instant},
};

use tokio::signal::unix::{SignalKind, signal};

use crate::{
    Error,
    config::{Config, Logging, XdpMode},
    events::{self, WallClock},
    filter::{Attached, Filter},
    metrics::{self, AppInfo, DaemonMetrics, Snapshot},
    privacy::ClientAnonymizer,
    quic::{
        Matcher,
        worker::{Policy, Worker},
    },
    rules::RuleSet,
    state::{AppSummary, Attachment, Instance, RunState, daemon_alive as pid_alive},
    syslog::{
        Logger, MsgId, Origin, Record, Severity,
        sink::{Destination, LocalPaths, QUEUE_CAPACITY, Sink, SinkConfig},
    },
};

/// How often the ring buffer of events is read.
const EVENT_POLL: Duration = Duration::from_millis(200);
/// How often idle reassembly states and verdicts are removed.
const SWEEP_EVERY: Duration = Duration::from_secs(10);
/// How long a stopping daemon (or a sink replaced on reload) keeps sending what is queued.
const SINK_CLOSE_GRACE: Duration = Duration::from_secs(2);

pub struct RunOptions {
    pub config: PathBuf,
    /// Overrides the configuration's interfaces when not empty.
    pub interfaces: Vec<String>,
    pub xdp_mode: Option<XdpMode>,
    pub allow_generic_fallback: bool,
}

/// A `LIFECYCLE` record.
fn lifecycle(event: &str, severity: Severity, text: String) -> Record {
    Record::new(MsgId::Lifecycle, severity, text).param("event", event)
}

/// What the daemon runs with: the filter and the configuration it was built from.
struct Running {
    filter: Filter,
    config: Config,
    set: RuleSet,
    attached: Vec<Attachment>,
    /// Judges QUIC Initials and beats the heartbeat the program checks.
    quic: Worker,
}

/// How the QUIC worker turns verdicts into table entries under `config`.
fn quic_policy(config: &Config) -> Policy {
    Policy {
        uninspectable_drop: config.uninspectable == crate::config::Uninspectable::Drop,
        trace_all: false,
    }
}

/// Where the daemon's records go, and what shapes them: the client privacy setting, the
/// rate limit of flow events, the clock of event times, and the last counters summarised.
struct Output {
    logger: Logger,
    clients: ClientAnonymizer,
    limit: events::RateLimit,
    events_per_second: u32,
    clock: WallClock,
    metrics: Option<Arc<DaemonMetrics>>,
    last: Snapshot,
    last_at: Instant,
    last_sink_dropped: u64,
}

/// The syslog sink a `[logging]` section asks for; `None` for `destination = "none"`.
fn sink_for(logging: &Logging, config: &Config) -> Result<Option<Sink>, Error> {
    if logging.destination == Destination::Off {
        return Ok(None);
    }
    Sink::start(SinkConfig {
        destination: logging.destination.clone(),
        ca_file: logging.ca_file.as_ref().map(|(p, _)| p.clone()),
        origin: Origin::new(logging.facility, &logging.app_name),
        local: LocalPaths::default(),
        capacity: QUEUE_CAPACITY,
    })
    .map(Some)
    .map_err(|e| match &logging.ca_file {
        Some((_, line)) => Error::config(format!("{}:{line}", config.path.display()), e),
        None => e,
    })
}

pub fn run(instance: &Instance, opts: &RunOptions) -> Result<(), Error> {
    let config = Config::load(&opts.config)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::State(format!("starting the runtime: {e}")))?;
    let _context = runtime.enter();
    // Before anything is loaded: a SIGTERM that comes while the filter starts is then a
    // request to stop like any other, never the default action that kills the process.
    let signals = Signals::install()?;
    // Both before anything touches the kernel: a wrong CA file or a taken port stops here.
    let logger = Logger::new(config.logging.stderr, sink_for(&config.logging, &config)?);
    let listener = config.metrics_listen.map(metrics::bind).transpose()?;
    let logging = config.logging.clone();
    let mut running = match start(instance, opts, config, &logger) {
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
    let mut out = Output {
        clients: ClientAnonymizer::new(logging.client_privacy),
        limit: events::RateLimit::new(logging.events_per_second),
        events_per_second: logging.events_per_second,
        clock: WallClock::measure(),
        metrics: None,
        last: Snapshot::default(),
        last_at: Instant::now(),
        last_sink_dropped: 0,
        logger,
    };
    drop_privileges(&out.logger);
    let result = DaemonMetrics::open(instance, app_infos(&running.set));
    let result = match result {
        Ok(m) => {
            let m = Arc::new(m);
            m.set_sink(out.logger.sink().map(|s| s.stats().clone()));
            if let Some(l) = listener {
                let addr = l
                    .local_addr()
                    .map_or_else(|_| "?".into(), |a| a.to_string());
                out.logger.emit(
                    lifecycle(
                        "metrics",
                        Severity::Info,
                        format!("serving Prometheus metrics on http://{addr}/metrics"),
                    )
                    .param("listen", addr),
                );
                tokio::spawn(metrics::serve(l, m.clone()));
            }
            out.metrics = Some(m);
            runtime.block_on(serve(instance, opts, &mut running, &mut out, signals))
        }
        Err(e) => Err(e),
    };
    leave(instance, running, &out.logger);
    runtime.block_on(out.logger.close(SINK_CLOSE_GRACE));
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
    if running.config.detach_on_stop {
        instance.clear();
        drop(running);
        logger.emit(
            lifecycle(
                "detached",
                Severity::Notice,
                format!(
                    "detached from {} (detach_on_stop = true)",
                    interfaces.join(", ")
                ),
            )
            .param("interfaces", interfaces.join(",")),
        );
    } else {
        let program_id = running
            .filter
            .program_id()
            .map_or_else(|| "?".into(), |i| i.to_string());
        drop(running);
        logger.emit(
            lifecycle(
                "left_attached",
                Severity::Notice,
                format!(
                    "stopped; the filter stays on {} (program id {program_id}) with the rules it has; the next daemon takes it over, `sni-filter unload` removes it",
                    interfaces.join(", ")
                ),
            )
            .param("interfaces", interfaces.join(","))
            .param("program_id", program_id),
        );
    }
}

/// Drops every capability but `CAP_BPF`: loading, attaching and pinning are done.
fn drop_privileges(logger: &Logger) {
    logger.emit(match crate::privileges::drop_to_kept() {
        Ok(kept) => lifecycle(
            "privileges",
            Severity::Info,
            format!("capabilities dropped; kept: {}", kept.join(", ")),
        )
        .param("kept", kept.join(",")),
        Err(e) => lifecycle(
            "privileges",
            Severity::Warning,
            format!("warning: running with every capability it started with: {e}"),
        )
        .param("error", &e),
    });
}

fn app_infos(set: &RuleSet) -> Vec<AppInfo> {
    set.apps
        .iter()
        .map(|a| AppInfo {
            name: a.name.clone(),
            action: action_name(a.policy.action).into(),
        })
        .collect()
}

fn action_name(action: u8) -> &'static str {
    filter_common::Action::from_u8(action).map_or("?", filter_common::Action::name)
}

/// Validates, loads, attaches and records the state for the CLI.
fn start(
    instance: &Instance,
    opts: &RunOptions,
    config: Config,
    logger: &Logger,
) -> Result<Running, Error> {
    let set = RuleSet::compile(&config)?;
    for w in &set.warnings {
        logger.emit(
            Record::new(MsgId::Config, Severity::Warning, format!("warning: {w}"))
                .param("warning", w),
        );
    }
    let interfaces = if opts.interfaces.is_empty() {
        config.interfaces.clone()
    } else {
        opts.interfaces.clone()
    };
    if interfaces.is_empty() {
        return Err(Error::config(
            config.path.display(),
            "no interfaces: set [filter] interfaces or pass --interface",
        ));
    }
    let mode = opts.xdp_mode.unwrap_or(config.xdp_mode);
    let fallback = opts.allow_generic_fallback || config.generic_fallback;

    if let Some(other) = instance
        .read_state()
        .filter(|s| s.pid != std::process::id() && pid_alive(s.pid))
    {
        return Err(Error::State(format!(
            "another daemon (pid {}) runs instance {:?}: stop it first, or pick another --instance",
            other.pid, instance.name
        )));
    }
    preflight(&interfaces, instance, logger)?;
    instance.prepare()?;
    let adopting = !instance.pinned_links().is_empty();
    let result = attach_all(instance, &config, &set, &interfaces, mode, fallback, logger);
    if result.is_err() && !adopting {
        // Nothing was running before: leave nothing behind. An adopted filter stays in
        // force with the program it had.
        instance.clear();
    }
    let (filter, attached) = result?;
    // Started whatever the `quic` mode: the worker opens its maps while the daemon still
    // has the privileges to, and a reload may turn inspection on.
    let quic = Worker::start(&filter, Matcher::new(&set)?, quic_policy(&config))?;
    let running = Running {
        filter,
        config,
        set,
        attached,
        quic,
    };
    instance.write_state(&state(&running))?;
    let mut started = lifecycle(
        "started",
        Severity::Notice,
        format!(
            "filtering {}: {} rules in {} apps from {}",
            interfaces.join(", "),
            running.set.rule_count(),
            running.set.apps.len(),
            running.config.path.display()
        ),
    )
    .param("version", env!("CARGO_PKG_VERSION"))
    .param("interfaces", interfaces.join(","))
    .param("rules", running.set.rule_count())
    .param("apps", running.set.apps.len())
    .param("config", running.config.path.display())
    .param(
        "client_privacy",
        running.config.logging.client_privacy.name(),
    )
    .param("quic", running.config.quic.name());
    // The verifier's margin on this kernel, per program (`sni-filter doctor` prints the same).
    for v in running.filter.verification() {
        if let Some(n) = v.instructions {
            started = started.param(&format!("verified_insns_{}", v.program), n);
        }
    }
    logger.emit(started);
    Ok(running)
}

/// Loads the program (adopting the pinned maps that fit), puts it on every interface — a
/// pinned filter's links are taken over in one step — and takes the filter off pinned
/// interfaces no longer configured.
fn attach_all(
    instance: &Instance,
    config: &Config,
    set: &RuleSet,
    interfaces: &[String],
    mode: XdpMode,
    fallback: bool,
    logger: &Logger,
) -> Result<(Filter, Vec<Attachment>), Error> {
    let sizes = [
        (filter_common::names::VERDICTS, config.verdicts_max),
        (filter_common::names::HELLOS, config.hellos_max),
    ];
    for note in instance.prune_pins(&sizes)? {
        logger.emit(
            Record::new(MsgId::Config, Severity::Warning, format!("warning: {note}"))
                .param("warning", &note),
        );
    }
    let mut filter = Filter::load_pinned(config, instance)?;
    filter.apply_config(config, set)?;
    let program_id = filter
        .program_id()
        .map_or_else(|| "?".into(), |i| i.to_string());
    let previous = instance.read_state();
    let mut attached = Vec::new();
    for iface in interfaces {
        let how = filter.attach_pinned(iface, mode, fallback, instance)?;
        let (mode_name, text) = match how {
            Attached::New(actual) => (
                actual.name().to_owned(),
                format!(
                    "attached to {iface} ({} mode), program id {program_id}",
                    actual.name()
                ),
            ),
            Attached::Adopted => {
                let was = previous
                    .as_ref()
                    .and_then(|s| s.interfaces.iter().find(|a| &a.interface == iface))
                    .map_or_else(|| "?".to_owned(), |a| a.mode.clone());
                (
                    was.clone(),
                    format!(
                        "attached to {iface} ({was} mode), program id {program_id}: took over the pinned filter without detaching"
                    ),
                )
            }
        };
        logger.emit(
            lifecycle("attached", Severity::Notice, text)
                .param("iface", iface)
                .param("mode", &mode_name)
                .param("program_id", &program_id)
                .param("adopted", how == Attached::Adopted),
        );
        attached.push(Attachment {
            interface: iface.clone(),
            ifindex: crate::state::ifindex(iface).unwrap_or(0),
            mode: mode_name,
        });
    }
    filter.pin_judge(instance)?;
    for (iface, pin) in instance.pinned_links() {
        if !interfaces.contains(&iface) {
            let _ = std::fs::remove_file(&pin);
            logger.emit(
                lifecycle(
                    "detached",
                    Severity::Notice,
                    format!("detached from {iface}: no longer configured"),
                )
                .param("iface", &iface),
            );
        }
    }
    Ok((filter, attached))
}

/// Every interface is checked before anything is loaded; one that fails (another XDP
/// program on it, a missing interface, an old kernel) stops the start, warnings are logged.
fn preflight(interfaces: &[String], instance: &Instance, logger: &Logger) -> Result<(), Error> {
    let mut checks = crate::preflight::kernel();
    for iface in interfaces {
        checks.extend(crate::preflight::interface(iface, instance));
    }
    for c in checks
        .iter()
        .filter(|c| c.level == crate::preflight::Level::Warn)
    {
        logger.emit(
            Record::new(
                MsgId::Config,
                Severity::Warning,
                format!("warning: {}: {}", c.what, c.detail),
            )
            .param("warning", &c.detail),
        );
    }
    match checks
        .iter()
        .find(|c| c.level == crate::preflight::Level::Fail)
    {
        Some(c) => Err(Error::Attach {
            iface: c.what.clone(),
            reason: c.detail.clone(),
        }),
        None => Ok(()),
    }
}

fn state(r: &Running) -> RunState {
    RunState {
        pid: std::process::id(),
        config: r.config.path.clone(),
        config_fingerprint: r.config.fingerprint(),
        program_id: r.filter.program_id(),
        interfaces: r.attached.clone(),
        apps: r
            .set
            .apps
            .iter()
            .map(|a| AppSummary {
                name: a.name.clone(),
                action: action_name(a.policy.action).into(),
                enabled: a.policy.enabled != 0,
                rules: a.rules.len(),
            })
            .collect(),
    }
}

impl Output {
    fn metrics(&self) -> Result<&Arc<DaemonMetrics>, Error> {
        self.metrics
            .as_ref()
            .ok_or_else(|| Error::State("counters not open".into()))
    }

    /// A `SUMMARY` and one `APP_SUMMARY` per app: the changes since the last call.
    fn summarize(&mut self, quic: &Worker) -> Result<(), Error> {
        let metrics = self.metrics()?.clone();
        let now = metrics.snapshot()?;
        let interval = self.last_at.elapsed();
        let dropped = metrics.sink_dropped();
        let sink = (dropped - self.last_sink_dropped.min(dropped), dropped);
        let mut summary = metrics::summary(&self.last, &now, interval, sink);
        if let Ok(q) = quic.shared().stats.lock() {
            let us = |p| q.latency_percentile(p).map_or(0, |ns| ns / 1000);
            summary = summary
                .param("quic_datagrams_total", q.reassembly.datagrams)
                .param("quic_flows_blocked_total", q.blocked)
                .param("quic_flows_allowed_total", q.allowed)
                .param("quic_unreadable_total", q.reassembly.unreadable)
                .param("quic_abandoned_total", q.reassembly.abandoned)
                .param("quic_write_failures_total", q.write_failures)
                .param("quic_verdict_p50_us", us(50))
                .param("quic_verdict_p99_us", us(99));
        }
        self.logger.emit(summary);
        if !quic.alive() {
            self.logger.emit(lifecycle(
                "quic_worker_stopped",
                Severity::Error,
                "the QUIC worker stopped: QUIC Initials are dropped (clients fall back to TCP)"
                    .into(),
            ));
        }
        for r in metrics::app_summaries(&self.last, &now, interval) {
            self.logger.emit(r);
        }
        self.last = now;
        self.last_at = Instant::now();
        self.last_sink_dropped = dropped;
        Ok(())
    }

    /// Takes the settings of a reloaded `[logging]` section: a new sink (the old one sends
    /// what it holds in the background), and the privacy and rate limit if they changed.
    fn apply_logging(&mut self, old: &Logging, new: &Logging, sink: Option<Sink>) {
        let stats = sink.as_ref().map(|s| s.stats().clone());
        if let Some(previous) = self.logger.replace(new.stderr, sink) {
            tokio::spawn(previous.close(SINK_CLOSE_GRACE));
        }
        if let Some(m) = &self.metrics {
            m.set_sink(stats);
        }
        if old.client_privacy != new.client_privacy {
            self.clients = ClientAnonymizer::new(new.client_privacy);
        }
        if old.events_per_second != new.events_per_second {
            self.limit = events::RateLimit::new(new.events_per_second);
            self.events_per_second = new.events_per_second;
        }
    }
}

/// The signals the daemon acts on.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> Result<Self, Error> {
        let sig = |kind| {
            signal(kind).map_err(|e| Error::State(format!("installing a signal handler: {e}")))
        };
        Ok(Self {
            term: sig(SignalKind::terminate())?,
            int: sig(SignalKind::interrupt())?,
            hup: sig(SignalKind::hangup())?,
        })
    }
}

/// The daemon's loop: summaries, events, sweeping, reloads, and the signals that end it.
async fn serve(
    instance: &Instance,
    opts: &RunOptions,
    r: &mut Running,
    out: &mut Output,
    signals: Signals,
) -> Result<(), Error> {
    let Signals {
        mut term,
        mut int,
        mut hup,
    } = signals;
    let mut summary = tokio::time::interval(Duration::from_secs(r.config.summary_interval_secs));
    summary.tick().await;
    let mut poll = tokio::time::interval(EVENT_POLL);
    let mut sweep = tokio::time::interval(SWEEP_EVERY);
    out.last = out.metrics()?.snapshot()?;
    out.last_at = Instant::now();
    loop {
        tokio::select! {
            _ = summary.tick() => out.summarize(&r.quic)?,
            _ = poll.tick() => log_events(r, out)?,
            _ = sweep.tick() => {
                let (hellos, verdicts) = r.filter.sweep()?;
                if hellos + verdicts > 0 {
                    out.logger.emit(
                        Record::new(
                            MsgId::Sweep,
                            Severity::Debug,
                            format!("swept {hellos} idle reassembly states and {verdicts} idle blocked flows"),
                        )
                        .param("reassembly_states", hellos)
                        .param("blocked_flows", verdicts),
                    );
                }
            }
            _ = hup.recv() => reload(instance, opts, r, out)?,
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }
    log_events(r, out)?;
    out.summarize(&r.quic)?;
    let now = &out.last;
    out.logger.emit(
        lifecycle(
            "stopping",
            Severity::Notice,
            format!(
                "stopping; totals: {}",
                crate::counters::summary_line(
                    &vec![filter_common::Counter::default(); now.reasons.len()],
                    &now.reasons
                )
            ),
        )
        .param(
            "packets_total",
            now.reasons.iter().map(|c| c.packets).sum::<u64>(),
        )
        .param(
            "dropped_total",
            now.reasons.iter().map(|c| c.dropped).sum::<u64>(),
        ),
    );
    Ok(())
}

fn log_events(r: &mut Running, out: &mut Output) -> Result<(), Error> {
    let apps: Vec<String> = r.set.apps.iter().map(|a| a.name.clone()).collect();
    let now = Instant::now();
    let metrics = out.metrics()?.clone();
    let mut drained = r.filter.drain_events()?;
    drained.extend(r.quic.events.try_iter());
    for e in drained {
        if out.limit.allow(now) {
            let client = out
                .clients
                .view(events::addr(&e.flow, true), e.flow.sport, now);
            let time = out.clock.wall(e.ts_ns);
            out.logger.emit(events::record(
                &e,
                &apps,
                &iface_name(e.ifindex),
                &client,
                time,
            ));
            metrics.events_logged.fetch_add(1, Ordering::Relaxed);
        }
    }
    let held = out.limit.take_suppressed();
    if held > 0 {
        metrics.events_suppressed.fetch_add(held, Ordering::Relaxed);
        out.logger.emit(
            Record::new(
                MsgId::Suppressed,
                Severity::Warning,
                format!(
                    "{held} events suppressed (more than {} per second)",
                    out.events_per_second
                ),
            )
            .param("count", held)
            .param("limit_per_second", out.events_per_second),
        );
    }
    Ok(())
}

fn iface_name(ifindex: u32) -> String {
    let mut buf = [0 as libc::c_char; libc::IF_NAMESIZE];
    // SAFETY: a buffer of IF_NAMESIZE bytes, as if_indextoname requires.
    let p = unsafe { libc::if_indextoname(ifindex, buf.as_mut_ptr()) };
    if p.is_null() {
        return format!("if{ifindex}");
    }
    // SAFETY: if_indextoname wrote a NUL-terminated name into buf.
    unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) }
        .to_string_lossy()
        .into_owned()
}

/// Re-reads the configuration; an invalid one is refused and the running rules stay.
fn reload(
    instance: &Instance,
    opts: &RunOptions,
    r: &mut Running,
    out: &mut Output,
) -> Result<(), Error> {
    let loaded = Config::load(&opts.config)
        .and_then(|c| RuleSet::compile(&c).map(|s| (c, s)))
        .and_then(|(c, s)| {
            // A new sink and the QUIC worker's rules are made before anything changes, so a
            // failure of either refuses the reload.
            let sink = if c.logging == r.config.logging {
                None
            } else {
                Some(sink_for(&c.logging, &c)?)
            };
            let matcher = Matcher::new(&s)?;
            Ok((c, s, sink, matcher))
        });
    match loaded {
        Ok((config, set, sink, matcher)) => {
            // Rules, apps, exemptions, scopes, ports and policy switch together.
            r.filter.apply_config(&config, &set)?;
            let shared = r.quic.shared();
            if let (Ok(mut m), Ok(mut p)) = (shared.matcher.lock(), shared.policy.lock()) {
                *m = Arc::new(matcher);
                *p = quic_policy(&config);
            }
            if let Some(sink) = sink {
                out.apply_logging(&r.config.logging, &config.logging, sink);
            }
            if config.metrics_listen != r.config.metrics_listen {
                out.logger.emit(Record::new(
                    MsgId::Config,
                    Severity::Warning,
                    "warning: [metrics] listen changes take effect at the next start",
                ));
            }
            out.logger.emit(
                lifecycle(
                    "reloaded",
                    Severity::Notice,
                    format!(
                        "reloaded {}: {} rules in {} apps",
                        config.path.display(),
                        set.rule_count(),
                        set.apps.len()
                    ),
                )
                .param("rules", set.rule_count())
                .param("apps", set.apps.len()),
            );
            if let Some(m) = &out.metrics {
                m.set_apps(app_infos(&set));
            }
            r.config = config;
            r.set = set;
            instance.write_state(&state(r))?;
        }
        Err(e) => out.logger.emit(
            lifecycle(
                "reload_refused",
                Severity::Error,
                format!("reload refused, the running rules stay in force: {e}"),
            )
            .param("error", &e),
        ),
    }
    Ok(())
}

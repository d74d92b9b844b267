//! Serving: the loop of a started daemon — counter summaries, flow events, sweeps of idle
//! flows, reloads — the signals that feed it, the metrics server beside it, and the last
//! summary when it stops.

use std::{
    sync::{Arc, atomic::Ordering},
    time::{Duration, Instant},
};

use filter_common::Counter;
use tokio::{
    net::TcpListener,
    signal::unix::{SignalKind, signal},
    sync::mpsc,
};

use crate::{
    Error,
    counters::{self, Snapshot},
    events::{self, WallClock},
    fault::{self, Hang},
    metrics::{self, DaemonMetrics},
    privacy::ClientAnonymizer,
    shutdown::Shutdown,
    state::Instance,
    syslog::{Logger, MsgId, Record, Severity},
};

use super::{RunOptions, Running, lifecycle, notify::ServiceManager};

/// How often the ring buffer of events is read.
const EVENT_POLL: Duration = Duration::from_millis(200);
/// How often idle reassembly states and verdicts are removed.
const SWEEP_EVERY: Duration = Duration::from_secs(10);

/// Turns SIGTERM and SIGINT into a stop request and SIGHUP into a reload request, from
/// now on (the handlers are installed before this returns).
pub(super) fn listen_for_signals(
    shutdown: &Shutdown,
) -> Result<mpsc::UnboundedReceiver<()>, Error> {
    let install = |kind| signal(kind).map_err(|e| Error::system("installing a signal handler", e));
    let mut term = install(SignalKind::terminate())?;
    let mut int = install(SignalKind::interrupt())?;
    let mut hup = install(SignalKind::hangup())?;
    let (reload, reloads) = mpsc::unbounded_channel();
    let shutdown = shutdown.clone();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = term.recv() => shutdown.request(),
                _ = int.recv() => shutdown.request(),
                _ = hup.recv() => { let _ = reload.send(()); }
                () = shutdown.requested() => break,
            }
        }
    });
    Ok(reloads)
}

/// Serves `/metrics` on `listener` until the daemon stops.
pub(super) fn metrics_server(
    listener: TcpListener,
    metrics: Arc<DaemonMetrics>,
    logger: &Logger,
    shutdown: &Shutdown,
) {
    let addr = listener
        .local_addr()
        .map_or_else(|_| "?".into(), |a| a.to_string());
    logger.emit(
        lifecycle(
            "metrics",
            Severity::Info,
            format!("serving Prometheus metrics on http://{addr}/metrics"),
        )
        .param("listen", addr),
    );
    let shutdown = shutdown.clone();
    tokio::spawn(async move {
        tokio::select! {
            () = metrics::serve(listener, metrics) => {}
            () = shutdown.requested() => {}
        }
    });
}

/// A started daemon, where its records go, and the service manager it tells how it is.
pub(super) struct Daemon<'a> {
    pub(super) instance: &'a Instance,
    pub(super) opts: &'a RunOptions,
    pub(super) running: Running,
    pub(super) out: Output,
    pub(super) manager: ServiceManager,
    /// Whether the watchdog is being left unfed (logged once per episode).
    watchdog_withheld: bool,
}

/// Where the daemon's records go, and what shapes them: the client privacy setting, the
/// rate limit of flow events, the clock of event times, and the last counters summarised.
pub(super) struct Output {
    pub(super) logger: Logger,
    pub(super) clients: ClientAnonymizer,
    pub(super) limit: events::RateLimit,
    pub(super) events_per_second: u32,
    clock: WallClock,
    pub(super) metrics: Arc<DaemonMetrics>,
    last: Snapshot,
    last_at: Instant,
    last_sink_dropped: u64,
}

impl<'a> Daemon<'a> {
    pub(super) fn new(
        instance: &'a Instance,
        opts: &'a RunOptions,
        running: Running,
        logger: Logger,
        metrics: Arc<DaemonMetrics>,
    ) -> Self {
        let logging = &running.config.logging;
        let out = Output {
            clients: ClientAnonymizer::new(logging.client_privacy),
            limit: events::RateLimit::new(logging.events_per_second),
            events_per_second: logging.events_per_second,
            clock: WallClock::measure(),
            metrics,
            last: Snapshot::default(),
            last_at: Instant::now(),
            last_sink_dropped: 0,
            logger,
        };
        Self {
            instance,
            opts,
            running,
            out,
            manager: ServiceManager::from_env(),
            watchdog_withheld: false,
        }
    }

    pub(super) fn into_parts(self) -> (Running, Logger) {
        (self.running, self.out.logger)
    }

    /// The daemon's loop: summaries, events, sweeping and reloads until `shutdown`.
    pub(super) async fn serve(
        &mut self,
        mut reloads: mpsc::UnboundedReceiver<()>,
        shutdown: &Shutdown,
    ) -> Result<(), Error> {
        let every = Duration::from_secs(self.running.config.summary_interval_secs);
        let mut summary = tokio::time::interval(every);
        summary.tick().await;
        let mut poll = tokio::time::interval(EVENT_POLL);
        let mut sweep = tokio::time::interval(SWEEP_EVERY);
        let mut watchdog = self.manager.watchdog_every().map(tokio::time::interval);
        self.out.last = self.out.metrics.snapshot()?;
        self.out.last_at = Instant::now();
        let ready = self.ready_status();
        self.tell(|m| m.ready(&ready));
        loop {
            tokio::select! {
                _ = summary.tick() => self.summarize()?,
                _ = poll.tick() => {
                    hang_if_asked();
                    self.log_events()?;
                }
                _ = sweep.tick() => self.sweep()?,
                () = tick(watchdog.as_mut()) => self.feed_watchdog(),
                Some(()) = reloads.recv() => {
                    self.tell(ServiceManager::reloading);
                    self.reload()?;
                    let ready = self.ready_status();
                    self.tell(|m| m.ready(&ready));
                }
                () = shutdown.requested() => break,
            }
        }
        self.tell(ServiceManager::stopping);
        self.log_events()?;
        self.summarize()?;
        let totals = &self.out.last.reasons;
        self.out.logger.emit(
            lifecycle(
                "stopping",
                Severity::Notice,
                format!(
                    "stopping; totals: {}",
                    counters::summary_line(&vec![Counter::default(); totals.len()], totals)
                ),
            )
            .param(
                "packets_total",
                totals.iter().map(|c| c.packets).sum::<u64>(),
            )
            .param(
                "dropped_total",
                totals.iter().map(|c| c.dropped).sum::<u64>(),
            ),
        );
        Ok(())
    }

    /// What `systemctl status` shows of a serving daemon.
    fn ready_status(&self) -> String {
        let r = &self.running;
        let interfaces: Vec<&str> = r.attached.iter().map(|a| a.interface.as_str()).collect();
        format!(
            "filtering {}: {} rules in {} apps",
            interfaces.join(", "),
            r.set.rule_count(),
            r.set.apps.len()
        )
    }

    /// Sends the service manager a message; a failure is logged once.
    fn tell(&mut self, message: impl FnOnce(&mut ServiceManager) -> Option<String>) {
        if let Some(failed) = message(&mut self.manager) {
            self.out
                .logger
                .emit(lifecycle("notify_failed", Severity::Warning, failed));
        }
    }

    /// Tells the watchdog the daemon is alive — this loop turns — unless the QUIC worker
    /// has stopped beating: the program then drops QUIC Initials as if no daemon ran, and
    /// the service manager should restart the daemon.
    fn feed_watchdog(&mut self) {
        let quic = &self.running.quic;
        let age = quic.shared().beat_age();
        if quic.alive() && quic.shared().beating() {
            self.watchdog_withheld = false;
            self.tell(ServiceManager::alive);
            return;
        }
        if !self.watchdog_withheld {
            self.watchdog_withheld = true;
            let timeout = self
                .manager
                .watchdog_timeout()
                .map_or_else(String::new, |t| format!(" within {} s", t.as_secs_f64()));
            self.out.logger.emit(
                lifecycle(
                    "watchdog_withheld",
                    Severity::Error,
                    format!(
                        "the QUIC worker has not beaten for {:.1} s: the watchdog is no longer fed, the service manager will restart the daemon{timeout}",
                        age.as_secs_f64()
                    ),
                )
                .param("quic_beat_age_ms", age.as_millis()),
            );
        }
    }

    fn sweep(&mut self) -> Result<(), Error> {
        let (hellos, verdicts) = self.running.filter.sweep()?;
        if hellos + verdicts > 0 {
            self.out.logger.emit(
                Record::new(
                    MsgId::Sweep,
                    Severity::Debug,
                    format!(
                        "swept {hellos} idle reassembly states and {verdicts} idle blocked flows"
                    ),
                )
                .param("reassembly_states", hellos)
                .param("blocked_flows", verdicts),
            );
        }
        Ok(())
    }

    /// A `SUMMARY` and one `APP_SUMMARY` per app: the changes since the last call.
    fn summarize(&mut self) -> Result<(), Error> {
        let out = &mut self.out;
        let quic = &self.running.quic;
        let now = out.metrics.snapshot()?;
        let interval = out.last_at.elapsed();
        let dropped = out.metrics.sink_dropped();
        let sink = (dropped - out.last_sink_dropped.min(dropped), dropped);
        let mut summary = metrics::summary(&out.last, &now, interval, sink)
            .param("mode", self.running.config.mode.name())
            .param("rules_sha256", &self.running.id.sha256)
            .param("rules_version", &self.running.id.version);
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
        out.logger.emit(summary);
        if !quic.alive() {
            out.logger.emit(lifecycle(
                "quic_worker_stopped",
                Severity::Error,
                "the QUIC worker stopped: QUIC Initials are dropped (clients fall back to TCP)"
                    .into(),
            ));
        }
        for r in metrics::app_summaries(&out.last, &now, interval) {
            out.logger.emit(r);
        }
        out.last = now;
        out.last_at = Instant::now();
        out.last_sink_dropped = dropped;
        Ok(())
    }

    /// Logs the program's and the QUIC worker's flow events, within the rate limit.
    fn log_events(&mut self) -> Result<(), Error> {
        let r = &mut self.running;
        let out = &mut self.out;
        let apps: Vec<String> = r.set.apps.iter().map(|a| a.name.clone()).collect();
        let rules = events::RulesInForce {
            set: &r.set,
            index: &r.index,
            id: &r.id,
        };
        let now = Instant::now();
        let mut drained = r.filter.drain_events()?;
        drained.extend(r.quic.events.try_iter());
        for e in drained {
            if out.limit.allow(now) {
                let client = out
                    .clients
                    .view(events::addr(&e.flow, true), e.flow.sport, now);
                let time = out.clock.wall(e.ts_ns);
                let record =
                    events::record(&e, &apps, &crate::iface::name(e.ifindex), &client, time);
                out.logger.emit(events::with_rules(record, &e, &rules));
                out.metrics.events_logged.fetch_add(1, Ordering::Relaxed);
            }
        }
        let held = out.limit.take_suppressed();
        if held > 0 {
            out.metrics
                .events_suppressed
                .fetch_add(held, Ordering::Relaxed);
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
}

/// The next tick of an interval that may not exist (then never).
async fn tick(interval: Option<&mut tokio::time::Interval>) {
    match interval {
        Some(i) => {
            i.tick().await;
        }
        None => std::future::pending().await,
    }
}

/// A test's fault (debug builds): the main loop stops turning, for good.
fn hang_if_asked() {
    while fault::due(Hang::MainLoop) {
        std::thread::sleep(Duration::from_secs(1));
    }
}

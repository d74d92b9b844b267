//! What the daemon reports of itself and of the program's counters (read by `counters` from
//! the pinned maps): summaries logged every interval (`summary`), and Prometheus text
//! (`render`) served on an optional `/metrics` (`http`), with the flow tables' fill and the
//! QUIC worker's heartbeat read by `tables`.

mod exposition;
mod http;
mod render;
mod summary;
mod tables;

pub use http::{bind, serve};
pub use summary::{app_summaries, summary};
pub use tables::{COUNT_REUSE, Fill, FlowTables};

use std::{
    sync::{
        Arc, Mutex, MutexGuard, PoisonError,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{SystemTime, UNIX_EPOCH},
};

use aya::maps::MapData;

use crate::{
    Error,
    config::{Config, Mode},
    counters::{AppInfo, CounterMaps, Snapshot},
    filter::Filter,
    identity::RuleSetId,
    quic::worker::Shared,
    rules::RuleSet,
    state::Instance,
    syslog::sink::SinkStats,
};

/// What the daemon counts and exposes: the program's counters and tables, read when asked,
/// and the daemon's own figures (events, syslog sink, QUIC worker, reloads). Shared by the
/// daemon loop and the `/metrics` server.
pub struct DaemonMetrics {
    maps: Mutex<CounterMaps<MapData>>,
    tables: Mutex<FlowTables>,
    quic: Arc<Shared>,
    rules: Mutex<Rules>,
    /// The interfaces the filter is attached to, by index.
    ifindexes: Mutex<Vec<u32>>,
    sink: Mutex<Option<Arc<SinkStats>>>,
    /// Syslog records dropped by sinks replaced on reload, so totals never go back.
    sink_dropped_before: AtomicU64,
    pub events_logged: AtomicU64,
    pub events_suppressed: AtomicU64,
    reloads: Reloads,
    /// When the daemon started, in seconds since the Unix epoch.
    started: f64,
}

/// The rule set in force as the metrics show it.
#[derive(Clone, Debug, Default)]
struct Rules {
    /// The apps in slot order.
    apps: Vec<AppInfo>,
    /// Whether each app's rules are in use, in the same order.
    enabled: Vec<bool>,
    /// Each app's rules, in the same order.
    per_app: Vec<usize>,
    /// Rules of every app, and the most the configuration allows.
    loaded: usize,
    max: u32,
    /// The configuration's `mode`: enforce (true) or monitor (a dry run).
    enforcing: bool,
    /// The rule set's identity, and when it was put in force (seconds since the epoch).
    id: RuleSetId,
    loaded_at: f64,
}

/// The `reason` labels of `sni_filter_reload_failures_total` shown from the start, at 0
/// until a refusal of that kind ([`Error::reload_reason`]).
const RELOAD_FAILURE_REASONS: [&str; 5] = ["config", "list", "signature", "rollback", "other"];

/// Reloads asked for and how they ended. The start counts as the first successful load.
struct Reloads {
    applied: AtomicU64,
    refused: AtomicU64,
    /// Seconds since the Unix epoch, as `f64` bits.
    last_at: AtomicU64,
    last_ok: AtomicBool,
    /// Refused reloads by reason, in the order first seen (the known reasons first).
    failures: Mutex<Vec<(&'static str, u64)>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Plain data: a panic elsewhere leaves it usable.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Now, in seconds since the Unix epoch.
fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

impl DaemonMetrics {
    /// Opens the running filter's pinned counter maps and its flow tables; `quic` is the
    /// QUIC worker's shared state, whose figures are reported.
    pub fn open(instance: &Instance, filter: &Filter, quic: Arc<Shared>) -> Result<Self, Error> {
        let now = unix_now();
        Ok(Self {
            maps: Mutex::new(CounterMaps::pinned(instance)?),
            tables: Mutex::new(FlowTables::open(filter)?),
            quic,
            rules: Mutex::new(Rules::default()),
            ifindexes: Mutex::new(Vec::new()),
            sink: Mutex::new(None),
            sink_dropped_before: AtomicU64::new(0),
            events_logged: AtomicU64::new(0),
            events_suppressed: AtomicU64::new(0),
            reloads: Reloads {
                applied: AtomicU64::new(0),
                refused: AtomicU64::new(0),
                last_at: AtomicU64::new(now.to_bits()),
                last_ok: AtomicBool::new(true),
                failures: Mutex::new(RELOAD_FAILURE_REASONS.map(|r| (r, 0)).to_vec()),
            },
            started: now,
        })
    }

    /// The rule set in force (at start and after each applied reload): apps in slot order,
    /// their actions, whether they are enabled, their rules, the configured maximum, and
    /// the rule set's identity.
    pub fn set_rules(&self, config: &Config, set: &RuleSet, id: &RuleSetId) {
        let mut rules = lock(&self.rules);
        // `rules_max` takes effect at the next start: the value of the first configuration
        // is the one the table was made with.
        let max = if rules.max == 0 {
            config.rules_max
        } else {
            rules.max
        };
        *rules = Rules {
            apps: set
                .apps
                .iter()
                .map(|a| AppInfo {
                    name: a.name.clone(),
                    action: a.action.name().into(),
                })
                .collect(),
            enabled: set.apps.iter().map(|a| a.enabled).collect(),
            per_app: set.apps.iter().map(|a| a.rules.len()).collect(),
            loaded: set.rule_count(),
            max,
            enforcing: config.mode == Mode::Enforce,
            id: id.clone(),
            loaded_at: unix_now(),
        };
    }

    /// The interfaces whose counters are reported, by index.
    pub fn set_interfaces(&self, ifindexes: Vec<u32>) {
        *lock(&self.ifindexes) = ifindexes;
    }

    /// A reload's outcome: `applied`, or refused with the running rules left in force.
    pub fn record_reload(&self, applied: bool) {
        let count = if applied {
            &self.reloads.applied
        } else {
            &self.reloads.refused
        };
        count.fetch_add(1, Ordering::Relaxed);
        self.reloads.last_ok.store(applied, Ordering::Relaxed);
        self.reloads
            .last_at
            .store(unix_now().to_bits(), Ordering::Relaxed);
    }

    /// A refused reload's reason ([`Error::reload_reason`]), counted beside
    /// [`record_reload`](Self::record_reload)'s total.
    pub fn record_reload_failure(&self, reason: &'static str) {
        let mut failures = lock(&self.reloads.failures);
        match failures.iter_mut().find(|(r, _)| *r == reason) {
            Some((_, n)) => *n += 1,
            None => failures.push((reason, 1)),
        }
    }

    /// The sink whose numbers are reported; the dropped records of the one it replaces stay
    /// in the totals.
    pub fn set_sink(&self, sink: Option<Arc<SinkStats>>) {
        let mut cur = lock(&self.sink);
        if let Some(old) = cur.as_ref() {
            self.sink_dropped_before
                .fetch_add(old.dropped(), Ordering::Relaxed);
        }
        *cur = sink;
    }

    /// Syslog records dropped since the daemon started.
    pub fn sink_dropped(&self) -> u64 {
        self.sink_dropped_before.load(Ordering::Relaxed)
            + lock(&self.sink).as_ref().map_or(0, |s| s.dropped())
    }

    /// The program's counters, with those of the apps in force and the attached interfaces.
    pub fn snapshot(&self) -> Result<Snapshot, Error> {
        let apps = lock(&self.rules).apps.clone();
        let ifindexes = lock(&self.ifindexes).clone();
        lock(&self.maps).snapshot(&apps, &ifindexes)
    }

    /// The flow tables' and the rule table's entries against their maximum.
    pub fn table_fill(&self) -> Vec<Fill> {
        let mut fill = lock(&self.tables).fill().to_vec();
        let rules = lock(&self.rules);
        fill.push(Fill {
            table: "rules",
            entries: rules.loaded as u64,
            max: u64::from(rules.max),
        });
        fill
    }
}

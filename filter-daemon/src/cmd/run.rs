//! `sni-filter run`: validates the configuration, loads and attaches the program, then logs
//! counter summaries and flow events until SIGINT or SIGTERM. SIGHUP reloads the rules.

use std::{
    path::PathBuf,
    time::{Duration, Instant},
};

use filter_common::Counter;
use tokio::signal::unix::{SignalKind, signal};

use crate::{
    Error,
    config::{Config, XdpMode},
    counters, events,
    filter::Filter,
    rules::RuleSet,
    state::{AppSummary, Attachment, Instance, RunState},
};

/// How often the ring buffer of events is read.
const EVENT_POLL: Duration = Duration::from_millis(200);
/// How often idle reassembly states and verdicts are removed.
const SWEEP_EVERY: Duration = Duration::from_secs(10);
/// Events logged per second at most; the rest are counted in a "suppressed" line.
const EVENTS_PER_SECOND: u32 = 100;

pub struct RunOptions {
    pub config: PathBuf,
    /// Overrides the configuration's interfaces when not empty.
    pub interfaces: Vec<String>,
    pub xdp_mode: Option<XdpMode>,
    pub allow_generic_fallback: bool,
}

fn log(msg: &str) {
    eprintln!("sni-filter: {msg}");
}

/// What the daemon runs with: the filter and the configuration it was built from.
struct Running {
    filter: Filter,
    config: Config,
    set: RuleSet,
    attached: Vec<Attachment>,
}

pub fn run(instance: &Instance, opts: &RunOptions) -> Result<(), Error> {
    let mut running = start(instance, opts)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::State(format!("starting the runtime: {e}")))?;
    let result = runtime.block_on(serve(instance, opts, &mut running));
    instance.clear();
    drop(running);
    log("detached");
    result
}

/// Validates, loads, attaches and records the state for the CLI.
fn start(instance: &Instance, opts: &RunOptions) -> Result<Running, Error> {
    let config = Config::load(&opts.config)?;
    let set = RuleSet::compile(&config)?;
    for w in &set.warnings {
        log(&format!("warning: {w}"));
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

    let mut filter = Filter::load_for(&config)?;
    filter.install(&set)?;
    instance.prepare()?;
    filter.pin_maps(instance)?;
    let mut attached = Vec::new();
    for iface in &interfaces {
        let actual = filter
            .attach(iface, mode, fallback)
            .inspect_err(|_| instance.clear())?;
        log(&format!(
            "attached to {iface} ({} mode), program id {}",
            actual.name(),
            filter
                .program_id()
                .map_or_else(|| "?".into(), |i| i.to_string())
        ));
        attached.push(Attachment {
            interface: iface.clone(),
            ifindex: crate::state::ifindex(iface).unwrap_or(0),
            mode: actual.name().into(),
        });
    }
    let running = Running {
        filter,
        config,
        set,
        attached,
    };
    instance.write_state(&state(&running))?;
    log(&format!(
        "filtering {}: {} rules in {} apps from {}",
        interfaces.join(", "),
        running.set.rule_count(),
        running.set.apps.len(),
        running.config.path.display()
    ));
    Ok(running)
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
                action: filter_common::Action::from_u8(a.policy.action)
                    .map_or("?", filter_common::Action::name)
                    .into(),
                enabled: a.policy.enabled != 0,
                rules: a.rules.len(),
            })
            .collect(),
    }
}

/// The daemon's loop: summaries, events, sweeping, reloads, and the signals that end it.
async fn serve(instance: &Instance, opts: &RunOptions, r: &mut Running) -> Result<(), Error> {
    let sig =
        |kind| signal(kind).map_err(|e| Error::State(format!("installing a signal handler: {e}")));
    let (mut term, mut int, mut hup) = (
        sig(SignalKind::terminate())?,
        sig(SignalKind::interrupt())?,
        sig(SignalKind::hangup())?,
    );
    let mut summary = tokio::time::interval(Duration::from_secs(r.config.summary_interval_secs));
    summary.tick().await;
    let mut poll = tokio::time::interval(EVENT_POLL);
    let mut sweep = tokio::time::interval(SWEEP_EVERY);
    let mut limit = events::RateLimit::new(EVENTS_PER_SECOND);
    let mut last = r.filter.counters()?;
    loop {
        tokio::select! {
            _ = summary.tick() => {
                let now = r.filter.counters()?;
                log(&format!("summary: {}", counters::summary_line(&last, &now)));
                last = now;
            }
            _ = poll.tick() => log_events(r, &mut limit)?,
            _ = sweep.tick() => {
                let (hellos, verdicts) = r.filter.sweep()?;
                if hellos + verdicts > 0 {
                    log(&format!("swept {hellos} idle reassembly states and {verdicts} idle blocked flows"));
                }
            }
            _ = hup.recv() => reload(instance, opts, r)?,
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }
    log_events(r, &mut limit)?;
    let now = r.filter.counters()?;
    log(&format!(
        "stopping; totals: {}",
        counters::summary_line(&vec![Counter::default(); now.len()], &now)
    ));
    Ok(())
}

fn log_events(r: &mut Running, limit: &mut events::RateLimit) -> Result<(), Error> {
    let apps: Vec<String> = r.set.apps.iter().map(|a| a.name.clone()).collect();
    let now = Instant::now();
    for e in r.filter.drain_events()? {
        if limit.allow(now) {
            log(&events::line(&e, &apps, &iface_name(e.ifindex)));
        }
    }
    let held = limit.take_suppressed();
    if held > 0 {
        log(&format!(
            "{held} events suppressed (more than {EVENTS_PER_SECOND} per second)"
        ));
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
fn reload(instance: &Instance, opts: &RunOptions, r: &mut Running) -> Result<(), Error> {
    match Config::load(&opts.config).and_then(|c| RuleSet::compile(&c).map(|s| (c, s))) {
        Ok((config, set)) => {
            r.filter.install(&set)?;
            r.filter.set_policy(&config)?;
            log(&format!(
                "reloaded {}: {} rules in {} apps",
                config.path.display(),
                set.rule_count(),
                set.apps.len()
            ));
            r.config = config;
            r.set = set;
            instance.write_state(&state(r))?;
        }
        Err(e) => log(&format!(
            "reload refused, the running rules stay in force: {e}"
        )),
    }
    Ok(())
}

//! `sni-filter run`: validates the configuration, loads and attaches the program, and logs
//! counter summaries until SIGINT or SIGTERM. SIGHUP reloads the rules.

use std::{path::PathBuf, time::Duration};

use tokio::signal::unix::{SignalKind, signal};

use crate::{
    Error,
    config::{Config, XdpMode},
    counters,
    filter::Filter,
    rules::RuleSet,
    state::{AppSummary, Attachment, Instance, RunState},
};

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

pub fn run(instance: &Instance, opts: &RunOptions) -> Result<(), Error> {
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

    let mut filter = Filter::load(config.rules_max)?;
    filter.install(&set)?;
    instance.prepare()?;
    filter.pin_counters(&instance.counters_pin())?;
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
            mode: actual.name().into(),
        });
    }
    let program_id = filter.program_id();
    let state = |config: &Config, set: &RuleSet| RunState {
        pid: std::process::id(),
        config: config.path.clone(),
        config_fingerprint: config.fingerprint(),
        program_id,
        interfaces: attached.clone(),
        apps: set
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
    };
    instance.write_state(&state(&config, &set))?;
    log(&format!(
        "filtering {}: {} rules in {} apps from {}",
        interfaces.join(", "),
        set.rule_count(),
        set.apps.len(),
        config.path.display()
    ));

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::State(format!("starting the runtime: {e}")))?;
    let result = runtime.block_on(async {
        let mut term = signal(SignalKind::terminate()).map_err(|e| Error::State(e.to_string()))?;
        let mut int = signal(SignalKind::interrupt()).map_err(|e| Error::State(e.to_string()))?;
        let mut hup = signal(SignalKind::hangup()).map_err(|e| Error::State(e.to_string()))?;
        let mut tick = tokio::time::interval(Duration::from_secs(config.summary_interval_secs));
        tick.tick().await;
        let mut last = filter.counters()?;
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    let now = filter.counters()?;
                    log(&format!("summary: {}", counters::summary_line(&last, &now)));
                    last = now;
                }
                _ = hup.recv() => {
                    match Config::load(&opts.config).and_then(|c| RuleSet::compile(&c).map(|s| (c, s))) {
                        Ok((c, s)) => {
                            filter.install(&s)?;
                            instance.write_state(&state(&c, &s))?;
                            log(&format!("reloaded {}: {} rules in {} apps", c.path.display(), s.rule_count(), s.apps.len()));
                        }
                        Err(e) => log(&format!("reload refused, the running rules stay in force: {e}")),
                    }
                }
                _ = term.recv() => break,
                _ = int.recv() => break,
            }
        }
        let now = filter.counters()?;
        log(&format!("stopping; totals: {}", counters::summary_line(&vec![Default::default(); now.len()], &now)));
        Ok::<(), Error>(())
    });
    instance.clear();
    drop(filter);
    log("detached");
    result
}

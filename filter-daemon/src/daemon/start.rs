//! Starting: the checks before anything is loaded, loading and attaching (adopting a pinned
//! filter), the QUIC worker, the state file the CLI reads, and the `started` record.

use crate::{
    Error, build_info,
    config::{Config, Logging, XdpMode},
    filter::{Attached, Filter},
    identity::RuleSetId,
    quic::{
        Matcher,
        worker::{Policy, Worker},
    },
    rules::{RuleIndex, RuleSet},
    shutdown::Shutdown,
    state::{AppSummary, Attachment, Instance, RunState, daemon_alive, unix_now},
    syslog::{
        Logger, Origin, Severity,
        sink::{Destination, LocalPaths, QUEUE_CAPACITY, Sink, SinkConfig},
    },
};

use super::{RunOptions, Running, lifecycle, program_id, warning};

/// The syslog sink a `[logging]` section asks for; `None` for `destination = "none"`.
pub(super) fn sink_for(logging: &Logging, config: &Config) -> Result<Option<Sink>, Error> {
    if logging.destination == Destination::Off {
        return Ok(None);
    }
    Sink::start(SinkConfig {
        destination: logging.destination.clone(),
        ca_file: logging.ca_file.as_ref().map(|(p, _)| p.clone()),
        origin: Origin::new(
            logging.facility,
            &logging.app_name,
            logging.sd_enterprise_number,
        ),
        local: LocalPaths::default(),
        capacity: QUEUE_CAPACITY,
    })
    .map(Some)
    .map_err(|e| match &logging.ca_file {
        Some((_, line)) => Error::config(format!("{}:{line}", config.path.display()), e),
        None => e,
    })
}

/// Drops every capability but `CAP_BPF`: loading, attaching and pinning are done.
pub(super) fn drop_privileges(logger: &Logger) {
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

/// Validates, loads, attaches and records the state for the CLI.
pub(super) fn start(
    instance: &Instance,
    opts: &RunOptions,
    config: Config,
    logger: &Logger,
    shutdown: &Shutdown,
) -> Result<Running, Error> {
    let set = RuleSet::compile(&config)?;
    let list_versions = config.list_versions()?;
    for w in &set.warnings {
        logger.emit(warning(w));
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
        .filter(|s| s.pid != std::process::id() && daemon_alive(s.pid))
    {
        return Err(Error::AlreadyRunning {
            instance: instance.name.clone(),
            pid: other.pid,
        });
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
    let quic = Worker::start(
        &filter,
        Matcher::new(&set)?,
        Policy::of(&config),
        shutdown.clone(),
    )?;
    let running = Running {
        id: RuleSetId::of(&config, &set),
        index: RuleIndex::new(&set),
        filter,
        config,
        set,
        attached,
        quic,
        started_at: unix_now(),
        rules_loaded_at: unix_now(),
        last_reload: None,
        list_versions,
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
    .param("mode", running.config.mode.name())
    .param("interfaces", interfaces.join(","))
    .param("rules", running.set.rule_count())
    .param("apps", running.set.apps.len())
    .param("config", running.config.path.display())
    .param(
        "client_privacy",
        running.config.logging.client_privacy.name(),
    )
    .param("quic", running.config.quic.name())
    .param("rules_sha256", &running.id.sha256)
    .param("rules_version", &running.id.version);
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
        logger.emit(warning(&note));
    }
    let mut filter = Filter::load_pinned(config, instance)?;
    filter.apply_config(config, set)?;
    let program_id = program_id(&filter);
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
    use crate::preflight::Level;
    let checks = crate::preflight::gateway(interfaces, instance);
    for c in checks.iter().filter(|c| c.level == Level::Warn) {
        logger.emit(warning(&format!("{}: {}", c.what, c.detail)));
    }
    match checks.iter().find(|c| c.level == Level::Fail) {
        Some(c) => Err(Error::Attach {
            iface: c.what.clone(),
            reason: c.detail.clone(),
        }),
        None => Ok(()),
    }
}

/// What the CLI reads of a running daemon.
pub(super) fn state(r: &Running) -> RunState {
    RunState {
        pid: std::process::id(),
        version: build_info::LONG_VERSION.into(),
        started_at: r.started_at,
        mode: r.config.mode.name().into(),
        config: r.config.path.clone(),
        rules_sha256: r.id.sha256.clone(),
        rules_version: r.id.version.clone(),
        rules_loaded_at: r.rules_loaded_at,
        program_id: r.filter.program_id(),
        interfaces: r.attached.clone(),
        apps: r
            .set
            .apps
            .iter()
            .map(|a| AppSummary {
                name: a.name.clone(),
                action: a.action.name().into(),
                enabled: a.enabled,
                rules: a.rules.len(),
            })
            .collect(),
        reload: r.last_reload.clone(),
    }
}

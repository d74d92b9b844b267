//! Reloading on SIGHUP: the configuration is read and compiled, a new syslog sink and the
//! QUIC worker's rules are made, and only then does anything change — rules, apps,
//! exemptions, scopes, ports and policy together. A configuration that fails anywhere is
//! refused with its reason, and the running rules stay in force.

use std::sync::Arc;

use crate::{
    Error,
    config::{Config, Logging},
    events,
    identity::{self, RuleSetId},
    privacy::ClientAnonymizer,
    quic::{Matcher, worker::Policy},
    rules::{RuleIndex, RuleSet},
    state::{ReloadOutcome, ReloadResult, unix_now},
    syslog::{MsgId, Record, Severity, sink::Sink},
};

use super::{
    Running, SINK_CLOSE_GRACE, lifecycle,
    serve::{Daemon, Output},
    start::{sink_for, state},
};

impl Daemon<'_> {
    /// Re-reads the configuration; an invalid one is refused and the running rules stay.
    pub(super) fn reload(&mut self) -> Result<(), Error> {
        let r = &mut self.running;
        let loaded = Config::load(&self.opts.config)
            .and_then(|c| RuleSet::compile(&c).map(|s| (c, s)))
            .and_then(|(c, s)| {
                let versions = c.list_versions()?;
                r.list_versions.refuse_rollback(&versions)?;
                Ok((c, s, versions))
            })
            .and_then(|(c, s, versions)| {
                // A new sink and the QUIC worker's rules are made before anything changes,
                // so a failure of either refuses the reload.
                let sink = if c.logging == r.config.logging {
                    None
                } else {
                    Some(sink_for(&c.logging, &c)?)
                };
                let matcher = Matcher::new(&s)?;
                Ok((c, s, sink, matcher, versions))
            });
        let (config, set, sink, matcher, versions) = match loaded {
            Ok(loaded) => loaded,
            Err(e) => {
                let reason = e.reload_reason();
                self.out.logger.emit(refused(&e, &r.id));
                self.out.logger.emit(
                    lifecycle(
                        "reload_refused",
                        Severity::Error,
                        format!("reload refused, the running rules stay in force: {e}"),
                    )
                    .param("error", &e)
                    .param("reason", reason)
                    .param("rules_sha256", &r.id.sha256)
                    .param("rules_version", &r.id.version),
                );
                self.out.metrics.record_reload(false);
                self.out.metrics.record_reload_failure(reason);
                r.last_reload = Some(outcome(r, ReloadResult::Refused, Some(e.to_string())));
                return self.instance.write_state(&state(r));
            }
        };
        r.filter.apply_config(&config, &set)?;
        for w in &set.warnings {
            self.out.logger.emit(super::warning(w));
        }
        let id = RuleSetId::of(&config, &set);
        let shared = r.quic.shared();
        if let (Ok(mut m), Ok(mut p)) = (shared.matcher.lock(), shared.policy.lock()) {
            *m = Arc::new(matcher);
            *p = Policy::of(&config);
        }
        if let Some(sink) = sink {
            self.out
                .apply_logging(&r.config.logging, &config.logging, sink);
        }
        if config.metrics_listen != r.config.metrics_listen {
            self.out.logger.emit(Record::new(
                MsgId::Config,
                Severity::Warning,
                "warning: [metrics] listen changes take effect at the next start",
            ));
        }
        self.out.logger.emit(
            lifecycle(
                "reloaded",
                Severity::Notice,
                format!(
                    "reloaded {}: {} rules in {} apps, rules sha256 {}{}",
                    config.path.display(),
                    set.rule_count(),
                    set.apps.len(),
                    id.sha256,
                    identity::version_note(&id.version)
                ),
            )
            .param("mode", config.mode.name())
            .param("rules", set.rule_count())
            .param("apps", set.apps.len())
            .param("rules_sha256", &id.sha256)
            .param("rules_version", &id.version)
            .param("previous_rules_sha256", &r.id.sha256),
        );
        self.out.metrics.set_rules(&config, &set, &id);
        self.out.metrics.record_reload(true);
        r.config = config;
        r.index = RuleIndex::new(&set);
        r.set = set;
        r.id = id;
        r.rules_loaded_at = unix_now();
        r.list_versions = versions;
        r.last_reload = Some(outcome(r, ReloadResult::Applied, None));
        self.instance.write_state(&state(r))
    }
}

/// The `CONFIG` record of a refused configuration: why, which kind of fault
/// ([`Error::reload_reason`]), and the rule set that stays in force.
fn refused(e: &Error, in_force: &RuleSetId) -> Record {
    Record::new(
        MsgId::Config,
        Severity::Error,
        format!(
            "refused: {e}; the rule set in force stays (sha256 {}{})",
            in_force.sha256,
            identity::version_note(&in_force.version)
        ),
    )
    .param("refused", e.reload_reason())
    .param("error", e)
    .param("rules_sha256", &in_force.sha256)
    .param("rules_version", &in_force.version)
}

/// The outcome of the reload that follows `r`'s last one, as `sni-filter reload` reads it.
fn outcome(r: &Running, result: ReloadResult, error: Option<String>) -> ReloadOutcome {
    ReloadOutcome {
        generation: r.last_reload.as_ref().map_or(0, |o| o.generation) + 1,
        result,
        error,
        at: unix_now(),
    }
}

impl Output {
    /// Takes the settings of a reloaded `[logging]` section: a new sink (the old one sends
    /// what it holds in the background), and the privacy and rate limit if they changed.
    fn apply_logging(&mut self, old: &Logging, new: &Logging, sink: Option<Sink>) {
        let stats = sink.as_ref().map(|s| s.stats().clone());
        if let Some(previous) = self.logger.replace(new.stderr, sink) {
            tokio::spawn(previous.close(SINK_CLOSE_GRACE));
        }
        self.metrics.set_sink(stats);
        if old.client_privacy != new.client_privacy {
            self.clients = ClientAnonymizer::new(new.client_privacy);
        }
        if old.events_per_second != new.events_per_second {
            self.limit = events::RateLimit::new(new.events_per_second);
            self.events_per_second = new.events_per_second;
        }
    }
}

//! `sni-filter check HOST [--json]`: which app and rule of a configuration match a server
//! name, and whether the rule set that configuration and its lists compile to is the one the
//! running filter enforces (by [`RuleSetId`], so an edited list counts as a change). Its exit
//! status is the verdict ([`Verdict`]), as grep's is the match.

use std::path::Path;

use filter_common::Action;
use serde_json::json;

use crate::{
    Error,
    config::{Config, Mode},
    identity::{self, RuleSetId},
    rules::RuleSet,
    state::Instance,
};

/// What the configuration does with the name, as `check`'s exit status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// 0: an enabled app with action drop or reject matches: its flows are blocked.
    Blocked,
    /// 1: the name passes: no rule matches, the app is disabled or only monitored, or the
    /// whole filter is in monitor mode (a dry run).
    Passes,
}

impl Verdict {
    pub fn exit_code(self) -> u8 {
        match self {
            Self::Blocked => 0,
            Self::Passes => 1,
        }
    }
}

pub fn check(
    instance: &Instance,
    config_path: &Path,
    host: &str,
    json: bool,
) -> Result<Verdict, Error> {
    let config = Config::load(config_path)?;
    let set = RuleSet::compile(&config)?;
    let matched = set.lookup(host);
    let would_block =
        matches!(matched, Some((app, _)) if app.enabled && app.action != Action::Monitor);
    let dry_run = config.mode == Mode::Monitor;
    let verdict = if would_block && !dry_run {
        Verdict::Blocked
    } else {
        Verdict::Passes
    };
    let id = RuleSetId::of(&config, &set);
    let state = instance.read_state();
    let loaded = state.as_ref().is_some_and(|s| s.rules_sha256 == id.sha256);
    if json {
        let (app, rule) = matched.map_or((None, None), |(a, r)| (Some(a), Some(r)));
        println!(
            "{}",
            json!({
                "sni": host,
                "blocked": verdict == Verdict::Blocked,
                "would_block": would_block,
                "mode": config.mode.name(),
                "app": app.map(|a| &a.name),
                "action": app.map(|a| a.action.name()),
                "enabled": app.map(|a| a.enabled),
                "rule": rule.map(|r| &r.name),
                "origin": rule.map(|r| &r.origin),
                "config": config_path,
                "rules": { "sha256": id.sha256, "version": id.version },
                "loaded": loaded,
                "loaded_rules": state.as_ref().map(|s| json!({
                    "sha256": s.rules_sha256,
                    "version": s.rules_version,
                    "loaded_at": s.rules_loaded_at,
                })),
                "pid": state.as_ref().map(|s| s.pid),
            })
        );
        return Ok(verdict);
    }
    if let Some((app, rule)) = matched {
        let note = match (app.enabled, app.action != Action::Monitor) {
            (false, _) => " (app disabled: passes)",
            (true, false) => " (monitored: passes, logged)",
            (true, true) => "",
        };
        println!(
            "{host}: app {} action {}{note}, rule {} ({})",
            app.name,
            app.action.name(),
            rule.name,
            rule.origin
        );
    } else {
        println!("{host}: no rule matches; passes");
    }
    if would_block && dry_run {
        println!("mode monitor: a dry run, so it passes and is logged as blocked");
    }
    println!(
        "rules sha256 {}{}",
        id.sha256,
        identity::version_note(&id.version)
    );
    match &state {
        Some(state) if loaded => {
            println!("this rule set is the one loaded (pid {})", state.pid);
        }
        Some(state) => println!(
            "the running filter (pid {}) enforces another rule set (sha256 {}{}, from {}); run `sni-filter reload` or restart to apply",
            state.pid,
            state.rules_sha256,
            identity::version_note(&state.rules_version),
            state.config.display()
        ),
        None => println!("no filter is running (instance {})", instance.name),
    }
    Ok(verdict)
}

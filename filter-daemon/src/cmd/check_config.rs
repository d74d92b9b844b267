//! `sni-filter check-config FILE [--interface IF]`: validates a configuration and its rule
//! lists without touching the kernel, as `run` would take them: a configuration naming no
//! interface is refused unless `run` will be given `--interface`.

use std::path::Path;

use crate::{Error, config::Config, rules::RuleSet};

/// `interfaces`: those `run` will be given with `--interface`, if any.
pub fn check_config(path: &Path, interfaces: &[String]) -> Result<(), Error> {
    let config = Config::load(path)?;
    if config.interfaces.is_empty() && interfaces.is_empty() {
        return Err(Error::config(
            path.display(),
            "[filter] interfaces is empty: `run` would have nothing to filter (set the LAN \
             interfaces there, as the systemd unit reads them, or check with --interface IF \
             when `run` is given --interface)",
        ));
    }
    let set = RuleSet::compile(&config)?;
    for w in &set.warnings {
        eprintln!("warning: {w}");
    }
    println!(
        "{}: valid; {} rules in {} apps; interfaces: {}",
        path.display(),
        set.rule_count(),
        set.apps.len(),
        if interfaces.is_empty() {
            config.interfaces.join(", ")
        } else {
            format!("{} (from --interface)", interfaces.join(", "))
        }
    );
    println!(
        "  mode: {}{}",
        config.mode.name(),
        if config.mode == crate::config::Mode::Monitor {
            " (dry run: verdicts counted and logged, nothing dropped or reset)"
        } else {
            ""
        }
    );
    let ports: Vec<String> = config.quic_ports.iter().map(u16::to_string).collect();
    println!(
        "  quic: {} on UDP {}{}",
        config.quic.name(),
        ports.join(", "),
        if config.quic_hold && config.quic == crate::config::Quic::Inspect {
            " (Initials held until their verdict)"
        } else {
            ""
        }
    );
    for app in &set.apps {
        println!(
            "  app {:<16} {:<8} {:>8} rules{}",
            app.name,
            app.action.name(),
            app.rules.len(),
            if app.enabled { "" } else { "  (disabled)" }
        );
    }
    Ok(())
}

//! `sni-filter check-config FILE`: validates a configuration and its rule lists without
//! touching the kernel.

use std::path::Path;

use crate::{Error, config::Config, rules::RuleSet};

pub fn check_config(path: &Path) -> Result<(), Error> {
    let config = Config::load(path)?;
    let set = RuleSet::compile(&config)?;
    for w in &set.warnings {
        eprintln!("warning: {w}");
    }
    println!(
        "{}: valid; {} rules in {} apps; interfaces: {}",
        path.display(),
        set.rule_count(),
        set.apps.len(),
        if config.interfaces.is_empty() {
            "none (pass --interface to run)".into()
        } else {
            config.interfaces.join(", ")
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

//! `sni-filter check HOST`: which app and rule of a configuration match a server name, and
//! whether that configuration is the one the running filter uses.

use std::path::Path;

use crate::{Error, config::Config, rules::RuleSet, state::Instance};

pub fn check(instance: &Instance, config_path: &Path, host: &str) -> Result<bool, Error> {
    let config = Config::load(config_path)?;
    let set = RuleSet::compile(&config)?;
    let matched = if let Some((app, rule)) = set.lookup(host) {
        let enabled = if app.enabled {
            ""
        } else {
            " (app disabled: passes)"
        };
        println!(
            "{host}: app {} action {}{enabled}, rule {} ({})",
            app.name,
            app.action.name(),
            rule.name,
            rule.origin
        );
        app.enabled
    } else {
        println!("{host}: no rule matches; passes");
        false
    };
    match instance.read_state() {
        Some(state) if state.config_fingerprint == config.fingerprint() => {
            println!("this configuration is the one loaded (pid {})", state.pid);
        }
        Some(state) => println!(
            "the running filter (pid {}) uses {} with other contents; run `sni-filter reload` or restart to apply",
            state.pid,
            state.config.display()
        ),
        None => println!("no filter is running (instance {})", instance.name),
    }
    Ok(matched)
}

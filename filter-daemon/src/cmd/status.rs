//! `sni-filter status`: the running filter's attachments, rule set and counters, read from
//! its state file and pinned maps, as aligned columns with human units.

use aya::maps::{HashMap, Map, MapData};
use filter_common::{BlockedFlow, FlowKey, Note, hello::HelloFlow, names};

use crate::{
    Error,
    counters::{self, AppInfo, CounterMaps},
    state::{Instance, daemon_alive},
};

pub fn status(instance: &Instance) -> Result<bool, Error> {
    let Some(state) = instance.read_state() else {
        println!(
            "sni-filter ({}): not running (no {})",
            instance.name,
            instance.state_file().display()
        );
        return Ok(false);
    };
    let alive = print_header(instance, &state);
    println!(
        "config {} (fingerprint {})",
        state.config.display(),
        state.config_fingerprint
    );

    let apps: Vec<AppInfo> = state
        .apps
        .iter()
        .map(|a| AppInfo {
            name: a.name.clone(),
            action: a.action.clone(),
        })
        .collect();
    let ifindexes: Vec<u32> = state.interfaces.iter().map(|a| a.ifindex).collect();
    let snap = CounterMaps::pinned(instance)?.snapshot(&apps, &ifindexes)?;
    println!();
    println!(
        "{:<16} {:<8} {:>12} {:>12} {:>12} {:>12} {:>12}",
        "interface", "mode", "ipv4", "ipv6", "other", "vlan", "dropped"
    );
    for (a, (_, c)) in state.interfaces.iter().zip(&snap.ifaces) {
        println!(
            "{:<16} {:<8} {:>12} {:>12} {:>12} {:>12} {:>12}",
            a.interface, a.mode, c.ipv4, c.ipv6, c.other, c.vlan_tagged, c.dropped
        );
    }

    println!();
    println!(
        "{:<16} {:<8} {:>8} {:>8} {:>10} {:>12} {:>12} {:>8}",
        "app", "action", "enabled", "rules", "flows", "dropped", "bytes", "resets"
    );
    for (i, a) in state.apps.iter().enumerate() {
        let c = snap.apps.get(i).map(|(_, c)| *c).unwrap_or_default();
        println!(
            "{:<16} {:<8} {:>8} {:>8} {:>10} {:>12} {:>12} {:>8}",
            a.name,
            a.action,
            if a.enabled { "yes" } else { "no" },
            a.rules,
            c.flows,
            c.packets_dropped,
            counters::human_bytes(c.bytes_dropped),
            c.resets
        );
    }
    println!();
    let (flows, flows_max) = occupancy::<BlockedFlow>(instance, names::VERDICTS)?;
    let (hellos, hellos_max) = occupancy::<HelloFlow>(instance, names::HELLOS)?;
    println!("{:<18} {flows:>8} of {flows_max}", "blocked flows");
    println!("{:<18} {hellos:>8} of {hellos_max}", "hellos being read");
    println!();
    print!("{}", counters::table(&snap.reasons, false));
    let seen: Vec<String> = Note::ALL
        .iter()
        .zip(&snap.notes)
        .filter(|(_, n)| **n > 0)
        .map(|(note, n)| format!("{}={n}", note.name()))
        .collect();
    if !seen.is_empty() {
        println!();
        println!("also counted: {}", seen.join(" "));
    }
    Ok(alive)
}

/// The first line: whether the filter is attached, and whether its daemon runs.
fn print_header(instance: &Instance, state: &crate::state::RunState) -> bool {
    let alive = daemon_alive(state.pid);
    let links: Vec<String> = instance
        .pinned_links()
        .into_iter()
        .map(|(i, _)| i)
        .collect();
    let program = state
        .program_id
        .map_or_else(|| "?".into(), |id| id.to_string());
    let filter = if links.is_empty() {
        "filter NOT attached".to_owned()
    } else {
        format!(
            "filter attached to {} (program id {program})",
            links.join(", ")
        )
    };
    let daemon = if alive {
        format!("daemon running (pid {})", state.pid)
    } else {
        format!(
            "daemon NOT running (pid {} ended): no events or summaries are logged, the rules cannot be reloaded",
            state.pid
        )
    };
    println!("sni-filter ({}): {filter}; {daemon}", instance.name);
    alive
}

/// Entries in a pinned hash map keyed by flow, and its bound.
fn occupancy<V: aya::Pod>(instance: &Instance, name: &'static str) -> Result<(usize, u32), Error> {
    let path = instance.pin(name);
    let data = instance.open_pinned(name)?;
    let max = data.info().map_or(0, |i| i.max_entries());
    let map: HashMap<MapData, FlowKey, V> = HashMap::try_from(Map::HashMap(data))
        .map_err(|e| Error::map(name, format!("opening {}", path.display()), e))?;
    Ok((map.keys().filter_map(Result::ok).count(), max))
}

//! `sni-filter status`: the running filter's attachments, rule set and counters, read from
//! its state file and pinned maps, as aligned columns with human units.

use aya::maps::{HashMap, Map, MapData, PerCpuArray};
use filter_common::{
    AppCounters, BlockedFlow, Counter, FlowKey, IFACE_SLOTS, IfaceCounters, NOTE_COUNT, Note,
    hello::HelloFlow, names,
};

use crate::{
    Error, counters,
    filter::sum_counters,
    state::{Instance, pid_alive},
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

    let ifaces: Vec<IfaceCounters> =
        read_per_cpu(instance, names::IFACE_COUNTERS, IFACE_SLOTS, sum_iface)?;
    println!();
    println!(
        "{:<16} {:<8} {:>12} {:>12} {:>12} {:>12} {:>12}",
        "interface", "mode", "ipv4", "ipv6", "other", "vlan", "dropped"
    );
    for a in &state.interfaces {
        let c = ifaces
            .get((a.ifindex % IFACE_SLOTS) as usize)
            .copied()
            .unwrap_or_default();
        println!(
            "{:<16} {:<8} {:>12} {:>12} {:>12} {:>12} {:>12}",
            a.interface, a.mode, c.ipv4, c.ipv6, c.other, c.vlan_tagged, c.dropped
        );
    }

    let apps: Vec<AppCounters> = read_per_cpu(
        instance,
        names::APP_COUNTERS,
        filter_common::APPS_MAX,
        sum_app,
    )?;
    println!();
    println!(
        "{:<16} {:<8} {:>8} {:>8} {:>10} {:>12} {:>12} {:>8}",
        "app", "action", "enabled", "rules", "flows", "dropped", "bytes", "resets"
    );
    for (i, a) in state.apps.iter().enumerate() {
        let c = apps.get(i).copied().unwrap_or_default();
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
    print!("{}", counters::table(&read_reasons(instance)?, false));
    let notes: Vec<u64> = read_per_cpu(instance, names::NOTES, NOTE_COUNT, |v: &[u64]| {
        v.iter().sum()
    })?;
    let seen: Vec<String> = Note::ALL
        .iter()
        .zip(&notes)
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
    let alive = pid_alive(state.pid);
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
fn occupancy<V: aya::Pod>(instance: &Instance, name: &str) -> Result<(usize, u32), Error> {
    let path = instance.pin(name);
    let data = instance.open_pinned(name)?;
    let max = data.info().map_or(0, |i| i.max_entries());
    let map: HashMap<MapData, FlowKey, V> = HashMap::try_from(Map::HashMap(data))
        .map_err(|e| Error::State(format!("{}: {e}", path.display())))?;
    Ok((map.keys().filter_map(Result::ok).count(), max))
}

/// The counters by reason of the running filter.
pub fn read_reasons(instance: &Instance) -> Result<Vec<Counter>, Error> {
    let array: PerCpuArray<MapData, Counter> = instance.open_per_cpu(names::COUNTERS)?;
    sum_counters(&array)
}

/// Reads every slot of a pinned per-CPU array, summing the CPUs with `sum`.
fn read_per_cpu<V: aya::Pod, T>(
    instance: &Instance,
    name: &str,
    slots: u32,
    sum: impl Fn(&[V]) -> T,
) -> Result<Vec<T>, Error> {
    let array: PerCpuArray<MapData, V> = instance.open_per_cpu(name)?;
    (0..slots)
        .map(|i| {
            let v = array
                .get(&i, 0)
                .map_err(|e| Error::State(format!("{name}[{i}]: {e}")))?;
            Ok(sum(&v))
        })
        .collect()
}

fn sum_iface(v: &[IfaceCounters]) -> IfaceCounters {
    v.iter()
        .fold(IfaceCounters::default(), |a, c| IfaceCounters {
            ipv4: a.ipv4 + c.ipv4,
            ipv6: a.ipv6 + c.ipv6,
            other: a.other + c.other,
            vlan_tagged: a.vlan_tagged + c.vlan_tagged,
            dropped: a.dropped + c.dropped,
        })
}

fn sum_app(v: &[AppCounters]) -> AppCounters {
    v.iter().fold(AppCounters::default(), |a, c| AppCounters {
        flows: a.flows + c.flows,
        packets_dropped: a.packets_dropped + c.packets_dropped,
        bytes_dropped: a.bytes_dropped + c.bytes_dropped,
        resets: a.resets + c.resets,
    })
}

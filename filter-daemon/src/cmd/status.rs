//! `sni-filter status`: the running filter's attachments, rule set and counters, read from
//! its state file and pinned counters map.

use aya::maps::{Map, MapData, PerCpuArray};
use filter_common::Counter;

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
    let alive = pid_alive(state.pid);
    println!(
        "sni-filter ({}): {} (pid {}), program id {}",
        instance.name,
        if alive {
            "running"
        } else {
            "NOT running: stale state"
        },
        state.pid,
        state
            .program_id
            .map_or_else(|| "?".into(), |id| id.to_string())
    );
    println!(
        "config {} (fingerprint {})",
        state.config.display(),
        state.config_fingerprint
    );
    println!();
    println!("{:<16} {:<8}", "interface", "mode");
    for a in &state.interfaces {
        println!("{:<16} {:<8}", a.interface, a.mode);
    }
    println!();
    println!(
        "{:<16} {:<8} {:>8} {:>8}",
        "app", "action", "enabled", "rules"
    );
    for a in &state.apps {
        println!(
            "{:<16} {:<8} {:>8} {:>8}",
            a.name,
            a.action,
            if a.enabled { "yes" } else { "no" },
            a.rules
        );
    }
    println!();
    let counters = read_pinned(instance)?;
    print!("{}", counters::table(&counters, false));
    Ok(alive)
}

pub fn read_pinned(instance: &Instance) -> Result<Vec<Counter>, Error> {
    let path = instance.counters_pin();
    let data = MapData::from_pin(&path)
        .map_err(|e| Error::State(format!("reading {}: {e}", path.display())))?;
    let map = Map::PerCpuArray(data);
    let array: PerCpuArray<MapData, Counter> =
        PerCpuArray::try_from(map).map_err(|e| Error::State(format!("{}: {e}", path.display())))?;
    sum_counters(&array)
}

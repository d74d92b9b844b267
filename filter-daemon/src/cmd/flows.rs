//! `sni-filter flows [--flush]`: the blocked-flow table of the running filter (every flow
//! whose later packets are being dropped), read from its pinned map.

use aya::maps::{HashMap, Map, MapData};
use filter_common::{Action, BlockedFlow, FlowKey, names};

use crate::{
    Error,
    events::{addr, endpoint},
    filter::monotonic_ns,
    state::Instance,
};

pub fn flows(instance: &Instance, flush: bool) -> Result<(), Error> {
    let path = instance.pin(names::VERDICTS);
    let data = instance.open_pinned(names::VERDICTS)?;
    let mut map: HashMap<MapData, FlowKey, BlockedFlow> = HashMap::try_from(Map::HashMap(data))
        .map_err(|e| Error::map(names::VERDICTS, format!("opening {}", path.display()), e))?;
    let apps: Vec<String> = instance
        .read_state()
        .map(|s| s.apps.into_iter().map(|a| a.name).collect())
        .unwrap_or_default();
    let mut rows: Vec<(FlowKey, BlockedFlow)> = map.iter().filter_map(Result::ok).collect();
    rows.sort_by_key(|(_, v)| std::cmp::Reverse(v.last_ns));
    let now = monotonic_ns();
    println!(
        "{:<46} {:<46} {:<12} {:<8} {:>9} {:>9}",
        "client", "server", "app", "action", "age", "idle"
    );
    for (k, v) in &rows {
        let app = apps.get(usize::from(v.app)).map_or("?", String::as_str);
        let action = Action::from_u8(v.action).map_or("?", Action::name);
        println!(
            "{:<46} {:<46} {:<12} {:<8} {:>8}s {:>8}s",
            endpoint(addr(k, true), k.sport),
            endpoint(addr(k, false), k.dport),
            app,
            action,
            now.saturating_sub(v.since_ns) / 1_000_000_000,
            now.saturating_sub(v.last_ns) / 1_000_000_000,
        );
    }
    println!("{} blocked flows", rows.len());
    if flush {
        for (k, _) in &rows {
            let _ = map.remove(k);
        }
        println!(
            "flushed: their packets are judged afresh within a second (each CPU caches a blocked flow for up to a second)"
        );
    }
    Ok(())
}

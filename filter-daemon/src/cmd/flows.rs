//! `sni-filter flows [--flush] [--json]`: the blocked-flow table of the running filter (every
//! flow whose later packets are being dropped), read from its pinned map, as a table or as
//! one JSON object per flow and line with the FLOW records' field names.

use aya::maps::{HashMap, Map, MapData};
use filter_common::{Action, BlockedFlow, FlowKey, names};
use serde_json::json;

use crate::{
    Error,
    events::{addr, endpoint, transport},
    filter::monotonic_ns,
    state::Instance,
};

pub fn flows(instance: &Instance, flush: bool, json: bool) -> Result<(), Error> {
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
    let secs = |ns: u64| now.saturating_sub(ns) / 1_000_000_000;
    if !json {
        println!(
            "{:<46} {:<46} {:<12} {:<8} {:>9} {:>9}",
            "client", "server", "app", "action", "age", "idle"
        );
    }
    for (k, v) in &rows {
        let app = apps.get(usize::from(v.app)).map_or("?", String::as_str);
        let action = Action::from_u8(v.action).map_or("?", Action::name);
        if json {
            println!(
                "{}",
                json!({
                    "client": addr(k, true).to_string(), "client_port": k.sport,
                    "server": addr(k, false).to_string(), "server_port": k.dport,
                    "transport": transport(k.proto), "app": app, "action": action,
                    "age_secs": secs(v.since_ns), "idle_secs": secs(v.last_ns),
                })
            );
            continue;
        }
        println!(
            "{:<46} {:<46} {:<12} {:<8} {:>8}s {:>8}s",
            endpoint(addr(k, true), k.sport),
            endpoint(addr(k, false), k.dport),
            app,
            action,
            secs(v.since_ns),
            secs(v.last_ns),
        );
    }
    if !json {
        println!("{} blocked flows", rows.len());
    }
    if flush {
        for (k, _) in &rows {
            let _ = map.remove(k);
        }
        // On stderr with --json, so that stdout stays one object per line.
        let note = "flushed: their packets are judged afresh within a second (each CPU caches a blocked flow for up to a second)";
        if json {
            eprintln!("{note}");
        } else {
            println!("{note}");
        }
    }
    Ok(())
}

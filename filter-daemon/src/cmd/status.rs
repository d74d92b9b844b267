//! `sni-filter status [--json]`: the running filter's attachments, rule set and counters,
//! read from its state file and pinned maps, as aligned columns with human units or as one
//! JSON object. Its exit status says what a monitoring check needs ([`Health`]).

use aya::maps::{HashMap, Map, MapData};
use filter_common::{BlockedFlow, FlowKey, Note, hello::HelloFlow, names};
use serde_json::{Value, json};

use crate::{
    Error,
    counters::{self, AppInfo, CounterMaps, Snapshot},
    identity,
    state::{Instance, RunState, daemon_alive},
};

use super::stats;

/// What `status` found, as its exit status (the LSB's codes for `status` actions, which
/// `systemctl status` uses too).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Health {
    /// 0: the filter is attached and its daemon runs.
    Running,
    /// 1: the filter is attached and drops with the rules it has, but no daemon runs: no
    /// events or summaries are logged, QUIC is not judged, the rules cannot be reloaded.
    DaemonDead,
    /// 3: the filter is attached to no interface: nothing is filtered.
    NotAttached,
}

impl Health {
    pub fn exit_code(self) -> u8 {
        match self {
            Self::Running => 0,
            Self::DaemonDead => 1,
            Self::NotAttached => 3,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::DaemonDead => "daemon_dead",
            Self::NotAttached => "not_attached",
        }
    }
}

/// Everything `status` shows, read once.
struct Report {
    state: RunState,
    alive: bool,
    links: Vec<String>,
    snap: Snapshot,
    /// (entries, max) of the blocked-flow and hello tables.
    flows: (usize, u32),
    hellos: (usize, u32),
}

impl Report {
    fn health(&self) -> Health {
        match (self.links.is_empty(), self.alive) {
            (true, _) => Health::NotAttached,
            (false, true) => Health::Running,
            (false, false) => Health::DaemonDead,
        }
    }
}

pub fn status(instance: &Instance, json: bool) -> Result<Health, Error> {
    let links: Vec<String> = instance
        .pinned_links()
        .into_iter()
        .map(|(i, _)| i)
        .collect();
    let Some(state) = instance.read_state() else {
        if json {
            println!(
                "{}",
                json!({
                    "instance": instance.name,
                    "health": Health::NotAttached.name(),
                    "attached": links,
                    "daemon": Value::Null,
                })
            );
        } else {
            println!(
                "sni-filter ({}): not running (no {})",
                instance.name,
                instance.state_file().display()
            );
        }
        // Links without a state file: a filter whose state was removed; still attached.
        return Ok(if links.is_empty() {
            Health::NotAttached
        } else {
            Health::DaemonDead
        });
    };
    let apps: Vec<AppInfo> = state
        .apps
        .iter()
        .map(|a| AppInfo {
            name: a.name.clone(),
            action: a.action.clone(),
        })
        .collect();
    let ifindexes: Vec<u32> = state.interfaces.iter().map(|a| a.ifindex).collect();
    let report = Report {
        alive: daemon_alive(state.pid),
        snap: CounterMaps::pinned(instance)?.snapshot(&apps, &ifindexes)?,
        flows: occupancy::<BlockedFlow>(instance, names::VERDICTS)?,
        hellos: occupancy::<HelloFlow>(instance, names::HELLOS)?,
        links,
        state,
    };
    if json {
        println!("{}", to_json(instance, &report));
    } else {
        print_table(instance, &report);
    }
    Ok(report.health())
}

/// The report as JSON: field names as in FLOW records (`iface`, `app`, `action`) and as
/// `stats --json` (`counters`).
fn to_json(instance: &Instance, r: &Report) -> Value {
    let s = &r.state;
    let interfaces: Vec<Value> = s
        .interfaces
        .iter()
        .zip(&r.snap.ifaces)
        .map(|(a, (_, c))| {
            json!({
                "iface": a.interface, "ifindex": a.ifindex, "mode": a.mode,
                "attached": r.links.contains(&a.interface),
                "ipv4": c.ipv4, "ipv6": c.ipv6, "other": c.other,
                "vlan_tagged": c.vlan_tagged, "dropped": c.dropped,
            })
        })
        .collect();
    let apps: Vec<Value> = s
        .apps
        .iter()
        .map(|a| json!({"app": a.name, "action": a.action, "enabled": a.enabled, "rules": a.rules}))
        .collect();
    json!({
        "instance": instance.name,
        "health": r.health().name(),
        "attached": r.links,
        "program_id": s.program_id,
        "daemon": {
            "pid": s.pid,
            "running": r.alive,
            "version": s.version,
            "started_at": s.started_at,
        },
        "mode": s.mode,
        "config": { "path": s.config },
        "rules": {
            "sha256": s.rules_sha256,
            "version": s.rules_version,
            "loaded_at": s.rules_loaded_at,
        },
        "reload": s.reload,
        "interfaces": interfaces,
        "apps": apps,
        "tables": {
            "blocked_flows": { "entries": r.flows.0, "max": r.flows.1 },
            "hellos": { "entries": r.hellos.0, "max": r.hellos.1 },
        },
        "counters": stats::render_json(&r.snap, None),
    })
}

fn print_table(instance: &Instance, r: &Report) {
    let s = &r.state;
    print_header(instance, r);
    println!("config {}", s.config.display());
    println!(
        "rules sha256 {}{}, loaded {}",
        s.rules_sha256,
        identity::version_note(&s.rules_version),
        crate::syslog::rfc3339(
            std::time::UNIX_EPOCH + std::time::Duration::from_secs(s.rules_loaded_at)
        )
    );
    if s.mode == "monitor" {
        println!(
            "mode monitor: a dry run, verdicts are counted and logged, nothing is dropped or reset"
        );
    }
    if let Some(reload) = &s.reload {
        println!(
            "last reload: {:?} ({} reloads)",
            reload.result, reload.generation
        );
    }
    println!();
    println!(
        "{:<16} {:<8} {:>12} {:>12} {:>12} {:>12} {:>12}",
        "interface", "mode", "ipv4", "ipv6", "other", "vlan", "dropped"
    );
    for (a, (_, c)) in s.interfaces.iter().zip(&r.snap.ifaces) {
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
    for (i, a) in s.apps.iter().enumerate() {
        let c = r.snap.apps.get(i).map(|(_, c)| *c).unwrap_or_default();
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
    println!("{:<18} {:>8} of {}", "blocked flows", r.flows.0, r.flows.1);
    println!(
        "{:<18} {:>8} of {}",
        "hellos being read", r.hellos.0, r.hellos.1
    );
    println!();
    print!("{}", counters::table(&r.snap.reasons, false));
    let seen: Vec<String> = Note::ALL
        .iter()
        .zip(&r.snap.notes)
        .filter(|(_, n)| **n > 0)
        .map(|(note, n)| format!("{}={n}", note.name()))
        .collect();
    if !seen.is_empty() {
        println!();
        println!("also counted: {}", seen.join(" "));
    }
}

/// The first line: whether the filter is attached, and whether its daemon runs.
fn print_header(instance: &Instance, r: &Report) {
    let s = &r.state;
    let program = s.program_id.map_or_else(|| "?".into(), |id| id.to_string());
    let filter = if r.links.is_empty() {
        "filter NOT attached".to_owned()
    } else {
        format!(
            "filter attached to {} (program id {program})",
            r.links.join(", ")
        )
    };
    let version = if s.version.is_empty() {
        String::new()
    } else {
        format!(", version {}", s.version)
    };
    let daemon = if r.alive {
        format!("daemon running (pid {}{version})", s.pid)
    } else {
        format!(
            "daemon NOT running (pid {} ended): no events or summaries are logged, the rules cannot be reloaded",
            s.pid
        )
    };
    println!("sni-filter ({}): {filter}; {daemon}", instance.name);
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

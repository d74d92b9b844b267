//! `sni-filter stats [--watch] [--json]`: the counters of the filter, read from its pinned
//! maps (with or without a daemon). Watching prints, every interval, the rates per second
//! since the last sample next to the totals.

use std::{
    fmt::Write as _,
    time::{Duration, Instant, SystemTime},
};

use filter_common::{Counter, Note, Reason};
use serde_json::{Value, json};

use crate::{
    Error,
    counters::{self, AppInfo, CounterMaps, Snapshot},
    state::Instance,
    syslog::rfc3339,
};

pub struct StatsOptions {
    /// Sample every this often; `None` prints the totals once.
    pub watch: Option<Duration>,
    /// Stop after this many samples when watching.
    pub count: Option<u64>,
    pub json: bool,
}

pub fn stats(instance: &Instance, opts: &StatsOptions) -> Result<(), Error> {
    let apps: Vec<AppInfo> = instance
        .read_state()
        .map(|s| {
            s.apps
                .into_iter()
                .map(|a| AppInfo {
                    name: a.name,
                    action: a.action,
                })
                .collect()
        })
        .unwrap_or_default();
    let maps = CounterMaps::pinned(instance)?;
    let snapshot = || maps.snapshot(&apps, &[]);
    let Some(every) = opts.watch else {
        let now = snapshot()?;
        print(&render(&now, None, opts.json));
        return Ok(());
    };
    let mut last = snapshot()?;
    let mut last_at = Instant::now();
    let mut samples = 0;
    while opts.count.is_none_or(|n| samples < n) {
        std::thread::sleep(every);
        let now = snapshot()?;
        let at = Instant::now();
        print(&render(&now, Some((&last, at - last_at)), opts.json));
        last = now;
        last_at = at;
        samples += 1;
    }
    Ok(())
}

fn print(text: &str) {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    // A closed pipe (`| head`) ends the output quietly.
    let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
}

/// Per second over `secs`.
fn rate(now: u64, before: u64, secs: f64) -> f64 {
    // Display only: rates are shown rounded.
    #[allow(clippy::cast_precision_loss)]
    let delta = now.saturating_sub(before) as f64;
    if secs > 0.0 { delta / secs } else { 0.0 }
}

/// A rate in whole units: enough for bytes per second.
#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
fn whole(v: f64) -> u64 {
    v.max(0.0).round() as u64
}

/// One sample: totals, and with `since` the rates since that earlier sample.
fn render(now: &Snapshot, since: Option<(&Snapshot, Duration)>, json: bool) -> String {
    if json {
        return render_json(now, since).to_string() + "\n";
    }
    let Some((before, took)) = since else {
        let mut out = counters::table(&now.reasons, false);
        out.push('\n');
        out += &apps_table(now, None);
        return out;
    };
    let secs = took.as_secs_f64();
    let mut out = format!("{}  (rates over {secs:.1} s)\n", rfc3339(SystemTime::now()));
    let _ = writeln!(
        out,
        "{:<28} {:>11} {:>11} {:>13} {:>14}",
        "reason", "packets/s", "dropped/s", "bytes/s", "packets total"
    );
    for ((reason, n), b) in Reason::ALL.iter().zip(&now.reasons).zip(&before.reasons) {
        if n.packets == b.packets {
            continue;
        }
        let _ = writeln!(
            out,
            "{:<28} {:>11.1} {:>11.1} {:>11}/s {:>14}",
            reason.name(),
            rate(n.packets, b.packets, secs),
            rate(n.dropped, b.dropped, secs),
            counters::human_bytes(whole(rate(n.bytes, b.bytes, secs))),
            n.packets
        );
    }
    out.push('\n');
    out += &apps_table(now, Some((before, secs)));
    out.push('\n');
    out
}

fn apps_table(now: &Snapshot, since: Option<(&Snapshot, f64)>) -> String {
    let mut out = format!(
        "{:<16} {:<8} {:>12} {:>12} {:>12} {:>10}\n",
        "app",
        "action",
        if since.is_some() { "flows/s" } else { "flows" },
        if since.is_some() {
            "dropped/s"
        } else {
            "dropped"
        },
        "bytes",
        "resets"
    );
    for (i, (app, c)) in now.apps.iter().enumerate() {
        let (flows, dropped) = match since {
            Some((before, secs)) => {
                let b = before.apps.get(i).map(|(_, c)| *c).unwrap_or_default();
                (
                    format!("{:.1}", rate(c.flows, b.flows, secs)),
                    format!("{:.1}", rate(c.packets_dropped, b.packets_dropped, secs)),
                )
            }
            None => (c.flows.to_string(), c.packets_dropped.to_string()),
        };
        let _ = writeln!(
            out,
            "{:<16} {:<8} {:>12} {:>12} {:>12} {:>10}",
            app.name,
            app.action,
            flows,
            dropped,
            counters::human_bytes(c.bytes_dropped),
            c.resets
        );
    }
    out
}

fn counter_json(n: &Counter, before: Option<(&Counter, f64)>) -> Value {
    let mut v = json!({"packets": n.packets, "dropped": n.dropped, "bytes": n.bytes});
    if let Some((b, secs)) = before {
        v["packets_per_s"] = json!(rate(n.packets, b.packets, secs));
        v["dropped_per_s"] = json!(rate(n.dropped, b.dropped, secs));
        v["bytes_per_s"] = json!(rate(n.bytes, b.bytes, secs));
    }
    v
}

/// `{"time", "interval_s"?, "reasons": {name: {...}}, "apps": {...}, "notes": {...}}`,
/// every reason and note present (zeros too) so that a consumer sees a stable shape.
pub(super) fn render_json(now: &Snapshot, since: Option<(&Snapshot, Duration)>) -> Value {
    let secs = since.map(|(_, d)| d.as_secs_f64());
    let reasons: serde_json::Map<String, Value> = Reason::ALL
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let n = now.reasons.get(i).copied().unwrap_or_default();
            let b = since.map(|(b, _)| b.reasons.get(i).copied().unwrap_or_default());
            (r.name().to_owned(), counter_json(&n, b.as_ref().zip(secs)))
        })
        .collect();
    let apps: serde_json::Map<String, Value> = now
        .apps
        .iter()
        .enumerate()
        .map(|(i, (app, c))| {
            let mut v = json!({
                "action": app.action,
                "flows": c.flows,
                "packets_dropped": c.packets_dropped,
                "bytes_dropped": c.bytes_dropped,
                "resets": c.resets,
            });
            if let (Some((before, _)), Some(secs)) = (since, secs) {
                let b = before.apps.get(i).map(|(_, c)| *c).unwrap_or_default();
                v["flows_per_s"] = json!(rate(c.flows, b.flows, secs));
                v["packets_dropped_per_s"] =
                    json!(rate(c.packets_dropped, b.packets_dropped, secs));
            }
            (app.name.clone(), v)
        })
        .collect();
    let notes: serde_json::Map<String, Value> = Note::ALL
        .iter()
        .zip(&now.notes)
        .map(|(n, v)| (n.name().to_owned(), json!(v)))
        .collect();
    let mut out = json!({
        "time": rfc3339(SystemTime::now()),
        "reasons": reasons,
        "apps": apps,
        "notes": notes,
    });
    if let Some(secs) = secs {
        out["interval_s"] = json!(secs);
    }
    out
}

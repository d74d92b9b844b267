//! Group: end-to-end lab tests (network namespaces, real servers, clients and daemons; see
//! `filter-daemon/tests/README.md`).
//!
//! `/metrics` of the real daemon on the lab's gateway, and the Grafana dashboard over it
//! (`config/grafana/sni-filter.json`): every query of the dashboard names metrics the daemon
//! exports; per-interface counters and the blocked-flow table follow a blocked client; a
//! reload that changes an app's action changes its info series and keeps its counters'
//! labels; a refused reload shows as such. The rule set's identity: an edited list is a
//! new rule set for `check` until reloaded, and `status`, `check` and `sni_filter_rules_info`
//! agree on it. Needs root.

// Exported values here are small whole numbers, exact in f64.
#![allow(clippy::float_cmp)]

mod common;

use std::{
    collections::BTreeSet,
    fs,
    net::SocketAddr,
    path::Path,
    thread,
    time::{Duration, Instant},
};

use common::{
    BANNED, bin,
    lab::{metric, scrape},
};
use serde_json::Value;
use sni_filter_lab::{CurlOpts, Daemon, Lab, TlsServer, curl};

const METRICS: &str = "127.0.0.1:9464";

fn config_text(action: &str) -> String {
    format!(
        "[filter]\nsummary_interval_secs = 1\n\n\
         [apps.tiktok]\naction = \"{action}\"\ndomains = [\"tiktok.com\"]\n\n\
         [apps.spare]\naction = \"drop\"\nenabled = false\ndomains = [\"a.test\", \"b.test\"]\n\n\
         [logging]\ndestination = \"udp://127.0.0.1:5514\"\n\n\
         [metrics]\nlisten = \"{METRICS}\"\n"
    )
}

/// The dashboard as shipped.
fn dashboard() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/grafana/sni-filter.json");
    let text = fs::read_to_string(&path).unwrap();
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every query of the dashboard: the `expr` of each panel's targets (rows' nested panels
/// too) and the query of each templating variable, with where it is.
fn queries(dash: &Value) -> Vec<(String, String)> {
    fn walk(v: &Value, at: &str, out: &mut Vec<(String, String)>) {
        match v {
            Value::Object(map) => {
                let here = map
                    .get("title")
                    .or_else(|| map.get("name"))
                    .and_then(Value::as_str)
                    .map_or_else(|| at.to_owned(), |t| format!("{at}/{t}"));
                for (k, v) in map {
                    match (k.as_str(), v) {
                        ("expr", Value::String(e)) => out.push((here.clone(), e.clone())),
                        ("query" | "definition", Value::String(q)) if q.contains('(') => {
                            out.push((here.clone(), q.clone()));
                        }
                        _ => walk(v, &here, out),
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|i| walk(i, at, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(&dash["panels"], "panels", &mut out);
    walk(&dash["templating"], "templating", &mut out);
    out
}

/// The `sni_filter_*` metric names a query names, histogram suffixes taken off.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = expr;
    while let Some(i) = rest.find("sni_filter_") {
        let before = rest[..i].chars().next_back();
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        // Part of a longer identifier (a label called `x_sni_filter_y`) is no metric.
        if !before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
            let name = &tail[..end];
            let name = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s))
                .unwrap_or(name);
            names.insert(name.to_owned());
        }
        rest = &tail[end..];
    }
    names
}

/// The metric families a scrape exports (from its TYPE lines and its samples).
fn exported(text: &str) -> BTreeSet<String> {
    let body = text.split_once("\r\n\r\n").map_or(text, |(_, b)| b);
    body.lines()
        .filter_map(|l| match l.strip_prefix("# TYPE ") {
            Some(t) => t.split(' ').next(),
            None if !l.starts_with('#') => l.split(['{', ' ']).next(),
            None => None,
        })
        .filter(|n| !n.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Scrapes until `ok` holds for the text (the daemon acts on a reload in its own time).
fn scrape_until(lab: &Lab, addr: SocketAddr, what: &str, ok: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = scrape(lab, addr);
        if ok(&text) {
            return text;
        }
        assert!(Instant::now() < deadline, "never {what}:\n{text}");
        thread::sleep(Duration::from_millis(200));
    }
}

/// The dashboard: each query names at least one metric, and each is exported in `text`.
fn check_dashboard(text: &str) {
    let dash = dashboard();
    for key in ["title", "uid", "panels", "templating", "schemaVersion"] {
        assert!(dash.get(key).is_some(), "the dashboard has no {key}");
    }
    let variables: Vec<&str> = dash["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v["name"].as_str())
        .collect();
    assert_eq!(variables, ["datasource", "instance"]);
    let queries = queries(&dash);
    assert!(queries.len() >= 20, "{} queries", queries.len());
    let exported = exported(text);
    for (at, expr) in &queries {
        let names = metric_names(expr);
        assert!(
            !names.is_empty(),
            "{at}: `{expr}` names no sni_filter_ metric"
        );
        for name in &names {
            assert!(
                exported.contains(name),
                "{at}: `{expr}` names {name}, which /metrics does not export"
            );
        }
    }
}

#[test]
fn the_dashboard_names_exported_metrics_and_the_series_follow_traffic_and_reloads() {
    let lab = Lab::new("mtr").unwrap();
    let server = TlsServer::start(&lab, &[BANNED]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("filter.toml");
    fs::write(&config, config_text("drop")).unwrap();
    let daemon = Daemon::start(&lab, &bin(), &config, Vec::<String>::new()).unwrap();
    let addr: SocketAddr = METRICS.parse().unwrap();

    // One blocked client: its flow is the one entry of the blocked-flow table.
    let opts = CurlOpts::new(server.ca_path()).max_time(Duration::from_secs(1));
    let out = curl(&lab, BANNED, &opts).unwrap();
    assert!(!out.served(), "{BANNED} was served: {}", out.summary());
    let iface = lab.gateway_client_if();
    let text = scrape(&lab, addr);
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    let value = |text: &str, series: &str| {
        metric(text, series).unwrap_or_else(|| panic!("no {series} in\n{text}"))
    };
    let flows = value(&text, r#"sni_filter_app_flows_total{app="tiktok"}"#);
    assert_eq!(flows, 1.0);
    assert_eq!(
        value(&text, r#"sni_filter_table_entries{table="blocked_flows"}"#),
        flows,
        "one blocked flow, one entry"
    );
    assert_eq!(
        value(
            &text,
            r#"sni_filter_table_max_entries{table="blocked_flows"}"#
        ),
        65536.0
    );
    assert_eq!(
        value(&text, r#"sni_filter_table_entries{table="rules"}"#),
        3.0
    );
    let ipv4 =
        format!(r#"sni_filter_interface_packets_total{{interface="{iface}",family="ipv4"}}"#);
    assert!(value(&text, &ipv4) > 0.0, "{text}");
    let dropped = format!(r#"sni_filter_interface_dropped_packets_total{{interface="{iface}"}}"#);
    assert!(value(&text, &dropped) >= 1.0, "{text}");
    assert_eq!(value(&text, r#"sni_filter_app_rules{app="spare"}"#), 2.0);
    assert_eq!(
        value(
            &text,
            r#"sni_filter_app_info{app="spare",action="drop",enabled="false"}"#
        ),
        1.0
    );
    assert_eq!(value(&text, "sni_filter_quic_worker_alive"), 1.0);
    assert!(value(&text, "sni_filter_quic_heartbeat_age_seconds") < 3.0);
    assert_eq!(value(&text, "sni_filter_reload_last_success"), 1.0);
    let version = format!(
        "sni_filter_build_info{{version=\"{}\",",
        env!("CARGO_PKG_VERSION")
    );
    assert!(text.contains(&version), "{text}");

    check_dashboard(&text);

    // A reload changing the app's action: the info series follows, the counters keep their
    // labels and values.
    fs::write(&config, config_text("monitor")).unwrap();
    assert!(daemon.command(["reload"]).status().unwrap().success());
    let text = scrape_until(&lab, addr, "the reload applied", |t| {
        metric(t, r#"sni_filter_reloads_total{result="applied"}"#) == Some(1.0)
    });
    assert_eq!(
        value(
            &text,
            r#"sni_filter_app_info{app="tiktok",action="monitor",enabled="true"}"#
        ),
        1.0
    );
    assert!(!text.contains(r#"action="drop",enabled="true""#), "{text}");
    assert_eq!(
        value(&text, r#"sni_filter_app_flows_total{app="tiktok"}"#),
        flows
    );
    let applied_at = value(&text, "sni_filter_reload_last_timestamp_seconds");
    assert!(applied_at > value(&text, "sni_filter_start_time_seconds") - 1.0);

    // A refused reload: last success 0, the time moves on, the rules stay.
    fs::write(&config, "[filter]\nno_such_key = 1\n").unwrap();
    assert_eq!(
        daemon.command(["reload"]).status().unwrap().code(),
        Some(78)
    );
    let text = scrape_until(&lab, addr, "the reload refused", |t| {
        metric(t, r#"sni_filter_reloads_total{result="refused"}"#) == Some(1.0)
    });
    assert_eq!(value(&text, "sni_filter_reload_last_success"), 0.0);
    assert!(value(&text, "sni_filter_reload_last_timestamp_seconds") >= applied_at);
    assert_eq!(
        value(
            &text,
            r#"sni_filter_reload_failures_total{reason="config"}"#
        ),
        1.0
    );
    assert_eq!(
        value(&text, r#"sni_filter_table_entries{table="rules"}"#),
        3.0
    );
    let (status, log) = daemon.stop().unwrap();
    assert!(status.success(), "{log}");
}

/// `sni-filter ARGS --json` of the daemon's instance, read as JSON; `codes` are the exit
/// statuses expected.
fn json_of<const N: usize>(daemon: &Daemon, args: [&str; N], codes: &[i32]) -> Value {
    let out = daemon.command(args).output().unwrap();
    let code = out.status.code().unwrap_or(-1);
    assert!(
        codes.contains(&code),
        "{args:?}: exit {code}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{args:?}: {e}: {}", String::from_utf8_lossy(&out.stdout)))
}

#[test]
fn an_edited_list_is_a_new_rule_set_until_reloaded() {
    let lab = Lab::new("mri").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("filter.toml");
    let list = dir.path().join("tiktok.txt");
    let published = fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/lists/adguard.txt"),
    )
    .unwrap();
    fs::write(&list, &published).unwrap();
    fs::write(
        &config,
        format!(
            "[apps.tiktok]\naction = \"drop\"\nlists = [\"tiktok.txt\"]\n\n\
             [metrics]\nlisten = \"{METRICS}\"\n"
        ),
    )
    .unwrap();
    let daemon = Daemon::start(&lab, &bin(), &config, Vec::<String>::new()).unwrap();
    let addr: SocketAddr = METRICS.parse().unwrap();
    let config_arg = config.to_str().unwrap();
    let check = |host| {
        json_of(
            &daemon,
            ["check", "--json", "--config", config_arg, host],
            &[0, 1],
        )
    };
    let rules_of = |daemon: &Daemon| json_of(daemon, ["status", "--json"], &[0])["rules"].clone();
    let info = |rules: &Value| {
        format!(
            r#"sni_filter_rules_info{{version="{}",sha256="{}"}}"#,
            rules["version"].as_str().unwrap(),
            rules["sha256"].as_str().unwrap()
        )
    };

    // As started: the list's version, one hash everywhere.
    let first = rules_of(&daemon);
    assert_eq!(first["version"], "tiktok.txt 2026.12.07", "{first}");
    assert_eq!(first["sha256"].as_str().unwrap().len(), 64, "{first}");
    let c = check("www.blocked-two.example");
    assert_eq!(
        (&c["blocked"], &c["loaded"]),
        (&Value::Bool(true), &Value::Bool(true)),
        "{c}"
    );
    assert_eq!(c["rules"]["sha256"], first["sha256"], "{c}");
    let text = scrape(&lab, addr);
    assert_eq!(metric(&text, &info(&first)), Some(1.0), "{text}");
    let loaded_at = metric(&text, "sni_filter_rules_loaded_timestamp_seconds").unwrap();

    // The list edited, the configuration untouched: `check` sees a rule set the running
    // filter does not enforce (it used to compare the configuration's text only).
    // Appended, so the skipped lines keep their numbers.
    let edited = published.replace("! Version: 2026.12.07", "! Version: 2026.12.08")
        + "||new-name.example^\n";
    fs::write(&list, &edited).unwrap();
    let c = check("new-name.example");
    assert_eq!(c["blocked"], true, "{c}");
    assert_eq!(
        c["loaded"], false,
        "an edited list still read as loaded: {c}"
    );
    assert_ne!(c["rules"]["sha256"], first["sha256"], "{c}");
    assert_eq!(c["loaded_rules"]["sha256"], first["sha256"], "{c}");
    let new_sha = c["rules"]["sha256"].clone();

    // Reloaded: `status`, `check` and `/metrics` show the new hash and version.
    thread::sleep(Duration::from_millis(1100));
    assert!(daemon.command(["reload"]).status().unwrap().success());
    let second = rules_of(&daemon);
    assert_eq!(second["sha256"], new_sha, "{second}");
    assert_eq!(second["version"], "tiktok.txt 2026.12.08", "{second}");
    assert_eq!(check("new-name.example")["loaded"], true);
    let text = scrape_until(&lab, addr, "the new rule set", |t| {
        metric(t, &info(&second)) == Some(1.0)
    });
    assert!(!text.contains(first["sha256"].as_str().unwrap()), "{text}");
    assert!(metric(&text, "sni_filter_rules_loaded_timestamp_seconds").unwrap() > loaded_at);
    assert_eq!(
        metric(&text, r#"sni_filter_reload_failures_total{reason="list"}"#),
        Some(0.0)
    );

    // A broken list: refused and counted as a list failure; the rule set stays.
    fs::write(&list, format!("{edited}bad name.example\n")).unwrap();
    assert_eq!(
        daemon.command(["reload"]).status().unwrap().code(),
        Some(78)
    );
    let text = scrape_until(&lab, addr, "the list refusal counted", |t| {
        metric(t, r#"sni_filter_reload_failures_total{reason="list"}"#) == Some(1.0)
    });
    assert_eq!(metric(&text, &info(&second)), Some(1.0), "{text}");
    assert_eq!(rules_of(&daemon)["sha256"], new_sha);
    let (status, log) = daemon.stop().unwrap();
    assert!(status.success(), "{log}");
    // One warning per skipped line of the list, at start and at the reload.
    for line in [13, 14, 16] {
        let at = format!("tiktok.txt:{line}: skipped: ");
        assert_eq!(log.matches(&at).count(), 2, "{at}\n{log}");
    }
}

#[test]
fn metric_names_are_read_out_of_queries() {
    let names = metric_names(
        r#"sum by (app) (rate(sni_filter_app_flows_total{x="y"}[5m]) * on (app) sni_filter_app_info) / histogram_quantile(0.9, sni_filter_lat_seconds_bucket) + my_sni_filter_x"#,
    );
    let want = [
        "sni_filter_app_flows_total",
        "sni_filter_app_info",
        "sni_filter_lat_seconds",
    ];
    assert_eq!(names.into_iter().collect::<Vec<_>>(), want);
}

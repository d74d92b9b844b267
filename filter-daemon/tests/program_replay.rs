//! Group: program tests (the compiled program through `BPF_PROG_TEST_RUN`, no namespaces;
//! see `filter-daemon/tests/README.md`).
//!
//! `sni-filter replay` on captures from other projects' test suites: every TCP flow those
//! suites list must come out of the real compiled program with the server name they expect.
//! Needs root (loading BPF programs) and the shared captures beside the repository.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    process::{Command, Output},
};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_sni-filter");
/// The repository is cloned beside the `shared` folder that holds the captures.
const CAPTURES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../shared/testdata/captures/"
);

fn captures_dir() -> PathBuf {
    let dir = Path::new(CAPTURES);
    assert!(
        dir.join("expected_flows.tsv").is_file(),
        "the public captures are missing: expected {} (the repository is cloned beside the \
         `shared` folder that holds testdata/captures/)",
        dir.display()
    );
    dir.to_path_buf()
}

/// What a suite says a flow's server name is.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Expected {
    Name(String),
    /// `-`: the hello carried no name.
    NoName,
    /// `?`: the suite does not say.
    Unknown,
}

/// One row of `expected_flows.tsv`.
#[derive(Debug, Clone)]
struct Row {
    file: String,
    client: String,
    server: String,
    expected: Expected,
    features: String,
}

fn rows_of(wanted: &str) -> Vec<Row> {
    let path = captures_dir().join("expected_flows.tsv");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().expect("a header line").split('\t').collect();
    let column = |name: &str| {
        header
            .iter()
            .position(|c| *c == name)
            .unwrap_or_else(|| panic!("column {name} missing from {}", path.display()))
    };
    let (file, transport, client, server, sni, features) = (
        column("local_file"),
        column("transport"),
        column("client"),
        column("server"),
        column("expected_sni"),
        column("features"),
    );
    lines
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.split('\t').collect::<Vec<_>>())
        .filter(|cells| cells[transport] == wanted)
        .map(|cells| Row {
            file: cells[file].into(),
            client: cells[client].into(),
            server: cells[server].into(),
            expected: match cells[sni] {
                "-" => Expected::NoName,
                "?" => Expected::Unknown,
                name => Expected::Name(name.into()),
            },
            features: cells.get(features).copied().unwrap_or_default().into(),
        })
        .collect()
}

fn run_replay(args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("replay")
        .args(args)
        .output()
        .expect("sni-filter runs")
}

/// The flows `replay --json` prints for a capture, and its summary line.
fn replay_json(capture: &Path, config: Option<&Path>) -> (Vec<Value>, String) {
    let mut args = vec!["--json"];
    let config_arg;
    if let Some(config) = config {
        config_arg = config.display().to_string();
        args.extend(["--config", &config_arg]);
    }
    let capture_arg = capture.display().to_string();
    args.push(&capture_arg);
    let out = run_replay(&args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "sni-filter replay {capture_arg} failed ({}): {stderr}",
        out.status
    );
    let flows = String::from_utf8(out.stdout)
        .expect("UTF-8 output")
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    (flows, stderr)
}

fn find<'a>(flows: &'a [Value], client: &str, server: &str) -> Option<&'a Value> {
    flows
        .iter()
        .find(|f| f["client"] == client && f["server"] == server)
}

/// Replays every capture the rows name and compares each row's flow with its expected name
/// and transport; prints the table, fails on any mismatch.
fn check_rows(transport: &str, rows: &[Row], config: Option<&Path>) {
    let dir = captures_dir();
    assert!(
        !rows.is_empty(),
        "no {transport} rows in expected_flows.tsv"
    );
    let mut replayed: HashMap<String, Vec<Value>> = HashMap::new();
    let mut table = vec![[
        "FILE".to_string(),
        "CLIENT".into(),
        "SERVER".into(),
        "EXPECTED".into(),
        "GOT".into(),
        "OK".into(),
    ]];
    let mut failures = Vec::new();
    let mut unsupported = 0;
    for row in rows {
        let flows = replayed.entry(row.file.clone()).or_insert_with(|| {
            let (flows, summary) = replay_json(&dir.join(&row.file), config);
            eprint!("{summary}");
            flows
        });
        let flow = find(flows, &row.client, &row.server);
        let got = match flow {
            None => "(no flow)".to_string(),
            Some(f) => f["sni"].as_str().map_or("-".into(), str::to_string),
        };
        // A flow the suite gives no name for may be unreadable here too.
        let ok = row.expected == Expected::Unknown
            || flow.is_some_and(|f| {
                f["transport"] == transport
                    && match &row.expected {
                        Expected::Name(name) => f["sni"] == name.as_str(),
                        Expected::NoName => f["sni"].is_null(),
                        Expected::Unknown => true,
                    }
            });
        let verdict = if ok {
            "ok"
        } else if row.features.contains("encap") {
            unsupported += 1;
            "unsupported (encap)"
        } else {
            failures.push(format!(
                "{} {} -> {}: expected {:?}, got {got} [{}]",
                row.file, row.client, row.server, row.expected, row.features
            ));
            "FAIL"
        };
        let expected = match &row.expected {
            Expected::Name(n) => n.clone(),
            Expected::NoName => "-".into(),
            Expected::Unknown => "?".into(),
        };
        table.push([
            row.file.clone(),
            row.client.clone(),
            row.server.clone(),
            expected,
            got,
            verdict.into(),
        ]);
    }
    let mut widths = [0usize; 6];
    for line in &table {
        for (w, cell) in widths.iter_mut().zip(line) {
            *w = (*w).max(cell.len());
        }
    }
    for line in &table {
        let cells: Vec<String> = line
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        println!("{}", cells.join("  ").trim_end());
    }
    println!(
        "{} {transport} flows: {} ok, {} failed, {unsupported} unsupported (encap)",
        rows.len(),
        rows.len() - failures.len() - unsupported,
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} of {} {transport} flows did not yield the expected server name:\n{}",
        failures.len(),
        rows.len(),
        failures.join("\n")
    );
}

#[test]
fn every_tcp_flow_of_the_public_captures_yields_the_expected_server_name() {
    check_rows("tcp", &rows_of("tcp"), None);
}

#[test]
fn every_quic_flow_of_the_public_captures_yields_the_expected_server_name() {
    let rows = rows_of("quic");
    // The suites' QUIC runs on 443, and on other ports (DNS over QUIC on 853, a custom
    // 4433): inspect every port the rows name, as an administrator would configure them.
    let mut ports: Vec<u16> = rows
        .iter()
        .filter_map(|r| r.server.rsplit(':').next()?.parse().ok())
        .collect();
    ports.sort_unstable();
    ports.dedup();
    assert!(
        ports.len() <= 4,
        "more QUIC ports than quic_ports holds: {ports:?}"
    );
    let list: Vec<String> = ports.iter().map(u16::to_string).collect();
    let config = std::env::temp_dir().join(format!(
        "sni-filter-quic-replay-{}.toml",
        std::process::id()
    ));
    std::fs::write(
        &config,
        format!("[filter]\nquic_ports = [{}]\n", list.join(", ")),
    )
    .expect("writing the test configuration");
    let guard = RemoveOnDrop(config.clone());
    check_rows("quic", &rows, Some(&config));
    drop(guard);
}

/// Removes a file when dropped, also when a test fails.
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[test]
fn a_configured_app_drops_its_names_in_a_capture() {
    let capture = captures_dir().join("ja4__tls-sni.pcapng");
    let config =
        std::env::temp_dir().join(format!("sni-filter-replay-{}.toml", std::process::id()));
    std::fs::write(
        &config,
        "[apps.search]\naction = \"drop\"\ndomains = [\"www.google.com\"]\n",
    )
    .expect("writing the test configuration");
    let (flows, summary) = replay_json(&capture, Some(&config));
    std::fs::remove_file(&config).ok();
    let (banned, others): (Vec<&Value>, Vec<&Value>) =
        flows.iter().partition(|f| f["sni"] == "www.google.com");
    assert!(
        !banned.is_empty(),
        "no flow to www.google.com in {}: {summary}",
        capture.display()
    );
    for flow in &banned {
        assert_eq!(flow["action"], "drop", "{flow}");
        assert_eq!(flow["app"], "search", "{flow}");
    }
    // The capture reaches the name over TLS and over QUIC: both are dropped.
    for transport in ["tcp", "quic"] {
        assert!(
            banned.iter().any(|f| f["transport"] == transport),
            "no {transport} flow to the banned name: {banned:?}"
        );
    }
    assert!(!others.is_empty(), "only banned flows in {summary}");
    for flow in &others {
        assert_eq!(flow["action"], "pass", "{flow}");
        assert!(flow["app"].is_null(), "{flow}");
    }
}

#[test]
fn the_table_has_a_header_and_the_summary_counts_the_packets() {
    let capture = captures_dir().join("ja4__tls12.pcap");
    let out = run_replay(&[capture.to_str().expect("UTF-8 path")]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let mut lines = stdout.lines();
    let header = lines.next().expect("a header");
    for column in ["CLIENT", "SERVER", "ACTION", "REASON", "SNI"] {
        assert!(header.contains(column), "{header}");
    }
    assert!(
        lines.any(|l| l.contains("contile.services.mozilla.com")),
        "{stdout}"
    );
    assert!(
        stderr.contains("ja4__tls12.pcap: 1 packet read, 1 run, 0 skipped by link type"),
        "{stderr}"
    );
}

#[test]
fn an_unreadable_capture_is_an_error_that_names_the_file() {
    let missing = captures_dir().join("no-such-capture.pcap");
    let out = run_replay(&[missing.to_str().expect("UTF-8 path")]);
    assert_eq!(out.status.code(), Some(66), "EX_NOINPUT");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no-such-capture.pcap"), "{stderr}");
    let not_a_capture = captures_dir().join("README.md");
    let out = run_replay(&[not_a_capture.to_str().expect("UTF-8 path")]);
    assert_eq!(out.status.code(), Some(66));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("README.md"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn replay_without_a_capture_is_a_usage_error() {
    assert_eq!(run_replay(&[]).status.code(), Some(2));
    assert_eq!(
        run_replay(&["--no-such-flag", "x.pcap"]).status.code(),
        Some(2)
    );
}

//! Group: end-to-end lab tests (network namespaces, real servers, clients and daemons; see
//! `filter-daemon/tests/README.md`).
//!
//! A signed list rolled out to a fleet of three gateways, as its centre sees it. Three labs
//! give three gateways, each the real daemon with its own rsyslog relaying over RELP (the
//! shipped `config/rsyslog/gateway.conf`); the first lab's server is the centre: nginx
//! publishing the lists and their minisign signatures, the central rsyslog
//! (`central.conf`), and a real Prometheus scraping the three daemons with the shipped
//! `config/prometheus/scrape.yml` and `alerts.yml`. The other gateways reach it over an
//! [`Uplink`]. v1 goes everywhere and every gateway reports its hash to Prometheus and in
//! its FLOW records at the centre; an unchanged list costs a 304 and no reload; v2 on one
//! gateway makes the skew alert's expression true and drops its new name there only; v2
//! everywhere makes it false; refused lists leave v2 in force and are counted; the list
//! server down across a daemon restart leaves v2 enforced. (The central rsyslog's outage
//! is `lab_fleet.rs`.) Needs root, nginx, minisign, rsyslog-relp and prometheus.

mod common;

use std::fs;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::fleet::{RELAY_PORT, central, central_flow_lines, gateway_relay, param, shipped};
use common::minisign::{Key, list, text};
use common::prometheus::{Prometheus, eventually};
use common::{ALLOWED, BANNED, bin};
use serde_json::Value;
use sni_filter_lab::{CurlOpts, Daemon, Lab, ListServer, Rsyslog, TlsServer, Uplink, curl};

/// Where each daemon serves `/metrics`: on every address, for the centre to scrape.
const METRICS_PORT: u16 = 9464;
/// The list's file and its URL path.
const LIST: &str = "tiktok.txt";

/// The expression of an alert in the shipped `alerts.yml`.
fn alert_expr(name: &str) -> String {
    let rules = shipped("prometheus/alerts.yml");
    let from = rules
        .find(&format!("- alert: {name}\n"))
        .unwrap_or_else(|| panic!("no alert {name} in alerts.yml"));
    let line = rules[from..]
        .lines()
        .find_map(|l| l.trim().strip_prefix("expr: "))
        .unwrap();
    assert!(
        !line.starts_with(">-"),
        "{name}: a folded expression: {line}"
    );
    line.to_owned()
}

/// The `gateway` label and `sha256` of each `sni_filter_rules_info` series, sorted.
fn rules_info(result: &[Value]) -> Vec<(String, String)> {
    let mut v: Vec<_> = result
        .iter()
        .map(|s| {
            let m = &s["metric"];
            let label = |k: &str| m[k].as_str().unwrap_or_default().to_owned();
            (label("gateway"), label("sha256"))
        })
        .collect();
    v.sort();
    v
}

/// One gateway of the fleet: its lab, TLS server, relay and daemon, all configured alike.
struct Gateway<'a> {
    name: &'static str,
    lab: &'a Lab,
    daemon: Option<Daemon>,
    _relay: Rsyslog,
    _tls: TlsServer,
    config: PathBuf,
    list: PathBuf,
    opts: CurlOpts,
}

impl<'a> Gateway<'a> {
    /// Starts the gateway of `lab` with `first` (signed by `key`) in place; its records go to
    /// the centre at `centre`.
    fn start(
        name: &'static str,
        lab: &'a Lab,
        dir: &Path,
        config_text: &str,
        (first, key): (&str, &Key),
        centre: Ipv4Addr,
    ) -> Self {
        fs::create_dir_all(dir.join("lists")).unwrap();
        let config = dir.join("filter.toml");
        fs::write(&config, config_text).unwrap();
        let list = dir.join("lists").join(LIST);
        fs::write(&list, first).unwrap();
        fs::write(list.with_extension("txt.minisig"), key.sign(first)).unwrap();
        let tls = TlsServer::start(lab, &[BANNED, ALLOWED]).expect("nginx (TLS)");
        let relay = gateway_relay(lab, centre, &dir.join("relay"));
        let daemon = Daemon::start(lab, &bin(), &config, Vec::<String>::new()).expect("daemon");
        Self {
            name,
            lab,
            daemon: Some(daemon),
            _relay: relay,
            opts: CurlOpts::new(tls.ca_path()).max_time(Duration::from_secs(2)),
            _tls: tls,
            config,
            list,
        }
    }

    fn daemon(&self) -> &Daemon {
        self.daemon.as_ref().unwrap()
    }

    /// `update-lists` on the gateway: its exit status and what it said.
    fn update(&self) -> (Option<i32>, String) {
        let out = self
            .lab
            .gateway_command(bin())
            .unwrap()
            .args(["--instance", self.daemon().instance(), "update-lists"])
            .arg("--config")
            .arg(&self.config)
            .output()
            .unwrap();
        (out.status.code(), text(&out))
    }

    /// `status --json`'s rule set hash and reload generation.
    fn rules(&self) -> (String, u64) {
        let out = self
            .daemon()
            .command(["status", "--json"])
            .output()
            .unwrap();
        let s: Value =
            serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out)));
        let sha = s["rules"]["sha256"].as_str().unwrap().to_owned();
        (sha, s["reload"]["generation"].as_u64().unwrap_or(0))
    }

    fn served(&self, host: &str) -> bool {
        curl(self.lab, host, &self.opts).unwrap().served()
    }

    /// Stops the daemon and starts it again from the files on disk.
    fn restart(&mut self) {
        let (status, log) = self.daemon.take().unwrap().stop().unwrap();
        assert!(status.success(), "{status}: {log}");
        self.daemon = Some(
            Daemon::start(self.lab, &bin(), &self.config, Vec::<String>::new())
                .expect("daemon restarts"),
        );
    }
}

/// The configuration every gateway runs (the same text, so the same rule set hash).
fn fleet_config(key: &Key, url: &str) -> String {
    format!(
        "[apps.tiktok]\naction = \"drop\"\nlists = [\"lists/{LIST}\"]\n\n\
         [signatures]\npublic_keys = [{:?}]\n\n\
         [updates.urls]\n\"lists/{LIST}\" = \"{url}\"\n\n\
         [logging]\ndestination = \"tcp://127.0.0.1:{RELAY_PORT}\"\nclient_privacy = \"full\"\n\n\
         [metrics]\nlisten = \"0.0.0.0:{METRICS_PORT}\"\n",
        key.public
    )
}

/// Publishes `content` and `sig` as the list and its signature.
fn publish(lists: &ListServer, content: &str, sig: &str) {
    lists.publish(LIST, content.as_bytes()).unwrap();
    lists
        .publish(&format!("{LIST}.minisig"), sig.as_bytes())
        .unwrap();
}

/// `update-lists` on each of `gateways` ends with `code` and says `says`.
fn update_all(gateways: &[&Gateway], code: i32, says: &str) {
    for gw in gateways {
        let (got, said) = gw.update();
        assert_eq!(got, Some(code), "{}: {said}", gw.name);
        assert!(said.contains(says), "{}: {said}", gw.name);
    }
}

#[test]
fn a_signed_list_rolled_out_to_three_gateways_is_seen_at_the_centre() {
    let started = Instant::now();
    let labs = [
        Lab::new("rollout").expect("lab"),
        Lab::new("rollout").expect("lab"),
        Lab::new("rollout").expect("lab"),
    ];
    let hub = &labs[0];
    let uplinks: Vec<Uplink> = labs[1..]
        .iter()
        .map(|l| l.uplink_to(hub).expect("uplink"))
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let lists = ListServer::start(hub).expect("nginx (lists)");
    let centre_dir = dir.path().join("centre");
    let _centre = central(hub, &centre_dir);
    let (key, stranger) = (
        Key::new(dir.path(), "publisher"),
        Key::new(dir.path(), "stranger"),
    );
    let config = fleet_config(&key, &lists.url(LIST));
    let v0 = list("2026.12.1", &["tiktok.com"]);
    let v1 = list("2026.12.9", &["tiktok.com", "bytedance.com"]);
    let v2 = list(
        "2026.12.10",
        &["tiktok.com", "bytedance.com", "example.org"],
    );
    let mut gateways: Vec<Gateway> = ["gw-a", "gw-b", "gw-c"]
        .into_iter()
        .zip(&labs)
        .map(|(name, lab)| {
            let d = dir.path().join(name);
            Gateway::start(name, lab, &d, &config, (&v0, &key), hub.server_v4())
        })
        .collect();
    let scraped_at = [
        hub.gateway_server_v4(),
        uplinks[0].gateway_v4(),
        uplinks[1].gateway_v4(),
    ];
    let targets: Vec<(&str, SocketAddr)> = gateways
        .iter()
        .zip(scraped_at)
        .map(|(g, a)| (g.name, SocketAddr::new(a.into(), METRICS_PORT)))
        .collect();
    let prom = Prometheus::start(hub, &dir.path().join("prometheus"), &targets);
    let centre = Centre {
        prom: &prom,
        syslog: &centre_dir,
        skew: alert_expr("SniFilterRuleSetsDiffer"),
    };
    let all: Vec<&Gateway> = gateways.iter().collect();
    let clients: Vec<String> = labs.iter().map(|l| l.client_v4().to_string()).collect();
    v1_everywhere(&all, &lists, &centre, &key, &v1, &clients);
    let v2_sha = v2_on_one_then_everywhere(&all, &lists, &centre, &key, &v2);
    refusals_leave_v2(
        &all,
        &lists,
        &centre,
        [&key, &stranger],
        [&v1, &v2],
        &v2_sha,
    );
    drop(all);

    // The list server down across a daemon restart: the update fails, v2 stays enforced.
    drop(lists);
    let gw = &mut gateways[1];
    gw.restart();
    let (code, said) = gw.update();
    assert_eq!(code, Some(1), "{said}");
    assert!(said.contains("downloading http://"), "{said}");
    assert_eq!(gw.rules().0, v2_sha);
    assert!(
        !gw.served(ALLOWED) && !gw.served(BANNED),
        "v2 enforced after the restart"
    );
    let got = prom.until(r#"sni_filter_rules_info{gateway="gw-b"}"#, |r| {
        rules_info(r) == [("gw-b".to_owned(), v2_sha.clone())]
    });
    assert_eq!(rules_info(&got), [("gw-b".to_owned(), v2_sha.clone())]);
    println!(
        "three gateways rolled out in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    drop(gateways);
    drop(uplinks);
}

/// The centre's services the steps read: Prometheus, the central syslog server's folder,
/// and the skew alert's expression as shipped.
struct Centre<'a> {
    prom: &'a Prometheus<'a>,
    syslog: &'a Path,
    skew: String,
}

/// v1 published and taken everywhere: one hash, reported by all three to Prometheus and in
/// a blocked flow's FLOW record at the centre; then, unchanged, a 304 and no reload.
fn v1_everywhere(
    all: &[&Gateway],
    lists: &ListServer,
    centre: &Centre,
    key: &Key,
    v1: &str,
    clients: &[String],
) {
    let (prom, skew, centre_dir) = (centre.prom, &centre.skew, centre.syslog);
    let v0_sha = all[0].rules().0;
    publish(lists, v1, &key.sign(v1));
    update_all(all, 0, "tiktok.txt: updated 2026.12.9");
    let v1_sha = all[0].rules().0;
    assert_ne!(v1_sha, v0_sha);
    for gw in all {
        assert_eq!(gw.rules(), (v1_sha.clone(), 1), "{}", gw.name);
    }
    let want: Vec<_> = all
        .iter()
        .map(|g| (g.name.to_owned(), v1_sha.clone()))
        .collect();
    let got = prom.until("sni_filter_rules_info", |r| rules_info(r) == want);
    assert_eq!(rules_info(&got), want, "{got:?}\n{}", prom.log());
    assert!(
        prom.until(skew, <[Value]>::is_empty).is_empty(),
        "one rule set: skew false"
    );

    // One blocked flow per gateway: its FLOW record reaches the centre with v1's hash.
    for gw in all {
        assert!(!gw.served(BANNED), "{}", gw.name);
    }
    let flows = eventually(Duration::from_secs(30), || {
        let lines = central_flow_lines(centre_dir);
        let have = |c: &String| lines.iter().any(|l| param(l, "client") == Some(c));
        clients.iter().all(have).then_some(lines)
    })
    .unwrap_or_else(|| {
        panic!(
            "FLOW records missing at the centre: {:?}",
            central_flow_lines(centre_dir)
        )
    });
    for l in &flows {
        let sha = param(l, "rules_sha256").unwrap_or_else(|| panic!("no rules_sha256: {l}"));
        assert!(
            sha.len() >= 8 && v1_sha.starts_with(sha),
            "{l}\nv1 is {v1_sha}"
        );
    }

    // Unchanged: a 304 and no reload anywhere.
    update_all(all, 0, "tiktok.txt: unchanged (304)");
    assert_eq!(
        lists.statuses(LIST).last(),
        Some(&304),
        "{}",
        lists.access_log()
    );
    for gw in all {
        assert_eq!(gw.rules(), (v1_sha.clone(), 1), "{}: no reload", gw.name);
    }
}

/// v2 on one gateway only, then on the others; returns its hash.
fn v2_on_one_then_everywhere(
    all: &[&Gateway],
    lists: &ListServer,
    centre: &Centre,
    key: &Key,
    v2: &str,
) -> String {
    let (prom, skew) = (centre.prom, &centre.skew);
    // v2 on one gateway only: two rule sets, the skew alert's expression true; the new name
    // dropped there only.
    publish(lists, v2, &key.sign(v2));
    update_all(&all[..1], 0, "tiktok.txt: updated 2026.12.10");
    let v2_sha = all[0].rules().0;
    let got = prom.until(skew, |r| !r.is_empty());
    assert_eq!(got.len(), 1, "skew true with v2 on gw-a only: {got:?}");
    assert_eq!(got[0]["value"][1], "2", "{got:?}");
    assert!(!all[0].served(ALLOWED), "gw-a drops v2's new name");
    assert!(
        all[1].served(ALLOWED) && all[2].served(ALLOWED),
        "v1 still lets it through"
    );

    // v2 everywhere: one rule set again.
    update_all(&all[1..], 0, "tiktok.txt: updated 2026.12.10");
    let want: Vec<_> = all
        .iter()
        .map(|g| (g.name.to_owned(), v2_sha.clone()))
        .collect();
    let got = prom.until("sni_filter_rules_info", |r| rules_info(r) == want);
    assert_eq!(rules_info(&got), want, "{got:?}");
    assert!(
        prom.until(skew, <[Value]>::is_empty).is_empty(),
        "skew false with v2 everywhere"
    );
    for gw in &all[1..] {
        assert!(!gw.served(ALLOWED), "{} drops v2's new name", gw.name);
    }

    v2_sha
}

/// With v2 everywhere: a tampered list, a stranger's signature and v1 signed again are each
/// refused by `update-lists` on every gateway (exit 78, no reload, v2 in force). Put in place
/// by hand on gw-c, v1 and the tampered list are refused by the daemon's reload and counted
/// in `sni_filter_reload_failures_total`, as Prometheus sees it.
fn refusals_leave_v2(
    all: &[&Gateway],
    lists: &ListServer,
    centre: &Centre,
    [key, stranger]: [&Key; 2],
    [v1, v2]: [&str; 2],
    v2_sha: &str,
) {
    let prom = centre.prom;
    let tampered = format!("{v2}example.net\n");
    let generations: Vec<u64> = all.iter().map(|g| g.rules().1).collect();
    for (content, sig, says) in [
        (tampered.as_str(), key.sign(v2), "signature refused"),
        (v2, stranger.sign(v2), "not trusted"),
        (v1, key.sign(v1), "rollback refused"),
    ] {
        publish(lists, content, &sig);
        update_all(all, 78, says);
        for (gw, generation) in all.iter().zip(&generations) {
            assert_eq!(
                gw.rules(),
                (v2_sha.to_owned(), *generation),
                "{}: {says}",
                gw.name
            );
            assert_eq!(
                fs::read_to_string(&gw.list).unwrap(),
                v2,
                "{}: {says}",
                gw.name
            );
        }
        assert!(!all[0].served(ALLOWED), "{says}: v2 stays in force");
    }
    let gw = all[2];
    for (content, reason) in [(v1, "rollback"), (tampered.as_str(), "signature")] {
        fs::write(&gw.list, content).unwrap();
        let sig = if reason == "rollback" {
            key.sign(content)
        } else {
            key.sign(v2)
        };
        fs::write(gw.list.with_extension("txt.minisig"), sig).unwrap();
        let out = gw.daemon().command(["reload"]).output().unwrap();
        assert_eq!(out.status.code(), Some(78), "{reason}: {}", text(&out));
        let series =
            format!(r#"sni_filter_reload_failures_total{{gateway="gw-c",reason="{reason}"}}"#);
        let got = prom.until(&series, |r| r.len() == 1 && r[0]["value"][1] == "1");
        assert_eq!(got.len(), 1, "{series}: {got:?}");
        assert_eq!(got[0]["value"][1], "1", "{series}: {got:?}");
    }
    fs::write(&gw.list, v2).unwrap();
    fs::write(gw.list.with_extension("txt.minisig"), key.sign(v2)).unwrap();
    assert_eq!(gw.rules().0, v2_sha);
    assert!(!gw.served(ALLOWED), "gw-c keeps v2");
    assert!(
        prom.until(
            &format!("({})", alert_expr("SniFilterRuleSetsDiffer")),
            <[Value]>::is_empty
        )
        .is_empty()
    );
}

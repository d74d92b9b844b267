//! Group: end-to-end lab tests (network namespaces, real servers, clients and daemons; see
//! `filter-daemon/tests/README.md`).
//!
//! Signed rule lists and `sni-filter update-lists`: keys and signatures made by the real
//! `minisign`, lists published by a real nginx on the lab's server, the real daemon on the
//! gateway. A good list is taken and reloaded; an unchanged one costs a 304 and no reload;
//! a tampered list, a signature by another key and an older signed version are refused and
//! the list in force stays, on disk and in the daemon; the publisher's second key is taken;
//! the server down fails the command and changes nothing. The shipped update units verify.
//! Needs root.

mod common;

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use common::minisign::{Key, list, text};
use common::{ALLOWED, BANNED, bin};
use serde_json::Value;
use sni_filter_lab::{CurlOpts, Daemon, Lab, ListServer, TlsServer, curl};

/// The configuration: one app whose list is signed by `keys` and downloaded from `url`.
fn config(dir: &Path, keys: &[&Key], url: &str) -> PathBuf {
    let keys: Vec<String> = keys.iter().map(|k| format!("{:?}", k.public)).collect();
    let text = format!(
        "[apps.tiktok]\naction = \"drop\"\nlists = [\"lists/tiktok.txt\"]\n\n\
         [signatures]\npublic_keys = [{}]\n\n\
         [updates.urls]\n\"lists/tiktok.txt\" = \"{url}\"\n",
        keys.join(", ")
    );
    std::fs::create_dir_all(dir.join("lists")).unwrap();
    let path = dir.join("filter.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// The gateway's side: its daemon, its configuration and list on disk, and a client.
struct Gateway<'a> {
    lab: &'a Lab,
    daemon: Daemon,
    config: PathBuf,
    list: PathBuf,
    opts: CurlOpts,
}

impl Gateway<'_> {
    /// `update-lists` on the gateway: its exit status and what it said.
    fn update(&self) -> (Option<i32>, String) {
        let out = self
            .lab
            .gateway_command(bin())
            .unwrap()
            .args([
                "--instance",
                self.daemon.instance(),
                "update-lists",
                "--config",
            ])
            .arg(&self.config)
            .output()
            .unwrap();
        (out.status.code(), text(&out))
    }

    /// The rules of the app in force, and the daemon's reload generation.
    fn in_force(&self) -> (Option<u64>, u64) {
        let out = self.daemon.command(["status", "--json"]).output().unwrap();
        let s: Value = serde_json::from_slice(&out.stdout).unwrap();
        let rules = s["apps"][0]["rules"].as_u64();
        (rules, s["reload"]["generation"].as_u64().unwrap_or(0))
    }

    fn served(&self, host: &str) -> bool {
        curl(self.lab, host, &self.opts).unwrap().served()
    }

    fn on_disk(&self) -> String {
        std::fs::read_to_string(&self.list).unwrap()
    }

    /// Puts `content` and its signature by `key` in place by hand.
    fn install(&self, content: &str, key: &Key) {
        std::fs::write(&self.list, content).unwrap();
        std::fs::write(self.list.with_extension("txt.minisig"), key.sign(content)).unwrap();
    }
}

/// Publishes `content` and `sig` as the list and its signature.
fn publish(lists: &ListServer, content: &str, sig: &str) {
    lists.publish("tiktok.txt", content.as_bytes()).unwrap();
    lists.publish("tiktok.txt.minisig", sig.as_bytes()).unwrap();
}

#[test]
fn update_lists_takes_signed_lists_and_keeps_the_last_good_one() {
    let lab = Lab::new("lists").expect("lab");
    let tls = TlsServer::start(&lab, &[BANNED, ALLOWED]).expect("nginx (TLS)");
    let lists = ListServer::start(&lab).expect("nginx (lists)");
    let keys = tempfile::tempdir().unwrap();
    let (current, next, stranger) = (
        Key::new(keys.path(), "current"),
        Key::new(keys.path(), "next"),
        Key::new(keys.path(), "stranger"),
    );
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), &[&current, &next], &lists.url("tiktok.txt"));
    let list_path = dir.path().join("lists/tiktok.txt");

    // v1 installed by hand, unsigned at first: the daemon does not start.
    let v1 = list("2026.12.9", &["tiktok.com"]);
    std::fs::write(&list_path, &v1).unwrap();
    let e = Daemon::start(&lab, &bin(), &config, Vec::<String>::new()).unwrap_err();
    assert!(
        format!("{e:#}").contains("tiktok.txt: signature refused: no signature"),
        "{e:#}"
    );
    std::fs::write(list_path.with_extension("txt.minisig"), current.sign(&v1)).unwrap();
    let gw = Gateway {
        lab: &lab,
        daemon: Daemon::start(&lab, &bin(), &config, Vec::<String>::new()).expect("daemon"),
        config,
        list: list_path,
        opts: CurlOpts::new(tls.ca_path()).max_time(Duration::from_secs(2)),
    };
    assert!(!gw.served(BANNED) && gw.served(ALLOWED));
    assert_eq!(gw.in_force(), (Some(1), 0));

    // v2, signed by the current key: taken, moved in, reloaded.
    let v2 = list("2026.12.10", &["tiktok.com", "example.org"]);
    publish(&lists, &v2, &current.sign(&v2));
    let (code, said) = gw.update();
    assert_eq!(code, Some(0), "{said}");
    assert!(said.contains("tiktok.txt: updated 2026.12.10"), "{said}");
    assert_eq!(gw.on_disk(), v2);
    assert_eq!(gw.in_force(), (Some(2), 1));
    assert!(!gw.served(ALLOWED), "v2's new name is dropped");

    // Unchanged: a 304, the file untouched, no reload.
    let modified = std::fs::metadata(&gw.list).unwrap().modified().unwrap();
    let (code, said) = gw.update();
    assert_eq!(code, Some(0), "{said}");
    assert!(said.contains("tiktok.txt: unchanged (304)"), "{said}");
    assert_eq!(
        lists.statuses("tiktok.txt").last(),
        Some(&304),
        "{}",
        lists.access_log()
    );
    assert_eq!(
        std::fs::metadata(&gw.list).unwrap().modified().unwrap(),
        modified
    );
    assert_eq!(gw.in_force(), (Some(2), 1), "no reload");

    let v3 = list("2026.12.11", &["tiktok.com", "example.org", "example.net"]);
    refusals_keep_the_list_in_force(&gw, &lists, [&current, &stranger], [&v1, &v2, &v3]);

    // The publisher's next key (a rotation): taken.
    publish(&lists, &v3, &next.sign(&v3));
    let (code, said) = gw.update();
    assert_eq!(code, Some(0), "{said}");
    assert!(said.contains("tiktok.txt: updated 2026.12.11"), "{said}");
    assert_eq!(gw.in_force(), (Some(3), 3));

    // The server down: a download failure (exit 1), the list unchanged.
    drop(lists);
    let (code, said) = gw.update();
    assert_eq!(code, Some(1), "{said}");
    assert!(said.contains("downloading http://"), "{said}");
    assert_eq!(gw.on_disk(), v3);
    assert_eq!(gw.in_force(), (Some(3), 3));
}

/// With v2 in force: a tampered list, a stranger's signature and v1 signed again are each
/// refused by `update-lists` (no reload asked); v1 put in place by hand is refused by the
/// daemon's reload. v2 stays on disk (put back by hand after the last) and in force.
fn refusals_keep_the_list_in_force(
    gw: &Gateway,
    lists: &ListServer,
    [current, stranger]: [&Key; 2],
    [v1, v2, v3]: [&str; 3],
) {
    let tampered = format!("{v2}example.net\n");
    for (content, sig, says) in [
        (tampered.as_str(), current.sign(v2), "signature refused"),
        (v3, stranger.sign(v3), "not trusted"),
        (v1, current.sign(v1), "rollback refused"),
    ] {
        publish(lists, content, &sig);
        let (code, said) = gw.update();
        assert_eq!(code, Some(78), "{says}: {said}");
        assert!(
            said.contains("refused, the last good list stays") && said.contains(says),
            "{said}"
        );
        assert_eq!(gw.on_disk(), v2, "{says}");
        assert_eq!(gw.in_force(), (Some(2), 1), "{says}");
        assert!(!gw.served(ALLOWED), "{says}: v2 stays in force");
    }
    let leftovers: Vec<_> = std::fs::read_dir(gw.list.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "staged files left: {leftovers:?}");

    // The daemon refuses the older list on its own: the reload refused, a CONFIG record
    // (stderr shows records without their MSGID), v2 in force.
    gw.install(v1, current);
    let out = gw.daemon.command(["reload"]).output().unwrap();
    assert_eq!(out.status.code(), Some(78), "{}", text(&out));
    assert!(text(&out).contains("rollback refused"), "{}", text(&out));
    let log = gw.daemon.log();
    assert!(
        log.contains("the rule set in force stays") && log.contains("rollback refused"),
        "{log}"
    );
    assert_eq!(gw.in_force(), (Some(2), 2));
    assert!(!gw.served(ALLOWED));
    gw.install(v2, current);
}

#[test]
fn the_update_units_verify() {
    let dir = tempfile::tempdir().unwrap();
    let units = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../config"));
    let mut paths = Vec::new();
    for name in [
        "sni-filter-update-lists.service",
        "sni-filter-update-lists.timer",
    ] {
        let unit = std::fs::read_to_string(units.join(name))
            .unwrap()
            .replace("/usr/sbin/sni-filter", &bin().display().to_string());
        let path = dir.path().join(name);
        std::fs::write(&path, unit).unwrap();
        paths.push(path);
    }
    let service = std::fs::read_to_string(&paths[0]).unwrap();
    assert!(service.contains("\nType=oneshot\n") && service.contains(" update-lists --config "));
    let timer = std::fs::read_to_string(&paths[1]).unwrap();
    for line in ["RandomizedDelaySec=", "Persistent=true", "OnCalendar="] {
        assert!(timer.contains(line), "{line}");
    }
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .args(&paths)
        .output()
        .expect("systemd-analyze runs");
    assert!(
        out.status.success() && text(&out).trim().is_empty(),
        "{}",
        text(&out)
    );
}

//! fleet: the files shipped for running many gateways, each checked by the tool that will
//! read it (no root, no kernel): the rsyslog RELP snippets by `rsyslogd -N1`, the Prometheus
//! scrape job and alerts by `promtool` (and every alert by its unit tests), the Ansible
//! role by `ansible-playbook --syntax-check`. The snippets are run for real in `lab_fleet`.

use std::{
    path::PathBuf,
    process::{Command, Output},
};

fn repo(path: &str) -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/..")).join(path)
}

/// Runs `program` with `args` in `dir`; it must exist (`cargo xtask setup` installs it).
fn run(program: &str, args: &[&str], dir: &str) -> Output {
    Command::new(program)
        .args(args)
        .current_dir(repo(dir))
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program} ({e}): run `cargo xtask setup`"))
}

/// The output must say success, with nothing on stderr that reads as an error.
fn assert_accepted(what: &str, out: &Output) {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && !stderr.to_lowercase().contains("error"),
        "{what}: {}\n{stdout}\n{stderr}",
        out.status
    );
}

#[test]
fn rsyslog_accepts_the_gateway_and_central_snippets() {
    for name in ["gateway.conf", "central.conf"] {
        let out = run("rsyslogd", &["-N1", "-f", name], "config/rsyslog");
        assert_accepted(name, &out);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("End of config validation run"), "{stderr}");
    }
    // The check reads the modules' parameters: a misspelt one is refused.
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.conf");
    let text = std::fs::read_to_string(repo("config/rsyslog/gateway.conf")).unwrap();
    std::fs::write(
        &bad,
        text.replace("queue.saveOnShutdown", "queue.saveOnShutdwn"),
    )
    .unwrap();
    let out = run("rsyslogd", &["-N1", "-f", bad.to_str().unwrap()], "config");
    assert!(!out.status.success(), "a misspelt parameter passed");
}

#[test]
fn promtool_accepts_the_scrape_job_and_alerts_and_every_alert_passes_its_tests() {
    let dir = "config/prometheus";
    assert_accepted(
        "scrape.yml",
        &run("promtool", &["check", "config", "scrape.yml"], dir),
    );
    let rules = run("promtool", &["check", "rules", "alerts.yml"], dir);
    assert_accepted("alerts.yml", &rules);
    assert!(
        String::from_utf8_lossy(&rules.stdout).contains("SUCCESS: 7 rules found"),
        "{}",
        String::from_utf8_lossy(&rules.stdout)
    );
    // Every alert fires on the series that must make it fire, and only there.
    let tests = run("promtool", &["test", "rules", "alerts_test.yml"], dir);
    assert_accepted("alerts_test.yml", &tests);
    let text = std::fs::read_to_string(repo("config/prometheus/alerts.yml")).unwrap();
    let tested = std::fs::read_to_string(repo("config/prometheus/alerts_test.yml")).unwrap();
    for alert in text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert: "))
    {
        assert!(
            tested.contains(&format!(
                "alertname: {alert}\n        exp_alerts:\n          -"
            )),
            "alert {alert} is never tested firing"
        );
        assert!(
            tested.contains(&format!("alertname: {alert}\n        exp_alerts: []")),
            "alert {alert} is never tested quiet"
        );
    }
}

/// `ansible-playbook ARGS` in deploy/ansible, by the Python that `cargo xtask setup` gave
/// ansible-core.
fn ansible_playbook(args: &[&str]) -> Output {
    let mut all = vec!["-m", "ansible.cli.playbook", "-i", "inventory.example.yml"];
    all.extend_from_slice(args);
    run(sni_filter_lab::python3(), &all, "deploy/ansible")
}

#[test]
fn ansible_accepts_the_playbook_and_role() {
    let out = ansible_playbook(&["--syntax-check", "site.yml"]);
    assert_accepted("site.yml", &out);
    // The inventory puts every gateway in the group the play targets.
    let out = ansible_playbook(&["--list-hosts", "site.yml"]);
    assert_accepted("site.yml --list-hosts", &out);
    let hosts = String::from_utf8_lossy(&out.stdout);
    assert!(
        hosts.contains("hosts (3)") && hosts.contains("ixelles-1"),
        "{hosts}"
    );
}

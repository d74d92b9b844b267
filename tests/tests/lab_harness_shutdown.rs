//! Group: end-to-end lab tests, of the lab itself (network namespaces, real servers and
//! clients, no filter; see `filter-daemon/tests/README.md`).
//!
//! `shutdown()` (what a Ctrl-C handler calls) removes every namespace and process of this
//! process at once, and no guard can be created afterwards. A test binary of its own, since
//! shutdown is final for the process. Needs root.

use sni_filter_lab::{Lab, TlsServer, netns_list, shutdown};

#[test]
fn shutdown_removes_everything_and_is_final() {
    let lab = Lab::new("sfshut").unwrap();
    let server = TlsServer::start(&lab, &["shut.example"]).unwrap();
    let nginx = server.pid();
    let files = server.dir().to_path_buf();
    let names = [lab.client_ns(), lab.gateway_ns(), lab.server_ns()].map(str::to_owned);

    let mut deleted = shutdown();
    deleted.sort();
    let mut expected = names.to_vec();
    expected.sort();
    assert_eq!(deleted, expected);
    let listed = netns_list();
    assert!(names.iter().all(|n| !listed.contains(n)), "{listed:?}");
    // nginx (master and worker) is gone, not merely orphaned; a zombie awaits its guard.
    let stat = std::fs::read_to_string(format!("/proc/{nginx}/stat")).unwrap_or_default();
    assert!(stat.is_empty() || stat.contains(") Z "), "{stat}");
    assert_eq!(
        live_members_of_group(nginx),
        Vec::<u32>::new(),
        "nginx workers left"
    );

    assert!(!files.exists(), "{} outlived shutdown", files.display());

    let err = Lab::new("sfshut").unwrap_err();
    assert!(format!("{err:#}").contains("shutting down"), "{err:#}");
    // The guards' own cleanup finds nothing left and does not fail.
    drop(server);
    drop(lab);
}

/// Processes of the process group that are not zombies.
fn live_members_of_group(group: u32) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let pid: u32 = e.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(e.path().join("stat")).ok()?;
            let (_, rest) = stat.rsplit_once(')')?;
            let fields: Vec<&str> = rest.split_whitespace().collect();
            (fields[2] == group.to_string() && fields[0] != "Z").then_some(pid)
        })
        .collect()
}

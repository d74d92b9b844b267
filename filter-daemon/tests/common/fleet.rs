//! What the fleet's lab tests share: the shipped rsyslog snippets (`config/rsyslog/`) run
//! as a gateway's relay and as the central server, and the records read back at the centre.

use std::fs;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;

use sni_filter_lab::{Lab, Node, Rsyslog};

/// The relay's RELP port at the centre and its input for the daemon (the shipped values).
pub const RELP_PORT: u16 = 2514;
pub const RELAY_PORT: u16 = 10514;

/// A file of the repository's `config/`.
pub fn shipped(path: &str) -> String {
    let path = format!("{}/../config/{path}", env!("CARGO_MANIFEST_DIR"));
    fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// `text` with `from` replaced by `to`, which must be in it: the shipped file changed in
/// addresses and paths only.
pub fn adapted(text: &str, from: &str, to: &str) -> String {
    assert!(
        text.contains(from),
        "{from:?} is not in the shipped snippet"
    );
    text.replace(from, to)
}

/// `lab`'s gateway's rsyslog: the shipped snippet, its target the central server at
/// `centre`, its queue files in `dir/work` (Debian's main rsyslog.conf sets workDirectory).
pub fn gateway_relay(lab: &Lab, centre: Ipv4Addr, dir: &Path) -> Rsyslog {
    let conf = adapted(
        &shipped("rsyslog/gateway.conf"),
        "target=\"syslog.example.org\"",
        &format!("target=\"{centre}\""),
    );
    fs::create_dir_all(dir.join("work")).unwrap();
    let conf = format!("global(workDirectory=\"{}/work\")\n{conf}", dir.display());
    let listens = SocketAddr::from(([127, 0, 0, 1], RELAY_PORT));
    Rsyslog::start_with_config(lab, Node::Gateway, dir, &conf, listens).unwrap()
}

/// The central rsyslog on `lab`'s server: the shipped snippet, writing under `dir/hosts/`
/// instead of `/var/log/sni-filter/`.
pub fn central(lab: &Lab, dir: &Path) -> Rsyslog {
    let hosts = format!("{}/hosts/", dir.display());
    let conf = adapted(
        &shipped("rsyslog/central.conf"),
        "/var/log/sni-filter/",
        &hosts,
    );
    let conf = format!("global(workDirectory=\"{}\")\n{conf}", dir.display());
    let listens = SocketAddr::new(lab.server_v4().into(), RELP_PORT);
    Rsyslog::start_with_config(lab, Node::Server, dir, &conf, listens).unwrap()
}

/// Every line of every per-host file at the centre, by file name.
pub fn central_files(dir: &Path) -> Vec<(String, Vec<String>)> {
    let Ok(entries) = fs::read_dir(dir.join("hosts")) else {
        return Vec::new();
    };
    let mut files: Vec<(String, Vec<String>)> = entries
        .flatten()
        .map(|e| {
            let text = fs::read_to_string(e.path()).unwrap_or_default();
            let lines = text.lines().map(str::to_owned).collect();
            (e.file_name().to_string_lossy().into_owned(), lines)
        })
        .collect();
    files.sort();
    files
}

/// The FLOW records at the centre, from every host's file.
pub fn central_flow_lines(dir: &Path) -> Vec<String> {
    central_files(dir)
        .into_iter()
        .flat_map(|(_, lines)| lines)
        .filter(|l| l.contains(" sni-filter ") && l.contains(" FLOW ["))
        .collect()
}

/// A parameter of the record's own element in an RFC 5424 line.
pub fn param<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    let start = line.find(&format!(" {name}=\""))? + name.len() + 3;
    let len = line[start..].find('"')?;
    Some(&line[start..start + len])
}

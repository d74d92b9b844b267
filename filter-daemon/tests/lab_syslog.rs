//! Group: end-to-end lab tests (network namespaces, real servers, clients and daemons; see
//! `filter-daemon/tests/README.md`).
//!
//! The daemon's syslog output as a real syslog server receives it: rsyslog in the lab's
//! server namespace (UDP, TCP and TLS listeners writing each message raw to a file), the real
//! `sni-filter` daemon on the gateway sending to it, and a blocked flow made by curl. Every
//! received line must parse as RFC 5424 with the expected MSGIDs and structured data. Needs
//! root.

mod common;

#[allow(clippy::wildcard_imports)]
use common::*;
use std::{
    collections::BTreeMap,
    fs,
    net::{IpAddr, SocketAddr, TcpStream},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    thread,
    time::{Duration, Instant, SystemTime},
};

use sni_filter::syslog::rfc3339;

use sni_filter_lab::{CurlOpts, Daemon, Lab, Listen, TlsServer, curl, run_in_netns};

/// How long a message may take to reach the file (reconnection backoff included).
const ARRIVAL_TIMEOUT: Duration = Duration::from_secs(15);

// ---------------------------------------------------------------------------------------
// A strict RFC 5424 parser: what a SIEM's parser expects, without regexes.

/// One parsed RFC 5424 message.
#[derive(Debug)]
struct Message {
    pri: u8,
    timestamp: String,
    hostname: String,
    app_name: String,
    procid: String,
    msgid: String,
    /// SD-ID → parameters, in order of appearance.
    sd: BTreeMap<String, Vec<(String, String)>>,
    msg: String,
}

impl Message {
    /// A parameter of an element.
    fn param(&self, id: &str, name: &str) -> Option<&str> {
        self.sd
            .get(id)?
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// A parameter of the daemon's own element.
    fn own(&self, name: &str) -> Option<&str> {
        self.param("sni-filter@32473", name)
    }

    fn number(&self, name: &str) -> u64 {
        self.own(name)
            .unwrap_or_else(|| panic!("no {name} in {self:?}"))
            .parse()
            .unwrap_or_else(|_| panic!("{name} is not a number in {self:?}"))
    }
}

/// `1*max` characters of PRINTUSASCII (RFC 5424 §6), up to the next space.
fn header_field<'a>(s: &mut &'a str, what: &str, max: usize) -> Result<&'a str, String> {
    let end = s.find(' ').ok_or(format!("no space after {what}"))?;
    let field = &s[..end];
    if field.is_empty() || field.len() > max || !field.bytes().all(|b| (33..=126).contains(&b)) {
        return Err(format!("{what} {field:?} is not 1..={max} printable ASCII"));
    }
    *s = &s[end + 1..];
    Ok(field)
}

fn digits(s: &str, n: usize) -> bool {
    s.len() == n && s.bytes().all(|b| b.is_ascii_digit())
}

/// FULL-DATE "T" FULL-TIME of RFC 5424 §6.2.3 (RFC 3339 without leap seconds); this daemon
/// also promises UTC and microseconds.
fn check_timestamp(t: &str) -> Result<(), String> {
    let bad = || format!("timestamp {t:?} is not RFC 3339 UTC with microseconds");
    let (date, time) = t.split_once('T').ok_or_else(bad)?;
    let d: Vec<&str> = date.split('-').collect();
    let ok_date = d.len() == 3
        && digits(d[0], 4)
        && digits(d[1], 2)
        && digits(d[2], 2)
        && (1..=12).contains(&d[1].parse::<u8>().unwrap_or(0))
        && (1..=31).contains(&d[2].parse::<u8>().unwrap_or(0));
    let time = time.strip_suffix('Z').ok_or_else(bad)?;
    let (hms, frac) = time.split_once('.').ok_or_else(bad)?;
    let h: Vec<&str> = hms.split(':').collect();
    let ok_time = h.len() == 3
        && h.iter().all(|p| digits(p, 2))
        && h[0] < "24"
        && h[1] < "60"
        && h[2] < "60"
        && digits(frac, 6);
    if ok_date && ok_time {
        Ok(())
    } else {
        Err(bad())
    }
}

/// SD-NAME: 1 to 32 PRINTUSASCII except `=`, space, `]` and `"`.
fn sd_name<'a>(s: &mut &'a str) -> Result<&'a str, String> {
    let end = s.find(['=', ' ', ']', '"']).unwrap_or(s.len());
    let name = &s[..end];
    if name.is_empty() || name.len() > 32 || !name.bytes().all(|b| (33..=126).contains(&b)) {
        return Err(format!("SD-NAME {name:?} is not 1..=32 printable ASCII"));
    }
    *s = &s[end..];
    Ok(name)
}

/// STRUCTURED-DATA: `-` or one or more `[SD-ID *(SP NAME="VALUE")]`, where `"`, `\` and `]`
/// inside a value are escaped with `\` (RFC 5424 §6.3).
fn structured_data(s: &mut &str) -> Result<BTreeMap<String, Vec<(String, String)>>, String> {
    let mut sd = BTreeMap::new();
    if let Some(rest) = s.strip_prefix('-') {
        *s = rest;
        return Ok(sd);
    }
    while let Some(rest) = s.strip_prefix('[') {
        *s = rest;
        let id = sd_name(s)?.to_owned();
        if !id.contains('@') {
            return Err(format!("SD-ID {id} is not NAME@NUMBER"));
        }
        let mut params = Vec::new();
        loop {
            if let Some(rest) = s.strip_prefix(']') {
                *s = rest;
                break;
            }
            *s = s
                .strip_prefix(' ')
                .ok_or(format!("expected space or ] in {id}"))?;
            let name = sd_name(s)?.to_owned();
            *s = s
                .strip_prefix("=\"")
                .ok_or(format!("expected =\" after {name}"))?;
            let mut value = String::new();
            let mut chars = s.char_indices();
            let end = loop {
                match chars.next() {
                    None => return Err(format!("unterminated value of {name}")),
                    Some((i, '"')) => break i,
                    Some((_, '\\')) => match chars.next() {
                        Some((_, c @ ('"' | '\\' | ']'))) => value.push(c),
                        other => return Err(format!("bad escape {other:?} in {name}")),
                    },
                    Some((_, ']')) => return Err(format!("unescaped ] in {name}")),
                    Some((_, c)) => value.push(c),
                }
            };
            *s = &s[end + 1..];
            params.push((name, value));
        }
        if sd.insert(id.clone(), params).is_some() {
            return Err(format!("SD-ID {id} twice"));
        }
    }
    if sd.is_empty() {
        return Err("no STRUCTURED-DATA".into());
    }
    Ok(sd)
}

/// SYSLOG-MSG = HEADER SP STRUCTURED-DATA [SP MSG] (RFC 5424 §6).
fn parse(line: &str) -> Result<Message, String> {
    let mut s = line
        .strip_prefix('<')
        .ok_or("no PRI: the line does not start with <")?;
    let close = s.find('>').ok_or("PRI is not closed")?;
    let pri_text = &s[..close];
    let pri: u8 = pri_text.parse().map_err(|_| format!("PRI {pri_text:?}"))?;
    if !(1..=3).contains(&pri_text.len())
        || pri > 191
        || (pri_text.len() > 1 && pri_text.starts_with('0'))
    {
        return Err(format!("PRI {pri_text:?} out of range"));
    }
    s = &s[close + 1..];
    s = s.strip_prefix("1 ").ok_or("VERSION is not 1")?;
    let timestamp = header_field(&mut s, "TIMESTAMP", 64)?.to_owned();
    check_timestamp(&timestamp)?;
    let hostname = header_field(&mut s, "HOSTNAME", 255)?.to_owned();
    let app_name = header_field(&mut s, "APP-NAME", 48)?.to_owned();
    let procid = header_field(&mut s, "PROCID", 128)?.to_owned();
    let msgid = header_field(&mut s, "MSGID", 32)?.to_owned();
    let sd = structured_data(&mut s)?;
    let msg = match s {
        "" => String::new(),
        rest => rest
            .strip_prefix(' ')
            .ok_or("no space before MSG")?
            .to_owned(),
    };
    Ok(Message {
        pri,
        timestamp,
        hostname,
        app_name,
        procid,
        msgid,
        sd,
        msg,
    })
}

#[test]
fn the_parser_is_strict() {
    let good = r#"<165>1 2024-05-01T12:00:00.000005Z gw1 sni-filter 42 FLOW [sni-filter@32473 app="tiktok" sni="a\"b\\c\]d"][x@32473 k="v"] text here"#;
    let m = parse(good).unwrap();
    assert_eq!(
        (m.pri, m.msgid.as_str(), m.msg.as_str()),
        (165, "FLOW", "text here")
    );
    assert_eq!(m.own("sni"), Some(r#"a"b\c]d"#));
    assert_eq!(m.param("x@32473", "k"), Some("v"));
    for bad in [
        "<192>1 2024-05-01T12:00:00.000005Z h a 1 M -",
        "<13>2 2024-05-01T12:00:00.000005Z h a 1 M -",
        "<13>1 2024-05-01 12:00:00 h a 1 M -",
        "<13>1 2024-05-01T12:00:00Z h a 1 M -",
        "<13>1 2024-05-01T12:00:00.000005Z h a 1 M [x@1 k=\"a]b\"]",
        "<13>1 2024-05-01T12:00:00.000005Z h a 1 M [x@1 k=\"a\\qb\"]",
        "<13>1 2024-05-01T12:00:00.000005Z h a 1 M [x k=\"v\"]",
        "<13>1 2024-05-01T12:00:00.000005Z h a 1 MSGID_LONGER_THAN_THIRTY_TWO_CHARS -",
    ] {
        assert!(parse(bad).is_err(), "accepted {bad}");
    }
}

// ---------------------------------------------------------------------------------------
// rsyslog in the lab's server namespace.

/// rsyslog from the lab crate, with this suite's reading of what it received.
struct Rsyslog(sni_filter_lab::Rsyslog);

impl Rsyslog {
    fn start(lab: &Lab, dir: &Path, listen: &Listen) -> Self {
        Self(sni_filter_lab::Rsyslog::start(lab, dir, listen).expect("rsyslogd listens"))
    }

    fn lines(&self) -> Vec<String> {
        self.0.lines()
    }

    /// Every message so far, each of which must parse as RFC 5424 from this daemon.
    fn messages(&self) -> Vec<Message> {
        self.lines()
            .iter()
            .map(|l| {
                let m = parse(l).unwrap_or_else(|e| panic!("not RFC 5424 ({e}): {l}"));
                assert_eq!(m.app_name, "sni-filter", "{l}");
                assert!(m.procid.parse::<u32>().is_ok(), "{l}");
                assert!(m.sd.contains_key("sni-filter@32473"), "{l}");
                // facility daemon (3): PRI 24..=31.
                assert!((24..=31).contains(&m.pri), "{l}");
                assert!(!m.hostname.is_empty(), "{l}");
                m
            })
            .collect()
    }

    /// Waits until `done` holds for the messages received, and returns them.
    fn wait_for(
        &self,
        what: &str,
        daemon: &Daemon,
        done: impl Fn(&[Message]) -> bool,
    ) -> Vec<Message> {
        let deadline = Instant::now() + ARRIVAL_TIMEOUT;
        loop {
            let msgs = self.messages();
            if done(&msgs) {
                return msgs;
            }
            assert!(
                Instant::now() < deadline,
                "no {what} within {ARRIVAL_TIMEOUT:?}; received:\n{}\n--- rsyslogd:\n{}\n--- daemon:\n{}",
                self.lines().join("\n"),
                self.0.console(),
                daemon.log()
            );
            thread::sleep(Duration::from_millis(100));
        }
    }
}

// ---------------------------------------------------------------------------------------
// The lab around the daemon.

/// A configuration blocking tiktok.com, summarising every second, sending to `destination`.
fn write_config(dir: &Path, logging: &str, more: &str) -> PathBuf {
    let path = dir.join("filter.toml");
    fs::write(
        &path,
        format!(
            "[filter]\nsummary_interval_secs = 1\n\n\
             [apps.tiktok]\naction = \"drop\"\ndomains = [\"tiktok.com\"]\n\n\
             [logging]\n{logging}\n{more}"
        ),
    )
    .unwrap();
    path
}

/// curl to the banned name, which the filter drops: one blocked flow and its event.
fn blocked_flow(lab: &Lab, server: &TlsServer) {
    let opts = CurlOpts::new(server.ca_path()).max_time(Duration::from_secs(1));
    let out = curl(lab, BANNED, &opts).unwrap();
    assert!(!out.served(), "{BANNED} was served: {}", out.summary());
}

fn by_msgid<'a>(msgs: &'a [Message], msgid: &str) -> Vec<&'a Message> {
    msgs.iter().filter(|m| m.msgid == msgid).collect()
}

fn flow_of(msgs: &[Message]) -> Option<&Message> {
    msgs.iter()
        .find(|m| m.msgid == "FLOW" && m.own("sni") == Some(BANNED))
}

fn lifecycle<'a>(msgs: &'a [Message], event: &str) -> Option<&'a Message> {
    msgs.iter()
        .find(|m| m.msgid == "LIFECYCLE" && m.own("event") == Some(event))
}

/// The FLOW record of the blocked flow says what happened, where, to whom.
fn check_flow(m: &Message, lab: &Lab) {
    assert_eq!(m.own("action"), Some("drop"), "{m:?}");
    assert_eq!(m.own("app"), Some("tiktok"), "{m:?}");
    assert_eq!(m.own("reason"), Some("hello_blocked"), "{m:?}");
    assert_eq!(m.own("iface"), Some(lab.gateway_client_if()), "{m:?}");
    assert_eq!(
        m.own("server"),
        Some(lab.server_v4().to_string().as_str()),
        "{m:?}"
    );
    assert_eq!(m.own("server_port"), Some("443"), "{m:?}");
    assert_eq!(m.own("proto"), Some("tcp"), "{m:?}");
    // notice (5) for a drop, facility daemon (3).
    assert_eq!(m.pri, 3 * 8 + 5, "{m:?}");
    assert!(m.msg.starts_with("event action=drop app=tiktok"), "{m:?}");
}

/// Runs `sni-filter status` in the daemon's namespaces: packets of a reason.
fn status_packets(daemon: &Daemon, reason: &str) -> u64 {
    let out = daemon.command(["status"]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find(|l| l.split_whitespace().next() == Some(reason))
        .and_then(|l| l.split_whitespace().nth(1))
        .map_or(0, |n| n.parse().unwrap())
}

/// `GET /metrics` from inside the gateway namespace.
fn scrape(lab: &Lab, addr: SocketAddr) -> String {
    use std::io::{Read as _, Write as _};
    run_in_netns(lab.gateway_ns(), || {
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    })
    .unwrap()
}

fn metric(text: &str, series: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// The latest summaries show the blocked flow, per app and per reason.
fn check_summaries(msgs: &[Message]) {
    let app = by_msgid(msgs, "APP_SUMMARY")
        .into_iter()
        .rev()
        .find(|a| a.own("app") == Some("tiktok"))
        .unwrap();
    assert_eq!(app.own("action"), Some("drop"));
    assert!(app.number("flows_total") >= 1, "{app:?}");
    assert!(app.number("packets_dropped_total") >= 1, "{app:?}");
    for key in [
        "flows",
        "packets_dropped",
        "bytes_dropped",
        "bytes_dropped_total",
        "resets",
        "resets_total",
        "interval_secs",
    ] {
        app.number(key);
    }
    let summary = by_msgid(msgs, "SUMMARY")
        .into_iter()
        .rev()
        .find(|s| s.sd.contains_key("hello_blocked@32473"))
        .expect("a SUMMARY with hello_blocked");
    assert!(summary.number("packets_total") >= summary.number("dropped_total"));
    let blocked: u64 = summary
        .param("hello_blocked@32473", "packets_total")
        .unwrap()
        .parse()
        .unwrap();
    assert!(blocked >= 1, "{summary:?}");
    assert!(summary.msg.starts_with("summary: "), "{summary:?}");
}

/// `/metrics` shows the same counters.
fn check_metrics(lab: &Lab, metrics: SocketAddr) {
    let text = scrape(lab, metrics);
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    assert!(
        metric(
            &text,
            r#"sni_filter_app_flows_total{app="tiktok",action="drop"}"#
        )
        .is_some_and(|n| n >= 1),
        "{text}"
    );
    assert!(
        metric(&text, r#"sni_filter_packets_total{reason="hello_blocked"}"#)
            .is_some_and(|n| n >= 1),
        "{text}"
    );
    assert!(
        metric(&text, "sni_filter_events_logged_total").is_some_and(|n| n >= 1),
        "{text}"
    );
    assert!(
        text.contains("sni_filter_syslog_messages_total{outcome=\"sent\"}"),
        "{text}"
    );
}

#[test]
fn udp_carries_lifecycle_flows_and_summaries_with_clients_truncated() {
    let lab = Lab::new("slu").unwrap();
    let server = TlsServer::start(&lab, &[BANNED]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let rsyslog = Rsyslog::start(&lab, dir.path(), &Listen::Plain(5514));
    let metrics: SocketAddr = "127.0.0.1:9464".parse().unwrap();
    let config = write_config(
        dir.path(),
        &format!("destination = \"udp://{}:5514\"", lab.server_v4()),
        &format!("[metrics]\nlisten = \"{metrics}\"\n"),
    );
    let daemon = Daemon::start(&lab, &bin(), &config, Vec::<String>::new()).unwrap();
    let before_flow = rfc3339(SystemTime::now());
    blocked_flow(&lab, &server);

    let msgs = rsyslog.wait_for("blocked flow and its app summary", &daemon, |m| {
        flow_of(m).is_some()
            && by_msgid(m, "APP_SUMMARY")
                .iter()
                .any(|a| a.own("flows_total").is_some_and(|n| n != "0"))
    });
    for event in ["attached", "started"] {
        assert!(lifecycle(&msgs, event).is_some(), "no LIFECYCLE {event}");
    }
    let started = lifecycle(&msgs, "started").unwrap();
    assert_eq!(started.own("client_privacy"), Some("truncated"));
    assert_eq!(started.own("rules"), Some("1"));
    // The verifier's work on this kernel, within the bound, for both programs.
    for program in ["sni_filter", "sni_judge"] {
        let n: u32 = started
            .own(&format!("verified_insns_{program}"))
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no verified_insns_{program} in {started:?}"));
        assert!((1..=200_000).contains(&n), "{program}: {n}");
    }

    let flow = flow_of(&msgs).unwrap();
    check_flow(flow, &lab);
    // The program's monotonic timestamp became wall-clock time: between the curl and now
    // (RFC 3339 UTC strings of one width sort in time order).
    let now = rfc3339(SystemTime::now());
    assert!(
        before_flow <= flow.timestamp && flow.timestamp <= now,
        "{before_flow} <= {} <= {now}",
        flow.timestamp
    );
    // Truncated by default: the client's /24, no port.
    let net = format!("10.{}.1.0/24", lab.client_v4().octets()[1]);
    assert_eq!(flow.own("client"), Some(net.as_str()), "{flow:?}");
    assert_eq!(flow.own("client_port"), None, "{flow:?}");
    let client = lab.client_v4().to_string();
    assert!(
        !rsyslog.lines().iter().any(|l| l.contains(&client)),
        "the client's full address {client} reached syslog"
    );

    check_summaries(&msgs);
    check_metrics(&lab, metrics);

    // Stopping is reported too.
    let (status, log) = daemon.stop().unwrap();
    assert!(status.success(), "{log}");
    let deadline = Instant::now() + Duration::from_secs(5);
    while lifecycle(&rsyslog.messages(), "left_attached").is_none() {
        assert!(
            Instant::now() < deadline,
            "no LIFECYCLE left_attached:\n{}",
            rsyslog.lines().join("\n")
        );
        thread::sleep(Duration::from_millis(100));
    }
    let msgs = rsyslog.messages();
    assert!(lifecycle(&msgs, "stopping").is_some());
    println!("{}", rsyslog.lines().join("\n"));
    // Stderr keeps its lines.
    assert!(log.contains("sni-filter: summary: "), "{log}");
    assert!(
        log.contains("sni-filter: event action=drop app=tiktok"),
        "{log}"
    );
}

#[test]
fn tcp_sink_down_at_start_reconnects_and_reports_the_gap() {
    let lab = Lab::new("slt").unwrap();
    let server = TlsServer::start(&lab, &[BANNED]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    // Nothing listens yet.
    let config = write_config(
        dir.path(),
        &format!(
            "destination = \"tcp://{}:5515\"\nclient_privacy = \"hashed\"",
            lab.server_v4()
        ),
        "",
    );
    let mut daemon = Daemon::start(&lab, &bin(), &config, Vec::<String>::new()).unwrap();
    // The filter works and counts while its syslog server is away.
    blocked_flow(&lab, &server);
    assert!(daemon.running(), "{}", daemon.log());
    assert!(status_packets(&daemon, "hello_blocked") >= 1);
    assert!(
        daemon.log().contains(&format!(
            "syslog tcp://{}:5515: cannot connect",
            lab.server_v4()
        )),
        "{}",
        daemon.log()
    );

    let rsyslog = Rsyslog::start(&lab, dir.path(), &Listen::Plain(5515));
    let msgs = rsyslog.wait_for("the queued flow after reconnecting", &daemon, |m| {
        flow_of(m).is_some() && lifecycle(m, "started").is_some()
    });
    // The first message on the new connection reports the gap.
    let sink = &msgs[0];
    assert_eq!(sink.msgid, "SINK", "{msgs:?}");
    assert_eq!(sink.own("event"), Some("reconnected"));
    assert_eq!(
        sink.own("destination"),
        Some(format!("tcp://{}:5515", lab.server_v4()).as_str())
    );
    let down: f64 = sink.own("down_secs").unwrap().parse().unwrap();
    assert!(down > 0.0, "{sink:?}");
    assert!(sink.own("error").unwrap().contains("refused"), "{sink:?}");
    // Nothing was dropped: the queue held everything from the outage.
    assert_eq!(sink.number("dropped_total"), 0, "{sink:?}");
    // What was logged during the outage arrives, in order, after the report.
    let started = msgs.iter().position(|m| m.own("event") == Some("started"));
    let flow = msgs.iter().position(|m| m.msgid == "FLOW");
    assert!(started < flow, "{msgs:?}");
    let flow = flow_of(&msgs).unwrap();
    check_flow(flow, &lab);
    // Hashed: a token, no address, no port.
    let token = flow.own("client").unwrap();
    assert!(
        token.len() == 18
            && token.starts_with("h:")
            && token[2..].bytes().all(|b| b.is_ascii_hexdigit()),
        "{flow:?}"
    );
    assert_eq!(flow.own("client_port"), None);
    assert!(
        !rsyslog
            .lines()
            .iter()
            .any(|l| l.contains(&lab.client_v4().to_string())),
        "the client's address reached syslog"
    );
    assert!(!by_msgid(&msgs, "SUMMARY").is_empty());
    assert!(daemon.running());
    assert!(
        daemon.log().contains("reachable again after"),
        "{}",
        daemon.log()
    );
    println!(
        "{}\n--- daemon:\n{}",
        rsyslog.lines().join("\n"),
        daemon.log()
    );
}

/// A CA and a certificate for the server's address (IP SAN), as an RFC 5425 server has,
/// and a second CA that signed nothing.
fn issue_certificates(dir: &Path, ip: IpAddr) {
    // Arguments without spaces as one string, for reading; the rest as a slice.
    let openssl = |args: &str, more: &[&str]| {
        let out = Command::new("openssl")
            .args(args.split_whitespace())
            .args(more)
            .current_dir(dir)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "openssl {args}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let new_ca = |name: &str, cn: &str| {
        openssl(
            &format!(
                "req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout {name}.key \
                 -out {name}.crt -days 2 -addext basicConstraints=critical,CA:TRUE \
                 -addext keyUsage=critical,keyCertSign,cRLSign"
            ),
            &["-subj", cn],
        );
    };
    new_ca("ca", "/CN=syslog test CA");
    new_ca("other-ca", "/CN=another CA");
    openssl(
        "req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout server.key \
         -out server.csr -subj /CN=syslog",
        &[],
    );
    fs::write(
        dir.join("server.ext"),
        format!(
            "subjectAltName=IP:{ip}\nbasicConstraints=CA:FALSE\n\
             keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n"
        ),
    )
    .unwrap();
    openssl(
        "x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out server.crt \
         -days 2 -extfile server.ext",
        &[],
    );
}

#[test]
fn tls_carries_rfc5424_to_a_server_verified_by_the_configured_ca() {
    let lab = Lab::new("sls").unwrap();
    let dir = tempfile::tempdir().unwrap();
    issue_certificates(dir.path(), lab.server_v4().into());
    let rsyslog = Rsyslog::start(&lab, dir.path(), &Listen::Tls(6514));

    // A CA that did not sign the server's certificate: no connection, nothing sent, and the
    // filter runs on.
    let untrusted = write_config(
        dir.path(),
        &format!(
            "destination = \"tls://{}\"\nca_file = \"other-ca.crt\"",
            lab.server_v4()
        ),
        "",
    );
    let mut daemon = Daemon::start(&lab, &bin(), &untrusted, Vec::<String>::new()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !daemon.log().contains("TLS handshake failed") {
        assert!(Instant::now() < deadline, "{}", daemon.log());
        thread::sleep(Duration::from_millis(50));
    }
    assert!(daemon.running());
    let (status, _) = daemon.stop().unwrap();
    assert!(status.success());
    assert!(rsyslog.lines().is_empty(), "{:?}", rsyslog.lines());

    let config = write_config(
        dir.path(),
        &format!(
            "destination = \"tls://{}\"\nca_file = \"ca.crt\"\nclient_privacy = \"none\"",
            lab.server_v4()
        ),
        "",
    );
    let daemon = Daemon::start(&lab, &bin(), &config, Vec::<String>::new()).unwrap();
    let msgs = rsyslog.wait_for("lifecycle and a summary over TLS", &daemon, |m| {
        lifecycle(m, "started").is_some() && !by_msgid(m, "SUMMARY").is_empty()
    });
    assert!(lifecycle(&msgs, "attached").is_some());
    assert_eq!(
        lifecycle(&msgs, "started").unwrap().own("client_privacy"),
        Some("none")
    );
    // Connected at the first attempt: no gap to report.
    assert!(by_msgid(&msgs, "SINK").is_empty(), "{msgs:?}");
    assert!(!daemon.log().contains("cannot connect"), "{}", daemon.log());

    // SIGHUP with a wrong [logging] key: refused with file and line, over the same sink.
    let tls = format!(
        "destination = \"tls://{}\"\nca_file = \"ca.crt\"",
        lab.server_v4()
    );
    write_config(dir.path(), &format!("{tls}\nfacility = \"local9\""), "");
    hangup(&daemon);
    let msgs = rsyslog.wait_for("reload_refused", &daemon, |m| {
        lifecycle(m, "reload_refused").is_some()
    });
    let refused = lifecycle(&msgs, "reload_refused").unwrap();
    let at = format!("{}:11:", config.canonicalize().unwrap().display());
    assert!(refused.own("error").unwrap().contains(&at), "{refused:?}");
    assert!(
        refused.own("error").unwrap().contains("local9"),
        "{refused:?}"
    );
    // A valid change of [logging]: a new sink to the same server takes over.
    write_config(dir.path(), &format!("{tls}\nclient_privacy = \"full\""), "");
    hangup(&daemon);
    rsyslog.wait_for("reloaded", &daemon, |m| lifecycle(m, "reloaded").is_some());
}

fn hangup(daemon: &Daemon) {
    let pid = libc::pid_t::try_from(daemon.pid()).unwrap();
    // SAFETY: kill has no memory-safety preconditions.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGHUP) }, 0);
}

//! `sni-filter replay CAPTURE...`: every packet of a capture through the real compiled XDP
//! program, on maps of its own, and the verdict of every flow that carried a `ClientHello`.

use std::{
    collections::{BTreeMap, HashMap},
    fmt::Write as _,
    io::{self, Write as _},
    path::{Path, PathBuf},
};

use filter_common::{Event, EventAction, NO_APP, Reason, reason_from_u32};
use serde::Serialize;

use crate::{
    Error,
    capture::{self, Capture, Record, Skip},
    config::Config,
    events,
    filter::Filter,
    quic::{
        Matcher,
        worker::{Judge, Policy},
    },
    rules::RuleSet,
};

pub struct ReplayOptions {
    /// Rules to judge by; without, every flow passes and the names are still read.
    pub config: Option<PathBuf>,
    pub json: bool,
    pub captures: Vec<PathBuf>,
}

/// Frames run between two reads of the event ring. The ring holds about 3000 events and
/// a frame yields at most one or two, so none is lost.
const DRAIN_EVERY: u64 = 256;

/// The longest Ethernet frame a standard MTU gives (1500 + header + two VLAN tags).
/// `BPF_PROG_TEST_RUN` puts what does not fit in a page into fragments, which some kernels
/// refuse for programs not declared for them; a longer frame in a capture comes from
/// segmentation offload at the capture point, so a refusal is counted, not fatal.
const ETH_FRAME_STANDARD_MAX: usize = 1522;

/// One flow that carried a `ClientHello`, as printed.
#[derive(Debug, Clone, Serialize)]
pub struct FlowVerdict {
    /// The capture the flow was read from (flows of different captures never mix).
    pub capture: String,
    pub client: String,
    pub server: String,
    pub transport: String,
    /// The first server name any of the flow's hellos carried.
    pub sni: Option<String>,
    pub app: Option<String>,
    pub action: &'static str,
    pub reason: &'static str,
    #[serde(skip)]
    severity: u8,
}

/// What happened to the records of one capture.
#[derive(Debug, Default)]
pub struct ReplayStats {
    pub read: u64,
    pub run: u64,
    /// Packets skipped by link type, per link type.
    pub skipped_link: BTreeMap<u32, u64>,
    pub not_ip: u64,
    pub truncated: u64,
    pub too_large: u64,
    /// The record reading stopped at (1-based) and why.
    pub unreadable: Option<(u64, String)>,
}

/// The result of replaying one capture.
#[derive(Debug)]
pub struct Replay {
    pub flows: Vec<FlowVerdict>,
    pub stats: ReplayStats,
}

pub fn replay(options: &ReplayOptions) -> Result<(), Error> {
    let config = match &options.config {
        Some(path) => Config::load(path)?,
        None => Config::parse(Path::new("<none>"), "")?,
    };
    let set = RuleSet::compile(&config)?;
    // Every file is opened before anything runs, so a wrong name fails at once.
    let captures = options
        .captures
        .iter()
        .map(|p| Capture::open(p))
        .collect::<Result<Vec<_>, _>>()?;
    let several = captures.len() > 1;
    let mut out = io::stdout().lock();
    for capture in captures {
        let path = capture.path().display().to_string();
        let replay = replay_capture(&config, &set, capture)?;
        let written = if options.json {
            write_json(&mut out, &replay.flows)
        } else {
            write_table(&mut out, several.then_some(path.as_str()), &replay.flows)
        };
        match written.and_then(|()| out.flush()) {
            Ok(()) => {}
            // A reader that stopped early (`| head`) is not an error.
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => return Ok(()),
            Err(e) => return Err(Error::Output(e)),
        }
        eprintln!("{}", summary(&path, &replay));
    }
    Ok(())
}

/// Runs every packet of `capture`, in order, through a freshly loaded program holding
/// `set` and the policy of `config` (uninspectable, ports), so that state carries from
/// packet to packet as on a live gateway.
pub fn replay_capture(config: &Config, set: &RuleSet, capture: Capture) -> Result<Replay, Error> {
    let mut filter = Filter::load((set.rule_count() as u32).max(1))?;
    filter.apply_config(config, set)?;
    filter.set_trace_all(true)?;
    // QUIC Initials go to a judge as they would to the daemon's worker.
    let mut quic = Judge::new(&filter)?;
    quic.beat(true)?;
    let matcher = Matcher::new(set)?;
    let policy = Policy {
        trace_all: true,
        ..Policy::of(config)
    };
    let mut flows = Flows::default();
    let mut stats = ReplayStats::default();
    let capture_name = capture.path().display().to_string();
    for (index, record) in capture.enumerate() {
        let (linktype, data) = match record {
            Record::Packet { linktype, data } => (linktype, data),
            Record::Unreadable(why) => {
                stats.unreadable = Some((index as u64 + 1, why));
                break;
            }
        };
        stats.read += 1;
        let frame = match capture::to_ethernet(linktype, &data) {
            Ok(frame) => frame,
            Err(Skip::LinkType(t)) => {
                *stats.skipped_link.entry(t).or_default() += 1;
                continue;
            }
            Err(Skip::NotIp) => {
                stats.not_ip += 1;
                continue;
            }
            Err(Skip::Truncated) => {
                stats.truncated += 1;
                continue;
            }
        };
        match filter.run_frame(&frame) {
            Ok(_) => stats.run += 1,
            Err(_) if frame.len() > ETH_FRAME_STANDARD_MAX => {
                stats.too_large += 1;
                continue;
            }
            Err(e) => return Err(e),
        }
        if stats.run % DRAIN_EVERY == 0 {
            flows.note_all(&filter.drain_events()?, set, &capture_name);
            flows.note_all(
                &quic_events(&mut quic, &matcher, policy),
                set,
                &capture_name,
            );
            quic.beat(true)?;
        }
    }
    flows.note_all(&filter.drain_events()?, set, &capture_name);
    flows.note_all(
        &quic_events(&mut quic, &matcher, policy),
        set,
        &capture_name,
    );
    Ok(Replay {
        flows: flows.list,
        stats,
    })
}

fn quic_events(quic: &mut Judge, matcher: &Matcher, policy: Policy) -> Vec<Event> {
    quic.drain(matcher, policy)
        .into_iter()
        .filter_map(|j| j.event)
        .collect()
}

/// Flows in the order their first event came, one entry per client and server.
#[derive(Default)]
struct Flows {
    list: Vec<FlowVerdict>,
    index: HashMap<(String, String, String), usize>,
}

impl Flows {
    fn note_all(&mut self, events: &[Event], set: &RuleSet, capture: &str) {
        for event in events {
            self.note(event, set, capture);
        }
    }

    /// Several events may come for one flow (a retransmitted hello, a second hello after a
    /// HelloRetryRequest): the flow keeps its first name and its most severe verdict.
    fn note(&mut self, event: &Event, set: &RuleSet, capture: &str) {
        let reason = reason_from_u32(u32::from(event.reason));
        if !carries_hello(reason) {
            return;
        }
        let flow = &event.flow;
        let client = events::endpoint(events::addr(flow, true), flow.sport);
        let server = events::endpoint(events::addr(flow, false), flow.dport);
        let transport = events::transport(flow.proto);
        let sni = events::sni(event);
        let action = EventAction::from_u8(event.action);
        let severity = action.map_or(0, severity);
        let action = action.map_or("unknown", EventAction::name);
        let reason = reason.name();
        let app = (event.app != NO_APP)
            .then(|| set.apps.get(usize::from(event.app)))
            .flatten()
            .map(|a| a.name.clone());
        let key = (client.clone(), server.clone(), transport.clone());
        if let Some(&i) = self.index.get(&key) {
            let seen = &mut self.list[i];
            if seen.sni.is_none() {
                seen.sni = sni;
            }
            if severity > seen.severity {
                seen.severity = severity;
                seen.action = action;
                seen.reason = reason;
                seen.app = app;
            }
            return;
        }
        self.index.insert(key, self.list.len());
        self.list.push(FlowVerdict {
            capture: capture.to_owned(),
            client,
            server,
            transport,
            sni,
            app,
            action,
            reason,
            severity,
        });
    }
}

/// Whether an event's packet was (part of) a `ClientHello`. With `trace_all` the program also
/// reports handshakes it judged to be something else, such as the server's hello in the
/// other direction; those flows carried no `ClientHello` and are not listed.
fn carries_hello(reason: Reason) -> bool {
    !matches!(
        reason,
        Reason::NotIp
            | Reason::OtherProtocol
            | Reason::UdpPortNotInspected
            | Reason::HeaderMalformed
            | Reason::IpFragment
            | Reason::TcpNoPayload
            | Reason::TcpPortNotInspected
            | Reason::TcpNotHandshake
            | Reason::NotClientHello
    )
}

/// Blocking verdicts outrank monitoring, which outranks passing.
fn severity(action: EventAction) -> u8 {
    match action {
        EventAction::Drop | EventAction::Reject => 3,
        EventAction::Monitor => 2,
        EventAction::Pass => 1,
    }
}

fn write_json(out: &mut impl io::Write, flows: &[FlowVerdict]) -> io::Result<()> {
    for flow in flows {
        serde_json::to_writer(&mut *out, flow)?;
        out.write_all(b"\n")?;
    }
    Ok(())
}

/// An aligned table with a header; with several captures, each table under its file name.
fn write_table(
    out: &mut impl io::Write,
    capture: Option<&str>,
    flows: &[FlowVerdict],
) -> io::Result<()> {
    const HEADER: [&str; 7] = [
        "CLIENT",
        "SERVER",
        "TRANSPORT",
        "ACTION",
        "APP",
        "REASON",
        "SNI",
    ];
    let rows: Vec<[&str; 7]> = flows
        .iter()
        .map(|f| {
            [
                f.client.as_str(),
                f.server.as_str(),
                f.transport.as_str(),
                f.action,
                f.app.as_deref().unwrap_or("-"),
                f.reason,
                f.sni.as_deref().unwrap_or("-"),
            ]
        })
        .collect();
    let mut widths = HEADER.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    if let Some(capture) = capture {
        writeln!(out, "{capture}:")?;
    }
    for row in std::iter::once(&HEADER).chain(&rows) {
        let mut line = String::new();
        for (i, (cell, w)) in row.iter().zip(widths).enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                let _ = write!(line, "{cell:<w$}  ");
            }
        }
        writeln!(out, "{}", line.trim_end())?;
    }
    Ok(())
}

/// The line on stderr that says what became of every record.
fn summary(path: &str, replay: &Replay) -> String {
    let s = &replay.stats;
    let skipped: u64 = s.skipped_link.values().sum();
    let mut skipped_text = format!("{skipped} skipped by link type");
    if skipped > 0 {
        let per_type: Vec<String> = s
            .skipped_link
            .iter()
            .map(|(t, n)| format!("{n} {}", capture::linktype_name(*t)))
            .collect();
        let _ = write!(skipped_text, " ({})", per_type.join(", "));
    }
    let mut parts = vec![
        format!("{} read", count(s.read, "packet")),
        format!("{} run", s.run),
        skipped_text,
    ];
    if s.not_ip > 0 {
        parts.push(format!("{} not IP", s.not_ip));
    }
    if s.truncated > 0 {
        parts.push(format!("{} shorter than their link header", s.truncated));
    }
    if s.too_large > 0 {
        parts.push(format!(
            "{} too large for a test run (offloaded segments)",
            s.too_large
        ));
    }
    if let Some((record, why)) = &s.unreadable {
        parts.push(format!("unreadable from record {record} on ({why})"));
    }
    format!(
        "{path}: {}; {} with a ClientHello",
        parts.join(", "),
        count(replay.flows.len() as u64, "flow")
    )
}

fn count(n: u64, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use filter_common::{FlowKey, Reason};

    fn event(sport: u16, action: EventAction, app: u16, sni: &str) -> Event {
        let mut name = [0u8; filter_common::name::NAME_BUF];
        name[..sni.len()].copy_from_slice(sni.as_bytes());
        let mut saddr = [0u8; 16];
        saddr[..4].copy_from_slice(&[10, 0, 0, 1]);
        let mut daddr = [0u8; 16];
        daddr[..4].copy_from_slice(&[192, 0, 2, 7]);
        Event {
            ts_ns: 0,
            ifindex: 1,
            app,
            action: action as u8,
            reason: match action {
                EventAction::Pass => Reason::HelloAllowed,
                EventAction::Monitor => Reason::HelloMonitored,
                _ => Reason::HelloBlocked,
            } as u8,
            flow: FlowKey {
                saddr,
                daddr,
                sport,
                dport: 443,
                family: 4,
                proto: 6,
                _pad: [0; 2],
            },
            sni_len: sni.len() as u16,
            flags: 0,
            _pad0: 0,
            vlan: 0,
            _pad1: 0,
            sni: name,
        }
    }

    fn rules() -> RuleSet {
        let config = Config::parse(
            Path::new("/nonexistent/replay.toml"),
            "[apps.tiktok]\naction = \"drop\"\ndomains = [\"tiktok.com\"]\n",
        )
        .unwrap();
        RuleSet::compile(&config).unwrap()
    }

    #[test]
    fn one_line_per_flow_with_its_first_name_and_most_severe_verdict() {
        let set = rules();
        let mut flows = Flows::default();
        flows.note_all(
            &[
                event(40000, EventAction::Pass, NO_APP, ""),
                event(40001, EventAction::Pass, NO_APP, "example.org"),
                event(40000, EventAction::Drop, 0, "www.tiktok.com"),
                event(40000, EventAction::Pass, NO_APP, "later.example"),
            ],
            &set,
            "c.pcap",
        );
        let [a, b] = flows.list.as_slice() else {
            panic!("two flows expected: {:?}", flows.list);
        };
        assert_eq!(a.client, "10.0.0.1:40000");
        assert_eq!(a.server, "192.0.2.7:443");
        assert_eq!(a.sni.as_deref(), Some("www.tiktok.com"));
        assert_eq!((a.action, a.reason), ("drop", "hello_blocked"));
        assert_eq!(a.app.as_deref(), Some("tiktok"));
        assert_eq!(b.sni.as_deref(), Some("example.org"));
        assert_eq!((b.action, b.app.as_deref()), ("pass", None));
    }

    #[test]
    fn handshakes_that_are_not_client_hellos_are_not_flows() {
        let mut server_hello = event(40000, EventAction::Pass, NO_APP, "");
        server_hello.reason = Reason::NotClientHello as u8;
        let mut flows = Flows::default();
        flows.note(&server_hello, &rules(), "c.pcap");
        assert!(flows.list.is_empty(), "{:?}", flows.list);
    }

    #[test]
    fn ipv6_endpoints_are_bracketed() {
        let mut addr = [0u8; 16];
        addr[..2].copy_from_slice(&[0x20, 0x01]);
        addr[15] = 1;
        let flow = filter_common::FlowKey {
            family: 6,
            saddr: addr,
            ..Default::default()
        };
        assert_eq!(
            events::endpoint(events::addr(&flow, true), 443),
            "[2001::1]:443"
        );
    }

    #[test]
    fn names_off_the_wire_are_escaped() {
        let e = event(1, EventAction::Pass, NO_APP, "a\nb\\c");
        assert_eq!(events::sni(&e).as_deref(), Some("a\\x0ab\\x5cc"));
    }

    #[test]
    fn json_lines_carry_the_documented_keys() {
        let set = rules();
        let mut flows = Flows::default();
        flows.note(&event(1, EventAction::Pass, NO_APP, ""), &set, "c.pcap");
        let mut out = Vec::new();
        write_json(&mut out, &flows.list).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        for key in [
            "client",
            "server",
            "transport",
            "sni",
            "app",
            "action",
            "reason",
        ] {
            assert!(v.get(key).is_some(), "{key} missing from {v}");
        }
        assert!(v["sni"].is_null() && v["app"].is_null());
        assert_eq!(v["transport"], "tcp");
    }

    #[test]
    fn the_table_is_aligned_under_its_header() {
        let set = rules();
        let mut flows = Flows::default();
        flows.note(
            &event(1, EventAction::Drop, 0, "www.tiktok.com"),
            &set,
            "c.pcap",
        );
        let mut out = Vec::new();
        write_table(&mut out, None, &flows.list).unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].find("SERVER"), lines[1].find("192.0.2.7"));
        assert_eq!(lines[0].find("SNI"), lines[1].find("www.tiktok.com"));
    }
}

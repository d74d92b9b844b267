//! Flow events as the daemon logs them: one record per blocked, monitored or uninspectable
//! flow, rate-limited so a flood cannot drown the log, with a count of what was held back.

use std::{
    fmt::Write as _,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    time::{Duration, Instant, SystemTime},
};

use filter_common::{Event, EventAction, FlowKey, NO_APP, reason_from_u32};

use crate::{
    identity::RuleSetId,
    privacy::ClientView,
    rules::{RuleIndex, RuleSet},
    syslog::{MsgId, Record, Severity},
};

/// The address of one side of a flow.
pub fn addr(flow: &FlowKey, source: bool) -> IpAddr {
    let raw = if source { flow.saddr } else { flow.daddr };
    if flow.family == 4 {
        IpAddr::V4(Ipv4Addr::new(raw[0], raw[1], raw[2], raw[3]))
    } else {
        IpAddr::V6(Ipv6Addr::from(raw))
    }
}

/// `ip:port`, IPv6 as `[addr]:port`.
pub fn endpoint(ip: IpAddr, port: u16) -> String {
    match ip {
        IpAddr::V4(a) => format!("{a}:{port}"),
        IpAddr::V6(a) => format!("[{a}]:{port}"),
    }
}

/// Bytes that came off the network, as text safe to print and log: anything but printable
/// ASCII (a space, a control character, a byte of a non-ASCII name) and `\` are written
/// `\xNN`, so a name can neither break a log line nor pass for another. Every name the
/// daemon and the CLI show from a packet goes through here.
pub fn escape_name(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len());
    for &b in bytes {
        if b.is_ascii_graphic() && b != b'\\' {
            s.push(char::from(b));
        } else {
            let _ = write!(s, "\\x{b:02x}");
        }
    }
    s
}

/// The server name of an event, escaped, if one was read.
pub fn sni(e: &Event) -> Option<String> {
    let len = usize::from(e.sni_len).min(e.sni.len());
    (len > 0).then(|| escape_name(&e.sni[..len]))
}

/// One log line for an event; `apps` names the app indexes, `client` is the client as the
/// privacy setting shows it.
pub fn line(e: &Event, apps: &[String], iface: &str, client: &ClientView) -> String {
    let mut s = format!(
        "event action={} app={} reason={} iface={iface} client={client} server={} sni={}",
        action_name(e),
        app_name(e, apps),
        reason_from_u32(u32::from(e.reason)).name(),
        endpoint(addr(&e.flow, false), e.flow.dport),
        sni(e).unwrap_or_else(|| "-".into()),
    );
    if e.vlan != 0 {
        let _ = write!(s, " vlan={}", e.vlan);
    }
    if e.flags & filter_common::EVENT_ECH != 0 {
        let _ = write!(s, " ech=yes");
    }
    if e.flags & filter_common::EVENT_SNI_LATER_SEGMENT != 0 {
        let _ = write!(s, " sni_segment=later");
    }
    if e.flow.proto == 17 {
        let _ = write!(s, " transport=quic");
    }
    if e.flags & filter_common::EVENT_MONITOR != 0 {
        let _ = write!(s, " mode=monitor");
    }
    s
}

/// How a flow of IP protocol `proto` carried its hello: `tcp` (TLS) or `quic` (a QUIC
/// Initial over UDP: the only UDP the program judges).
pub fn transport(proto: u8) -> String {
    match proto {
        6 => "tcp".to_owned(),
        17 => "quic".to_owned(),
        other => format!("ip-proto-{other}"),
    }
}

fn action_name(e: &Event) -> &'static str {
    EventAction::from_u8(e.action).map_or("?", EventAction::name)
}

fn app_name<'a>(e: &Event, apps: &'a [String]) -> &'a str {
    if e.app == NO_APP {
        "-"
    } else {
        apps.get(usize::from(e.app)).map_or("?", String::as_str)
    }
}

/// The `FLOW` record of an event: its line as text, and the same facts as structured data
/// (`client` and `client_port` only as far as the privacy setting shows them). `time` is
/// the event's wall-clock time.
pub fn record(
    e: &Event,
    apps: &[String],
    iface: &str,
    client: &ClientView,
    time: SystemTime,
) -> Record {
    let action = action_name(e);
    // Drops are what the ban is about; monitored and passed flows are information.
    let severity = if matches!(action, "drop" | "reject") {
        Severity::Notice
    } else {
        Severity::Info
    };
    let mut r = Record::new(MsgId::Flow, severity, line(e, apps, iface, client))
        .at(time)
        .param("action", action)
        .param("app", app_name(e, apps))
        .param("reason", reason_from_u32(u32::from(e.reason)).name())
        .param("iface", iface);
    if e.vlan != 0 {
        r = r.param("vlan", e.vlan);
    }
    if let Some(a) = &client.addr {
        r = r.param("client", a);
    }
    if let Some(p) = client.port {
        r = r.param("client_port", p);
    }
    r = r
        .param("server", addr(&e.flow, false))
        .param("server_port", e.flow.dport)
        .param(
            "proto",
            match e.flow.proto {
                6 => "tcp".to_owned(),
                17 => "udp".to_owned(),
                p => p.to_string(),
            },
        )
        .param("transport", transport(e.flow.proto));
    if let Some(name) = sni(e) {
        r = r.param("sni", name);
    }
    if e.flags & filter_common::EVENT_ECH != 0 {
        r = r.param("ech", "yes");
    }
    if e.flags & filter_common::EVENT_SNI_LATER_SEGMENT != 0 {
        r = r.param("sni_segment", "later");
    }
    // The action is what enforcement would have done; this says it was not done.
    if e.flags & filter_common::EVENT_MONITOR != 0 {
        r = r.param("mode", "monitor");
    }
    r
}

/// The rule set in force as FLOW records name it.
pub struct RulesInForce<'a> {
    pub set: &'a RuleSet,
    pub index: &'a RuleIndex,
    pub id: &'a RuleSetId,
}

/// Adds what a FLOW record says of the rule set: `rule`, the rule the name matched (the
/// program reports the app; its rule is found again by name, the longest of that app's
/// rules that covers it), and `rules_sha256`, the rule set's hash cut to
/// [`crate::identity::SHORT_HEX`] digits ([`RuleSetId::short`]).
pub fn with_rules(mut r: Record, e: &Event, rules: &RulesInForce) -> Record {
    if e.app != NO_APP {
        let len = usize::from(e.sni_len).min(e.sni.len());
        let rule = std::str::from_utf8(&e.sni[..len])
            .ok()
            .and_then(|host| rules.index.rule(rules.set, usize::from(e.app), host));
        if let Some(rule) = rule {
            r = r.param("rule", &rule.name);
        }
    }
    r.param("rules_sha256", rules.id.short())
}

/// Converts the program's `CLOCK_MONOTONIC` timestamps to wall-clock time by the offset
/// between the two clocks measured once, at start (a later step of the wall clock, by NTP
/// say, is not followed: event times stay consistent with each other).
#[derive(Clone, Copy, Debug)]
pub struct WallClock {
    /// Wall-clock nanoseconds since the epoch minus monotonic nanoseconds.
    offset_ns: i128,
}

impl WallClock {
    pub fn measure() -> Self {
        let wall = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        let mono = crate::filter::monotonic_ns();
        Self {
            offset_ns: i128::try_from(wall).unwrap_or(0) - i128::from(mono),
        }
    }

    /// The wall-clock time of a `CLOCK_MONOTONIC` timestamp.
    pub fn wall(self, monotonic_ns: u64) -> SystemTime {
        let ns = (i128::from(monotonic_ns) + self.offset_ns).max(0);
        SystemTime::UNIX_EPOCH + Duration::from_nanos(u64::try_from(ns).unwrap_or(u64::MAX))
    }
}

/// At most `per_second` events pass each second; the rest are counted.
pub struct RateLimit {
    per_second: u32,
    window: Instant,
    passed: u32,
    suppressed: u64,
}

impl RateLimit {
    pub fn new(per_second: u32) -> Self {
        Self {
            per_second,
            window: Instant::now(),
            passed: 0,
            suppressed: 0,
        }
    }

    /// Whether the next event may be logged; a new second returns the count held back in
    /// the last one through `take_suppressed`.
    pub fn allow(&mut self, now: Instant) -> bool {
        if now.duration_since(self.window) >= Duration::from_secs(1) {
            self.window = now;
            self.passed = 0;
        }
        if self.passed < self.per_second {
            self.passed += 1;
            true
        } else {
            self.suppressed += 1;
            false
        }
    }

    /// Events held back since the last call.
    pub fn take_suppressed(&mut self) -> u64 {
        std::mem::take(&mut self.suppressed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limit_counts_what_it_holds_back() {
        let mut r = RateLimit::new(3);
        let t = Instant::now();
        let passed = (0..10).filter(|_| r.allow(t)).count();
        assert_eq!(passed, 3);
        assert_eq!(r.take_suppressed(), 7);
        assert_eq!(r.take_suppressed(), 0);
        assert!(r.allow(t + Duration::from_secs(1)));
    }

    #[test]
    fn endpoints_read_like_the_tools_print_them() {
        let mut f = FlowKey {
            family: 4,
            sport: 40000,
            dport: 443,
            ..FlowKey::default()
        };
        f.saddr[..4].copy_from_slice(&[10, 1, 1, 2]);
        assert_eq!(endpoint(addr(&f, true), f.sport), "10.1.1.2:40000");
        let v6 = FlowKey {
            family: 6,
            daddr: Ipv6Addr::LOCALHOST.octets(),
            ..FlowKey::default()
        };
        assert_eq!(endpoint(addr(&v6, false), 443), "[::1]:443");
    }

    fn event(name: &[u8]) -> Event {
        let mut e = Event {
            ts_ns: 0,
            ifindex: 3,
            app: 0,
            action: EventAction::Drop as u8,
            reason: filter_common::Reason::HelloBlocked as u8,
            flow: FlowKey {
                family: 4,
                proto: 6,
                sport: 40000,
                dport: 443,
                ..FlowKey::default()
            },
            sni_len: name.len() as u16,
            flags: filter_common::EVENT_ECH,
            _pad0: 0,
            vlan: 0,
            _pad1: 0,
            sni: [0; filter_common::name::NAME_BUF],
        };
        e.flow.saddr[..4].copy_from_slice(&[10, 1, 1, 2]);
        e.flow.daddr[..4].copy_from_slice(&[10, 1, 2, 2]);
        e.sni[..name.len()].copy_from_slice(name);
        e
    }

    #[test]
    fn events_become_a_line_and_structured_data() {
        let apps = ["tiktok".to_string()];
        let client = ClientView {
            addr: Some("10.1.1.0/24".into()),
            port: None,
        };
        let e = event(b"www.tiktok.com");
        let r = record(&e, &apps, "lan0", &client, SystemTime::UNIX_EPOCH);
        assert_eq!(
            r.text,
            "event action=drop app=tiktok reason=hello_blocked iface=lan0 client=10.1.1.0/24 server=10.1.2.2:443 sni=www.tiktok.com ech=yes"
        );
        assert_eq!(r.msgid, MsgId::Flow);
        assert_eq!(r.severity, Severity::Notice);
        for (k, v) in [
            ("action", "drop"),
            ("app", "tiktok"),
            ("reason", "hello_blocked"),
            ("iface", "lan0"),
            ("client", "10.1.1.0/24"),
            ("server", "10.1.2.2"),
            ("server_port", "443"),
            ("proto", "tcp"),
            ("sni", "www.tiktok.com"),
            ("ech", "yes"),
        ] {
            assert_eq!(r.get(k), Some(v), "{k}");
        }
        assert_eq!(r.get("client_port"), None);
        assert_eq!(r.get("mode"), None, "enforced: no marker");
        assert_eq!(r.get("vlan"), None, "untagged: no VLAN");
        let tagged = Event { vlan: 42, ..e };
        let r2 = record(&tagged, &apps, "lan0", &client, SystemTime::UNIX_EPOCH);
        assert_eq!(r2.get("vlan"), Some("42"));
        assert!(
            r2.text.contains(" sni=www.tiktok.com vlan=42 "),
            "{}",
            r2.text
        );
        let dry_run = Event {
            flags: filter_common::EVENT_MONITOR,
            ..e
        };
        let r = record(&dry_run, &apps, "lan0", &client, SystemTime::UNIX_EPOCH);
        assert_eq!(
            (r.get("action"), r.get("mode")),
            (Some("drop"), Some("monitor"))
        );
        assert!(r.text.ends_with(" mode=monitor"), "{}", r.text);
        let none = ClientView {
            addr: None,
            port: None,
        };
        let r = record(&e, &apps, "lan0", &none, SystemTime::UNIX_EPOCH);
        assert!(r.text.contains(" client=- "), "{}", r.text);
        assert_eq!(r.get("client"), None);
    }

    #[test]
    fn flow_records_name_the_rule_and_the_rule_set() {
        let cfg = crate::config::Config::parse(
            std::path::Path::new("/x/f.toml"),
            "[apps.tiktok]\naction = \"drop\"\ndomains = [\"tiktok.com\", \"p16-*.tiktok.com\"]\n",
        )
        .unwrap();
        let set = RuleSet::compile(&cfg).unwrap();
        let id = RuleSetId::of(&cfg, &set);
        let rules = RulesInForce {
            set: &set,
            index: &RuleIndex::new(&set),
            id: &id,
        };
        let none = ClientView {
            addr: None,
            port: None,
        };
        let apps = ["tiktok".to_string()];
        let rule_of = |name: &[u8], app| {
            let e = Event { app, ..event(name) };
            let r = record(&e, &apps, "lan0", &none, SystemTime::UNIX_EPOCH);
            let r = with_rules(r, &e, &rules);
            assert_eq!(r.get("rules_sha256"), Some(&id.sha256[..12]));
            r.get("rule").map(str::to_owned)
        };
        assert_eq!(rule_of(b"WWW.TikTok.com", 0).as_deref(), Some("tiktok.com"));
        assert_eq!(
            rule_of(b"a.p16-va.tiktok.com", 0).as_deref(),
            Some("p16-*.tiktok.com")
        );
        assert_eq!(rule_of(b"www.tiktok.com", NO_APP), None);
        assert_eq!(rule_of(b"", 0), None);
    }

    #[test]
    fn event_times_convert_to_wall_clock() {
        let clock = WallClock::measure();
        let now = crate::filter::monotonic_ns();
        let wall = clock.wall(now - 2_000_000_000);
        let ago = SystemTime::now().duration_since(wall).unwrap();
        assert!(
            ago > Duration::from_millis(1900) && ago < Duration::from_millis(2500),
            "{ago:?}"
        );
    }

    #[test]
    fn hostile_names_cannot_break_the_line() {
        let e = event(b"a b\n]\"\\x\xff");
        assert_eq!(sni(&e).unwrap(), r#"a\x20b\x0a]"\x5cx\xff"#);
    }
}

//! Flow events as the daemon logs them: one line per blocked, monitored or uninspectable
//! flow, rate-limited so a flood cannot drown the log, with a count of what was held back.

use std::{
    fmt::Write as _,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    time::{Duration, Instant},
};

use filter_common::{Event, EventAction, FlowKey, NO_APP, reason_from_u32};

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

/// The server name of an event, if one was read (lossy for non-UTF-8 bytes).
pub fn sni(e: &Event) -> Option<String> {
    let len = usize::from(e.sni_len).min(e.sni.len());
    (len > 0).then(|| String::from_utf8_lossy(&e.sni[..len]).into_owned())
}

/// One log line for an event; `apps` names the app indexes.
pub fn line(e: &Event, apps: &[String], iface: &str) -> String {
    let action = EventAction::from_u8(e.action).map_or("?", EventAction::name);
    let app = if e.app == NO_APP {
        "-"
    } else {
        apps.get(usize::from(e.app)).map_or("?", String::as_str)
    };
    let mut s = format!(
        "event action={action} app={app} reason={} iface={iface} client={} server={} sni={}",
        reason_from_u32(u32::from(e.reason)).name(),
        endpoint(addr(&e.flow, true), e.flow.sport),
        endpoint(addr(&e.flow, false), e.flow.dport),
        sni(e).unwrap_or_else(|| "-".into()),
    );
    if e.flags & filter_common::EVENT_ECH != 0 {
        let _ = write!(s, " ech=yes");
    }
    if e.flags & filter_common::EVENT_SNI_LATER_SEGMENT != 0 {
        let _ = write!(s, " sni_segment=later");
    }
    s
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
}

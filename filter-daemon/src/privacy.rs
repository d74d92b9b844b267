//! Client addresses as the logs show them: in full, cut to a network prefix, replaced by a
//! keyed hash whose key lives only in memory and is renewed, or left out.

use std::{
    fmt::{self, Write as _},
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    time::{Duration, Instant},
};

use ring::{
    hmac,
    rand::{SecureRandom, SystemRandom},
};

/// Default prefix kept of an IPv4 client address: the client's /24 (a site or a subnet,
/// rarely one person).
pub const V4_PREFIX_DEFAULT: u8 = 24;
/// Default prefix kept of an IPv6 client address: the site's /48. The low 64 bits of an
/// address may be derived from the device's MAC address (EUI-64), so they never appear.
pub const V6_PREFIX_DEFAULT: u8 = 48;
/// Default lifetime of the key of hashed addresses.
pub const HASH_KEY_ROTATION_DEFAULT_HOURS: u64 = 24;
/// Hex digits of a hashed address: 64 bits tell the clients of a large network apart and are
/// far too few to be reversed by anyone holding the key later (the key is never kept).
const HASH_HEX_DIGITS: usize = 16;

/// How client addresses appear in flow events.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientPrivacy {
    /// Address and port.
    Full,
    /// The network of the address (`10.1.2.0/24`, `2001:db8:1::/48`), no port.
    Truncated { v4_prefix: u8, v6_prefix: u8 },
    /// `h:` and a keyed hash of the address (HMAC-SHA256, truncated), no port. The random key
    /// is renewed every `rotation` and never written anywhere: the same client keeps its
    /// token within one key period only.
    Hashed { rotation: Duration },
    /// No client at all.
    None,
}

impl Default for ClientPrivacy {
    fn default() -> Self {
        Self::Truncated {
            v4_prefix: V4_PREFIX_DEFAULT,
            v6_prefix: V6_PREFIX_DEFAULT,
        }
    }
}

impl ClientPrivacy {
    /// The configuration's name of the level.
    pub fn name(self) -> &'static str {
        match self {
            Self::Full => "full",
            Self::Truncated { .. } => "truncated",
            Self::Hashed { .. } => "hashed",
            Self::None => "none",
        }
    }
}

/// A client as one event shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientView {
    /// Address, network or token; `None` with privacy `none`.
    pub addr: Option<String>,
    /// Only with privacy `full`.
    pub port: Option<u16>,
}

impl fmt::Display for ClientView {
    /// `10.1.1.2:40000`, `[2001:db8::2]:40000`, `10.1.1.0/24`, `h:0123456789abcdef` or `-`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.addr, self.port) {
            (Some(a), Some(p)) if a.contains(':') => write!(f, "[{a}]:{p}"),
            (Some(a), Some(p)) => write!(f, "{a}:{p}"),
            (Some(a), None) => f.write_str(a),
            (None, _) => f.write_str("-"),
        }
    }
}

/// Applies a [`ClientPrivacy`] to client addresses, holding the current hash key.
pub struct ClientAnonymizer {
    privacy: ClientPrivacy,
    key: Option<(hmac::Key, Instant)>,
    random: SystemRandom,
}

impl ClientAnonymizer {
    pub fn new(privacy: ClientPrivacy) -> Self {
        Self {
            privacy,
            key: None,
            random: SystemRandom::new(),
        }
    }

    pub fn privacy(&self) -> ClientPrivacy {
        self.privacy
    }

    /// How the client `ip`:`port` appears in an event seen at `now`.
    pub fn view(&mut self, ip: IpAddr, port: u16, now: Instant) -> ClientView {
        match self.privacy {
            ClientPrivacy::Full => ClientView {
                addr: Some(ip.to_string()),
                port: Some(port),
            },
            ClientPrivacy::Truncated {
                v4_prefix,
                v6_prefix,
            } => ClientView {
                addr: Some(truncate(ip, v4_prefix, v6_prefix)),
                port: None,
            },
            ClientPrivacy::Hashed { rotation } => ClientView {
                addr: self.hash(ip, rotation, now),
                port: None,
            },
            ClientPrivacy::None => ClientView {
                addr: None,
                port: None,
            },
        }
    }

    /// `h:` and the first 64 bits of HMAC-SHA256(key, address bytes); `None` if the system
    /// has no randomness to make a key (the address is then left out, never shown).
    fn hash(&mut self, ip: IpAddr, rotation: Duration, now: Instant) -> Option<String> {
        let stale = self
            .key
            .as_ref()
            .is_none_or(|(_, born)| now.saturating_duration_since(*born) >= rotation);
        if stale {
            let mut bytes = [0u8; 32];
            self.key = self
                .random
                .fill(&mut bytes)
                .ok()
                .map(|()| (hmac::Key::new(hmac::HMAC_SHA256, &bytes), now));
        }
        let (key, _) = self.key.as_ref()?;
        // v4 and v4-mapped v6 of one client hash alike.
        let octets = match ip {
            IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
            IpAddr::V6(a) => a.octets(),
        };
        let tag = hmac::sign(key, &octets);
        let mut out = String::from("h:");
        for b in &tag.as_ref()[..HASH_HEX_DIGITS / 2] {
            let _ = write!(out, "{b:02x}");
        }
        Some(out)
    }
}

/// The network of `ip` with `v4_prefix` or `v6_prefix` bits kept, as `addr/len`.
pub fn truncate(ip: IpAddr, v4_prefix: u8, v6_prefix: u8) -> String {
    match ip {
        IpAddr::V4(a) => {
            let len = v4_prefix.min(32);
            let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
            format!("{}/{len}", Ipv4Addr::from(u32::from(a) & mask))
        }
        IpAddr::V6(a) => {
            let len = v6_prefix.min(128);
            let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
            format!("{}/{len}", Ipv6Addr::from(u128::from(a) & mask))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const V4: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 168, 37, 201));

    fn eui64() -> IpAddr {
        // A SLAAC address whose interface identifier carries the MAC 00:11:22:33:44:55.
        "2001:db8:aa:bb:211:22ff:fe33:4455".parse().unwrap()
    }

    #[test]
    fn truncation_keeps_only_the_prefix() {
        assert_eq!(truncate(V4, 24, 48), "192.168.37.0/24");
        assert_eq!(truncate(V4, 16, 48), "192.168.0.0/16");
        assert_eq!(truncate(V4, 0, 48), "0.0.0.0/0");
        assert_eq!(truncate(V4, 32, 48), "192.168.37.201/32");
        assert_eq!(truncate(eui64(), 24, 48), "2001:db8:aa::/48");
        assert_eq!(truncate(eui64(), 24, 64), "2001:db8:aa:bb::/64");
        assert_eq!(truncate(eui64(), 24, 0), "::/0");
        // The MAC-derived half never survives a prefix of 64 or less.
        assert!(!truncate(eui64(), 24, 64).contains("fe33"));
    }

    #[test]
    fn each_level_shows_what_it_promises() {
        let now = Instant::now();
        let view = |p, ip| ClientAnonymizer::new(p).view(ip, 40000, now).to_string();
        assert_eq!(view(ClientPrivacy::Full, V4), "192.168.37.201:40000");
        assert_eq!(
            view(ClientPrivacy::Full, eui64()),
            "[2001:db8:aa:bb:211:22ff:fe33:4455]:40000"
        );
        assert_eq!(view(ClientPrivacy::default(), V4), "192.168.37.0/24");
        assert_eq!(view(ClientPrivacy::default(), eui64()), "2001:db8:aa::/48");
        assert_eq!(view(ClientPrivacy::None, V4), "-");
        let hashed = ClientPrivacy::Hashed {
            rotation: Duration::from_hours(1),
        };
        let h = view(hashed, V4);
        assert!(h.starts_with("h:") && h.len() == 2 + HASH_HEX_DIGITS, "{h}");
        assert!(!h.contains("192") && !h.contains("40000"), "{h}");
    }

    #[test]
    fn hashes_are_stable_within_a_key_period_and_change_after() {
        let rotation = Duration::from_hours(1);
        let mut a = ClientAnonymizer::new(ClientPrivacy::Hashed { rotation });
        let t = Instant::now();
        let first = a.view(V4, 1, t);
        assert_eq!(a.view(V4, 2, t + Duration::from_secs(10)), first);
        assert_ne!(a.view(eui64(), 1, t), first);
        // A new key: the same client gets another token (2^-64 chance of a false failure).
        assert_ne!(a.view(V4, 1, t + rotation), first);
        // Another daemon (another key) never produces the same tokens.
        let mut b = ClientAnonymizer::new(ClientPrivacy::Hashed { rotation });
        assert_ne!(b.view(V4, 1, t), first);
    }
}

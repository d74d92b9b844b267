//! Where records go: the `destination` setting parsed (`local`, `none`, `udp://`, `tcp://`,
//! `tls://` with default ports) and written back the same way.

use std::fmt;

/// Where records go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Destination {
    /// journald's native protocol where journald owns local logging, otherwise `/dev/log`.
    Local,
    /// Nowhere: stderr only.
    Off,
    /// RFC 5424 over UDP (RFC 5426), one message per datagram.
    Udp { host: String, port: u16 },
    /// RFC 5424 over TCP with octet counting (RFC 6587).
    Tcp { host: String, port: u16 },
    /// RFC 5424 over TLS (RFC 5425).
    Tls { host: String, port: u16 },
}

impl Destination {
    /// `local`, `none`, `udp://HOST[:PORT]`, `tcp://HOST[:PORT]` or `tls://HOST[:PORT]`;
    /// an IPv6 host in brackets. Ports default to 514 (UDP, TCP) and 6514 (TLS, RFC 5425).
    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "local" => return Ok(Self::Local),
            "none" => return Ok(Self::Off),
            _ => {}
        }
        let (scheme, rest) = s.split_once("://").ok_or_else(|| {
            format!(
                "destination {s:?} is not \"local\", \"none\", udp://HOST:PORT, \
                 tcp://HOST:PORT or tls://HOST:PORT"
            )
        })?;
        let default_port = match scheme {
            "udp" | "tcp" => 514,
            "tls" => 6514,
            _ => return Err(format!("destination {s:?}: unknown scheme {scheme:?}")),
        };
        let (host, port) = split_host_port(rest)
            .map(|(h, p)| (h, p.unwrap_or(default_port)))
            .ok_or_else(|| format!("destination {s:?}: expected HOST, HOST:PORT or [V6]:PORT"))?;
        let host = host.to_owned();
        Ok(match scheme {
            "udp" => Self::Udp { host, port },
            "tcp" => Self::Tcp { host, port },
            _ => Self::Tls { host, port },
        })
    }
}

/// `host`, `host:port`, `[v6]` or `[v6]:port`; `None` if malformed (empty host, port not a
/// non-zero `u16`, a path, or a bare IPv6 address).
fn split_host_port(s: &str) -> Option<(&str, Option<u16>)> {
    let (host, port) = if let Some(inner) = s.strip_prefix('[') {
        let (h, rest) = inner.split_once(']')?;
        h.parse::<std::net::Ipv6Addr>().ok()?;
        let port = match rest {
            "" => None,
            r => Some(r.strip_prefix(':')?),
        };
        (h, port)
    } else {
        let (h, port) = match s.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        };
        let name = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_');
        if !h.bytes().all(name) {
            return None;
        }
        (h, port)
    };
    if host.is_empty() {
        return None;
    }
    match port {
        None => Some((host, None)),
        Some(p) => Some((host, Some(p.parse::<u16>().ok().filter(|&p| p > 0)?))),
    }
}

impl fmt::Display for Destination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hp = |h: &str, p: u16| {
            if h.contains(':') {
                format!("[{h}]:{p}")
            } else {
                format!("{h}:{p}")
            }
        };
        match self {
            Self::Local => f.write_str("local"),
            Self::Off => f.write_str("none"),
            Self::Udp { host, port } => write!(f, "udp://{}", hp(host, *port)),
            Self::Tcp { host, port } => write!(f, "tcp://{}", hp(host, *port)),
            Self::Tls { host, port } => write!(f, "tls://{}", hp(host, *port)),
        }
    }
}

// Every form of the setting, with and without ports, and the ones refused.
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations_parse_with_default_ports() {
        let d = |s| Destination::parse(s);
        assert_eq!(d("local"), Ok(Destination::Local));
        assert_eq!(d("none"), Ok(Destination::Off));
        assert_eq!(
            d("udp://10.0.0.5:5514"),
            Ok(Destination::Udp {
                host: "10.0.0.5".into(),
                port: 5514
            })
        );
        assert_eq!(
            d("tcp://logs.example.org"),
            Ok(Destination::Tcp {
                host: "logs.example.org".into(),
                port: 514
            })
        );
        assert_eq!(
            d("tls://[2001:db8::5]"),
            Ok(Destination::Tls {
                host: "2001:db8::5".into(),
                port: 6514
            })
        );
        assert_eq!(
            d("tls://[2001:db8::5]:7000").unwrap().to_string(),
            "tls://[2001:db8::5]:7000"
        );
        for bad in [
            "syslog.example.org",
            "http://x:1",
            "udp://",
            "udp://x:0",
            "udp://x:70000",
            "udp://2001:db8::5",
            "tcp://x:514/path",
            "tcp://[nope]:514",
        ] {
            assert!(d(bad).is_err(), "{bad} parsed");
        }
    }
}

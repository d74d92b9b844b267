//! The `[logging]` and `[metrics]` sections: where records go, how much of a client they
//! show, and where `/metrics` listens.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use super::{
    checks::{checked_numbers, line_of},
    raw::{RawLogging, RawMetrics, StderrSetting},
};
use crate::{
    Error,
    privacy::{self, ClientPrivacy},
    syslog::{self, Facility, sink::Destination},
};

/// The `[logging]` section: where records go and how much of a client they show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Logging {
    pub destination: Destination,
    /// CA certificates for `tls://`, resolved relative to the configuration file, with the
    /// line of the configuration that names them.
    pub ca_file: Option<(PathBuf, usize)>,
    pub facility: Facility,
    pub app_name: String,
    pub client_privacy: ClientPrivacy,
    /// Flow events logged per second at most; the rest are counted.
    pub events_per_second: u32,
    /// Whether records also go to stderr.
    pub stderr: bool,
    /// The private enterprise number of every SD-ID (`sni-filter@N`); by default RFC 5612's
    /// documentation number, 32473.
    pub sd_enterprise_number: u32,
}

/// Default APP-NAME and journal `SYSLOG_IDENTIFIER`.
pub const APP_NAME_DEFAULT: &str = "sni-filter";
/// Default bound of flow events logged per second.
pub const EVENTS_PER_SECOND_DEFAULT: u64 = 100;
/// `sd_enterprise_number`'s default: the number RFC 5612 reserves for documentation.
pub const SD_ENTERPRISE_DEFAULT: u32 = 32_473;
/// The largest `sd_enterprise_number`: five digits keep every SD-ID (the longest is
/// `uninspectable_quic_version@NNNNN`) within RFC 5424's 32 characters.
pub const SD_ENTERPRISE_MAX: u32 = 99_999;

impl Default for Logging {
    fn default() -> Self {
        Self {
            destination: Destination::Local,
            ca_file: None,
            facility: Facility::DAEMON,
            app_name: APP_NAME_DEFAULT.into(),
            client_privacy: ClientPrivacy::default(),
            events_per_second: EVENTS_PER_SECOND_DEFAULT as u32,
            stderr: true,
            sd_enterprise_number: SD_ENTERPRISE_DEFAULT,
        }
    }
}

/// The `[metrics]` section: where `/metrics` listens, if anywhere.
pub(super) fn parse_metrics(
    raw: &RawMetrics,
    at: &impl Fn(usize) -> String,
) -> Result<Option<SocketAddr>, Error> {
    let Some(l) = &raw.listen else {
        return Ok(None);
    };
    l.get_ref().trim().parse().map(Some).map_err(|_| {
        Error::config(
            at(l.span().start),
            format!(
                "metrics listen {:?} is not ADDRESS:PORT (e.g. \"127.0.0.1:9464\")",
                l.get_ref()
            ),
        )
    })
}

/// The `[logging]` section, checked key by key.
pub(super) fn parse_logging(
    raw: &RawLogging,
    text: &str,
    at: &impl Fn(usize) -> String,
    base: &Path,
) -> Result<Logging, Error> {
    let mut l = Logging::default();
    if let Some(d) = &raw.destination {
        l.destination = Destination::parse(d.get_ref().trim())
            .map_err(|e| Error::config(at(d.span().start), e))?;
    }
    if let Some(f) = &raw.ca_file {
        l.ca_file = Some((base.join(f.get_ref()), line_of(text, f.span().start)));
    }
    if let Some(f) = &raw.facility {
        l.facility = Facility::from_name(f.get_ref()).ok_or_else(|| {
            Error::config(
                at(f.span().start),
                format!(
                    "facility {:?} is not one of {}",
                    f.get_ref(),
                    Facility::names()
                ),
            )
        })?;
    }
    if let Some(a) = &raw.app_name {
        let name = a.get_ref();
        // RFC 5424 §6.2.5: 1 to 48 printable US-ASCII characters.
        if name.is_empty()
            || name.len() > syslog::APP_NAME_MAX
            || !name.bytes().all(|b| b.is_ascii_graphic())
        {
            return Err(Error::config(
                at(a.span().start),
                format!(
                    "app_name {name:?} must be 1 to {} printable ASCII characters without spaces",
                    syslog::APP_NAME_MAX
                ),
            ));
        }
        l.app_name.clone_from(name);
    }
    // Key rotation up to a year: longer keys make hashed addresses a lasting identifier.
    let [v4_prefix, v6_prefix, rotation_hours, events_per_second] = checked_numbers(
        [
            (
                &raw.privacy_v4_prefix,
                "privacy_v4_prefix",
                privacy::V4_PREFIX_DEFAULT.into(),
                (0, 32),
            ),
            (
                &raw.privacy_v6_prefix,
                "privacy_v6_prefix",
                privacy::V6_PREFIX_DEFAULT.into(),
                (0, 128),
            ),
            (
                &raw.hash_key_rotation_hours,
                "hash_key_rotation_hours",
                privacy::HASH_KEY_ROTATION_DEFAULT_HOURS,
                (1, 8760),
            ),
            (
                &raw.events_per_second,
                "events_per_second",
                EVENTS_PER_SECOND_DEFAULT,
                (1, 100_000),
            ),
        ],
        at,
    )?;
    let (v4_prefix, v6_prefix) = (v4_prefix as u8, v6_prefix as u8);
    l.events_per_second = events_per_second as u32;
    l.sd_enterprise_number = parse_enterprise_number(raw, at)?;
    l.client_privacy = match raw
        .client_privacy
        .as_ref()
        .map(|p| (p.get_ref().as_str(), p))
    {
        None | Some(("truncated", _)) => ClientPrivacy::Truncated {
            v4_prefix,
            v6_prefix,
        },
        Some(("full", _)) => ClientPrivacy::Full,
        Some(("hashed", _)) => ClientPrivacy::Hashed {
            rotation: Duration::from_hours(rotation_hours),
        },
        Some(("none", _)) => ClientPrivacy::None,
        Some((other, p)) => {
            return Err(Error::config(
                at(p.span().start),
                format!(
                    "client_privacy {other:?} is not \"full\", \"truncated\", \"hashed\" or \"none\""
                ),
            ));
        }
    };
    l.stderr = parse_stderr(raw.stderr.as_ref(), &l.destination, at)?;
    Ok(l)
}

/// `sd_enterprise_number`: positive, and at most [`SD_ENTERPRISE_MAX`].
fn parse_enterprise_number(raw: &RawLogging, at: &impl Fn(usize) -> String) -> Result<u32, Error> {
    let key = &raw.sd_enterprise_number;
    let range = (1, SD_ENTERPRISE_MAX.into());
    let [n] = checked_numbers(
        [(
            key,
            "sd_enterprise_number",
            SD_ENTERPRISE_DEFAULT.into(),
            range,
        )],
        at,
    )?;
    Ok(n as u32)
}

/// `stderr`: true, false, or "auto" (the default, [`stderr_by_default`]).
fn parse_stderr(
    raw: Option<&toml::Spanned<StderrSetting>>,
    destination: &Destination,
    at: &impl Fn(usize) -> String,
) -> Result<bool, Error> {
    match raw.map(|s| (s.get_ref(), s.span().start)) {
        Some((StderrSetting::Set(on), _)) => Ok(*on),
        Some((StderrSetting::Word(w), p)) if w != "auto" => Err(Error::config(
            at(p),
            format!("stderr {w:?} is not true, false or \"auto\""),
        )),
        _ => Ok(stderr_by_default(
            destination,
            journal_stream().as_deref(),
            stderr_id(),
        )),
    }
}

/// `stderr = "auto"` (the default): records go to stderr too, unless stderr is the journal
/// (systemd says so in `$JOURNAL_STREAM`: the device and inode of the stream it connected)
/// and the records already reach the journal by `destination = "local"`: then every line
/// would be there twice.
fn stderr_by_default(
    destination: &Destination,
    journal_stream: Option<&str>,
    stderr: Option<(u64, u64)>,
) -> bool {
    let is_journal = journal_stream
        .and_then(|s| s.split_once(':'))
        .and_then(|(dev, ino)| Some((dev.parse::<u64>().ok()?, ino.parse::<u64>().ok()?)))
        .is_some_and(|j| Some(j) == stderr);
    !(is_journal && *destination == Destination::Local)
}

fn journal_stream() -> Option<String> {
    std::env::var("JOURNAL_STREAM").ok()
}

/// The device and inode of this process's stderr.
fn stderr_id() -> Option<(u64, u64)> {
    // SAFETY: a zeroed stat is a valid buffer for fstat to fill.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: fd 2 and a buffer of the right type; failure is checked.
    (unsafe { libc::fstat(2, &raw mut st) } == 0).then_some((st.st_dev, st.st_ino))
}

// The [logging] and [metrics] sections: their defaults, every key, and refusals by line.
#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::{parse, refused_at};

    #[test]
    fn stderr_is_off_by_default_only_where_it_is_the_journal_and_records_go_there() {
        let me = Some((24, 1234));
        let journal = Some;
        let local = Destination::Local;
        assert!(!stderr_by_default(&local, journal("24:1234"), me));
        // Another stream, no stream, a garbled variable: stderr is not the journal.
        assert!(stderr_by_default(&local, journal("24:999"), me));
        assert!(stderr_by_default(&local, None, me));
        assert!(stderr_by_default(&local, journal("24"), me));
        // Records sent elsewhere (or nowhere) still reach the journal through stderr.
        assert!(stderr_by_default(&Destination::Off, journal("24:1234"), me));
        let e = refused_at("[logging]\nstderr = \"sometimes\"\n", 2);
        assert!(e.contains("stderr"), "{e}");
        assert!(!parse("[logging]\nstderr = false\n").unwrap().logging.stderr);
        assert!(parse("[logging]\nstderr = true\n").unwrap().logging.stderr);
    }

    #[test]
    fn logging_and_metrics_default_to_local_truncated_and_off() {
        let c = parse("").unwrap();
        assert_eq!(c.logging, Logging::default());
        assert_eq!(c.logging.destination, Destination::Local);
        assert_eq!(
            c.logging.client_privacy,
            ClientPrivacy::Truncated {
                v4_prefix: 24,
                v6_prefix: 48
            }
        );
        assert_eq!(c.logging.events_per_second, 100);
        assert!(c.logging.stderr);
        // RFC 5612's documentation number.
        assert_eq!(c.logging.sd_enterprise_number, 32473);
        assert_eq!(c.metrics_listen, None);
        assert_eq!(parse("[metrics]\n").unwrap().metrics_listen, None);
    }

    #[test]
    fn logging_keys_parse() {
        let c = parse(
            "[logging]\ndestination = \"tls://logs.example.org\"\nca_file = \"ca.pem\"\n\
             facility = \"local3\"\napp_name = \"gw-filter\"\nclient_privacy = \"hashed\"\n\
             hash_key_rotation_hours = 6\nevents_per_second = 20\nstderr = false\n\
             sd_enterprise_number = 64999\n[metrics]\nlisten = \"[::1]:9464\"\n",
        )
        .unwrap();
        let l = &c.logging;
        assert_eq!(
            l.destination,
            Destination::Tls {
                host: "logs.example.org".into(),
                port: 6514
            }
        );
        assert_eq!(
            l.ca_file,
            Some((PathBuf::from("/etc/sni-filter/ca.pem"), 3))
        );
        assert_eq!(l.facility.name(), "local3");
        assert_eq!(l.app_name, "gw-filter");
        assert_eq!(
            l.client_privacy,
            ClientPrivacy::Hashed {
                rotation: Duration::from_hours(6)
            }
        );
        assert_eq!(l.events_per_second, 20);
        assert!(!l.stderr);
        assert_eq!(l.sd_enterprise_number, 64_999);
        assert_eq!(c.metrics_listen, Some("[::1]:9464".parse().unwrap()));
        let c = parse("[logging]\nprivacy_v4_prefix = 16\nprivacy_v6_prefix = 56\n").unwrap();
        assert_eq!(
            c.logging.client_privacy,
            ClientPrivacy::Truncated {
                v4_prefix: 16,
                v6_prefix: 56
            }
        );
    }

    #[test]
    fn logging_errors_name_file_and_line() {
        // Each key alone on line 2 of its section, with what the refusal must quote.
        let logging: &[(&str, &str)] = &[
            ("destnation = \"local\"", "destnation"),
            ("destination = \"udp://x:99999\"", "udp://x:99999"),
            ("facility = \"local9\"", "local9"),
            ("app_name = \"two words\"", "app_name"),
            ("client_privacy = \"anonymous\"", "anonymous"),
            ("privacy_v6_prefix = 129", "privacy_v6_prefix = 129"),
            ("hash_key_rotation_hours = 0", "hash_key_rotation_hours"),
            ("events_per_second = 0", "events_per_second"),
            (
                "sd_enterprise_number = 0",
                "sd_enterprise_number = 0 is outside 1..=99999",
            ),
            (
                "sd_enterprise_number = 100000",
                "sd_enterprise_number = 100000",
            ),
            ("sd_enterprise_number = -1", "integer `-1`"),
        ];
        let metrics: &[(&str, &str)] = &[
            ("listen = \"localhost\"", "localhost"),
            ("port = 9464", "port"),
        ];
        for (section, keys) in [("logging", logging), ("metrics", metrics)] {
            for (key, needle) in keys {
                let text = format!("[{section}]\n{key}\n");
                let e = refused_at(&text, 2);
                assert!(e.contains(needle), "{text:?}: {e}");
            }
        }
        // A blank line before the key: the line named is still the key's.
        let e = refused_at("[logging]\n\ndestination = \"syslog.example.org\"\n", 3);
        assert!(e.contains("destination"), "{e}");
    }
}

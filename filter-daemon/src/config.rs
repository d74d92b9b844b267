//! The configuration file (`filter.toml`): parsed strictly (unknown keys are errors) and
//! validated, with every error naming the file, the line and the reason.

use std::{
    collections::BTreeMap,
    fs,
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use ipnet::IpNet;
use serde::Deserialize;
use toml::Spanned;

use crate::{
    Error,
    privacy::{self, ClientPrivacy},
    syslog::{self, Facility, sink::Destination},
};

/// How the program is attached to an interface.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum XdpMode {
    /// In the driver, before the kernel allocates anything: the production mode.
    #[default]
    Native,
    /// In the kernel's generic path: works on any interface, slower.
    Generic,
}

impl XdpMode {
    pub fn name(self) -> &'static str {
        match self {
            Self::Native => "native",
            Self::Generic => "generic",
        }
    }
}

/// What an app's rules do to a matching flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ActionSetting {
    Drop,
    Reject,
    Monitor,
}

impl From<ActionSetting> for filter_common::Action {
    fn from(a: ActionSetting) -> Self {
        match a {
            ActionSetting::Drop => Self::Drop,
            ActionSetting::Reject => Self::Reject,
            ActionSetting::Monitor => Self::Monitor,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    filter: RawFilter,
    #[serde(default)]
    apps: BTreeMap<String, Spanned<RawApp>>,
    #[serde(default)]
    logging: RawLogging,
    #[serde(default)]
    metrics: RawMetrics,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLogging {
    destination: Option<Spanned<String>>,
    ca_file: Option<Spanned<String>>,
    facility: Option<Spanned<String>>,
    app_name: Option<Spanned<String>>,
    client_privacy: Option<Spanned<String>>,
    privacy_v4_prefix: Option<Spanned<u64>>,
    privacy_v6_prefix: Option<Spanned<u64>>,
    hash_key_rotation_hours: Option<Spanned<u64>>,
    events_per_second: Option<Spanned<u64>>,
    stderr: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMetrics {
    listen: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFilter {
    #[serde(default)]
    interfaces: Vec<Spanned<String>>,
    #[serde(default)]
    xdp_mode: XdpMode,
    #[serde(default)]
    generic_fallback: bool,
    #[serde(default)]
    detach_on_stop: bool,
    summary_interval_secs: Option<Spanned<u64>>,
    rules_max: Option<Spanned<u64>>,
    #[serde(default)]
    uninspectable: Uninspectable,
    #[serde(default)]
    inspected_ports: Vec<Spanned<u64>>,
    flow_idle_secs: Option<Spanned<u64>>,
    verdicts_max: Option<Spanned<u64>>,
    hellos_max: Option<Spanned<u64>>,
    #[serde(default)]
    quic: Quic,
    quic_ports: Option<Spanned<Vec<Spanned<u64>>>>,
    #[serde(default)]
    quic_hold: bool,
    /// `None`: on (a missing `[filter]` table must not turn it off).
    hello_fast_path: Option<bool>,
}

/// What happens to QUIC (HTTP/3 over UDP) on the QUIC ports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Quic {
    /// The daemon reads the server name of each client Initial and writes the verdict.
    #[default]
    Inspect,
    /// Every Initial is dropped: clients fall back to TCP, where the program judges them.
    Block,
    /// QUIC passes uninspected (counted).
    Allow,
}

impl Quic {
    pub const fn mode(self) -> u8 {
        match self {
            Self::Inspect => filter_common::QUIC_INSPECT,
            Self::Block => filter_common::QUIC_BLOCK,
            Self::Allow => filter_common::QUIC_ALLOW,
        }
    }

    pub const fn name(self) -> &'static str {
        match self {
            Self::Inspect => "inspect",
            Self::Block => "block",
            Self::Allow => "allow",
        }
    }
}

/// The UDP port of HTTP/3 (RFC 9114 §3.1 uses the authority's port; 443 in practice).
pub const QUIC_PORT_DEFAULT: u16 = 443;

/// What happens to a packet of a hello the program cannot read completely.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Uninspectable {
    /// Drop it: no banned app gets through a gap. TCP resends, so a lossy link recovers.
    #[default]
    Drop,
    /// Pass it, counted by reason.
    Pass,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawApp {
    action: ActionSetting,
    #[serde(default = "yes")]
    enabled: bool,
    #[serde(default)]
    lists: Vec<Spanned<String>>,
    #[serde(default)]
    domains: Vec<Spanned<String>>,
    #[serde(default)]
    exempt_sources: Vec<Spanned<String>>,
    #[serde(default)]
    interfaces: Vec<Spanned<String>>,
    #[serde(default)]
    vlans: Vec<Spanned<u64>>,
}

fn yes() -> bool {
    true
}

/// A validated configuration.
// Each bool is one on/off key of the file, under its own name.
#[allow(clippy::struct_excessive_bools)]
#[derive(Debug, Clone)]
pub struct Config {
    pub path: PathBuf,
    /// The file's bytes, hashed to tell whether a running filter uses this configuration.
    pub text: String,
    pub interfaces: Vec<String>,
    pub xdp_mode: XdpMode,
    pub generic_fallback: bool,
    /// Whether a stopping daemon takes the filter off its interfaces. Off by default: the
    /// filter stays in force across restarts and upgrades, and `sni-filter unload` removes it.
    pub detach_on_stop: bool,
    pub summary_interval_secs: u64,
    pub rules_max: u32,
    pub uninspectable: Uninspectable,
    /// Inspected TCP destination ports; empty means all.
    pub inspected_ports: Vec<u16>,
    pub flow_idle_secs: u64,
    pub verdicts_max: u32,
    pub hellos_max: u32,
    pub quic: Quic,
    /// UDP destination ports inspected for QUIC (1 to `QUIC_PORTS_MAX`).
    pub quic_ports: Vec<u16>,
    /// Initials of flows not judged yet are dropped until the verdict exists.
    pub quic_hold: bool,
    /// Hellos whole in one segment are read straight from the packet; `false`: every hello
    /// goes through the general walker (the same verdicts, slower), to rule the fast path
    /// out when diagnosing.
    pub hello_fast_path: bool,
    pub apps: Vec<App>,
    pub logging: Logging,
    /// Where `/metrics` listens; `None`: off.
    pub metrics_listen: Option<SocketAddr>,
}

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
}

/// Default APP-NAME and journal `SYSLOG_IDENTIFIER`.
pub const APP_NAME_DEFAULT: &str = "sni-filter";
/// Default bound of flow events logged per second.
pub const EVENTS_PER_SECOND_DEFAULT: u64 = 100;

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
        }
    }
}

/// A blocked flow silent this long is forgotten (its ports may be reused).
pub const FLOW_IDLE_DEFAULT_SECS: u64 = 120;

#[derive(Debug, Clone)]
pub struct App {
    pub name: String,
    pub action: ActionSetting,
    pub enabled: bool,
    /// Rule lists, resolved relative to the configuration file, each with the line of the
    /// configuration that names it.
    pub lists: Vec<(PathBuf, usize)>,
    /// Inline domains with their line in the configuration.
    pub domains: Vec<(String, usize)>,
    /// Client networks the app's rules do not apply to.
    pub exempt_sources: Vec<IpNet>,
    /// Interfaces the app applies on; empty: all.
    pub interfaces: Vec<String>,
    /// VLAN IDs the app applies on (the innermost tag); empty: tagged or not, any.
    pub vlans: Vec<u16>,
}

fn valid_interface_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 15 && !name.contains(['/', ' ', '\0'])
}

fn parse_app(
    name: String,
    app: Spanned<RawApp>,
    text: &str,
    at: &impl Fn(usize) -> String,
    base: &Path,
) -> Result<App, Error> {
    let span = app.span();
    let app = app.into_inner();
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(Error::config(
            at(span.start),
            format!("app name {name:?} may only use letters, digits, '-' and '_'"),
        ));
    }
    if app.lists.is_empty() && app.domains.is_empty() {
        return Err(Error::config(
            at(span.start),
            format!("app {name:?} has no lists and no domains"),
        ));
    }
    let lists = app
        .lists
        .iter()
        .map(|l| (base.join(l.get_ref()), line_of(text, l.span().start)))
        .collect();
    let domains = app
        .domains
        .iter()
        .map(|d| (d.get_ref().clone(), line_of(text, d.span().start)))
        .collect();
    let mut exempt_sources = Vec::new();
    for e in &app.exempt_sources {
        let raw = e.get_ref().trim();
        // A bare address is a network of one host.
        let net = raw
            .parse::<IpNet>()
            .or_else(|_| raw.parse::<std::net::IpAddr>().map(IpNet::from))
            .map_err(|_| {
                Error::config(
                    at(e.span().start),
                    format!("{raw:?} is not an address or a CIDR network"),
                )
            })?;
        exempt_sources.push(net.trunc());
    }
    let mut interfaces = Vec::new();
    for i in &app.interfaces {
        if !valid_interface_name(i.get_ref()) {
            return Err(Error::config(
                at(i.span().start),
                format!("{:?} is not a Linux interface name", i.get_ref()),
            ));
        }
        interfaces.push(i.get_ref().clone());
    }
    let mut vlans = Vec::new();
    for v in &app.vlans {
        // VLAN IDs 0 and 4095 are reserved (IEEE 802.1Q).
        match u16::try_from(*v.get_ref()) {
            Ok(id @ 1..=4094) => vlans.push(id),
            _ => {
                return Err(Error::config(
                    at(v.span().start),
                    format!("VLAN ID {} is outside 1..=4094", v.get_ref()),
                ));
            }
        }
    }
    Ok(App {
        name,
        action: app.action,
        enabled: app.enabled,
        lists,
        domains,
        exempt_sources,
        interfaces,
        vlans,
    })
}

/// A number key as read, with its place in the file.
type NumberKey = Option<Spanned<u64>>;

/// A number key's value (or `default` when absent), checked against its range; errors name
/// the key's line.
fn checked_number(
    at: &impl Fn(usize) -> String,
) -> impl Fn(&NumberKey, &str, u64, (u64, u64)) -> Result<u64, Error> + '_ {
    move |v, name, default, range| {
        let Some(v) = v else { return Ok(default) };
        let n = *v.get_ref();
        if n < range.0 || n > range.1 {
            return Err(Error::config(
                at(v.span().start),
                format!("{name} = {n} is outside {}..={}", range.0, range.1),
            ));
        }
        Ok(n)
    }
}

/// The `[metrics]` section: where `/metrics` listens, if anywhere.
fn parse_metrics(
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
fn parse_logging(
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
    let number = checked_number(at);
    let v4_prefix = number(
        &raw.privacy_v4_prefix,
        "privacy_v4_prefix",
        privacy::V4_PREFIX_DEFAULT.into(),
        (0, 32),
    )? as u8;
    let v6_prefix = number(
        &raw.privacy_v6_prefix,
        "privacy_v6_prefix",
        privacy::V6_PREFIX_DEFAULT.into(),
        (0, 128),
    )? as u8;
    // Up to a year: longer keys make hashed addresses a lasting identifier.
    let rotation_hours = number(
        &raw.hash_key_rotation_hours,
        "hash_key_rotation_hours",
        privacy::HASH_KEY_ROTATION_DEFAULT_HOURS,
        (1, 8760),
    )?;
    l.events_per_second = number(
        &raw.events_per_second,
        "events_per_second",
        EVENTS_PER_SECOND_DEFAULT,
        (1, 100_000),
    )? as u32;
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
    if let Some(s) = raw.stderr {
        l.stderr = s;
    }
    Ok(l)
}

/// Default interval between counter summaries.
pub const SUMMARY_INTERVAL_DEFAULT: u64 = 60;

fn bytecount(bytes: &[u8]) -> usize {
    bytes.split(|&b| b == b'\n').count() - 1
}

/// The 1-based line of a byte offset.
pub fn line_of(text: &str, offset: usize) -> usize {
    bytecount(&text.as_bytes()[..offset.min(text.len())]) + 1
}

fn parse_inspected_ports(
    ports: &[Spanned<u64>],
    at: &impl Fn(usize) -> String,
) -> Result<Vec<u16>, Error> {
    ports
        .iter()
        .map(|p| {
            u16::try_from(*p.get_ref())
                .ok()
                .filter(|&p| p > 0)
                .ok_or_else(|| {
                    Error::config(
                        at(p.span().start),
                        format!("port {} is not a TCP port (1..=65535)", p.get_ref()),
                    )
                })
        })
        .collect()
}

fn parse_quic_ports(
    raw: Option<&Spanned<Vec<Spanned<u64>>>>,
    at: &impl Fn(usize) -> String,
) -> Result<Vec<u16>, Error> {
    let Some(raw) = raw else {
        return Ok(vec![QUIC_PORT_DEFAULT]);
    };
    let max = filter_common::QUIC_PORTS_MAX;
    if raw.get_ref().is_empty() || raw.get_ref().len() > max {
        return Err(Error::config(
            at(raw.span().start),
            format!(
                "quic_ports lists {} ports; 1 to {max} are supported (to stop inspecting QUIC, set quic = \"allow\" or \"block\")",
                raw.get_ref().len()
            ),
        ));
    }
    let mut ports = Vec::new();
    for p in raw.get_ref() {
        let port = u16::try_from(*p.get_ref())
            .ok()
            .filter(|&p| p > 0)
            .ok_or_else(|| {
                Error::config(
                    at(p.span().start),
                    format!("port {} is not a UDP port (1..=65535)", p.get_ref()),
                )
            })?;
        if ports.contains(&port) {
            return Err(Error::config(
                at(p.span().start),
                format!("port {port} is listed twice in quic_ports"),
            ));
        }
        ports.push(port);
    }
    Ok(ports)
}

impl Config {
    pub fn load(path: &Path) -> Result<Self, Error> {
        let text = fs::read_to_string(path).map_err(|source| Error::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(path, &text)
    }

    pub fn parse(path: &Path, text: &str) -> Result<Self, Error> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| {
            let line = e.span().map_or(0, |s| line_of(text, s.start));
            Error::config(format!("{}:{line}", path.display()), e.message())
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        let at = |offset: usize| format!("{}:{}", path.display(), line_of(text, offset));

        let f = raw.filter;
        for iface in &f.interfaces {
            if !valid_interface_name(iface.get_ref()) {
                return Err(Error::config(
                    at(iface.span().start),
                    format!(
                        "interface name {:?} is not a valid Linux interface name",
                        iface.get_ref()
                    ),
                ));
            }
        }
        let number = checked_number(&at);
        let summary_interval_secs = number(
            &f.summary_interval_secs,
            "summary_interval_secs",
            SUMMARY_INTERVAL_DEFAULT,
            (1, 86_400),
        )?;
        let u32_max = u64::from(u32::MAX / 2);
        let rules_max = number(
            &f.rules_max,
            "rules_max",
            filter_common::RULES_DEFAULT_MAX.into(),
            (1, u32_max),
        )?;
        let flow_idle_secs = number(
            &f.flow_idle_secs,
            "flow_idle_secs",
            FLOW_IDLE_DEFAULT_SECS,
            (1, 86_400),
        )?;
        let verdicts_max = number(
            &f.verdicts_max,
            "verdicts_max",
            filter_common::VERDICTS_DEFAULT_MAX.into(),
            (16, u32_max),
        )?;
        let hellos_max = number(
            &f.hellos_max,
            "hellos_max",
            filter_common::HELLOS_DEFAULT_MAX.into(),
            (16, u32_max),
        )?;
        let inspected_ports = parse_inspected_ports(&f.inspected_ports, &at)?;
        let quic_ports = parse_quic_ports(f.quic_ports.as_ref(), &at)?;

        let mut apps = Vec::new();
        for (name, app) in raw.apps {
            apps.push(parse_app(name, app, text, &at, base)?);
        }
        if apps.len() >= filter_common::APPS_MAX as usize {
            return Err(Error::config(
                path.display(),
                format!(
                    "{} apps; at most {} are supported",
                    apps.len(),
                    filter_common::APPS_MAX - 1
                ),
            ));
        }
        Ok(Self {
            path: path.to_owned(),
            text: text.to_owned(),
            interfaces: f.interfaces.into_iter().map(Spanned::into_inner).collect(),
            xdp_mode: f.xdp_mode,
            generic_fallback: f.generic_fallback,
            detach_on_stop: f.detach_on_stop,
            summary_interval_secs,
            rules_max: rules_max as u32,
            uninspectable: f.uninspectable,
            inspected_ports,
            flow_idle_secs,
            verdicts_max: verdicts_max as u32,
            hellos_max: hellos_max as u32,
            quic: f.quic,
            quic_ports,
            quic_hold: f.quic_hold,
            hello_fast_path: f.hello_fast_path.unwrap_or(true),
            apps,
            logging: parse_logging(&raw.logging, text, &at, base)?,
            metrics_listen: parse_metrics(&raw.metrics, &at)?,
        })
    }

    /// A short fingerprint of the file, to tell which configuration a filter runs.
    pub fn fingerprint(&self) -> String {
        // FNV-1a 64 of the text: enough to tell files apart, not a security measure.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in self.text.bytes() {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        format!("{h:016x}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, String> {
        Config::parse(Path::new("/etc/sni-filter/filter.toml"), text).map_err(|e| e.to_string())
    }

    #[test]
    fn a_minimal_config_parses_with_defaults() {
        let c = parse("[apps.tiktok]\naction = \"drop\"\ndomains = [\"tiktok.com\"]\n").unwrap();
        assert_eq!(c.xdp_mode, XdpMode::Native);
        assert!(!c.generic_fallback);
        assert_eq!(c.summary_interval_secs, SUMMARY_INTERVAL_DEFAULT);
        assert_eq!(c.apps[0].domains, [("tiktok.com".to_string(), 3)]);
    }

    #[test]
    fn quic_settings_default_to_inspecting_443_and_are_checked() {
        let c = parse("[filter]\n").unwrap();
        assert_eq!(
            (c.quic, c.quic_ports.as_slice(), c.quic_hold),
            (Quic::Inspect, &[443][..], false)
        );
        let c = parse("[filter]\nquic = \"block\"\nquic_ports = [443, 8443]\nquic_hold = true\n")
            .unwrap();
        assert_eq!(
            (c.quic, c.quic_ports.as_slice(), c.quic_hold),
            (Quic::Block, &[443, 8443][..], true)
        );
        for (text, line, says) in [
            ("[filter]\nquic = \"maybe\"\n", 2, "maybe"),
            ("[filter]\nquic_ports = [443,\n 0]\n", 3, "not a UDP port"),
            ("[filter]\nquic_ports = [443, 443]\n", 2, "listed twice"),
            ("[filter]\nquic_ports = []\n", 2, "1 to 4"),
            ("[filter]\nquic_ports = [1, 2, 3, 4, 5]\n", 2, "1 to 4"),
        ] {
            let e = parse(text).unwrap_err();
            assert!(
                e.starts_with(&format!("/etc/sni-filter/filter.toml:{line}:")),
                "{text}: {e}"
            );
            assert!(e.contains(says), "{text}: {e}");
        }
    }

    #[test]
    fn the_hello_fast_path_is_on_unless_turned_off() {
        // Without a [filter] table, or without the key, it is on: only `false` turns it off.
        let minimal = "[apps.tiktok]\naction = \"drop\"\ndomains = [\"tiktok.com\"]\n";
        assert!(parse(minimal).unwrap().hello_fast_path);
        assert!(parse("[filter]\n").unwrap().hello_fast_path);
        assert!(
            !parse("[filter]\nhello_fast_path = false\n")
                .unwrap()
                .hello_fast_path
        );
        let e = parse("[filter]\n\nhello_fast_path = \"no\"\n").unwrap_err();
        assert!(e.starts_with("/etc/sni-filter/filter.toml:3:"), "{e}");
    }

    #[test]
    fn unknown_keys_are_refused_with_file_and_line() {
        let e = parse("[filter]\ninterfaces = [\"eth1\"]\nxdp_mdoe = \"native\"\n").unwrap_err();
        assert!(e.starts_with("/etc/sni-filter/filter.toml:3:"), "{e}");
        assert!(e.contains("xdp_mdoe"), "{e}");
    }

    #[test]
    fn bad_values_are_refused_with_the_line() {
        let e = parse("[apps.x]\naction = \"block\"\ndomains = [\"a.b\"]\n").unwrap_err();
        assert!(e.starts_with("/etc/sni-filter/filter.toml:2:"), "{e}");
        let e = parse("[apps.x]\naction = \"drop\"\n").unwrap_err();
        assert!(e.contains("no lists and no domains"), "{e}");
    }

    #[test]
    fn bad_interface_names_name_their_line() {
        let e = parse("[filter]\ninterfaces = [\"lan0\",\n \"a/b\"]\n").unwrap_err();
        assert!(
            e.starts_with("/etc/sni-filter/filter.toml:3:") && e.contains("a/b"),
            "{e}"
        );
    }

    #[test]
    fn numbers_out_of_range_name_their_line() {
        let e = parse("[filter]\ninterfaces = []\nsummary_interval_secs = 0\n").unwrap_err();
        assert!(e.starts_with("/etc/sni-filter/filter.toml:3:"), "{e}");
        assert!(e.contains("summary_interval_secs = 0"), "{e}");
        let e = parse("[filter]\ninspected_ports = [443,\n 70000]\n").unwrap_err();
        assert!(e.starts_with("/etc/sni-filter/filter.toml:3:"), "{e}");
        let c =
            parse("[filter]\ninspected_ports = [443, 8443]\nuninspectable = \"pass\"\n").unwrap();
        assert_eq!(c.inspected_ports, [443, 8443]);
        assert_eq!(c.uninspectable, Uninspectable::Pass);
        assert_eq!(parse("").unwrap().uninspectable, Uninspectable::Drop);
    }

    #[test]
    fn exemptions_and_scopes_are_checked() {
        let c = parse(
            "[apps.t]\naction = \"drop\"\ndomains = [\"t.com\"]\nexempt_sources = [\"10.0.5.7/24\", \"2001:db8::1\"]\ninterfaces = [\"wifi0\"]\nvlans = [42]\n",
        )
        .unwrap();
        let app = &c.apps[0];
        assert_eq!(app.exempt_sources[0].to_string(), "10.0.5.0/24");
        assert_eq!(app.exempt_sources[1].to_string(), "2001:db8::1/128");
        assert_eq!(
            (app.interfaces.as_slice(), app.vlans.as_slice()),
            (&["wifi0".to_string()][..], &[42][..])
        );
        let e = parse("[apps.t]\naction = \"drop\"\ndomains = [\"t.com\"]\nexempt_sources = [\"10.0.0.0/33\"]\n").unwrap_err();
        assert!(
            e.starts_with("/etc/sni-filter/filter.toml:4:") && e.contains("CIDR"),
            "{e}"
        );
        let e = parse("[apps.t]\naction = \"drop\"\ndomains = [\"t.com\"]\nvlans = [4095]\n")
            .unwrap_err();
        assert!(e.contains("4095"), "{e}");
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
        assert_eq!(c.metrics_listen, None);
        assert_eq!(parse("[metrics]\n").unwrap().metrics_listen, None);
    }

    #[test]
    fn logging_keys_parse() {
        let c = parse(
            "[logging]\ndestination = \"tls://logs.example.org\"\nca_file = \"ca.pem\"\n\
             facility = \"local3\"\napp_name = \"gw-filter\"\nclient_privacy = \"hashed\"\n\
             hash_key_rotation_hours = 6\nevents_per_second = 20\nstderr = false\n\
             [metrics]\nlisten = \"[::1]:9464\"\n",
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
        for (text, line, needle) in [
            ("[logging]\ndestnation = \"local\"\n", 2, "destnation"),
            (
                "[logging]\n\ndestination = \"syslog.example.org\"\n",
                3,
                "destination",
            ),
            (
                "[logging]\ndestination = \"udp://x:99999\"\n",
                2,
                "udp://x:99999",
            ),
            ("[logging]\nfacility = \"local9\"\n", 2, "local9"),
            ("[logging]\napp_name = \"two words\"\n", 2, "app_name"),
            (
                "[logging]\nclient_privacy = \"anonymous\"\n",
                2,
                "anonymous",
            ),
            (
                "[logging]\nprivacy_v6_prefix = 129\n",
                2,
                "privacy_v6_prefix = 129",
            ),
            (
                "[logging]\nhash_key_rotation_hours = 0\n",
                2,
                "hash_key_rotation_hours",
            ),
            ("[logging]\nevents_per_second = 0\n", 2, "events_per_second"),
            ("[metrics]\nlisten = \"localhost\"\n", 2, "localhost"),
            ("[metrics]\nport = 9464\n", 2, "port"),
        ] {
            let e = parse(text).unwrap_err();
            assert!(
                e.starts_with(&format!("/etc/sni-filter/filter.toml:{line}:")),
                "{text:?}: {e}"
            );
            assert!(e.contains(needle), "{text:?}: {e}");
        }
    }

    #[test]
    fn the_shipped_configuration_parses() {
        let path = Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../config/filter.toml"
        ));
        let c = Config::load(path).unwrap();
        assert_eq!(c.logging, Logging::default());
        assert_eq!(c.metrics_listen, None);
    }

    #[test]
    fn lists_resolve_next_to_the_config() {
        let c = parse("[apps.t]\naction = \"drop\"\nlists = [\"lists/t.txt\"]\n").unwrap();
        assert_eq!(
            c.apps[0].lists[0].0,
            Path::new("/etc/sni-filter/lists/t.txt")
        );
    }
}

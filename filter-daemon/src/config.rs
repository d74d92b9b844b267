//! The configuration file (`filter.toml`): parsed strictly (unknown keys are errors) and
//! validated, with every error naming the file, the line and the reason.

mod checks;
mod logging;
mod raw;
mod settings;
mod updates;

use std::{
    fs,
    net::SocketAddr,
    path::{Path, PathBuf},
};

use toml::Spanned;

pub use checks::line_of;
use checks::{
    check_interfaces, checked_numbers, parse_app, parse_inspected_ports, parse_quic_ports,
};
pub use logging::{
    APP_NAME_DEFAULT, EVENTS_PER_SECOND_DEFAULT, Logging, SD_ENTERPRISE_DEFAULT, SD_ENTERPRISE_MAX,
};
use logging::{parse_logging, parse_metrics};
use raw::RawConfig;
pub use settings::{ActionSetting, App, Mode, QUIC_PORT_DEFAULT, Quic, Uninspectable, XdpMode};
pub use updates::ListSource;
use updates::{parse_signatures, parse_updates};

use crate::Error;

/// A validated configuration.
// Each bool is one on/off key of the file, under its own name.
#[allow(clippy::struct_excessive_bools)]
#[derive(Debug, Clone)]
pub struct Config {
    pub path: PathBuf,
    /// The file's bytes.
    pub text: String,
    /// `enforce`, or `monitor`: the whole filter's dry run (nothing dropped or reset).
    pub mode: Mode,
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
    /// `[signatures]`: when not empty, every rule list must carry a signature by one of these.
    pub trusted_keys: Vec<crate::signature::TrustedKey>,
    /// `[updates.urls]`: the lists `update-lists` downloads.
    pub list_sources: Vec<ListSource>,
}

/// A blocked flow silent this long is forgotten (its ports may be reused).
pub const FLOW_IDLE_DEFAULT_SECS: u64 = 120;

/// Default interval between counter summaries.
pub const SUMMARY_INTERVAL_DEFAULT: u64 = 60;

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
        check_interfaces(&f.interfaces, &at)?;
        let u32_max = u64::from(u32::MAX / 2);
        let [
            summary_interval_secs,
            rules_max,
            flow_idle_secs,
            verdicts_max,
            hellos_max,
        ] = checked_numbers(
            [
                (
                    &f.summary_interval_secs,
                    "summary_interval_secs",
                    SUMMARY_INTERVAL_DEFAULT,
                    (1, 86_400),
                ),
                (
                    &f.rules_max,
                    "rules_max",
                    filter_common::RULES_DEFAULT_MAX.into(),
                    (1, u32_max),
                ),
                (
                    &f.flow_idle_secs,
                    "flow_idle_secs",
                    FLOW_IDLE_DEFAULT_SECS,
                    (1, 86_400),
                ),
                (
                    &f.verdicts_max,
                    "verdicts_max",
                    filter_common::VERDICTS_DEFAULT_MAX.into(),
                    (16, u32_max),
                ),
                (
                    &f.hellos_max,
                    "hellos_max",
                    filter_common::HELLOS_DEFAULT_MAX.into(),
                    (16, u32_max),
                ),
            ],
            &at,
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
            mode: f.mode,
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
            logging: parse_logging(&raw.logging, text, &at, base)?,
            metrics_listen: parse_metrics(&raw.metrics, &at)?,
            trusted_keys: parse_signatures(&raw.signatures, &at)?,
            list_sources: parse_updates(&raw.updates, &apps, &at, base, text)?,
            apps,
        })
    }
}

// Whole files parsed: the defaults, the [filter] and [apps] keys, and refusals that name
// the file and the line.
#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn parse(text: &str) -> Result<Config, String> {
        Config::parse(Path::new("/etc/sni-filter/filter.toml"), text).map_err(|e| e.to_string())
    }

    /// The error `text` draws, checked to name the file and `line`.
    pub(super) fn refused_at(text: &str, line: usize) -> String {
        let e = parse(text).unwrap_err();
        assert!(
            e.starts_with(&format!("/etc/sni-filter/filter.toml:{line}:")),
            "{text:?}: {e}"
        );
        e
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
            let e = refused_at(text, line);
            assert!(e.contains(says), "{text}: {e}");
        }
    }

    #[test]
    fn the_mode_enforces_unless_set_to_monitor() {
        assert_eq!(parse("").unwrap().mode, Mode::Enforce);
        assert_eq!(
            parse("[filter]\nmode = \"monitor\"\n").unwrap().mode,
            Mode::Monitor
        );
        let e = refused_at("[filter]\n\nmode = \"dry-run\"\n", 3);
        assert!(e.contains("dry-run") && e.contains("monitor"), "{e}");
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
        refused_at("[filter]\n\nhello_fast_path = \"no\"\n", 3);
    }

    #[test]
    fn unknown_keys_are_refused_with_file_and_line() {
        let e = refused_at(
            "[filter]\ninterfaces = [\"eth1\"]\nxdp_mdoe = \"native\"\n",
            3,
        );
        assert!(e.contains("xdp_mdoe"), "{e}");
    }

    #[test]
    fn bad_values_are_refused_with_the_line() {
        refused_at("[apps.x]\naction = \"block\"\ndomains = [\"a.b\"]\n", 2);
        let e = parse("[apps.x]\naction = \"drop\"\n").unwrap_err();
        assert!(e.contains("no lists and no domains"), "{e}");
    }

    #[test]
    fn bad_interface_names_name_their_line() {
        let e = refused_at("[filter]\ninterfaces = [\"lan0\",\n \"a/b\"]\n", 3);
        assert!(e.contains("a/b"), "{e}");
    }

    #[test]
    fn numbers_out_of_range_name_their_line() {
        let e = refused_at("[filter]\ninterfaces = []\nsummary_interval_secs = 0\n", 3);
        assert!(e.contains("summary_interval_secs = 0"), "{e}");
        refused_at("[filter]\ninspected_ports = [443,\n 70000]\n", 3);
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
        let e = refused_at(
            "[apps.t]\naction = \"drop\"\ndomains = [\"t.com\"]\nexempt_sources = [\"10.0.0.0/33\"]\n",
            4,
        );
        assert!(e.contains("CIDR"), "{e}");
        let e = parse("[apps.t]\naction = \"drop\"\ndomains = [\"t.com\"]\nvlans = [4095]\n")
            .unwrap_err();
        assert!(e.contains("4095"), "{e}");
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

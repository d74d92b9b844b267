//! The file as serde reads it: every section and key with its place in the text, unknown
//! keys refused. `Config::parse` checks these and turns them into the settings.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

use super::{ActionSetting, Mode, Quic, Uninspectable, XdpMode};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    #[serde(default)]
    pub(super) filter: RawFilter,
    #[serde(default)]
    pub(super) apps: BTreeMap<String, Spanned<RawApp>>,
    #[serde(default)]
    pub(super) logging: RawLogging,
    #[serde(default)]
    pub(super) metrics: RawMetrics,
    #[serde(default)]
    pub(super) signatures: super::updates::RawSignatures,
    #[serde(default)]
    pub(super) updates: super::updates::RawUpdates,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLogging {
    pub(super) destination: Option<Spanned<String>>,
    pub(super) ca_file: Option<Spanned<String>>,
    pub(super) facility: Option<Spanned<String>>,
    pub(super) app_name: Option<Spanned<String>>,
    pub(super) client_privacy: Option<Spanned<String>>,
    pub(super) privacy_v4_prefix: Option<Spanned<u64>>,
    pub(super) privacy_v6_prefix: Option<Spanned<u64>>,
    pub(super) hash_key_rotation_hours: Option<Spanned<u64>>,
    pub(super) events_per_second: Option<Spanned<u64>>,
    pub(super) stderr: Option<Spanned<StderrSetting>>,
    pub(super) sd_enterprise_number: Option<Spanned<u64>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMetrics {
    pub(super) listen: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFilter {
    #[serde(default)]
    pub(super) mode: Mode,
    #[serde(default)]
    pub(super) interfaces: Vec<Spanned<String>>,
    #[serde(default)]
    pub(super) xdp_mode: XdpMode,
    #[serde(default)]
    pub(super) generic_fallback: bool,
    #[serde(default)]
    pub(super) detach_on_stop: bool,
    pub(super) summary_interval_secs: Option<Spanned<u64>>,
    pub(super) rules_max: Option<Spanned<u64>>,
    #[serde(default)]
    pub(super) uninspectable: Uninspectable,
    #[serde(default)]
    pub(super) inspected_ports: Vec<Spanned<u64>>,
    pub(super) flow_idle_secs: Option<Spanned<u64>>,
    pub(super) verdicts_max: Option<Spanned<u64>>,
    pub(super) hellos_max: Option<Spanned<u64>>,
    #[serde(default)]
    pub(super) quic: Quic,
    pub(super) quic_ports: Option<Spanned<Vec<Spanned<u64>>>>,
    #[serde(default)]
    pub(super) quic_hold: bool,
    /// `None`: on (a missing `[filter]` table must not turn it off).
    pub(super) hello_fast_path: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawApp {
    pub(super) action: ActionSetting,
    #[serde(default = "yes")]
    pub(super) enabled: bool,
    #[serde(default)]
    pub(super) lists: Vec<Spanned<String>>,
    #[serde(default)]
    pub(super) domains: Vec<Spanned<String>>,
    #[serde(default)]
    pub(super) exempt_sources: Vec<Spanned<String>>,
    #[serde(default)]
    pub(super) interfaces: Vec<Spanned<String>>,
    #[serde(default)]
    pub(super) vlans: Vec<Spanned<u64>>,
}

fn yes() -> bool {
    true
}

/// `stderr = true | false | "auto"`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum StderrSetting {
    Set(bool),
    Word(String),
}

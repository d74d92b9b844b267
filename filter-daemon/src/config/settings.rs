//! The value types of the settings: how the program attaches, what an app's rules do, what
//! happens to QUIC and to hellos the program cannot read, and an app as validated.

use std::path::PathBuf;

use ipnet::IpNet;
use serde::Deserialize;

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

/// Whether the filter acts on its verdicts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Verdicts are carried out: blocked flows dropped, `reject` apps' clients reset.
    #[default]
    Enforce,
    /// A dry run of the whole filter: every verdict is made, counted and logged as in
    /// `enforce`, and every packet passes untouched (counted as `monitor_passed`).
    Monitor,
}

impl Mode {
    pub const fn name(self) -> &'static str {
        match self {
            Self::Enforce => "enforce",
            Self::Monitor => "monitor",
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

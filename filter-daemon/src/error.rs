//! The library's error type. Every variant carries what failed (a file, a map, an interface,
//! a program) and the error underneath, so a message always names both.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A configuration or rule-list problem: `at` is `file:line` (or the file alone).
    #[error("{at}: {reason}")]
    Config { at: String, reason: String },
    /// A rule list that cannot be read or holds a line that is not a rule: `at` is
    /// `file:line` of the list (or the configuration line naming a missing list).
    #[error("{at}: {reason}")]
    List { at: String, reason: String },
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The object or one of its programs could not be loaded; `detail` holds the verifier's
    /// last lines when the verifier refused it.
    #[error("loading the XDP program {program} failed: {detail}")]
    Load {
        program: &'static str,
        detail: String,
    },
    #[error("interface {iface}: {reason}")]
    Attach { iface: String, reason: String },
    /// A map the program should have is not in it (an object of another build).
    #[error("map {map} is missing from the program")]
    MapMissing { map: &'static str },
    /// A map operation failed: `what` says which (`reading`, `writing key 3`, `opening`...).
    #[error("map {map}: {what}: {source}")]
    Map {
        map: &'static str,
        what: String,
        source: aya::maps::MapError,
    },
    /// A pinned map or link of an instance could not be used.
    #[error("pinned {path}: {reason}")]
    Pinned { path: PathBuf, reason: String },
    /// Another live daemon runs the instance.
    #[error(
        "another daemon (pid {pid}) runs instance {instance:?}: stop it first, or pick another --instance"
    )]
    AlreadyRunning { instance: String, pid: u32 },
    /// The command needs a running daemon of the instance and there is none.
    #[error("no daemon runs instance {instance:?}: {reason}")]
    NotRunning { instance: String, reason: String },
    /// A system call the daemon needs failed: `what` says what it was doing.
    #[error("{what}: {source}")]
    System {
        what: String,
        source: std::io::Error,
    },
    /// The TLS setup of the syslog sink (its CA file or the client configuration).
    #[error("TLS {what}: {reason}")]
    Tls { what: String, reason: String },
    /// Dropping capabilities failed at `what`.
    #[error("dropping capabilities: {what}: {reason}")]
    Privileges { what: String, reason: String },
    #[error("writing the output: {0}")]
    Output(#[source] std::io::Error),
    /// The daemon refused a reload: its configuration is invalid, the running rules stay.
    #[error("the daemon (pid {pid}) refused the reload, the running rules stay in force: {reason}")]
    ReloadRefused { pid: u32, reason: String },
    /// A rule list's minisign signature is missing, malformed or made by no trusted key.
    #[error("{}: signature refused: {reason}", list.display())]
    Signature { list: PathBuf, reason: String },
    /// A signed rule list older than the one loaded (or on disk) was offered.
    #[error(
        "{}: version {offered} is older than {loaded}, the version in force: rollback refused",
        list.display()
    )]
    Rollback {
        list: PathBuf,
        loaded: String,
        offered: String,
    },
    /// A rule list could not be downloaded (`update-lists`): the server, the network or the
    /// HTTP status.
    #[error("downloading {url}: {reason}")]
    Download { url: String, reason: String },
}

/// Exit statuses beside 0 (success) and 2 (a usage error, clap's), from sysexits.h where one
/// fits, so that scripts and units can tell a bad configuration from a failure.
pub mod exit {
    /// Something failed: a system call, a map, the kernel refused the program.
    pub const FAILURE: u8 = 1;
    /// A file could not be read (`EX_NOINPUT`).
    pub const NO_INPUT: u8 = 66;
    /// The configuration or a rule list is invalid (`EX_CONFIG`); the unit does not restart
    /// a daemon that exits with it.
    pub const CONFIG: u8 = 78;
}

impl Error {
    pub fn config(at: impl std::fmt::Display, reason: impl std::fmt::Display) -> Self {
        Self::Config {
            at: at.to_string(),
            reason: reason.to_string(),
        }
    }

    /// A failed map operation: `map` is one of `filter_common::names`.
    pub fn map(map: &'static str, what: impl Into<String>, source: aya::maps::MapError) -> Self {
        Self::Map {
            map,
            what: what.into(),
            source,
        }
    }

    /// The exit status a command ends with on this error ([`exit`]).
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Config { .. }
            | Self::List { .. }
            | Self::ReloadRefused { .. }
            | Self::Signature { .. }
            | Self::Rollback { .. } => exit::CONFIG,
            Self::Read { .. } => exit::NO_INPUT,
            _ => exit::FAILURE,
        }
    }

    /// Why a reload was refused, as the `reason` label of
    /// `sni_filter_reload_failures_total`: `config` (the configuration file), `list` (a rule
    /// list), `signature` (a list's signature does not verify), `rollback` (a list older
    /// than the loaded one), `other` (anything else: a sink, the QUIC worker, a map).
    pub fn reload_reason(&self) -> &'static str {
        match self {
            Self::Config { .. } | Self::Read { .. } => "config",
            Self::List { .. } => "list",
            Self::Signature { .. } => "signature",
            Self::Rollback { .. } => "rollback",
            _ => "other",
        }
    }

    /// A failed system call, said as what the daemon was doing.
    pub fn system(what: impl Into<String>, source: std::io::Error) -> Self {
        Self::System {
            what: what.into(),
            source,
        }
    }
}

//! The library's error type. Every variant says what was wrong and where.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A configuration or rule-list problem, already formatted as `file:line: reason`.
    #[error("{0}")]
    Config(String),
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("loading the XDP program failed: {0}")]
    Load(String),
    #[error("interface {iface}: {reason}")]
    Attach { iface: String, reason: String },
    #[error("{0}")]
    Map(String),
    #[error("{0}")]
    State(String),
    #[error("writing the output: {0}")]
    Output(#[source] std::io::Error),
}

impl Error {
    pub fn config(at: impl std::fmt::Display, reason: impl std::fmt::Display) -> Self {
        Self::Config(format!("{at}: {reason}"))
    }
}

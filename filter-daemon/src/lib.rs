//! sni-filter's daemon and command line: configuration, rule lists, loading and attaching the
//! XDP program, and reading its counters. `main.rs` only parses arguments and dispatches.

pub mod build_info;
pub mod capture;
pub mod cmd;
pub mod config;
pub mod counters;
pub mod daemon;
pub mod error;
pub mod events;
pub mod fault;
pub mod filter;
pub mod identity;
pub mod iface;
pub mod metrics;
pub mod preflight;
pub mod privacy;
pub mod privileges;
pub mod quic;
pub mod rules;
pub mod shutdown;
pub mod signature;
pub mod state;
pub mod syslog;
pub mod versions;

pub use error::Error;

//! The namespace lab of sni-filter: client — gateway — server network namespaces, a real TLS
//! server, real clients, the daemon under test, and crafted `ClientHello`s and frames.
//!
//! Every namespace and process is held by a guard removed on `Drop`, so a failing test leaves
//! nothing behind; [`shutdown`] removes everything at once when a signal cuts a run short.
//! Building a lab needs root (namespaces, veth pairs, `ethtool`).

mod child;
mod curl;
mod daemon;
pub mod hello;
mod lab;
mod netns;
mod registry;
mod run;
mod scratch;
mod tls_server;

pub use child::ChildGuard;
pub use curl::{CURL_TIMEOUT, CurlOpts, CurlOutcome, curl};
pub use daemon::{ATTACHED_MARKER, Daemon};
pub use lab::{Lab, Node};
pub use netns::{Netns, netns_exec, run_in_netns};
pub use registry::shutdown;
pub use tls_server::{HTTPS_PORT, TlsServer, response_body};

/// Whether this process runs as root, which every lab needs.
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

//! The namespace lab of sni-filter: client — gateway — server network namespaces, a real TLS
//! server, real clients, the daemon under test, and crafted `ClientHello`s and frames.
//!
//! Every namespace and process is held by a guard removed on `Drop`, so a failing test leaves
//! nothing behind; [`shutdown`] removes everything at once when a signal cuts a run short.
//! Building a lab needs root (namespaces, veth pairs, `ethtool`).

mod bpf;
pub mod capture;
mod child;
mod clients;
pub mod craft;
mod curl;
mod daemon;
pub mod hello;
mod lab;
mod list_server;
mod netns;
pub mod quic;
pub mod quic_craft;
mod registry;
mod rsyslog;
mod run;
mod sandbox;
mod scratch;
mod status;
mod tls_server;
mod unit_file;
mod vlan;

pub use bpf::attach_xdp_pass;
pub use child::ChildGuard;
pub use clients::{ClientRun, FetchOpts, TlsClient, fetch};
pub use curl::{CURL_TIMEOUT, CurlOpts, CurlOutcome, curl};
pub use daemon::{ATTACHED_MARKER, Daemon};
pub use lab::{Lab, LabOptions, Node, Uplink};
pub use list_server::{LIST_PORT, ListServer};
pub use netns::{Netns, netns_exec, netns_list, run_in_netns};
pub use quic::{QUIC_PORT, QuicClient, QuicRequest, QuicRun, QuicServer, quic_fetch};
pub use rsyslog::{Listen, Rsyslog};
pub use scratch::ScratchDir;
pub use status::{Status, StatusRow};
pub use tls_server::{HTTPS_PORT, TlsServer, response_body};
pub use unit_file::{ServiceSandbox, syscall_group};
pub use vlan::VlanTagging;

/// Debian's python3 when present (a version manager's shim in `PATH` costs a start-up).
pub fn python3() -> &'static str {
    clients::python3()
}

/// Whether a process with this id exists.
pub fn process_exists(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// Whether this process runs as root, which every lab needs.
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Stops every process the lab started, deletes every namespace it created and removes its
/// temporary folders; guards created afterwards fail. For a SIGINT/SIGTERM handler that
/// exits right after. Returns the namespaces it deleted.
pub fn shutdown() -> Vec<String> {
    registry::shutdown(netns::delete)
}

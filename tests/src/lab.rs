//! The lab network: three namespaces, client — gateway — server, joined by two veth pairs, with
//! IPv4 and IPv6 routed through the gateway, where the filter attaches.
//!
//! Names are unique per lab (prefix, pid, counter), so labs of parallel tests and of runs one
//! after another never collide; a lab removes everything it made when dropped.

use std::ffi::OsStr;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::OwnedFd;
use std::process::Command;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::{Context as _, Result, bail, ensure};

use crate::bpf;
use crate::child::ChildGuard;
use crate::netns::{self, Netns, netns_exec};
use crate::vlan::VlanTagging;

mod uplink;
mod wiring;

pub use uplink::Uplink;

/// Linux interface names hold at most 15 bytes (`IFNAMSIZ` 16 with the NUL).
const IFNAME_MAX: usize = 15;
/// Characters of the prefix kept in interface names, so that they stay within `IFNAME_MAX`.
const IFNAME_PREFIX_MAX: usize = 4;
/// Longest prefix accepted: namespace names stay readable in `ip netns list`.
const PREFIX_MAX: usize = 12;

static NEXT_LAB: AtomicU32 = AtomicU32::new(0);

/// Most queues a lab's veth ends get: the kernel's veth accepts up to 4096, tests need a few.
const QUEUES_MAX: u16 = 64;

/// How a lab differs from the default one.
#[derive(Clone, Debug, Default)]
pub struct LabOptions {
    /// Receive and transmit queues of each end of the client — gateway veth pair; `None`
    /// (or 1) is one queue, as `ip link add` makes by default.
    pub client_link_queues: Option<u16>,
    /// Carry the client — gateway link's frames tagged with this 802.1Q VLAN id, in both
    /// directions, with the tag inside the frame (`txvlan` off on both ends) so that the
    /// filter on `gateway_client_if` sees it. The addresses stay on the veth ends.
    pub client_vlan: Option<u16>,
}

impl LabOptions {
    #[must_use]
    pub fn client_link_queues(mut self, queues: u16) -> Self {
        self.client_link_queues = Some(queues);
        self
    }

    #[must_use]
    pub fn client_vlan(mut self, vid: u16) -> Self {
        self.client_vlan = Some(vid);
        self
    }
}

/// One of the lab's three machines.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Node {
    Client,
    Gateway,
    Server,
}

/// A client — gateway — server lab in network namespaces.
///
/// ```text
///  client ns                 gateway ns (forwarding)                 server ns
///  [client_if] 10.N.1.2 ---- 10.N.1.1 [gateway_client_if]
///                                     [gateway_server_if] 10.N.2.1 ---- 10.N.2.2 [server_if]
///              fd00:N:1::2   fd00:N:1::1                 fd00:N:2::1    fd00:N:2::2
/// ```
/// The filter attaches at ingress of `gateway_client_if`.
///
/// [`LabOptions`] can give the client — gateway link several queues, or carry its frames
/// 802.1Q-tagged.
#[derive(Debug)]
pub struct Lab {
    name: String,
    // Detached first; the namespaces' deletion would remove them anyway.
    vlan: Option<VlanTagging>,
    client_xdp: Option<OwnedFd>,
    /// A process that holds the gateway's mount namespace (see [`Lab::gateway_host`]); it
    /// goes first, taking the pins of that namespace's bpffs, and so the filter, with it.
    gateway_host: OnceLock<ChildGuard>,
    // Each namespace guard kills whatever still runs inside before deleting it.
    client: Netns,
    gateway: Netns,
    server: Netns,
    client_if: String,
    gateway_client_if: String,
    gateway_server_if: String,
    server_if: String,
    subnet: u8,
    client_link_queues: u16,
}

impl Lab {
    /// Builds a lab whose namespaces are named `PREFIX-PID-COUNTER-{cl,gw,sv}`.
    ///
    /// `prefix` is ASCII letters and digits, at most 12; use distinct prefixes for runs that
    /// may overlap (the demo, each test suite) so that [`Lab::cleanup_stale`] stays targeted.
    pub fn new(prefix: &str) -> Result<Self> {
        Self::with_options(prefix, &LabOptions::default())
    }

    /// Like [`Lab::new`], with the client — gateway link built as `options` say.
    pub fn with_options(prefix: &str, options: &LabOptions) -> Result<Self> {
        netns::require_root()?;
        let queues = options.client_link_queues.unwrap_or(1);
        ensure!(
            (1..=QUEUES_MAX).contains(&queues),
            "client_link_queues {queues} must be 1 to {QUEUES_MAX}"
        );
        ensure!(
            !prefix.is_empty()
                && prefix.len() <= PREFIX_MAX
                && prefix.bytes().all(|b| b.is_ascii_alphanumeric()),
            "lab prefix {prefix:?} must be 1 to {PREFIX_MAX} ASCII letters or digits"
        );
        let pid = std::process::id();
        let counter = NEXT_LAB.fetch_add(1, Ordering::Relaxed);
        let tag = format!("{prefix}-{pid}-{counter}");
        let short = format!(
            "{}{}{}",
            &prefix[..prefix.len().min(IFNAME_PREFIX_MAX)],
            base36(pid),
            base36(counter)
        );
        let client_if = format!("{short}cl");
        let gateway_client_if = format!("{short}gwc");
        let gateway_server_if = format!("{short}gws");
        let server_if = format!("{short}sv");
        if gateway_client_if.len() > IFNAME_MAX {
            bail!("interface name {gateway_client_if} is longer than {IFNAME_MAX} bytes");
        }
        // Namespaces isolate the labs, so addresses only need to differ inside one lab; still,
        // spreading labs over subnets keeps their captures and logs apart.
        let subnet = ((pid.wrapping_mul(7).wrapping_add(counter)) % 254 + 1) as u8;

        let client = Netns::new(&format!("{tag}-cl"))?;
        let gateway = Netns::new(&format!("{tag}-gw"))?;
        let server = Netns::new(&format!("{tag}-sv"))?;
        let mut lab = Self {
            name: tag.clone(),
            vlan: None,
            client_xdp: None,
            gateway_host: OnceLock::new(),
            client,
            gateway,
            server,
            client_if,
            gateway_client_if,
            gateway_server_if,
            server_if,
            subnet,
            client_link_queues: queues,
        };
        lab.wire()
            .with_context(|| format!("cannot build the lab {tag}"))?;
        // After XDP_TX a veth wakes its peer's queue only if the peer runs an XDP program
        // of its own (the kernel's veth_xdp_flush): without one, a reset the filter sends
        // waits in the client's queue until some other frame arrives. A program that passes
        // everything makes the client's end deliver it at once, as a wire would.
        lab.client_xdp = Some(
            bpf::attach_xdp_pass(lab.client.name(), &lab.client_if)
                .with_context(|| format!("cannot build the lab {tag}"))?,
        );
        if let Some(vid) = options.client_vlan {
            lab.vlan = Some(
                lab.tag_client_link(vid)
                    .with_context(|| format!("cannot tag the client link of {tag}"))?,
            );
        }
        Ok(lab)
    }

    /// The lab's name, `PREFIX-PID-N`, which its namespace names start with.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The name of a node's namespace.
    pub fn ns(&self, node: Node) -> &str {
        match node {
            Node::Client => self.client.name(),
            Node::Gateway => self.gateway.name(),
            Node::Server => self.server.name(),
        }
    }

    pub fn client_ns(&self) -> &str {
        self.client.name()
    }

    pub fn gateway_ns(&self) -> &str {
        self.gateway.name()
    }

    pub fn server_ns(&self) -> &str {
        self.server.name()
    }

    /// The gateway's interface towards the client: where the filter attaches.
    pub fn gateway_client_if(&self) -> &str {
        &self.gateway_client_if
    }

    /// The gateway's interface towards the server.
    pub fn gateway_server_if(&self) -> &str {
        &self.gateway_server_if
    }

    /// The client's interface (peer of [`Lab::gateway_client_if`]).
    pub fn client_if(&self) -> &str {
        &self.client_if
    }

    /// The server's interface (peer of [`Lab::gateway_server_if`]).
    pub fn server_if(&self) -> &str {
        &self.server_if
    }

    /// Receive (and transmit) queues of each end of the client — gateway link.
    pub fn client_link_queues(&self) -> u16 {
        self.client_link_queues
    }

    /// The VLAN id the client — gateway link's frames carry, if tagged.
    pub fn client_vlan(&self) -> Option<u16> {
        self.vlan.as_ref().map(VlanTagging::vid)
    }

    pub fn client_v4(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, self.subnet, 1, 2)
    }

    pub fn gateway_client_v4(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, self.subnet, 1, 1)
    }

    pub fn gateway_server_v4(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, self.subnet, 2, 1)
    }

    pub fn server_v4(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, self.subnet, 2, 2)
    }

    pub fn client_v6(&self) -> Ipv6Addr {
        self.v6(1, 2)
    }

    pub fn gateway_client_v6(&self) -> Ipv6Addr {
        self.v6(1, 1)
    }

    pub fn gateway_server_v6(&self) -> Ipv6Addr {
        self.v6(2, 1)
    }

    pub fn server_v6(&self) -> Ipv6Addr {
        self.v6(2, 2)
    }

    /// The client's address in the given family.
    pub fn client_addr(&self, ipv6: bool) -> IpAddr {
        if ipv6 {
            self.client_v6().into()
        } else {
            self.client_v4().into()
        }
    }

    /// The server's address in the given family.
    pub fn server_addr(&self, ipv6: bool) -> IpAddr {
        if ipv6 {
            self.server_v6().into()
        } else {
            self.server_v4().into()
        }
    }

    /// `fd00:N:SIDE::HOST`, where N is written with the same digits as in `10.N.SIDE.HOST`.
    fn v6(&self, side: u16, host: u16) -> Ipv6Addr {
        let n = u16::from_str_radix(&self.subnet.to_string(), 16).unwrap_or(0);
        Ipv6Addr::new(0xfd00, n, side, 0, 0, 0, 0, host)
    }

    /// The pid of a process that stands for the gateway machine: it lives in the gateway's
    /// network namespace and in a mount namespace of its own that lasts as long as the lab
    /// (an `ip netns exec` command gets a fresh one, with its own `/sys`, that ends with
    /// it). Programs entered into its namespaces ([`Lab::gateway_command`]) share one
    /// bpffs, as on a real gateway, so pins outlive the daemon that made them.
    pub fn gateway_host(&self) -> Result<u32> {
        if let Some(host) = self.gateway_host.get() {
            return Ok(host.id());
        }
        let mut cmd = self.exec(Node::Gateway, "sleep");
        cmd.arg("infinity")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null());
        let host = ChildGuard::spawn(&mut cmd)?;
        // Until `ip netns exec` has made the namespace and exec'd sleep, entering it would
        // enter the parent's.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let pid = host.id();
        while std::fs::read_to_string(format!("/proc/{pid}/comm"))
            .map_or(true, |c| c.trim() != "sleep")
        {
            ensure!(
                std::time::Instant::now() < deadline,
                "the gateway host process did not start"
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let _ = self.gateway_host.set(host);
        Ok(pid)
    }

    /// A command that runs `program` on the gateway machine (see [`Lab::gateway_host`]):
    /// `nsenter --target HOST --mount --net -- PROGRAM`.
    pub fn gateway_command(&self, program: impl AsRef<OsStr>) -> Result<Command> {
        let mut cmd = Command::new("nsenter");
        cmd.arg("--target")
            .arg(self.gateway_host()?.to_string())
            .args(["--mount", "--net", "--"])
            .arg(program);
        Ok(cmd)
    }

    /// A command that runs `program` on the given node (`ip netns exec NS PROGRAM`).
    pub fn exec(&self, node: Node, program: impl AsRef<OsStr>) -> Command {
        netns_exec(self.ns(node), program)
    }

    /// Deletes namespaces named `PREFIX-PID-...` whose process no longer runs (a run killed
    /// before it could clean up), killing whatever still runs inside them. Labs of live
    /// processes, this one included, are kept: a process removes its own labs by dropping
    /// them or with [`crate::shutdown`]. Returns the deleted names.
    pub fn cleanup_stale(prefix: &str) -> Result<Vec<String>> {
        Self::cleanup_where(|lab_prefix| lab_prefix == prefix)
    }

    /// Like [`Lab::cleanup_stale`] for labs of any prefix: every namespace named like a lab's
    /// (`PREFIX-PID-N-cl|gw|sv`) whose process no longer runs.
    ///
    /// Both also remove the temporary folders (certificates, logs) of processes that no longer
    /// run.
    pub fn cleanup_stale_labs() -> Result<Vec<String>> {
        Self::cleanup_where(|_| true)
    }

    fn cleanup_where(wanted_prefix: impl Fn(&str) -> bool) -> Result<Vec<String>> {
        netns::require_root()?;
        let mut deleted = Vec::new();
        for name in netns::list()? {
            let Some((prefix, owner)) = parse_lab_name(&name) else {
                continue;
            };
            if !wanted_prefix(prefix) || netns::process_exists(owner) {
                continue;
            }
            netns::delete(&name);
            deleted.push(name);
        }
        crate::scratch::remove_stale();
        Ok(deleted)
    }
}

/// The prefix and owner pid of a lab namespace name `PREFIX-PID-N-{cl,gw,sv}`.
fn parse_lab_name(name: &str) -> Option<(&str, u32)> {
    let mut parts = name.split('-');
    let (prefix, pid, counter, role) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let valid = parts.next().is_none()
        && !prefix.is_empty()
        && prefix.len() <= PREFIX_MAX
        && prefix.bytes().all(|b| b.is_ascii_alphanumeric())
        && counter.parse::<u32>().is_ok()
        && ["cl", "gw", "sv"].contains(&role);
    valid.then_some((prefix, pid.parse().ok()?))
}

fn base36(mut n: u32) -> String {
    const DIGITS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = Vec::new();
    loop {
        out.push(DIGITS[(n % 36) as usize]);
        n /= 36;
        if n == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8(out).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::{base36, parse_lab_name};

    #[test]
    fn lab_names_parse() {
        assert_eq!(parse_lab_name("sfdemo-1234-0-gw"), Some(("sfdemo", 1234)));
        assert_eq!(parse_lab_name("sf-1-22-cl"), Some(("sf", 1)));
        assert_eq!(parse_lab_name("sf-1-22-xx"), None);
        assert_eq!(parse_lab_name("sf-abc-0-gw"), None);
        assert_eq!(parse_lab_name("t1"), None);
        assert_eq!(parse_lab_name("a-b-1-2-gw"), None);
    }

    #[test]
    fn base36_is_short() {
        assert_eq!(base36(0), "0");
        assert_eq!(base36(35), "z");
        assert_eq!(base36(36), "10");
        // pid_max is at most 2^22: five characters.
        assert_eq!(base36(1 << 22).len(), 5);
    }
}

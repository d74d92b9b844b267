//! How a lab's network is built: the veth pairs between the namespaces, addresses and
//! routes, IPv6 neighbours pinned, and the client link's VLAN tagging.

use anyhow::{Context as _, Result};

use super::Lab;
use crate::netns::netns_exec;
use crate::run::{cmd, run};
use crate::vlan::VlanTagging;

impl Lab {
    /// Tags the client — gateway link's frames with `vid` both ways, the tag in the frame.
    pub(super) fn tag_client_link(&self, vid: u16) -> Result<VlanTagging> {
        // With the offload on, the veth hands the tag over beside the frame and an XDP
        // program never sees it.
        for (ns, ifname) in [
            (self.client.name(), &self.client_if),
            (self.gateway.name(), &self.gateway_client_if),
        ] {
            run(netns_exec(ns, "ethtool").args(["-K", ifname, "txvlan", "off"]))?;
        }
        VlanTagging::attach(
            vid,
            &[
                (self.client.name(), &self.client_if),
                (self.gateway.name(), &self.gateway_client_if),
            ],
        )
    }

    pub(super) fn wire(&self) -> Result<()> {
        let (cl, gw, sv) = (self.client.name(), self.gateway.name(), self.server.name());
        // Each veth is created in the gateway with its peer straight in the other namespace,
        // so the names never exist in (or clash with) the namespace this process runs in.
        let queues = self.client_link_queues.to_string();
        for (gw_if, peer_if, peer_ns, queues) in [
            (
                &self.gateway_client_if,
                &self.client_if,
                cl,
                queues.as_str(),
            ),
            (&self.gateway_server_if, &self.server_if, sv, "1"),
        ] {
            run(&mut cmd(
                "ip",
                [
                    "-n",
                    gw,
                    "link",
                    "add",
                    gw_if,
                    "numtxqueues",
                    queues,
                    "numrxqueues",
                    queues,
                    "type",
                    "veth",
                    "peer",
                    "name",
                    peer_if,
                    "numtxqueues",
                    queues,
                    "numrxqueues",
                    queues,
                    "netns",
                    peer_ns,
                ],
            ))?;
        }
        let n = self.subnet;
        let addrs: [(&str, &str, String, String); 4] = [
            (
                cl,
                &self.client_if,
                format!("10.{n}.1.2/24"),
                format!("fd00:{n}:1::2/64"),
            ),
            (
                gw,
                &self.gateway_client_if,
                format!("10.{n}.1.1/24"),
                format!("fd00:{n}:1::1/64"),
            ),
            (
                gw,
                &self.gateway_server_if,
                format!("10.{n}.2.1/24"),
                format!("fd00:{n}:2::1/64"),
            ),
            (
                sv,
                &self.server_if,
                format!("10.{n}.2.2/24"),
                format!("fd00:{n}:2::2/64"),
            ),
        ];
        for (ns, ifname, v4, v6) in &addrs {
            // No duplicate detection for the link-local address the kernel adds at link up
            // either: its end a second later is an address change, which Chromium reads as
            // the network changing under a page load (ERR_NETWORK_CHANGED).
            run(netns_exec(ns, "sysctl")
                .args(["-qw", &format!("net.ipv6.conf.{ifname}.accept_dad=0")]))?;
            run(&mut cmd("ip", ["-n", ns, "addr", "add", v4, "dev", ifname]))?;
            // nodad: the address is usable at once instead of after duplicate detection.
            run(&mut cmd(
                "ip",
                ["-n", ns, "-6", "addr", "add", v6, "dev", ifname, "nodad"],
            ))?;
            run(&mut cmd("ip", ["-n", ns, "link", "set", ifname, "up"]))?;
        }
        for (ns, v4, v6) in [
            (cl, format!("10.{n}.1.1"), format!("fd00:{n}:1::1")),
            (sv, format!("10.{n}.2.1"), format!("fd00:{n}:2::1")),
        ] {
            run(&mut cmd(
                "ip",
                ["-n", ns, "route", "add", "default", "via", &v4],
            ))?;
            run(&mut cmd(
                "ip",
                ["-n", ns, "-6", "route", "add", "default", "via", &v6],
            ))?;
        }
        run(netns_exec(gw, "sysctl").args([
            "-qw",
            "net.ipv4.ip_forward=1",
            "net.ipv6.conf.all.forwarding=1",
        ]))?;
        self.pin_ipv6_neighbours()?;
        // Without TSO/GSO the sending stack cuts a 2 KB ClientHello into wire-sized segments,
        // as a real NIC would, instead of handing the veth one super-packet.
        for (ns, ifname) in &addrs.map(|(ns, ifname, _, _)| (ns, ifname)) {
            run(netns_exec(ns, "ethtool").args(["-K", ifname, "tso", "off", "gso", "off"]))?;
        }
        // A frame the program sends back with XDP_TX reaches the client's veth end only if
        // that end has NAPI, which GRO turns on; otherwise it counts as xdp_tx_errors. (The
        // pass-all XDP program `with_options` attaches there also wakes it: see there.)
        run(netns_exec(cl, "ethtool").args(["-K", &self.client_if, "gro", "on"]))?;
        Ok(())
    }

    /// A freshly raised veth end ignores neighbour solicitations for up to ~2 s (until its
    /// IPv6 is ready), so a test's first IPv6 connection would lose its SYN and wait for a
    /// retransmission. Permanent entries on both ends of each link make it immediate.
    pub(super) fn pin_ipv6_neighbours(&self) -> Result<()> {
        let (cl, gw, sv) = (self.client.name(), self.gateway.name(), self.server.name());
        for (ns, ifname, peer_ns, peer_if, peer_addr) in [
            (
                cl,
                &self.client_if,
                gw,
                &self.gateway_client_if,
                self.gateway_client_v6(),
            ),
            (
                gw,
                &self.gateway_client_if,
                cl,
                &self.client_if,
                self.client_v6(),
            ),
            (
                gw,
                &self.gateway_server_if,
                sv,
                &self.server_if,
                self.server_v6(),
            ),
            (
                sv,
                &self.server_if,
                gw,
                &self.gateway_server_if,
                self.gateway_server_v6(),
            ),
        ] {
            let mac = mac_address(peer_ns, peer_if)?;
            run(&mut cmd(
                "ip",
                [
                    "-n",
                    ns,
                    "-6",
                    "neigh",
                    "replace",
                    &peer_addr.to_string(),
                    "lladdr",
                    &mac,
                    "dev",
                    ifname,
                    "nud",
                    "permanent",
                ],
            ))?;
        }
        Ok(())
    }
}

/// The MAC address of an interface in a namespace.
fn mac_address(ns: &str, ifname: &str) -> Result<String> {
    let out = run(&mut cmd(
        "ip",
        ["-n", ns, "-o", "link", "show", "dev", ifname],
    ))?;
    out.split_whitespace()
        .skip_while(|w| *w != "link/ether")
        .nth(1)
        .map(str::to_owned)
        .with_context(|| format!("no MAC address for {ifname} in {ns}: {out}"))
}

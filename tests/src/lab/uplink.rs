//! An extra link from one lab's gateway to another lab's server namespace, so that several
//! gateways reach the services of one server (a list server, a central syslog server, a
//! metrics collector) as a fleet's gateways reach their centre. Removed on drop.

use std::net::Ipv4Addr;
use std::process::{Command, Stdio};

use anyhow::{Context as _, Result, ensure};

use super::Lab;
use crate::run::{cmd, run};

/// A veth pair from `lab`'s gateway (`10.N.3.1/24`) to `hub`'s server namespace
/// (`10.N.3.2/24`, N being `lab`'s subnet), with a route on the gateway to the hub server's
/// address through it. Deleting the gateway's end on drop removes both.
#[derive(Debug)]
pub struct Uplink {
    gateway_ns: String,
    gateway_if: String,
    subnet: u8,
}

impl Uplink {
    /// `lab`'s gateway's address on the link.
    pub fn gateway_v4(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, self.subnet, 3, 1)
    }

    /// The hub server's address on the link.
    pub fn hub_v4(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, self.subnet, 3, 2)
    }
}

impl Drop for Uplink {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["-n", &self.gateway_ns, "link", "del", &self.gateway_if])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

impl Lab {
    /// Links this lab's gateway to `hub`'s server namespace (see [`Uplink`]): the gateway then
    /// reaches `hub.server_v4()`, and the hub's server reaches the gateway at
    /// [`Uplink::gateway_v4`]. Drop the uplink before either lab.
    pub fn uplink_to(&self, hub: &Lab) -> Result<Uplink> {
        ensure!(
            self.subnet != hub.subnet,
            "labs {} and {} share the subnet 10.{}.0.0/16",
            self.name,
            hub.name,
            self.subnet
        );
        let short = self
            .gateway_client_if
            .strip_suffix("gwc")
            .context("a lab's gateway interface ends in gwc")?;
        let link = Uplink {
            gateway_ns: self.gateway.name().to_owned(),
            gateway_if: format!("{short}up"),
            subnet: self.subnet,
        };
        let hub_if = format!("{short}hub");
        let (gw, sv) = (self.gateway.name(), hub.server.name());
        // Names and namespaces hold no spaces (see `Lab::with_options`).
        let add = format!(
            "-n {gw} link add {} type veth peer name {hub_if} netns {sv}",
            link.gateway_if
        );
        run(&mut cmd("ip", add.split(' ')))
            .with_context(|| format!("cannot link {} to {}", self.name, hub.name))?;
        for (ns, ifname, addr) in [
            (gw, &link.gateway_if, link.gateway_v4()),
            (sv, &hub_if, link.hub_v4()),
        ] {
            run(&mut cmd(
                "ip",
                [
                    "-n",
                    ns,
                    "addr",
                    "add",
                    &format!("{addr}/24"),
                    "dev",
                    ifname,
                ],
            ))?;
            run(&mut cmd("ip", ["-n", ns, "link", "set", ifname, "up"]))?;
        }
        run(&mut cmd(
            "ip",
            [
                "-n",
                gw,
                "route",
                "add",
                &format!("{}/32", hub.server_v4()),
                "via",
                &link.hub_v4().to_string(),
            ],
        ))?;
        Ok(link)
    }
}

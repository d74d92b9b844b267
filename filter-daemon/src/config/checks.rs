//! The checks serde cannot make: names, ranges, ports, networks and VLANs, each refusal
//! naming the line of the key it refuses.

use std::path::Path;

use ipnet::IpNet;
use toml::Spanned;

use super::{App, QUIC_PORT_DEFAULT, raw::RawApp};
use crate::Error;

fn bytecount(bytes: &[u8]) -> usize {
    bytes.split(|&b| b == b'\n').count() - 1
}

/// The 1-based line of a byte offset.
pub fn line_of(text: &str, offset: usize) -> usize {
    bytecount(&text.as_bytes()[..offset.min(text.len())]) + 1
}

fn valid_interface_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 15 && !name.contains(['/', ' ', '\0'])
}

/// The `[filter]` interfaces: each a name Linux accepts.
pub(super) fn check_interfaces(
    interfaces: &[Spanned<String>],
    at: &impl Fn(usize) -> String,
) -> Result<(), Error> {
    for iface in interfaces {
        if !valid_interface_name(iface.get_ref()) {
            return Err(Error::config(
                at(iface.span().start),
                format!(
                    "interface name {:?} is not a valid Linux interface name",
                    iface.get_ref()
                ),
            ));
        }
    }
    Ok(())
}

pub(super) fn parse_app(
    name: String,
    app: Spanned<RawApp>,
    text: &str,
    at: &impl Fn(usize) -> String,
    base: &Path,
) -> Result<App, Error> {
    let span = app.span();
    let app = app.into_inner();
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(Error::config(
            at(span.start),
            format!("app name {name:?} may only use letters, digits, '-' and '_'"),
        ));
    }
    if app.lists.is_empty() && app.domains.is_empty() {
        return Err(Error::config(
            at(span.start),
            format!("app {name:?} has no lists and no domains"),
        ));
    }
    let lists = app
        .lists
        .iter()
        .map(|l| (base.join(l.get_ref()), line_of(text, l.span().start)))
        .collect();
    let domains = app
        .domains
        .iter()
        .map(|d| (d.get_ref().clone(), line_of(text, d.span().start)))
        .collect();
    let mut exempt_sources = Vec::new();
    for e in &app.exempt_sources {
        let raw = e.get_ref().trim();
        // A bare address is a network of one host.
        let net = raw
            .parse::<IpNet>()
            .or_else(|_| raw.parse::<std::net::IpAddr>().map(IpNet::from))
            .map_err(|_| {
                Error::config(
                    at(e.span().start),
                    format!("{raw:?} is not an address or a CIDR network"),
                )
            })?;
        exempt_sources.push(net.trunc());
    }
    let mut interfaces = Vec::new();
    for i in &app.interfaces {
        if !valid_interface_name(i.get_ref()) {
            return Err(Error::config(
                at(i.span().start),
                format!("{:?} is not a Linux interface name", i.get_ref()),
            ));
        }
        interfaces.push(i.get_ref().clone());
    }
    let mut vlans = Vec::new();
    for v in &app.vlans {
        // VLAN IDs 0 and 4095 are reserved (IEEE 802.1Q).
        match u16::try_from(*v.get_ref()) {
            Ok(id @ 1..=4094) => vlans.push(id),
            _ => {
                return Err(Error::config(
                    at(v.span().start),
                    format!("VLAN ID {} is outside 1..=4094", v.get_ref()),
                ));
            }
        }
    }
    Ok(App {
        name,
        action: app.action,
        enabled: app.enabled,
        lists,
        domains,
        exempt_sources,
        interfaces,
        vlans,
    })
}

/// A number key as read, with its place in the file, its name, its default and its range.
pub(super) type NumberKey<'a> = (&'a Option<Spanned<u64>>, &'static str, u64, (u64, u64));

/// The values of number keys (each key's default when absent), checked against their
/// ranges in order; the first refusal names its key's line.
pub(super) fn checked_numbers<const N: usize>(
    keys: [NumberKey; N],
    at: &impl Fn(usize) -> String,
) -> Result<[u64; N], Error> {
    let mut values = [0; N];
    for (value, (key, name, default, range)) in values.iter_mut().zip(keys) {
        *value = match key {
            None => default,
            Some(v) if (range.0..=range.1).contains(v.get_ref()) => *v.get_ref(),
            Some(v) => {
                return Err(Error::config(
                    at(v.span().start),
                    format!(
                        "{name} = {} is outside {}..={}",
                        v.get_ref(),
                        range.0,
                        range.1
                    ),
                ));
            }
        };
    }
    Ok(values)
}

pub(super) fn parse_inspected_ports(
    ports: &[Spanned<u64>],
    at: &impl Fn(usize) -> String,
) -> Result<Vec<u16>, Error> {
    ports.iter().map(|p| port(p, "TCP", at)).collect()
}

/// A port number of `protocol`, 1 to 65535.
fn port(p: &Spanned<u64>, protocol: &str, at: &impl Fn(usize) -> String) -> Result<u16, Error> {
    u16::try_from(*p.get_ref())
        .ok()
        .filter(|&p| p > 0)
        .ok_or_else(|| {
            Error::config(
                at(p.span().start),
                format!("port {} is not a {protocol} port (1..=65535)", p.get_ref()),
            )
        })
}

pub(super) fn parse_quic_ports(
    raw: Option<&Spanned<Vec<Spanned<u64>>>>,
    at: &impl Fn(usize) -> String,
) -> Result<Vec<u16>, Error> {
    let Some(raw) = raw else {
        return Ok(vec![QUIC_PORT_DEFAULT]);
    };
    let max = filter_common::QUIC_PORTS_MAX;
    if raw.get_ref().is_empty() || raw.get_ref().len() > max {
        return Err(Error::config(
            at(raw.span().start),
            format!(
                "quic_ports lists {} ports; 1 to {max} are supported (to stop inspecting QUIC, set quic = \"allow\" or \"block\")",
                raw.get_ref().len()
            ),
        ));
    }
    let mut ports = Vec::new();
    for p in raw.get_ref() {
        let port = port(p, "UDP", at)?;
        if ports.contains(&port) {
            return Err(Error::config(
                at(p.span().start),
                format!("port {port} is listed twice in quic_ports"),
            ));
        }
        ports.push(port);
    }
    Ok(ports)
}

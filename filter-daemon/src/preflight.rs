//! Checks before attaching, each with a clear message: kernel features, the interface and
//! its driver, offloads that hide what the program must see, MTU, and another XDP program
//! already on the interface (never replaced). `sni-filter doctor IFACE` prints the same.

use crate::state::Instance;
use std::process::Command;

/// How a check came out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    Ok,
    /// Works, but something the engineer should know or change.
    Warn,
    /// The filter must not attach.
    Fail,
}

#[derive(Clone, Debug)]
pub struct Check {
    pub level: Level,
    pub what: String,
    pub detail: String,
}

fn check(level: Level, what: &str, detail: impl Into<String>) -> Check {
    Check {
        level,
        what: what.into(),
        detail: detail.into(),
    }
}

/// The running kernel's release (`6.1.0-18-amd64`), from uname(2): the unit's
/// `ProcSubset=pid` hides `/proc/sys`.
pub fn kernel_release() -> Option<String> {
    // SAFETY: a struct of byte arrays, for which all zeroes is a valid value.
    let mut name: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: uname fills the struct it is given, each field NUL-terminated.
    let rc = unsafe { libc::uname(&raw mut name) };
    if rc != 0 {
        return None;
    }
    // SAFETY: a NUL-terminated field of the struct uname filled.
    let release = unsafe { std::ffi::CStr::from_ptr(name.release.as_ptr()) };
    Some(release.to_string_lossy().into_owned())
}

/// The kernel version as (major, minor).
fn kernel_version() -> Option<(u32, u32)> {
    let release = kernel_release()?;
    let mut parts = release.trim().split(['.', '-']);
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

/// Checks of the machine, independent of interfaces.
pub fn kernel() -> Vec<Check> {
    let mut out = Vec::new();
    // bpf_xdp_load_bytes and XDP multi-buffer (5.18) are the newest things the program uses.
    out.push(match kernel_version() {
        Some(v) if v >= (5, 18) => check(
            Level::Ok,
            "kernel",
            format!("{}.{} (5.18 or later needed)", v.0, v.1),
        ),
        Some(v) => check(
            Level::Fail,
            "kernel",
            format!(
                "{}.{}: the program needs 5.18 or later (XDP multi-buffer, bpf_xdp_load_bytes)",
                v.0, v.1
            ),
        ),
        None => check(Level::Warn, "kernel", "version unreadable (uname)"),
    });
    out.push(
        if std::path::Path::new("/sys/kernel/btf/vmlinux").exists() {
            check(Level::Ok, "kernel BTF", "/sys/kernel/btf/vmlinux present")
        } else {
            check(
                Level::Warn,
                "kernel BTF",
                "no /sys/kernel/btf/vmlinux: loading still works, introspection tools see less",
            )
        },
    );
    out
}

/// Every check a start makes: the machine's, then each interface's.
pub fn gateway(interfaces: &[String], instance: &Instance) -> Vec<Check> {
    let mut checks = kernel();
    for name in interfaces {
        checks.extend(interface(name, instance));
    }
    checks
}

/// Checks of one interface before the filter of `instance` attaches to it.
pub fn interface(name: &str, instance: &Instance) -> Vec<Check> {
    let Some(link) = ip_link(name) else {
        return vec![check(
            Level::Fail,
            "interface",
            format!("{name} does not exist (or `ip` is missing)"),
        )];
    };
    let mut out = vec![check(
        Level::Ok,
        "interface",
        format!("{name} exists, ifindex {}", link["ifindex"]),
    )];
    out.push(attached_program(name, &link, instance));
    let mtu = link
        .get("mtu")
        .and_then(serde_json::Value::as_u64)
        .unwrap_or(0);
    out.push(if mtu > 3498 {
        check(
            Level::Ok,
            "MTU",
            format!("{mtu}: jumbo frames arrive as multi-buffer frames, which the program reads"),
        )
    } else {
        check(Level::Ok, "MTU", mtu.to_string())
    });
    let driver = ethtool(&["-i", name]).and_then(|t| {
        t.lines()
            .find_map(|l| l.strip_prefix("driver: ").map(str::to_owned))
    });
    if let Some(driver) = driver {
        out.push(check(
            Level::Ok,
            "driver",
            format!("{driver}; native XDP support is confirmed when the program attaches"),
        ));
    }
    out.extend(offloads(name));
    out
}

/// Another XDP program on the interface is never replaced; the filter this instance pinned
/// there is taken over.
fn attached_program(name: &str, link: &serde_json::Value, instance: &Instance) -> Check {
    let ours = instance.link_pin(name).exists();
    let Some(xdp) = link.get("xdp") else {
        return if ours {
            check(
                Level::Fail,
                "XDP program",
                format!(
                    "{} is pinned but {name} runs no XDP program: remove the stale pin with `sni-filter --instance {} unload`",
                    instance.link_pin(name).display(),
                    instance.name
                ),
            )
        } else {
            check(Level::Ok, "XDP program", format!("none attached to {name}"))
        };
    };
    let prog = xdp.get("prog").or_else(|| {
        xdp.get("attached")
            .and_then(|a| a.get(0))
            .and_then(|a| a.get("prog"))
    });
    let prog_name = prog
        .and_then(|p| p.get("name"))
        .and_then(|n| n.as_str())
        .unwrap_or("?");
    let id = prog
        .and_then(|p| p.get("id"))
        .map_or_else(|| "?".into(), ToString::to_string);
    if ours && prog_name == filter_common::names::PROGRAM {
        check(
            Level::Ok,
            "XDP program",
            format!(
                "the filter of instance {:?} (program id {id}) runs on {name}: it is taken over without detaching",
                instance.name
            ),
        )
    } else if prog_name == filter_common::names::PROGRAM {
        check(
            Level::Fail,
            "XDP program",
            format!(
                "an sni-filter program (id {id}) runs on {name} but instance {:?} did not pin it: another instance runs there (`sni-filter --instance NAME unload` removes it), or detach it with `ip link set dev {name} xdp off`",
                instance.name
            ),
        )
    } else {
        check(
            Level::Fail,
            "XDP program",
            format!(
                "{name} already runs XDP program {prog_name:?} (id {id}); sni-filter never replaces another program: detach it (ip link set dev {name} xdp off) or choose another interface"
            ),
        )
    }
}

/// Offloads that hide what the program must see.
fn offloads(name: &str) -> Vec<Check> {
    let Some(features) = ethtool(&["-k", name]) else {
        return vec![check(
            Level::Warn,
            "offloads",
            "ethtool is missing: VLAN stripping and LRO were not checked",
        )];
    };
    let on = |feature: &str| {
        features
            .lines()
            .any(|l| l.trim_start().starts_with(&format!("{feature}: on")))
    };
    let mut out = Vec::new();
    if on("rx-vlan-offload") {
        out.push(check(
            Level::Warn,
            "VLAN offload",
            format!("rx-vlan-offload is on: a NIC that strips VLAN tags hides them from the program (apps scoped to VLANs cannot match); `ethtool -K {name} rxvlan off`"),
        ));
    }
    for (feature, label, flag) in [
        ("large-receive-offload", "LRO", "lro"),
        ("rx-gro-hw", "hardware GRO", "rx-gro-hw"),
    ] {
        if on(feature) {
            out.push(check(
                Level::Warn,
                label,
                format!("{feature} is on: merged segments are not what clients sent; `ethtool -K {name} {flag} off`"),
            ));
        }
    }
    out
}

fn ip_link(name: &str) -> Option<serde_json::Value> {
    let out = Command::new("ip")
        .args(["-details", "-json", "link", "show", "dev", name])
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    v.get(0).cloned()
}

fn ethtool(args: &[&str]) -> Option<String> {
    let out = Command::new("ethtool").args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

impl Level {
    /// As `doctor --json` names it.
    pub fn name(self) -> &'static str {
        match self {
            Level::Ok => "ok",
            Level::Warn => "warn",
            Level::Fail => "fail",
        }
    }
}

/// One line per check, aligned.
pub fn print(checks: &[Check]) {
    for c in checks {
        let level = match c.level {
            Level::Ok => "ok",
            Level::Warn => "WARN",
            Level::Fail => "FAIL",
        };
        println!("{level:<5} {:<19} {}", c.what, c.detail);
    }
}

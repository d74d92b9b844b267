//! The sandbox a systemd unit's `[Service]` section asks for, read from the unit file itself
//! so that the lab runs the daemon under the shipped unit's settings, not a copy of them.
//!
//! System call groups are expanded with `systemd-analyze syscall-filter` (the host's systemd
//! decides what `@system-service` holds) and named calls numbered from the kernel headers.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, Result, bail, ensure};

/// Calls systemd allows under any `SystemCallFilter=` allow-list, so that a process can be
/// started and ended at all.
const IMPLICIT_SYSCALLS: [&str; 6] = [
    "execve",
    "exit",
    "exit_group",
    "getrlimit",
    "rt_sigreturn",
    "sigreturn",
];

/// Where the x86-64 system call numbers are defined (Debian's `linux-libc-dev`).
const SYSCALL_HEADER: &str = "/usr/include/x86_64-linux-gnu/asm/unistd_64.h";

/// The `[Service]` settings the lab emulates (see [`crate::Daemon::start_under_unit`]).
// Each bool is one of the unit's yes/no settings.
#[allow(clippy::struct_excessive_bools)]
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServiceSandbox {
    /// `CapabilityBoundingSet=`: the capabilities' numbers.
    pub bounding_set: Vec<u8>,
    /// `NoNewPrivileges=yes`.
    pub no_new_privs: bool,
    /// `SystemCallFilter=` expanded to call numbers, with the implicit ones; `None` without
    /// a filter.
    pub syscalls: Option<BTreeSet<u32>>,
    /// `SystemCallErrorNumber=`: what a refused call returns (`EPERM` when unset, as here
    /// the process would otherwise be killed and the test would say so anyway).
    pub syscall_errno: i32,
    /// `RestrictAddressFamilies=`: the families `socket(2)` may create; `None`: all.
    pub address_families: Option<Vec<i32>>,
    /// `ProtectSystem=strict`: the whole tree read-only but for the paths below.
    pub read_only_root: bool,
    /// `ProtectKernelTunables=yes`: `/sys` read-only as well.
    pub read_only_sys: bool,
    /// `ReadWritePaths=`.
    pub read_write_paths: Vec<PathBuf>,
    /// `RuntimeDirectory=`: names under `/run`, made and kept writable.
    pub runtime_directories: Vec<String>,
    /// `RuntimeDirectoryMode=` (0755 when unset, as systemd).
    pub runtime_directory_mode: u32,
    /// `ProtectProc=` (`hidepid=` of the service's own `/proc`), when not `default`.
    pub protect_proc: Option<String>,
    /// `ProcSubset=pid`.
    pub proc_subset_pid: bool,
    /// `ProtectHostname=yes`: a UTS namespace of its own.
    pub private_uts: bool,
    /// `PrivateIPC=yes`: an IPC namespace of its own.
    pub private_ipc: bool,
    /// `ExecStartPre=+...` command lines: run outside the sandbox before the start.
    pub privileged_pre: Vec<String>,
}

impl ServiceSandbox {
    /// Reads the `[Service]` section of the unit at `path`.
    pub fn from_unit(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the unit {}", path.display()))?;
        Self::parse(&text).with_context(|| format!("in the unit {}", path.display()))
    }

    /// Reads the `[Service]` section of a unit's text.
    pub fn parse(text: &str) -> Result<Self> {
        let mut sandbox = Self {
            syscall_errno: libc::EPERM,
            runtime_directory_mode: 0o755,
            ..Self::default()
        };
        let mut filter: Option<BTreeSet<String>> = None;
        let mut section = "";
        for (n, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with(['#', ';']) {
                continue;
            }
            if line.starts_with('[') {
                section = line;
                continue;
            }
            if section != "[Service]" {
                continue;
            }
            let (key, value) = line
                .split_once('=')
                .with_context(|| format!("line {}: no `=` in {line:?}", n + 1))?;
            sandbox
                .apply(key.trim(), value.trim(), &mut filter)
                .with_context(|| format!("line {}: {line}", n + 1))?;
        }
        if let Some(names) = filter {
            let numbers = syscall_numbers()?;
            let mut allowed: BTreeSet<u32> = BTreeSet::new();
            for name in names.iter().map(String::as_str).chain(IMPLICIT_SYSCALLS) {
                // Calls this architecture does not have (`sigreturn` on x86-64), or newer
                // than the headers, are left out, as systemd leaves out what its libseccomp
                // does not know.
                if let Some(nr) = numbers.get(name) {
                    allowed.insert(*nr);
                }
            }
            sandbox.syscalls = Some(allowed);
        }
        Ok(sandbox)
    }

    fn apply(
        &mut self,
        key: &str,
        value: &str,
        filter: &mut Option<BTreeSet<String>>,
    ) -> Result<()> {
        let yes = || matches!(value, "yes" | "true" | "on" | "1");
        match key {
            "CapabilityBoundingSet" => {
                self.bounding_set = value
                    .split_whitespace()
                    .map(|c| {
                        c.parse::<caps::Capability>()
                            .map(|c| c.index())
                            .map_err(|e| anyhow::anyhow!("capability {c}: {e}"))
                    })
                    .collect::<Result<_>>()?;
            }
            "NoNewPrivileges" => self.no_new_privs = yes(),
            "SystemCallFilter" => syscall_filter_line(filter, value)?,
            "SystemCallErrorNumber" => self.syscall_errno = errno_named(value)?,
            "RestrictAddressFamilies" => {
                ensure!(!value.starts_with('~'), "only allow-lists are emulated");
                self.address_families = Some(
                    value
                        .split_whitespace()
                        .map(family_named)
                        .collect::<Result<_>>()?,
                );
            }
            "ProtectSystem" => {
                ensure!(
                    value == "strict",
                    "only ProtectSystem=strict is emulated, not {value}"
                );
                self.read_only_root = true;
            }
            "ProtectKernelTunables" => self.read_only_sys = yes(),
            "ReadWritePaths" => self.read_write_paths.extend(
                value
                    .split_whitespace()
                    .map(|p| PathBuf::from(p.trim_start_matches(['-', '+']))),
            ),
            "RuntimeDirectory" => self
                .runtime_directories
                .extend(value.split_whitespace().map(str::to_owned)),
            "RuntimeDirectoryMode" => {
                self.runtime_directory_mode = u32::from_str_radix(value, 8)
                    .with_context(|| format!("mode {value} is not octal"))?;
            }
            "ProtectProc" if value != "default" => self.protect_proc = Some(value.to_owned()),
            "ProcSubset" => self.proc_subset_pid = value == "pid",
            "ProtectHostname" => self.private_uts = yes(),
            "PrivateIPC" => self.private_ipc = yes(),
            "ExecStartPre" => {
                if let Some(command) = value.strip_prefix('+') {
                    self.privileged_pre.push(command.to_owned());
                }
            }
            _ => {}
        }
        Ok(())
    }
}

/// One `SystemCallFilter=` line applied to the names allowed so far: the first line makes
/// an allow-list, later ones add names or, after `~`, take them away; an empty one resets.
fn syscall_filter_line(filter: &mut Option<BTreeSet<String>>, value: &str) -> Result<()> {
    if value.is_empty() {
        *filter = None;
        return Ok(());
    }
    let (deny, list) = match value.strip_prefix('~') {
        Some(rest) => (true, rest),
        None => (false, value),
    };
    ensure!(
        filter.is_some() || !deny,
        "a filter that starts as a deny-list is not emulated"
    );
    let names = filter.get_or_insert_with(BTreeSet::new);
    for item in list.split_whitespace() {
        // `name:errno` sets a call's own errno; the lab uses the filter's.
        let item = item.split(':').next().unwrap_or(item);
        let expanded = if item.starts_with('@') {
            syscall_group(item)?
        } else {
            BTreeSet::from([item.to_owned()])
        };
        for name in expanded {
            if deny {
                names.remove(&name);
            } else {
                names.insert(name);
            }
        }
    }
    Ok(())
}

/// The calls of a group, as the host's systemd defines it, nested groups expanded.
pub fn syscall_group(group: &str) -> Result<BTreeSet<String>> {
    let out = Command::new("systemd-analyze")
        .args(["syscall-filter", group])
        .output()
        .context("cannot run `systemd-analyze syscall-filter`")?;
    ensure!(
        out.status.success(),
        "`systemd-analyze syscall-filter {group}` failed: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
    let mut names = BTreeSet::new();
    // The first line is the group's own name; then a `# description` and the entries.
    for entry in String::from_utf8_lossy(&out.stdout).lines().skip(1) {
        let entry = entry.trim();
        if entry.is_empty() || entry.starts_with('#') {
            continue;
        }
        if entry.starts_with('@') {
            names.extend(syscall_group(entry)?);
        } else {
            names.insert(entry.to_owned());
        }
    }
    ensure!(!names.is_empty(), "systemd knows no calls in {group}");
    Ok(names)
}

/// System call numbers by name, from the kernel headers (`#define __NR_read 0`).
fn syscall_numbers() -> Result<std::collections::HashMap<String, u32>> {
    if !cfg!(target_arch = "x86_64") {
        bail!("the system call filter is only emulated on x86-64");
    }
    let text = std::fs::read_to_string(SYSCALL_HEADER)
        .with_context(|| format!("cannot read {SYSCALL_HEADER} (package linux-libc-dev)"))?;
    Ok(text
        .lines()
        .filter_map(|l| {
            let mut f = l.strip_prefix("#define __NR_")?.split_whitespace();
            Some((f.next()?.to_owned(), f.next()?.parse().ok()?))
        })
        .collect())
}

fn errno_named(name: &str) -> Result<i32> {
    Ok(match name {
        "EPERM" => libc::EPERM,
        "EACCES" => libc::EACCES,
        "ENOSYS" => libc::ENOSYS,
        "EINVAL" => libc::EINVAL,
        other => bail!("errno {other} is not one the lab knows"),
    })
}

fn family_named(name: &str) -> Result<i32> {
    Ok(match name {
        "AF_UNIX" => libc::AF_UNIX,
        "AF_INET" => libc::AF_INET,
        "AF_INET6" => libc::AF_INET6,
        "AF_NETLINK" => libc::AF_NETLINK,
        "AF_PACKET" => libc::AF_PACKET,
        other => bail!("address family {other} is not one the lab knows"),
    })
}

#[cfg(test)]
mod tests {
    use super::ServiceSandbox;

    #[test]
    fn settings_are_read_in_order() {
        let unit = "[Unit]\nCapabilityBoundingSet=CAP_SYS_ADMIN\n[Service]\n\
                    CapabilityBoundingSet=CAP_BPF CAP_NET_ADMIN\nNoNewPrivileges=yes\n\
                    SystemCallFilter=@system-service bpf\nSystemCallFilter=~@resources\n\
                    SystemCallErrorNumber=EACCES\nRestrictAddressFamilies=AF_UNIX AF_NETLINK\n\
                    ProtectSystem=strict\nReadWritePaths=/sys/fs/bpf\nRuntimeDirectory=x\n\
                    RuntimeDirectoryMode=0700\nProtectProc=invisible\nProcSubset=pid\n\
                    ExecStartPre=/bin/true\nExecStartPre=+/bin/sh -c 'mount x'\n";
        let s = ServiceSandbox::parse(unit).unwrap();
        assert_eq!(s.bounding_set, vec![39, 12]);
        assert!(s.no_new_privs && s.read_only_root && !s.read_only_sys);
        let calls = s.syscalls.unwrap();
        // read, bpf and the implicit execve in; setrlimit (@resources) and mount not.
        for nr in [libc::SYS_read, libc::SYS_bpf, libc::SYS_execve] {
            assert!(calls.contains(&u32::try_from(nr).unwrap()), "{nr}");
        }
        for nr in [libc::SYS_setrlimit, libc::SYS_mount] {
            assert!(!calls.contains(&u32::try_from(nr).unwrap()), "{nr}");
        }
        assert_eq!(s.syscall_errno, libc::EACCES);
        assert_eq!(
            s.address_families,
            Some(vec![libc::AF_UNIX, libc::AF_NETLINK])
        );
        assert_eq!(s.runtime_directories, vec!["x".to_owned()]);
        assert_eq!(s.runtime_directory_mode, 0o700);
        assert_eq!(s.protect_proc.as_deref(), Some("invisible"));
        assert!(s.proc_subset_pid);
        assert_eq!(s.privileged_pre, vec!["/bin/sh -c 'mount x'".to_owned()]);
    }

    #[test]
    fn what_is_not_emulated_is_refused() {
        for unit in [
            "[Service]\nProtectSystem=full\n",
            "[Service]\nSystemCallFilter=~@mount\n",
            "[Service]\nCapabilityBoundingSet=CAP_NOPE\n",
            "[Service]\nSystemCallErrorNumber=EWHAT\n",
        ] {
            assert!(ServiceSandbox::parse(unit).is_err(), "{unit}");
        }
    }
}

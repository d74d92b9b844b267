//! Named network namespaces (`ip netns`): a guard that deletes its namespace, and ways to run a
//! command or a closure inside one.

use std::ffi::OsStr;
use std::fs::File;
use std::os::fd::AsRawFd as _;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, anyhow, bail};

use crate::registry;
use crate::run::{cmd, run};

/// A named network namespace, deleted on drop together with every process left inside it.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates the namespace `name` (`ip netns add`) with its loopback up.
    pub fn new(name: &str) -> Result<Self> {
        registry::add_namespace(name, || {
            run(&mut cmd("ip", ["netns", "add", name]))?;
            Ok(())
        })?;
        let ns = Self {
            name: name.to_owned(),
        };
        run(&mut cmd("ip", ["-n", name, "link", "set", "lo", "up"]))?;
        Ok(ns)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// A command that runs `program` inside this namespace.
    pub fn exec(&self, program: impl AsRef<OsStr>) -> Command {
        netns_exec(&self.name, program)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        delete(&self.name);
        registry::remove_namespace(&self.name);
    }
}

/// A command that runs `program` inside the named namespace (`ip netns exec NS PROGRAM`).
///
/// `ip netns exec` also gives the program a mount namespace of its own with `/sys` remounted
/// for the network namespace, so `/sys/class/net` shows the namespace's interfaces.
pub fn netns_exec(ns: &str, program: impl AsRef<OsStr>) -> Command {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", ns]).arg(program);
    cmd
}

/// Runs `f` on a thread that has joined the named network namespace, and returns its result.
///
/// Only that thread changes namespace (the network namespace is per thread), so sockets that
/// `f` opens live in the namespace while the rest of the process stays where it was.
pub fn run_in_netns<T, F>(ns: &str, f: F) -> Result<T>
where
    T: Send,
    F: FnOnce() -> T + Send,
{
    let path = format!("/run/netns/{ns}");
    let handle = File::open(&path).with_context(|| format!("no network namespace {ns}"))?;
    thread::scope(|scope| {
        scope
            .spawn(|| {
                // SAFETY: setns on a valid namespace fd only changes this thread's namespace.
                let rc = unsafe { libc::setns(handle.as_raw_fd(), libc::CLONE_NEWNET) };
                if rc != 0 {
                    return Err(anyhow!(
                        "cannot join network namespace {ns}: {}",
                        std::io::Error::last_os_error()
                    ));
                }
                Ok(f())
            })
            .join()
            .map_err(|_| anyhow!("a closure run in namespace {ns} panicked"))?
    })
}

/// The names of all named network namespaces.
pub(crate) fn list() -> Result<Vec<String>> {
    let out = run(&mut cmd("ip", ["netns", "list"]))?;
    // Lines read "NAME" or "NAME (id: N)".
    Ok(out
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .map(str::to_owned)
        .collect())
}

/// Kills every process inside the namespace, then deletes it. Errors are ignored: this runs
/// from `Drop` and from shutdown, where the namespace may already be gone.
pub(crate) fn delete(name: &str) {
    kill_inside(name);
    let _ = Command::new("ip")
        .args(["netns", "del", name])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// SIGKILLs the processes inside the namespace and waits (briefly) until they are gone, since
/// a process left inside keeps the namespace and its interfaces alive after `ip netns del`.
fn kill_inside(name: &str) {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let pids = pids_inside(name);
        if pids.is_empty() || Instant::now() > deadline {
            return;
        }
        for pid in pids {
            // SAFETY: kill has no memory-safety preconditions.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// Live (non-zombie) processes inside the namespace.
fn pids_inside(name: &str) -> Vec<i32> {
    let Ok(out) = Command::new("ip")
        .args(["netns", "pids", name])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
    else {
        return Vec::new();
    };
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .filter_map(|pid| pid.parse().ok())
        .filter(|&pid: &i32| !is_zombie(pid))
        .collect()
}

fn is_zombie(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |stat| {
        stat.rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
    })
}

/// Whether a process with this pid exists.
pub(crate) fn process_exists(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// Fails unless the process can manage namespaces.
pub(crate) fn require_root() -> Result<()> {
    if !crate::is_root() {
        bail!("the lab needs root: network namespaces, veth pairs and ethtool");
    }
    Ok(())
}

/// The network namespaces that exist now (`ip netns list`), by name.
pub fn netns_list() -> Vec<String> {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
        return Vec::new();
    };
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

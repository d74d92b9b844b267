//! Where a running filter leaves its traces: pinned maps under bpffs and a state file, both
//! named by instance so that several test filters can run on one machine.

use std::{
    fs,
    path::{Path, PathBuf},
};

use filter_common::names;
use serde::{Deserialize, Serialize};

use crate::Error;

pub const DEFAULT_INSTANCE: &str = "sni-filter";

/// The maps the CLI reads from a running filter.
pub const PINNED_MAPS: [&str; 6] = [
    names::COUNTERS,
    names::NOTES,
    names::IFACE_COUNTERS,
    names::APP_COUNTERS,
    names::VERDICTS,
    names::HELLOS,
];
const BPFFS: &str = "/sys/fs/bpf";

/// The traces of one instance.
#[derive(Debug, Clone)]
pub struct Instance {
    pub name: String,
}

/// What a running daemon says about itself, for `status`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunState {
    pub pid: u32,
    pub config: PathBuf,
    pub config_fingerprint: String,
    pub program_id: Option<u32>,
    pub interfaces: Vec<Attachment>,
    pub apps: Vec<AppSummary>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Attachment {
    pub interface: String,
    pub ifindex: u32,
    pub mode: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AppSummary {
    pub name: String,
    pub action: String,
    pub enabled: bool,
    pub rules: usize,
}

impl Instance {
    pub fn new(name: &str) -> Result<Self, Error> {
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(Error::State(format!(
                "instance name {name:?} may only use letters, digits, '-' and '_'"
            )));
        }
        Ok(Self {
            name: name.to_owned(),
        })
    }

    pub fn pin_dir(&self) -> PathBuf {
        Path::new(BPFFS).join(&self.name)
    }

    /// Where a map of the running filter is pinned.
    pub fn pin(&self, map: &str) -> PathBuf {
        self.pin_dir().join(map)
    }

    pub fn state_file(&self) -> PathBuf {
        Path::new("/run").join(&self.name).join("state.json")
    }

    /// Creates the pin folder, mounting bpffs first if nothing is mounted there.
    pub fn prepare(&self) -> Result<(), Error> {
        ensure_bpffs()?;
        let dir = self.pin_dir();
        // Pins left by a daemon that was killed: this daemon replaces them.
        for map in PINNED_MAPS {
            let _ = fs::remove_file(self.pin(map));
        }
        fs::create_dir_all(&dir)
            .map_err(|e| Error::State(format!("creating {}: {e}", dir.display())))?;
        if let Some(parent) = self.state_file().parent() {
            fs::create_dir_all(parent)
                .map_err(|e| Error::State(format!("creating {}: {e}", parent.display())))?;
        }
        Ok(())
    }

    pub fn write_state(&self, state: &RunState) -> Result<(), Error> {
        let path = self.state_file();
        let tmp = path.with_extension("json.tmp");
        let json = serde_json::to_vec_pretty(state).map_err(|e| Error::State(e.to_string()))?;
        fs::write(&tmp, json)
            .and_then(|()| fs::rename(&tmp, &path))
            .map_err(|e| Error::State(format!("writing {}: {e}", path.display())))
    }

    pub fn read_state(&self) -> Option<RunState> {
        let bytes = fs::read(self.state_file()).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// Removes every trace; called when the daemon stops.
    pub fn clear(&self) {
        for map in PINNED_MAPS {
            let _ = fs::remove_file(self.pin(map));
        }
        let _ = fs::remove_dir(self.pin_dir());
        let _ = fs::remove_file(self.state_file());
        if let Some(parent) = self.state_file().parent() {
            let _ = fs::remove_dir(parent);
        }
    }
}

fn ensure_bpffs() -> Result<(), Error> {
    let mounts = fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    if mounts.lines().any(|l| {
        let mut f = l.split_whitespace();
        f.nth(1) == Some(BPFFS) && f.next() == Some("bpf")
    }) {
        return Ok(());
    }
    let target = std::ffi::CString::new(BPFFS).expect("no NUL");
    let fstype = std::ffi::CString::new("bpf").expect("no NUL");
    // SAFETY: valid NUL-terminated strings; no data argument.
    let rc = unsafe {
        libc::mount(
            fstype.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        return Err(Error::State(format!(
            "bpffs is not mounted at {BPFFS} and mounting it failed: {}",
            std::io::Error::last_os_error()
        )));
    }
    Ok(())
}

/// Whether a process with this pid is alive.
pub fn pid_alive(pid: u32) -> bool {
    Path::new("/proc").join(pid.to_string()).exists()
}

/// The index of an interface, if it exists.
pub fn ifindex(name: &str) -> Option<u32> {
    let c = std::ffi::CString::new(name).ok()?;
    // SAFETY: a NUL-terminated name.
    let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
    (i != 0).then_some(i)
}

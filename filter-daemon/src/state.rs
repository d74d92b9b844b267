//! Where a filter leaves its traces: pinned links, maps and a state file, named by instance
//! so that several test filters can run on one machine.
//!
//! Under `/sys/fs/bpf/NAME/` (root only):
//! - `link-IFACE`: the XDP link of each interface. While it is pinned the program stays
//!   attached, daemon or not; removing it detaches.
//! - the maps that outlive a daemon ([`PINNED_MAPS`]): the counters (by reason, note,
//!   interface and app), blocked flows, hellos being read and the hint bits of both, events,
//!   and `LAYOUT`, the layout version they were made with. A daemon that starts adopts them,
//!   so counters go on and blocked flows stay blocked.
//! - `JUDGE`: the tail-call table of the loaded program, pinned so that it stays filled
//!   when no daemon holds it (an emptied table would let hellos pass unread).
//!
//! `/run/NAME/state.json`: what the last daemon said about itself, for `status`.

use std::{
    fs,
    path::{Path, PathBuf},
};

use aya::maps::{Array, Map, MapData};
use filter_common::{LAYOUT_VERSION, names};
use serde::{Deserialize, Serialize};

use crate::Error;

pub const DEFAULT_INSTANCE: &str = "sni-filter";

/// The maps that outlive a daemon: adopted by the next one, read by the CLI.
pub const PINNED_MAPS: [&str; 10] = [
    names::LAYOUT,
    names::COUNTERS,
    names::NOTES,
    names::IFACE_COUNTERS,
    names::APP_COUNTERS,
    names::VERDICTS,
    names::HELLOS,
    names::EVENTS,
    // The bits in front of VERDICTS and HELLOS go with them: a program that adopts the
    // tables must see the bits of their entries.
    names::FLOW_HINTS,
    names::HINT_SIDE,
];
/// The prefix of a pinned link's file name; the interface name follows.
const LINK_PREFIX: &str = "link-";
const BPFFS: &str = "/sys/fs/bpf";

/// The traces of one instance.
#[derive(Debug, Clone)]
pub struct Instance {
    pub name: String,
}

/// What a running daemon says about itself, for `status`, `check` and `reload`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunState {
    pub pid: u32,
    /// The daemon's `--version` text (version and commit); empty from an older daemon.
    #[serde(default)]
    pub version: String,
    /// When the daemon started, seconds since the Unix epoch.
    #[serde(default)]
    pub started_at: u64,
    /// The configuration's `mode`: "enforce", or "monitor" (a dry run: nothing dropped).
    #[serde(default)]
    pub mode: String,
    pub config: PathBuf,
    /// The identity of the rule set in force ([`crate::identity::RuleSetId`]): `check`
    /// compares it with the one a configuration and its lists compile to.
    #[serde(default)]
    pub rules_sha256: String,
    /// The lists' versions (`FILE VERSION, ...`), empty when none carries one.
    #[serde(default)]
    pub rules_version: String,
    /// When the rule set in force was loaded (the start or the last applied reload),
    /// seconds since the Unix epoch.
    #[serde(default)]
    pub rules_loaded_at: u64,
    pub program_id: Option<u32>,
    pub interfaces: Vec<Attachment>,
    pub apps: Vec<AppSummary>,
    /// The outcome of the last reload, once one was asked for.
    #[serde(default)]
    pub reload: Option<ReloadOutcome>,
}

/// How the last reload the daemon was asked for ended; `sni-filter reload` waits for a
/// generation newer than the one it saw before signalling.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReloadOutcome {
    /// Reloads since the daemon started: 1 for the first.
    pub generation: u64,
    pub result: ReloadResult,
    /// Why the configuration was refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// When the reload ended, seconds since the Unix epoch.
    pub at: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReloadResult {
    /// The new configuration is in force.
    Applied,
    /// The new configuration was invalid; the running rules stayed in force.
    Refused,
}

/// Seconds since the Unix epoch, now.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
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
            return Err(Error::config(
                format!("instance name {name:?}"),
                "may only use letters, digits, '-' and '_'",
            ));
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

    /// Where the link of an interface is pinned.
    pub fn link_pin(&self, iface: &str) -> PathBuf {
        self.pin_dir().join(format!("{LINK_PREFIX}{iface}"))
    }

    /// The interfaces whose links are pinned, with their pins, sorted by name.
    pub fn pinned_links(&self) -> Vec<(String, PathBuf)> {
        let mut links: Vec<(String, PathBuf)> = fs::read_dir(self.pin_dir())
            .into_iter()
            .flatten()
            .filter_map(Result::ok)
            .filter_map(|e| {
                let name = e
                    .file_name()
                    .to_str()?
                    .strip_prefix(LINK_PREFIX)?
                    .to_owned();
                Some((name, e.path()))
            })
            .collect();
        links.sort();
        links
    }

    /// Creates the pin and state folders (root only), mounting bpffs first if nothing is
    /// mounted there. Pins already there are left for the caller to adopt.
    pub fn prepare(&self) -> Result<(), Error> {
        use std::os::unix::fs::DirBuilderExt as _;
        ensure_bpffs()?;
        for dir in [self.pin_dir(), self.state_dir()] {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&dir)
                .map_err(|e| Error::system(format!("creating {}", dir.display()), e))?;
        }
        Ok(())
    }

    fn state_dir(&self) -> PathBuf {
        Path::new("/run").join(&self.name)
    }

    pub fn write_state(&self, state: &RunState) -> Result<(), Error> {
        let path = self.state_file();
        let tmp = path.with_extension("json.tmp");
        serde_json::to_vec_pretty(state)
            .map_err(std::io::Error::from)
            .and_then(|json| fs::write(&tmp, json))
            .and_then(|()| fs::rename(&tmp, &path))
            .map_err(|source| Error::Write { path, source })
    }

    pub fn read_state(&self) -> Option<RunState> {
        let bytes = fs::read(self.state_file()).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// Removes every trace: the links (which detaches the program), the maps, the state
    /// file and their folders. Returns the files removed.
    pub fn clear(&self) -> Vec<PathBuf> {
        let mut removed = Vec::new();
        // Links first: the program leaves the interfaces before its maps are unpinned.
        let links = self.pinned_links().into_iter().map(|(_, p)| p);
        let rest = fs::read_dir(self.pin_dir())
            .into_iter()
            .flatten()
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| {
                !p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with(LINK_PREFIX))
            });
        let pins: Vec<PathBuf> = links.chain(rest).collect();
        for path in pins.into_iter().chain([self.state_file()]) {
            if fs::remove_file(&path).is_ok() {
                removed.push(path);
            }
        }
        let _ = fs::remove_file(self.state_file().with_extension("json.tmp"));
        let _ = fs::remove_dir(self.pin_dir());
        let _ = fs::remove_dir(self.state_dir());
        removed
    }

    /// The layout version the pinned maps were made with; `None` when nothing is pinned.
    pub fn pinned_layout(&self) -> Result<Option<u32>, Error> {
        let path = self.pin(names::LAYOUT);
        if !path.exists() {
            return Ok(None);
        }
        let failed =
            |what: &str, e| Error::map(names::LAYOUT, format!("{what} {}", path.display()), e);
        let data = MapData::from_pin(&path).map_err(|e| failed("opening", e))?;
        let array: Array<MapData, u32> =
            Array::try_from(Map::Array(data)).map_err(|e| failed("opening", e))?;
        array.get(&0, 0).map(Some).map_err(|e| failed("reading", e))
    }

    /// Opens a pinned map for the CLI, once the pinned layout is known to be this
    /// version's: a map of another layout would be misread.
    pub fn open_pinned(&self, name: &'static str) -> Result<MapData, Error> {
        let refused = |reason: String| Error::Pinned {
            path: self.pin_dir(),
            reason,
        };
        match self.pinned_layout()? {
            Some(LAYOUT_VERSION) => {}
            Some(other) => {
                return Err(refused(format!(
                    "the filter pinned here uses map layout {other}; this sni-filter reads layout {LAYOUT_VERSION}: use the sni-filter that loaded it, or restart the daemon with this one (it takes over without a gap)"
                )));
            }
            None if self.pin(names::COUNTERS).exists() => {
                return Err(refused(
                    "the maps pinned here carry no layout version (an older sni-filter made them): restart the daemon with this version".into(),
                ));
            }
            None => {
                return Err(refused(format!(
                    "no filter is loaded for instance {:?}: nothing is pinned here",
                    self.name
                )));
            }
        }
        let path = self.pin(name);
        MapData::from_pin(&path)
            .map_err(|e| Error::map(name, format!("opening {}", path.display()), e))
    }

    /// Readies the pinned maps for a daemon that starts and will adopt them: kept when
    /// their layout is this version's and their size the one `sizes` asks, removed
    /// otherwise, so that the loader makes them afresh. Returns what starts afresh, and why.
    /// Links are left alone: they keep the running filter attached until it is replaced.
    pub fn prune_pins(&self, sizes: &[(&str, u32)]) -> Result<Vec<String>, Error> {
        let mut fresh = Vec::new();
        let remove = |name: &str| {
            let path = self.pin(name);
            fs::remove_file(&path)
                .map_err(|e| Error::system(format!("removing {}", path.display()), e))
        };
        let pinned: Vec<&str> = PINNED_MAPS
            .into_iter()
            .filter(|m| self.pin(m).exists())
            .collect();
        if pinned.is_empty() {
            return Ok(fresh);
        }
        let layout = self.pinned_layout().ok().flatten();
        if layout != Some(LAYOUT_VERSION) {
            for name in &pinned {
                remove(name)?;
            }
            fresh.push(format!(
                "the pinned maps have layout {}, this version uses {LAYOUT_VERSION}: counters, blocked flows and queued events start afresh",
                layout.map_or_else(|| "none".into(), |v| v.to_string())
            ));
            return Ok(fresh);
        }
        for &(name, want) in sizes {
            let path = self.pin(name);
            if !path.exists() {
                continue;
            }
            let have = MapData::from_pin(&path)
                .ok()
                .and_then(|m| m.info().ok())
                .map(|i| i.max_entries());
            if have != Some(want) {
                remove(name)?;
                fresh.push(format!(
                    "{name} holds {} entries, the configuration asks for {want}: it starts afresh",
                    have.map_or_else(|| "?".into(), |v| v.to_string())
                ));
            }
        }
        Ok(fresh)
    }

    /// Whether anything of this instance is left: pins or a state file.
    pub fn exists(&self) -> bool {
        self.pin_dir().exists() || self.state_file().exists()
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
        return Err(Error::system(
            format!("bpffs is not mounted at {BPFFS} and mounting it failed"),
            std::io::Error::last_os_error(),
        ));
    }
    Ok(())
}

/// Whether an sni-filter daemon runs with this pid: a live process (not a zombie waiting to
/// be reaped) of this program's name, not another that got the pid since.
pub fn daemon_alive(pid: u32) -> bool {
    let Ok(stat) = fs::read_to_string(Path::new("/proc").join(pid.to_string()).join("stat")) else {
        return false;
    };
    // `PID (COMM) STATE ...`; COMM may hold spaces and parentheses, so split at the last ')'.
    let Some((head, tail)) = stat.rsplit_once(')') else {
        return false;
    };
    let comm = head.split_once('(').map_or("", |(_, c)| c);
    let state = tail.trim_start().chars().next().unwrap_or('?');
    comm.starts_with("sni-filter") && !matches!(state, 'Z' | 'X')
}

/// The index of an interface, if it exists.
pub fn ifindex(name: &str) -> Option<u32> {
    let c = std::ffi::CString::new(name).ok()?;
    // SAFETY: a NUL-terminated name.
    let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
    (i != 0).then_some(i)
}

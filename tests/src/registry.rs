//! Every namespace and child process group this process created, so that a signal handler can
//! remove them all when a run is cut short and the guards' `Drop` never runs.
//!
//! Guards register under the registry's lock and refuse to start once [`shutdown`] began, so
//! nothing created concurrently with a shutdown escapes it.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};

struct Registry {
    namespaces: BTreeSet<String>,
    process_groups: BTreeSet<i32>,
    scratch_dirs: BTreeSet<PathBuf>,
    closing: bool,
}

static REGISTRY: Mutex<Registry> = Mutex::new(Registry {
    namespaces: BTreeSet::new(),
    process_groups: BTreeSet::new(),
    scratch_dirs: BTreeSet::new(),
    closing: false,
});

/// How long processes get to exit on SIGTERM during a shutdown before SIGKILL.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

fn lock() -> MutexGuard<'static, Registry> {
    // A panic while holding the lock leaves consistent sets behind: keep going.
    REGISTRY
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Runs `create` (which makes the namespace `name`) under the lock and records it.
pub(crate) fn add_namespace(name: &str, create: impl FnOnce() -> Result<()>) -> Result<()> {
    let mut reg = lock();
    if reg.closing {
        bail!("the lab is shutting down: namespace {name} not created");
    }
    create()?;
    reg.namespaces.insert(name.to_owned());
    Ok(())
}

pub(crate) fn remove_namespace(name: &str) {
    lock().namespaces.remove(name);
}

/// Runs `spawn` (which returns the new process group's id) under the lock and records it.
pub(crate) fn add_process_group<T>(spawn: impl FnOnce() -> Result<(T, i32)>) -> Result<T> {
    let mut reg = lock();
    if reg.closing {
        bail!("the lab is shutting down: no process started");
    }
    let (value, pgid) = spawn()?;
    reg.process_groups.insert(pgid);
    Ok(value)
}

pub(crate) fn remove_process_group(pgid: i32) {
    lock().process_groups.remove(&pgid);
}

/// Runs `create` (which returns a new temporary folder and its path) under the lock and
/// records the path.
pub(crate) fn add_scratch_dir<T>(create: impl FnOnce() -> Result<(T, PathBuf)>) -> Result<T> {
    let mut reg = lock();
    if reg.closing {
        bail!("the lab is shutting down: no folder created");
    }
    let (value, path) = create()?;
    reg.scratch_dirs.insert(path);
    Ok(value)
}

pub(crate) fn remove_scratch_dir(path: &Path) {
    lock().scratch_dirs.remove(path);
}

/// Stops every process this process started through the lab (SIGTERM, then SIGKILL after a
/// grace period), deletes every namespace it created and removes its temporary folders.
/// Guards created afterwards fail.
///
/// Meant for a SIGINT/SIGTERM handler that exits right after: the guards' own `Drop` then
/// finds nothing left to remove. `delete` removes one namespace (the registry only keeps
/// their names). Returns the namespaces it deleted.
pub fn shutdown(delete: fn(&str)) -> Vec<String> {
    let mut reg = lock();
    reg.closing = true;
    let groups: Vec<i32> = std::mem::take(&mut reg.process_groups)
        .into_iter()
        .collect();
    // The leader first: nginx's master, say, stops and reaps its own workers.
    for &pgid in &groups {
        signal_process(pgid, libc::SIGTERM);
    }
    let deadline = Instant::now() + SHUTDOWN_GRACE;
    while groups.iter().any(|&pgid| group_alive(pgid)) && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(50));
    }
    for &pgid in &groups {
        signal_group(pgid, libc::SIGKILL);
    }
    // Reap the leaders (this process's children) so that no zombie is left to an init that
    // may not reap. Their guards, if they ever drop, find them gone and ignore it.
    let deadline = Instant::now() + Duration::from_secs(1);
    let mut unreaped = groups;
    while !unreaped.is_empty() && Instant::now() < deadline {
        // SAFETY: waitpid with a null status pointer has no other preconditions.
        unreaped
            .retain(|&pid| unsafe { libc::waitpid(pid, std::ptr::null_mut(), libc::WNOHANG) } == 0);
        if !unreaped.is_empty() {
            thread::sleep(Duration::from_millis(20));
        }
    }
    let namespaces: Vec<String> = std::mem::take(&mut reg.namespaces).into_iter().collect();
    for name in &namespaces {
        delete(name);
    }
    for dir in std::mem::take(&mut reg.scratch_dirs) {
        let _ = std::fs::remove_dir_all(dir);
    }
    namespaces
}

pub(crate) fn signal_process(pid: i32, signal: i32) {
    // SAFETY: kill has no memory-safety preconditions; a gone process gives ESRCH, ignored.
    unsafe {
        libc::kill(pid, signal);
    }
}

pub(crate) fn signal_group(pgid: i32, signal: i32) {
    // SAFETY: kill has no memory-safety preconditions; a gone group gives ESRCH, ignored.
    unsafe {
        libc::kill(-pgid, signal);
    }
}

/// Whether the group still has a member that is not a zombie. Zombies count as gone: they
/// are this process's unreaped children and hold no resources a lab cares about.
fn group_alive(pgid: i32) -> bool {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return false;
    };
    entries.flatten().any(|entry| {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            return false;
        };
        // Fields after the parenthesised command name: state ppid pgrp ...
        let Some((_, rest)) = stat.rsplit_once(')') else {
            return false;
        };
        let mut fields = rest.split_whitespace();
        let state = fields.next();
        let pgrp = fields.nth(1).and_then(|f| f.parse::<i32>().ok());
        pgrp == Some(pgid) && state != Some("Z")
    })
}

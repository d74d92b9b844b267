//! Least privilege: once the program is loaded and attached, the daemon keeps only the
//! capability its remaining work needs.
//!
//! After the start the daemon writes the maps it holds (reloads, sweeping), reads the
//! event ring and, with `detach_on_stop`, removes its pins. BPF commands need `CAP_BPF`
//! where unprivileged BPF is disabled (the default of distributions); reading the
//! configuration, writing the state file and removing pins are done as the owner (root)
//! of those files and need no capability. Loading a program, attaching it and mounting
//! bpffs happen before the drop; changes that need them (interfaces, table sizes, a new
//! version) take a restart, and a new process starts with the unit's bounding set.

use caps::{CapSet, Capability, CapsHashSet};

use crate::Error;

/// What the daemon keeps.
pub const KEPT: [Capability; 1] = [Capability::CAP_BPF];

/// Drops every capability but [`KEPT`] from the bounding, permitted, effective,
/// inheritable and ambient sets, and sets `no_new_privs`, so that nothing this process
/// runs can gain one back. Returns the names of the capabilities kept.
pub fn drop_to_kept() -> Result<Vec<String>, Error> {
    let fail = |what: &str, e: &dyn std::fmt::Display| Error::Privileges {
        what: what.into(),
        reason: e.to_string(),
    };
    let keep: CapsHashSet = KEPT.into_iter().collect();
    // The bounding set first: lowering it needs CAP_SETPCAP, which goes with the rest.
    let bounding =
        caps::read(None, CapSet::Bounding).map_err(|e| fail("reading the bounding set", &e))?;
    for cap in bounding.difference(&keep) {
        caps::drop(None, CapSet::Bounding, *cap)
            .map_err(|e| fail(&format!("bounding {cap}"), &e))?;
    }
    caps::clear(None, CapSet::Ambient).map_err(|e| fail("ambient", &e))?;
    caps::clear(None, CapSet::Inheritable).map_err(|e| fail("inheritable", &e))?;
    let held =
        caps::read(None, CapSet::Permitted).map_err(|e| fail("reading the permitted set", &e))?;
    let kept: CapsHashSet = held.intersection(&keep).copied().collect();
    caps::set(None, CapSet::Effective, &kept).map_err(|e| fail("effective", &e))?;
    caps::set(None, CapSet::Permitted, &kept).map_err(|e| fail("permitted", &e))?;
    // SAFETY: prctl with integer arguments only.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(fail("no_new_privs", &std::io::Error::last_os_error()));
    }
    let mut names: Vec<String> = kept.iter().map(ToString::to_string).collect();
    names.sort();
    Ok(names)
}

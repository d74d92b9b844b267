//! `sni-filter unload`: stops the daemon if one runs, takes the filter off every interface
//! and removes every trace of the instance (pins, state file, their folders).

use std::time::{Duration, Instant};

use crate::{
    Error,
    state::{Instance, daemon_alive},
};

/// How long a running daemon gets to stop on SIGTERM.
const STOP_WAIT: Duration = Duration::from_secs(10);

pub fn unload(instance: &Instance) -> Result<(), Error> {
    if let Some(state) = instance.read_state().filter(|s| daemon_alive(s.pid)) {
        let pid = state.pid;
        // SAFETY: a signal to a process id read from the state file and checked to be ours.
        let rc = unsafe { libc::kill(libc::pid_t::try_from(pid).unwrap_or(0), libc::SIGTERM) };
        if rc != 0 {
            return Err(Error::system(
                format!("cannot stop the daemon (pid {pid}), so nothing was removed"),
                std::io::Error::last_os_error(),
            ));
        }
        let deadline = Instant::now() + STOP_WAIT;
        while daemon_alive(pid) {
            if Instant::now() > deadline {
                return Err(Error::system(
                    format!(
                        "the daemon (pid {pid}) did not stop within {}s of SIGTERM, so nothing was removed",
                        STOP_WAIT.as_secs()
                    ),
                    std::io::ErrorKind::TimedOut.into(),
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        println!("stopped the daemon (pid {pid})");
    }
    let links = instance.pinned_links();
    let removed = instance.clear();
    if removed.is_empty() {
        println!(
            "nothing to unload: instance {:?} has no pins under {} and no state file",
            instance.name,
            instance.pin_dir().display()
        );
        return Ok(());
    }
    for (iface, _) in &links {
        println!("detached from {iface}");
    }
    let pins = removed
        .iter()
        .filter(|p| p.starts_with(instance.pin_dir()))
        .count();
    println!(
        "removed {pins} pins under {}{}",
        instance.pin_dir().display(),
        if removed.len() > pins {
            " and the state file"
        } else {
            ""
        }
    );
    if instance.exists() {
        return Err(Error::Pinned {
            path: instance.pin_dir(),
            reason: format!(
                "this folder or {} could not be removed entirely",
                instance.state_file().display()
            ),
        });
    }
    Ok(())
}

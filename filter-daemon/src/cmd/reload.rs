//! `sni-filter reload`: asks the running daemon to re-read its configuration (SIGHUP). The
//! daemon validates the new configuration first and keeps the running rules if it is invalid.

use crate::{
    Error,
    state::{Instance, daemon_alive as pid_alive},
};

pub fn reload(instance: &Instance) -> Result<(), Error> {
    let state = instance.read_state().ok_or_else(|| {
        Error::State(format!(
            "no filter is running (no {})",
            instance.state_file().display()
        ))
    })?;
    if !pid_alive(state.pid) {
        return Err(Error::State(format!(
            "the daemon (pid {}) is not running: stale state",
            state.pid
        )));
    }
    let pid = libc::pid_t::try_from(state.pid)
        .map_err(|_| Error::State(format!("pid {} out of range", state.pid)))?;
    // SAFETY: sending a signal has no memory-safety preconditions.
    if unsafe { libc::kill(pid, libc::SIGHUP) } != 0 {
        return Err(Error::State(format!(
            "signalling pid {}: {}",
            state.pid,
            std::io::Error::last_os_error()
        )));
    }
    println!(
        "asked the daemon (pid {}) to reload {}; its log says whether the new configuration was taken",
        state.pid,
        state.config.display()
    );
    Ok(())
}

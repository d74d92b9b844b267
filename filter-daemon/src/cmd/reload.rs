//! `sni-filter reload`: asks the running daemon to re-read its configuration (SIGHUP). The
//! reload itself is the daemon's (`daemon/reload.rs`): it validates the new configuration
//! first and keeps the running rules if it is invalid.

use crate::{
    Error,
    state::{Instance, daemon_alive},
};

pub fn reload(instance: &Instance) -> Result<(), Error> {
    let not_running = |reason: String| Error::NotRunning {
        instance: instance.name.clone(),
        reason,
    };
    let state = instance
        .read_state()
        .ok_or_else(|| not_running(format!("no {}", instance.state_file().display())))?;
    if !daemon_alive(state.pid) {
        return Err(not_running(format!(
            "its last daemon (pid {}) has ended: stale state",
            state.pid
        )));
    }
    let pid = libc::pid_t::try_from(state.pid)
        .map_err(|_| not_running(format!("pid {} out of range", state.pid)))?;
    // SAFETY: sending a signal has no memory-safety preconditions.
    if unsafe { libc::kill(pid, libc::SIGHUP) } != 0 {
        return Err(Error::system(
            format!("signalling pid {}", state.pid),
            std::io::Error::last_os_error(),
        ));
    }
    println!(
        "asked the daemon (pid {}) to reload {}; its log says whether the new configuration was taken",
        state.pid,
        state.config.display()
    );
    Ok(())
}

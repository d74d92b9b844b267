//! `sni-filter reload`: asks the running daemon to re-read its configuration (SIGHUP) and
//! waits for its answer in the state file: applied, or refused with the reason (the running
//! rules then stay in force). The reload itself is the daemon's (`daemon/reload.rs`).

use std::time::{Duration, Instant};

use crate::{
    Error,
    state::{Instance, ReloadOutcome, ReloadResult, RunState, daemon_alive},
};

/// How long a reload may take: compiling a million rules takes seconds, not minutes.
const ANSWER_WITHIN: Duration = Duration::from_mins(1);
const POLL: Duration = Duration::from_millis(50);

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
    let seen = generation(&state);
    let pid = libc::pid_t::try_from(state.pid)
        .map_err(|_| not_running(format!("pid {} out of range", state.pid)))?;
    // SAFETY: sending a signal has no memory-safety preconditions.
    if unsafe { libc::kill(pid, libc::SIGHUP) } != 0 {
        return Err(Error::system(
            format!("signalling pid {}", state.pid),
            std::io::Error::last_os_error(),
        ));
    }
    let (answer, outcome) = wait_for_answer(instance, state.pid, seen)?;
    match outcome.result {
        ReloadResult::Applied => {
            let rules: usize = answer.apps.iter().map(|a| a.rules).sum();
            println!(
                "reloaded {}: {rules} rules in {} apps (daemon pid {}, reload {})",
                answer.config.display(),
                answer.apps.len(),
                answer.pid,
                outcome.generation
            );
            Ok(())
        }
        ReloadResult::Refused => Err(Error::ReloadRefused {
            pid: answer.pid,
            reason: outcome.error.unwrap_or_default(),
        }),
    }
}

fn generation(state: &RunState) -> u64 {
    state.reload.as_ref().map_or(0, |r| r.generation)
}

/// The state and the outcome once the daemon `pid` has answered a reload after generation
/// `seen`.
fn wait_for_answer(
    instance: &Instance,
    pid: u32,
    seen: u64,
) -> Result<(RunState, ReloadOutcome), Error> {
    let asked = Instant::now();
    loop {
        std::thread::sleep(POLL);
        let state = instance.read_state().filter(|s| s.pid == pid);
        let answer = state.and_then(|s| {
            let outcome = s.reload.clone().filter(|o| o.generation > seen)?;
            Some((s, outcome))
        });
        match answer {
            Some(answer) => return Ok(answer),
            _ if !daemon_alive(pid) => {
                return Err(Error::NotRunning {
                    instance: instance.name.clone(),
                    reason: format!("the daemon (pid {pid}) ended before it answered the reload"),
                });
            }
            _ if asked.elapsed() > ANSWER_WITHIN => {
                return Err(Error::system(
                    format!(
                        "waiting for the daemon (pid {pid}) to answer the reload ({} s)",
                        ANSWER_WITHIN.as_secs()
                    ),
                    std::io::ErrorKind::TimedOut.into(),
                ));
            }
            _ => {}
        }
    }
}

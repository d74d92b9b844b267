//! A spawned process in a process group of its own, stopped and reaped on drop.
//!
//! The own group means a terminal's Ctrl-C reaches only the task runner, which then stops
//! children in order, and that helpers the child forks (nginx workers) are stopped with it.

use std::os::unix::process::CommandExt as _;
use std::process::{Child, ChildStderr, ChildStdin, ChildStdout, Command, ExitStatus, Output};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};

use crate::registry;
use crate::run::describe;

/// A running child process, stopped on drop (its signal, then SIGKILL to its whole group) and
/// waited for.
#[derive(Debug)]
pub struct ChildGuard {
    child: Option<Child>,
    label: String,
    pgid: i32,
    stop_signal: i32,
    grace: Duration,
}

impl ChildGuard {
    /// Spawns `cmd` in a new process group. On drop the group gets SIGKILL unless
    /// [`ChildGuard::graceful`] set a gentler signal for the process first.
    pub fn spawn(cmd: &mut Command) -> Result<Self> {
        let label = describe(cmd);
        cmd.process_group(0);
        let child = registry::add_process_group(|| {
            let child = cmd
                .spawn()
                .with_context(|| format!("cannot start `{label}`"))?;
            let pgid = child.id().cast_signed();
            Ok((child, pgid))
        })?;
        Ok(Self {
            pgid: child.id().cast_signed(),
            child: Some(child),
            label,
            stop_signal: libc::SIGKILL,
            grace: Duration::ZERO,
        })
    }

    /// On drop, send `signal` first and allow `grace` for the process to exit before SIGKILL.
    #[must_use]
    pub fn graceful(mut self, signal: i32, grace: Duration) -> Self {
        self.stop_signal = signal;
        self.grace = grace;
        self
    }

    pub fn id(&self) -> u32 {
        self.pgid.cast_unsigned()
    }

    /// The command line it was started with.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// Takes the child's stdin, if it was piped.
    pub fn take_stdin(&mut self) -> Option<ChildStdin> {
        self.child.as_mut().and_then(|c| c.stdin.take())
    }

    /// Takes the child's stdout, if it was piped.
    pub fn take_stdout(&mut self) -> Option<ChildStdout> {
        self.child.as_mut().and_then(|c| c.stdout.take())
    }

    /// Takes the child's stderr, if it was piped.
    pub fn take_stderr(&mut self) -> Option<ChildStderr> {
        self.child.as_mut().and_then(|c| c.stderr.take())
    }

    /// The exit status if the process has exited (reaping it), `None` while it runs.
    pub fn try_wait(&mut self) -> Result<Option<ExitStatus>> {
        match self.child.as_mut() {
            Some(child) => child.try_wait().context("cannot poll a child process"),
            None => Ok(None),
        }
    }

    /// Waits for the process to exit on its own and collects its piped output.
    pub fn wait_with_output(mut self) -> Result<Output> {
        let child = self.child.take().context("child already reaped")?;
        let out = child
            .wait_with_output()
            .with_context(|| format!("cannot wait for `{}`", self.label));
        registry::signal_group(self.pgid, libc::SIGKILL);
        registry::remove_process_group(self.pgid);
        out
    }

    /// Stops the process as on drop and returns how it ended.
    pub fn stop(mut self) -> Result<ExitStatus> {
        self.stop_now()
            .with_context(|| format!("cannot stop `{}`", self.label))
    }

    fn stop_now(&mut self) -> Result<ExitStatus> {
        let mut child = self.child.take().context("child already reaped")?;
        let mut status = child.try_wait()?;
        if status.is_none() {
            // Only the leader: it stops what it started itself (nginx's master its workers),
            // which then exit as its children instead of orphans.
            registry::signal_process(self.pgid, self.stop_signal);
            let deadline = Instant::now() + self.grace;
            while status.is_none() && Instant::now() < deadline {
                thread::sleep(Duration::from_millis(20));
                status = child.try_wait()?;
            }
        }
        // Also sweeps what the child forked, even when the child itself is gone.
        registry::signal_group(self.pgid, libc::SIGKILL);
        let status = match status {
            Some(status) => status,
            None => child.wait()?,
        };
        registry::remove_process_group(self.pgid);
        Ok(status)
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if self.child.is_some() {
            let _ = self.stop_now();
        }
    }
}

//! Children of the matrix (virtiofsd, QEMU, the host's run of the suite): killed when their
//! guard drops, also when the stage fails or is interrupted, and when xtask itself dies.

use std::fs::File;
use std::io::{BufRead as _, BufReader, Write as _};
use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use sni_filter_lab::ChildGuard;

/// A running child in a process group of its own (the lab's [`ChildGuard`], which kills the
/// whole group and reaps the child on drop: a shell's test binaries and their `sni-filter`
/// children go with it), which also dies with this process.
pub struct Guard {
    child: ChildGuard,
    name: String,
}

impl Guard {
    /// Starts `cmd`; the kernel kills it should this process die without dropping the guard.
    /// Out of the terminal's process group, Ctrl-C reaches it through the guard only.
    pub fn spawn(cmd: &mut Command, name: &str) -> Result<Self> {
        // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        Ok(Self {
            child: ChildGuard::spawn(cmd)?,
            name: name.to_owned(),
        })
    }

    pub fn has_exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    /// Waits for the child to end by itself, at most until `deadline`, polling `interrupted`
    /// (set by Ctrl-C or SIGTERM) so that an interrupted stage does not wait out the deadline.
    pub fn wait(&mut self, deadline: Instant, interrupted: &AtomicBool) -> Result<ExitStatus> {
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if interrupted.load(Ordering::SeqCst) {
                bail!("interrupted: {} stopped", self.name);
            }
            if Instant::now() >= deadline {
                bail!("{} did not end in time and was killed", self.name);
            }
            thread::sleep(Duration::from_millis(200));
        }
    }
}

/// A child whose standard output goes to a log file, with the suite's markers, test summaries
/// and verifier lines echoed to the terminal as they come, so a slow guest shows progress.
pub struct Logged {
    pub guard: Guard,
    reader: JoinHandle<String>,
}

impl Logged {
    pub fn spawn(cmd: &mut Command, name: &str, log: &Path) -> Result<Self> {
        let mut file =
            File::create(log).with_context(|| format!("cannot create {}", log.display()))?;
        let mut guard = Guard::spawn(cmd.stdin(Stdio::null()).stdout(Stdio::piped()), name)?;
        let stdout = guard.child.take_stdout().context("no stdout pipe")?;
        let label = name.to_owned();
        let reader = thread::spawn(move || {
            let mut text = String::new();
            let mut lines = BufReader::new(stdout);
            let mut line = Vec::new();
            // Lines, not UTF-8 strings: firmware on the serial console prints any byte.
            while lines.read_until(b'\n', &mut line).is_ok_and(|n| n > 0) {
                let _ = file.write_all(&line);
                let shown = String::from_utf8_lossy(&line);
                let shown = shown.trim_end();
                if worth_showing(shown) {
                    println!("  [{label}] {}", shown.trim_start_matches("@@matrix "));
                }
                text.push_str(shown);
                text.push('\n');
                line.clear();
            }
            text
        });
        Ok(Self { guard, reader })
    }

    /// Waits as [`Guard::wait`] does, then returns the output; on failure the child is killed
    /// first, which ends the output.
    pub fn finish(
        self,
        deadline: Instant,
        interrupted: &AtomicBool,
    ) -> (Result<ExitStatus>, String) {
        let Self { mut guard, reader } = self;
        let status = guard.wait(deadline, interrupted);
        drop(guard);
        let text = reader.join().unwrap_or_default();
        (status, text)
    }
}

fn worth_showing(line: &str) -> bool {
    line.starts_with("@@matrix ")
        || line.contains("test result: ")
        || line.contains("verifier sni_")
        || line.contains("Kernel panic")
}

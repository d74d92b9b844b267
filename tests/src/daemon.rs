//! The `sni-filter` daemon under test, run in the lab's gateway namespace on the gateway's
//! client-facing interface, with its output kept in files for assertions and error reports.

use std::ffi::OsStr;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail, ensure};

use crate::child::ChildGuard;
use crate::lab::Lab;
use crate::sandbox;
use crate::scratch::ScratchDir;
use crate::status::Status;
use crate::unit_file::ServiceSandbox;

/// What `sni-filter run` prints once its program is attached.
pub const ATTACHED_MARKER: &str = "attached";
/// How long the daemon gets to load and attach the program.
const ATTACH_TIMEOUT: Duration = Duration::from_secs(20);
/// How long the daemon gets to exit on SIGTERM before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// A running `sni-filter run`, stopped with SIGTERM (then SIGKILL after 5 s) on drop.
#[derive(Debug)]
pub struct Daemon {
    // Field order is drop order: stop the daemon before its log files go.
    process: ChildGuard,
    bin: PathBuf,
    instance: String,
    /// The lab's gateway host process, whose namespaces the daemon and its CLI run in.
    host: u32,
    dir: ScratchDir,
}

impl Daemon {
    /// Starts `BIN --instance NAME run --config CONFIG --interface GW_CLIENT_IF [EXTRA...]` on
    /// the lab's gateway ([`Lab::gateway_command`]: its network namespace, and one mount
    /// namespace for the lab's life, so that a filter the daemon leaves pinned stays in
    /// force and the next daemon takes it over) and waits until it prints a line containing
    /// [`ATTACHED_MARKER`].
    ///
    /// The instance name (`sni-filter-LAB`) keeps the pinned state and run-time files of
    /// daemons in parallel labs apart.
    pub fn start<I, S>(lab: &Lab, bin: &Path, config: &Path, extra: I) -> Result<Self>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        Self::launch(lab, bin, config, extra, None)
    }

    /// As [`Daemon::start`], as systemd would start the unit at `unit` (systemd is not PID 1
    /// here): its `ExecStartPre=+` lines run on the gateway first (bpffs), then the daemon
    /// runs directly (no wrapper, so that its pid is the service's) under the unit's
    /// [`ServiceSandbox`]: bounding set, `no_new_privs`, the system call filter with its
    /// errno and address families, `ProtectSystem=strict` with `ReadWritePaths=`,
    /// `ProtectKernelTunables=`, `ProtectProc=`, `ProcSubset=`, `ProtectHostname=` and
    /// `PrivateIPC=`. The instance's `/run/sni-filter-LAB` stands for `RuntimeDirectory=`.
    ///
    /// Not emulated: `PrivateTmp=` and `ProtectHome=` (the lab's configuration lives in a
    /// temporary folder; the daemon writes neither), `PrivateDevices=`/`DevicePolicy=` (the
    /// daemon opens no device; its local log goes to sockets), `ProtectKernelLogs=`,
    /// `ProtectKernelModules=`, `ProtectClock=` and `ProtectControlGroups=` (the system call
    /// filter already refuses what they guard), `RestrictNamespaces=`, `RestrictRealtime=`,
    /// `RestrictSUIDSGID=`, `LockPersonality=`, `MemoryDenyWriteExecute=` (argument filters
    /// on calls the daemon makes only as any program does) and `UMask=`.
    pub fn start_under_unit<I, S>(
        lab: &Lab,
        bin: &Path,
        config: &Path,
        extra: I,
        unit: &Path,
    ) -> Result<Self>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let sandbox = ServiceSandbox::from_unit(unit)?;
        for pre in &sandbox.privileged_pre {
            let out = lab
                .gateway_command("sh")?
                .arg("-c")
                .arg(pre)
                .output()
                .with_context(|| format!("cannot run ExecStartPre=+{pre}"))?;
            ensure!(
                out.status.success(),
                "ExecStartPre=+{pre} failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Self::launch(lab, bin, config, extra, Some(&sandbox))
    }

    fn launch<I, S>(
        lab: &Lab,
        bin: &Path,
        config: &Path,
        extra: I,
        sandbox: Option<&ServiceSandbox>,
    ) -> Result<Self>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        ensure!(bin.exists(), "no daemon binary at {}", bin.display());
        ensure!(config.exists(), "no configuration at {}", config.display());
        let bin = bin
            .canonicalize()
            .with_context(|| format!("cannot resolve {}", bin.display()))?;
        let config = config
            .canonicalize()
            .with_context(|| format!("cannot resolve {}", config.display()))?;
        let dir = ScratchDir::new("daemon")?;
        let stdout = File::create(dir.path().join("stdout"))?;
        let stderr = File::create(dir.path().join("stderr"))?;
        let instance = format!("sni-filter-{}", lab.name());
        let host = lab.gateway_host()?;
        let mut cmd = match sandbox {
            None => lab.gateway_command(&bin)?,
            Some(sandbox) => {
                let mut cmd = Command::new(&bin);
                let runtime: Vec<String> = sandbox
                    .runtime_directories
                    .iter()
                    .map(|_| instance.clone())
                    .collect();
                sandbox::confine(&mut cmd, host, sandbox, &runtime)?;
                cmd
            }
        };
        cmd.arg("--instance")
            .arg(&instance)
            .arg("run")
            .arg("--config")
            .arg(&config)
            .arg("--interface")
            .arg(lab.gateway_client_if())
            .args(extra)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr);
        let process = ChildGuard::spawn(&mut cmd)?.graceful(libc::SIGTERM, STOP_GRACE);
        let mut daemon = Self {
            process,
            bin,
            instance,
            host,
            dir,
        };

        let deadline = Instant::now() + ATTACH_TIMEOUT;
        loop {
            if daemon.log().lines().any(|l| l.contains(ATTACHED_MARKER)) {
                return Ok(daemon);
            }
            if let Some(status) = daemon.process.try_wait()? {
                bail!(
                    "`{}` exited ({status}) before attaching:\n{}",
                    daemon.process.label(),
                    daemon.log_or_none()
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "`{}` printed no line with {ATTACHED_MARKER:?} within {ATTACH_TIMEOUT:?}:\n{}",
                    daemon.process.label(),
                    daemon.log_or_none()
                );
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    fn log_or_none(&self) -> String {
        let log = self.log();
        if log.trim().is_empty() {
            "(it printed nothing)".to_owned()
        } else {
            log
        }
    }

    /// Everything the daemon printed so far: stdout, then stderr.
    pub fn log(&self) -> String {
        let mut text = self.stdout();
        let stderr = self.stderr();
        if !stderr.is_empty() {
            if !text.is_empty() && !text.ends_with('\n') {
                text.push('\n');
            }
            text.push_str(&stderr);
        }
        text
    }

    pub fn stdout(&self) -> String {
        fs::read_to_string(self.dir.path().join("stdout")).unwrap_or_default()
    }

    pub fn stderr(&self) -> String {
        fs::read_to_string(self.dir.path().join("stderr")).unwrap_or_default()
    }

    /// The `--instance` name it runs under.
    pub fn instance(&self) -> &str {
        &self.instance
    }

    pub fn pid(&self) -> u32 {
        self.process.id()
    }

    /// Whether the daemon is still running.
    pub fn running(&mut self) -> bool {
        matches!(self.process.try_wait(), Ok(None))
    }

    /// A command running the same binary and instance (`BIN --instance NAME ARGS...`, e.g.
    /// `status`) on the lab's gateway, as the daemon runs: its network namespace, and the
    /// mount namespace where the bpffs holding the pins is mounted. Works after the daemon
    /// ended too.
    pub fn command<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = Command::new("nsenter");
        cmd.arg("--target")
            .arg(self.host.to_string())
            .args(["--mount", "--net", "--"])
            .arg(&self.bin)
            .arg("--instance")
            .arg(&self.instance)
            .args(args);
        cmd
    }

    /// `sni-filter status` of this daemon, read into numbers. Also after the daemon ended
    /// (exit status 1: the filter is attached, no daemon runs).
    pub fn status(&self) -> Result<Status> {
        let out = self
            .command(["status"])
            .stdin(Stdio::null())
            .output()
            .context("cannot run `sni-filter status`")?;
        ensure!(
            matches!(out.status.code(), Some(0 | 1)),
            "`sni-filter status` failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
        Ok(Status::parse(&String::from_utf8_lossy(&out.stdout)))
    }

    /// Kills the daemon with SIGKILL, as a crash or the OOM killer would, and reaps it.
    pub fn kill(&mut self) -> Result<ExitStatus> {
        // SAFETY: a signal to our own child.
        unsafe {
            libc::kill(
                libc::pid_t::try_from(self.pid()).unwrap_or(0),
                libc::SIGKILL,
            )
        };
        let deadline = Instant::now() + STOP_GRACE;
        loop {
            if let Some(status) = self.process.try_wait()? {
                return Ok(status);
            }
            ensure!(Instant::now() < deadline, "the daemon outlived SIGKILL");
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends SIGTERM, waits up to 5 s (then SIGKILL); returns how it ended and its full log.
    pub fn stop(self) -> Result<(ExitStatus, String)> {
        let Self { process, dir, .. } = self;
        let status = process.stop()?;
        let read = |f: &str| fs::read_to_string(dir.path().join(f)).unwrap_or_default();
        Ok((status, read("stdout") + &read("stderr")))
    }
}

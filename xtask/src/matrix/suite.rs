//! What runs on each kernel: `sni-filter doctor` and the test binaries that need nothing but
//! `BPF_PROG_TEST_RUN`, built once on the host and run by one shell script, in guests and on
//! the host alike, that frames each step with markers on its output.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use anyhow::{Context as _, Result, bail};
use serde_json::Value;

use crate::shell::{self, cmd};

/// Test targets of filter-daemon that run the real program through `BPF_PROG_TEST_RUN` only:
/// the table tests, the public captures' replay and the lab captures' replay. The others need
/// namespaces, veth pairs or servers, which the guests do not have.
pub const TEST_TARGETS: &[&str] = &["program_tcp", "program_replay", "program_replay_fixtures"];

/// The step that runs `sni-filter doctor`.
pub const DOCTOR: &str = "doctor";

/// One step of the suite: a name and the command line it runs.
pub struct Step {
    pub name: String,
    argv: Vec<PathBuf>,
}

/// The built suite: its steps, in order, and where the script that runs them lives.
pub struct Suite {
    pub steps: Vec<Step>,
    pub script: PathBuf,
    /// The folder cargo runs filter-daemon's tests in, and so the script runs them in.
    package_dir: PathBuf,
}

impl Suite {
    /// Builds the binaries (debug, as `cargo test` does, so an earlier test stage's build
    /// is reused) and writes the script.
    pub fn build() -> Result<Self> {
        let mut cargo = cmd("cargo", ["test", "-p", "filter-daemon", "--no-run"]);
        for target in TEST_TARGETS {
            cargo.args(["--test", target]);
        }
        cargo
            .arg("--message-format=json")
            .current_dir(shell::workspace_root())
            .stdin(Stdio::null())
            .stderr(Stdio::inherit());
        println!("  $ {}", shell::describe(&cargo));
        let out = cargo.output().context("cannot start cargo")?;
        if !out.status.success() {
            bail!("building the test binaries failed ({})", out.status);
        }
        let mut daemon = None;
        let mut tests = Vec::new();
        let mut package_dir = None;
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let Ok(message) = serde_json::from_str::<Value>(line) else {
                continue;
            };
            let Some(artifact) = Artifact::of(&message) else {
                continue;
            };
            if artifact.test && TEST_TARGETS.contains(&artifact.name.as_str()) {
                package_dir = artifact.manifest.parent().map(Path::to_path_buf);
                tests.push((artifact.name, artifact.executable));
            } else if !artifact.test && artifact.name == "sni-filter" {
                daemon = Some(artifact.executable);
            }
        }
        let daemon = daemon.context("cargo reported no sni-filter binary")?;
        let package_dir = package_dir.context("cargo reported no test binary")?;
        let mut steps = vec![Step {
            name: DOCTOR.into(),
            argv: vec![daemon, "doctor".into(), "lo".into()],
        }];
        for target in TEST_TARGETS {
            let (name, executable) = tests
                .iter()
                .find(|(name, _)| name == target)
                .with_context(|| format!("cargo reported no test binary for {target}"))?;
            steps.push(Step {
                name: name.clone(),
                // A guest's console is a terminal, where libtest would colour its summary.
                argv: vec![executable.clone(), "--color".into(), "never".into()],
            });
        }
        let suite = Self {
            steps,
            script: shell::target_dir().join("kernel-matrix").join("suite.sh"),
            package_dir,
        };
        suite.write_script()?;
        Ok(suite)
    }

    /// The script: paths are the host's, which the guests see at the same place.
    fn write_script(&self) -> Result<()> {
        let mut script = String::from(
            "#!/bin/sh\n\
             # Written by `cargo xtask matrix`: the suite each kernel runs.\n\
             exec 2>&1\n\
             export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n\
             export RUST_BACKTRACE=1\n\
             since_boot() { cut -d' ' -f1 /proc/uptime; }\n",
        );
        let _ = writeln!(script, "cd {} || exit 1", quote(&self.package_dir)?);
        for step in &self.steps {
            let argv = step
                .argv
                .iter()
                .map(|a| quote(a))
                .collect::<Result<Vec<_>>>()?
                .join(" ");
            let _ = write!(
                script,
                "echo \"@@matrix step {name} begin $(since_boot)\"\n\
                 {argv}\n\
                 echo \"@@matrix step {name} end $? $(since_boot)\"\n",
                name = step.name
            );
        }
        if let Some(dir) = self.script.parent() {
            fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        }
        fs::write(&self.script, script)
            .with_context(|| format!("cannot write {}", self.script.display()))
    }
}

/// What cargo's `compiler-artifact` message says about one built executable.
struct Artifact {
    name: String,
    test: bool,
    executable: PathBuf,
    manifest: PathBuf,
}

impl Artifact {
    fn of(message: &Value) -> Option<Self> {
        if message["reason"] != "compiler-artifact" {
            return None;
        }
        Some(Self {
            name: message["target"]["name"].as_str()?.to_owned(),
            test: message["profile"]["test"].as_bool()?,
            executable: message["executable"].as_str()?.into(),
            manifest: message["manifest_path"].as_str()?.into(),
        })
    }
}

/// The path in single quotes for sh.
fn quote(path: &Path) -> Result<String> {
    let text = path
        .to_str()
        .with_context(|| format!("{} is not UTF-8", path.display()))?;
    Ok(format!("'{}'", text.replace('\'', r"'\''")))
}

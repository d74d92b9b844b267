//! Publishers' keys and signed rule lists for the lab tests of signed lists: key pairs and
//! signatures made by the real `minisign`, and lists carrying a version.

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
};

/// Both output streams of a command, for messages.
pub fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

/// A publisher's key pair made by `minisign -G` (no password: `-W`).
pub struct Key {
    pub secret: PathBuf,
    /// The `RW...` line of its `minisign.pub`.
    pub public: String,
}

impl Key {
    pub fn new(dir: &Path, name: &str) -> Self {
        let (secret, public) = (
            dir.join(format!("{name}.key")),
            dir.join(format!("{name}.pub")),
        );
        let out = Command::new("minisign")
            .args(["-G", "-W", "-s"])
            .arg(&secret)
            .arg("-p")
            .arg(&public)
            .output()
            .expect("minisign runs (Debian package minisign: cargo xtask setup)");
        assert!(out.status.success(), "minisign -G: {}", text(&out));
        let public = std::fs::read_to_string(&public).unwrap();
        let public = public
            .lines()
            .nth(1)
            .expect("minisign.pub's key line")
            .to_owned();
        Self { secret, public }
    }

    /// The `.minisig` of `content`, made by `minisign -S`.
    pub fn sign(&self, content: &str) -> String {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("tiktok.txt");
        std::fs::write(&file, content).unwrap();
        let out = Command::new("minisign")
            .arg("-S")
            .arg("-s")
            .arg(&self.secret)
            .arg("-m")
            .arg(&file)
            .output()
            .unwrap();
        assert!(out.status.success(), "minisign -S: {}", text(&out));
        std::fs::read_to_string(dir.path().join("tiktok.txt.minisig")).unwrap()
    }
}

/// A list of version `version` blocking `names`.
pub fn list(version: &str, names: &[&str]) -> String {
    format!(
        "! Title: lab list\n! Version: {version}\n{}\n",
        names.join("\n")
    )
}

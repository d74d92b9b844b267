//! Temporary folders for a lab's files (certificates, configurations, logs), named after the
//! process that made them so that folders of a killed run can be told apart and removed.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use tempfile::TempDir;

use crate::registry;

/// Names start with this, then the owner's pid: `sni-filter-lab-PID-KIND.XXXXXX`.
const NAME_PREFIX: &str = "sni-filter-lab-";

/// A temporary folder removed on drop, or by [`crate::shutdown`] (and, if the process was
/// killed, by the next [`crate::Lab::cleanup_stale`]).
#[derive(Debug)]
pub struct ScratchDir {
    dir: TempDir,
}

impl ScratchDir {
    /// A new folder under the system's temporary folder; `kind` says what it holds.
    pub fn new(kind: &str) -> Result<Self> {
        let prefix = format!("{NAME_PREFIX}{}-{kind}.", std::process::id());
        let dir = registry::add_scratch_dir(|| {
            let dir = tempfile::Builder::new()
                .prefix(&prefix)
                .tempdir()
                .context("cannot create a temporary folder")?;
            let path = dir.path().to_path_buf();
            Ok((dir, path))
        })?;
        Ok(Self { dir })
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        registry::remove_scratch_dir(self.dir.path());
    }
}

/// Removes the folders of processes that no longer run. Returns how many.
pub(crate) fn remove_stale() -> usize {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return 0;
    };
    let stale: Vec<PathBuf> = entries
        .flatten()
        .filter(|entry| {
            let name = entry.file_name();
            let owner = name
                .to_str()
                .and_then(|n| n.strip_prefix(NAME_PREFIX))
                .and_then(|rest| rest.split('-').next())
                .and_then(|pid| pid.parse::<u32>().ok());
            owner.is_some_and(|pid| !crate::netns::process_exists(pid))
        })
        .map(|entry| entry.path())
        .collect();
    stale
        .iter()
        .filter(|path| std::fs::remove_dir_all(path).is_ok())
        .count()
}

//! The distribution kernels of the matrix: which Debian package is the newest of each series,
//! and its image and modules unpacked once into the target folder (never installed in /boot).

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};

use crate::shell::{self, cmd};

/// A kernel series gateways run, found through the Debian meta-package that always depends on
/// its newest build, so no ABI number is written down here.
pub struct Series {
    pub name: &'static str,
    meta_package: &'static str,
}

/// Debian 12's own kernel, and Debian 13's series as packaged for Debian 12 (bookworm-security).
pub const SERIES: &[Series] = &[
    Series {
        name: "6.1",
        meta_package: "linux-image-cloud-amd64",
    },
    Series {
        name: "6.12",
        meta_package: "linux-image-6.12-cloud-amd64",
    },
];

/// A kernel unpacked into the cache: `boot/vmlinuz-RELEASE` and `lib/modules/RELEASE/`.
pub struct Kernel {
    /// As `uname -r` prints it, e.g. `6.1.0-57-cloud-amd64`.
    pub release: String,
    pub root: PathBuf,
}

impl Kernel {
    pub fn image(&self) -> PathBuf {
        self.root
            .join("boot")
            .join(format!("vmlinuz-{}", self.release))
    }

    pub fn modules(&self) -> PathBuf {
        self.root.join("lib/modules").join(&self.release)
    }
}

/// Where the unpacked kernels live; a run that finds one there downloads nothing.
fn cache_dir() -> PathBuf {
    shell::target_dir().join("kernel-matrix").join("kernels")
}

/// Written last into an unpacked kernel: its absence means an interrupted unpack.
const COMPLETE: &str = ".complete";

/// The newest kernel of `series`, from the cache or downloaded and unpacked.
pub fn fetch(series: &Series) -> Result<Kernel> {
    let (kernel, package) = locate(series).or_else(|err| {
        // apt's lists may be missing, or older than the archive, which drops superseded
        // builds: read them again, once.
        println!("matrix: {err:#}; reading apt's package lists again");
        apt_update()?;
        locate(series)
    })?;
    if let Some(deb) = package {
        unpack(&deb, &kernel)?;
        let _ = fs::remove_file(&deb);
        remove_superseded(series, &kernel);
    }
    Ok(kernel)
}

/// The series' newest kernel, and its downloaded package unless the cache has it unpacked.
fn locate(series: &Series) -> Result<(Kernel, Option<PathBuf>)> {
    let package = newest(series)?;
    let release = package
        .strip_prefix("linux-image-")
        .with_context(|| format!("{package} is not a linux-image package"))?
        .to_owned();
    let kernel = Kernel {
        root: cache_dir().join(&release),
        release,
    };
    if kernel.root.join(COMPLETE).is_file() {
        println!("matrix: kernel {} cached, download skipped", kernel.release);
        return Ok((kernel, None));
    }
    let deb = download(&package)?;
    Ok((kernel, Some(deb)))
}

/// The package the series' meta-package depends on, e.g. `linux-image-6.12.118+deb12-cloud-amd64`.
fn newest(series: &Series) -> Result<String> {
    let depends = shell::output(&mut cmd("apt-cache", ["depends", series.meta_package]))?;
    let prefix = format!("linux-image-{}.", series.name);
    depends
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Depends:"))
        .map(str::trim)
        .find(|p| p.starts_with(&prefix) && p.ends_with("-cloud-amd64"))
        .map(str::to_owned)
        .with_context(|| {
            format!(
                "{} names no {prefix}*-cloud-amd64 package: is this Debian 12 with \
                 bookworm-security in its sources?",
                series.meta_package
            )
        })
}

fn apt_update() -> Result<()> {
    shell::run(&mut cmd("apt-get", ["update", "-q"])).context("apt-get update failed")
}

/// Downloads the package's .deb (apt's own mirror and signatures) and returns its path.
fn download(package: &str) -> Result<PathBuf> {
    let dir = shell::target_dir().join("kernel-matrix").join("downloads");
    fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    // As root apt would hand the download to its `_apt` user, who cannot write here.
    let no_sandbox = ["-o", "APT::Sandbox::User=root"];
    shell::run(
        cmd("apt-get", ["download", "-q"])
            .args(no_sandbox)
            .arg(package)
            .current_dir(&dir),
    )
    .with_context(|| format!("cannot download {package}"))?;
    let stem = format!("{package}_");
    fs::read_dir(&dir)
        .with_context(|| format!("cannot list {}", dir.display()))?
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&stem))
                && p.extension().is_some_and(|e| e == "deb")
        })
        .with_context(|| format!("apt-get download left no {stem}*.deb in {}", dir.display()))
}

/// `dpkg -x` into the cache, then `depmod -b` so the initramfs can resolve module dependencies.
fn unpack(deb: &Path, kernel: &Kernel) -> Result<()> {
    if kernel.root.exists() {
        fs::remove_dir_all(&kernel.root)
            .with_context(|| format!("cannot clear {}", kernel.root.display()))?;
    }
    fs::create_dir_all(&kernel.root)
        .with_context(|| format!("cannot create {}", kernel.root.display()))?;
    shell::run(cmd("dpkg", ["-x"]).arg(deb).arg(&kernel.root))
        .with_context(|| format!("cannot unpack {}", deb.display()))?;
    shell::run(cmd("depmod", ["-b"]).arg(&kernel.root).arg(&kernel.release))
        .with_context(|| format!("cannot index the modules of {}", kernel.release))?;
    if !kernel.image().is_file() {
        bail!("{} holds no {}", deb.display(), kernel.image().display());
    }
    fs::write(kernel.root.join(COMPLETE), "")
        .with_context(|| format!("cannot mark {} complete", kernel.root.display()))?;
    println!("matrix: kernel {} unpacked", kernel.release);
    Ok(())
}

/// Removes older builds of the series from the cache (40 to 110 MB each; none runs again).
fn remove_superseded(series: &Series, kernel: &Kernel) {
    let prefix = format!("{}.", series.name);
    let Ok(entries) = fs::read_dir(cache_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with(&prefix) && name != kernel.release {
            println!("matrix: removing superseded kernel {name}");
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

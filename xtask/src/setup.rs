//! `cargo xtask setup`: installs what building the XDP program and running the lab need, and
//! skips what is already there, saying which for each piece.
//!
//! bpf-linker links against the very libLLVM that nightly rustc ships, so the bitcode rustc
//! emits for the BPF target is read by the same LLVM that wrote it.

use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{Context as _, Result, bail};

use crate::shell::{self, cmd};

/// Debian packages the lab, the end-to-end tests and the demo use, one entry per need: any
/// package of an entry satisfies it, and the first is the one installed.
const DEBIAN_PACKAGES: &[&[&str]] = &[
    // The lab's TLS server.
    &["nginx-light", "nginx"],
    &["curl"],
    // Run-time certificates, `openssl s_client`.
    &["openssl"],
    // `ip netns`, veth pairs.
    &["iproute2"],
    // Offload settings of the lab's veths.
    &["ethtool"],
    // `sysctl` (forwarding in the gateway).
    &["procps"],
    // `nsenter` into the daemon's namespaces.
    &["util-linux"],
    // The string-match filter administrators use today, compared in the benchmarks.
    &["iptables"],
    &["tcpdump"],
    // The syslog receiver of the end-to-end tests.
    &["rsyslog"],
    // rsyslog's TLS listener (RFC 5425) for the syslog-over-TLS test.
    &["rsyslog-gnutls"],
    // minisign (the signed-list tests), RELP for rsyslog (the shipped snippets, the
    // no-event-lost test), promtool (the shipped Prometheus scrape job and alerts).
    &["minisign", "rsyslog-relp", "prometheus"],
    // `gnutls-cli`, a second TLS client.
    &["gnutls-bin"],
    // Python's ssl module as a client.
    &["python3"],
    // pip, which installs the Python packages below.
    &["python3-pip"],
    // Headless Chromium as a client: its post-quantum ClientHello takes two TCP segments.
    &["chromium"],
    // `certutil`: the NSS database through which Chromium trusts the lab's CA.
    &["libnss3-tools"],
    // The kernel matrix: QEMU and its virtiofsd, which shares the host's files with guests;
    // the guests' first userland (it runs before any library is reachable, so static);
    // `depmod`, which indexes an unpacked kernel's modules; `xz`: 6.12's modules are
    // compressed, busybox's insmod wants them plain.
    &["qemu-system-x86"],
    &["busybox-static"],
    &["kmod"],
    &["xz-utils"],
    // `cargo xtask deb`: dpkg-shlibdeps (the package's library versions) and `strip`.
    &["dpkg-dev"],
];

/// Python packages the lab uses, as (module to import, requirement to install): installed with
/// pip for the interpreter the lab runs (`sni_filter_lab::python3`), unless it imports them.
const PYTHON_PACKAGES: &[(&str, &str)] = &[
    // The lab's QUIC (HTTP/3) server and one of its QUIC clients.
    ("aioquic", "aioquic==1.7.2"),
    // `ansible-playbook`, which checks the shipped role (`python3 -m ansible.cli.playbook`).
    ("ansible", "ansible-core==2.19.14"),
];

/// The bpf-linker release the XDP program is built with.
const BPF_LINKER_VERSION: &str = "0.13.0";
/// Written next to the bpf-linker binary: the LLVM it was built against.
const BPF_LINKER_STAMP: &str = ".bpf-linker-llvm";

#[derive(clap::Args, Default)]
pub struct Args {
    /// Install nothing: report what is missing and fail if anything is.
    #[arg(long)]
    check: bool,
}

pub fn run(args: &Args) -> Result<ExitCode> {
    let mut missing = Vec::new();
    rust_src(args.check, &mut missing)?;
    bpf_linker(args.check, &mut missing)?;
    debian_packages(args.check, &mut missing)?;
    python_packages(args.check, &mut missing)?;
    if !missing.is_empty() {
        bail!("missing: {}", missing.join("; "));
    }
    Ok(ExitCode::SUCCESS)
}

/// Prints one line per piece: what it is and what happened to it.
fn report(piece: &str, outcome: &str) {
    println!("setup: {piece:<34} {outcome}");
}

fn rust_src(check: bool, missing: &mut Vec<String>) -> Result<()> {
    const PIECE: &str = "nightly toolchain with rust-src";
    let listed = shell::output(&mut cmd(
        "rustup",
        ["component", "list", "--toolchain", "nightly", "--installed"],
    ));
    match listed {
        Ok(list) if list.lines().any(|l| l.starts_with("rust-src")) => {
            report(PIECE, "present, skipped");
        }
        Ok(_) if check => {
            report(PIECE, "rust-src MISSING");
            missing.push(
                "rust-src for nightly (`rustup component add rust-src --toolchain nightly`)".into(),
            );
        }
        Ok(_) => {
            report(PIECE, "adding rust-src");
            shell::run(&mut cmd(
                "rustup",
                ["component", "add", "rust-src", "--toolchain", "nightly"],
            ))
            .context("cannot add rust-src to the nightly toolchain")?;
            report(PIECE, "rust-src added");
        }
        // rustup fails this way when the nightly toolchain itself is not installed.
        Err(_) if check => {
            report(PIECE, "nightly MISSING");
            missing.push("the nightly toolchain (`rustup toolchain install nightly`)".into());
        }
        Err(_) => {
            report(PIECE, "installing nightly with rust-src");
            shell::run(&mut cmd(
                "rustup",
                [
                    "toolchain",
                    "install",
                    "nightly",
                    "--profile",
                    "minimal",
                    "--component",
                    "rust-src",
                ],
            ))
            .context("cannot install the nightly toolchain (is rustup installed?)")?;
            report(PIECE, "installed");
        }
    }
    Ok(())
}

/// Nightly's LLVM: its version and the shared library that nightly rustc ships.
struct NightlyLlvm {
    version: String,
    major: u32,
    library: PathBuf,
}

impl NightlyLlvm {
    fn find() -> Result<Self> {
        let about = shell::output(&mut cmd("rustup", ["run", "nightly", "rustc", "-vV"]))
            .context("cannot ask nightly rustc for its LLVM version")?;
        let version = about
            .lines()
            .find_map(|l| l.strip_prefix("LLVM version:"))
            .map(str::trim)
            .context("`rustc +nightly -vV` prints no `LLVM version:` line")?
            .to_owned();
        let major: u32 = version
            .split('.')
            .next()
            .and_then(|m| m.parse().ok())
            .with_context(|| format!("cannot read the LLVM major version from {version:?}"))?;
        let sysroot = shell::output(&mut cmd(
            "rustup",
            ["run", "nightly", "rustc", "--print", "sysroot"],
        ))?;
        let lib_dir = Path::new(sysroot.trim()).join("lib");
        let stem = format!("libLLVM.so.{major}");
        let mut found: Vec<PathBuf> = fs::read_dir(&lib_dir)
            .with_context(|| format!("cannot list {}", lib_dir.display()))?
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .and_then(|n| n.strip_prefix(&stem))
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with(['.', '-']))
            })
            .collect();
        found.sort();
        let library = found.into_iter().next().with_context(|| {
            format!(
                "no {stem}* in {}: this nightly ships no shared libLLVM to build bpf-linker against",
                lib_dir.display()
            )
        })?;
        Ok(Self {
            version,
            major,
            library,
        })
    }

    fn file_name(&self) -> String {
        self.library
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    /// What the stamp next to a bpf-linker built against this LLVM says.
    fn stamp(&self) -> String {
        format!("llvm {} {}\n", self.version, self.file_name())
    }
}

/// Where `cargo install` puts binaries: `CARGO_INSTALL_ROOT`, else `CARGO_HOME`, else ~/.cargo.
fn install_root() -> Result<PathBuf> {
    if let Some(root) = std::env::var_os("CARGO_INSTALL_ROOT") {
        return Ok(root.into());
    }
    if let Some(home) = std::env::var_os("CARGO_HOME") {
        return Ok(home.into());
    }
    let home = std::env::var_os("HOME").context("neither CARGO_HOME nor HOME is set")?;
    Ok(Path::new(&home).join(".cargo"))
}

fn bpf_linker(check: bool, missing: &mut Vec<String>) -> Result<()> {
    let llvm = NightlyLlvm::find()?;
    let piece = format!("bpf-linker {BPF_LINKER_VERSION} (LLVM {})", llvm.major);
    let root = install_root()?;
    let bin = root.join("bin").join("bpf-linker");
    let stamp = root.join("bin").join(BPF_LINKER_STAMP);
    let problem = match check_bpf_linker(&bin, &stamp, &llvm) {
        LinkerState::Usable => {
            report(&piece, "present, skipped");
            warn_if_not_on_path(&root);
            return Ok(());
        }
        LinkerState::UsableUnstamped if check => {
            report(&piece, "present (links nightly's libLLVM), skipped");
            return Ok(());
        }
        LinkerState::UsableUnstamped => {
            fs::write(&stamp, llvm.stamp())
                .with_context(|| format!("cannot write {}", stamp.display()))?;
            report(
                &piece,
                "present (links nightly's libLLVM), skipped; LLVM recorded",
            );
            warn_if_not_on_path(&root);
            return Ok(());
        }
        LinkerState::Unusable(problem) => problem,
    };
    if check {
        report(&piece, &format!("MISSING: {problem}"));
        missing.push(format!("bpf-linker ({problem})"));
        return Ok(());
    }
    report(&piece, &format!("building: {problem}"));

    // LLVM_PREFIX/lib must hold `libLLVM.so` for the link, and the library's soname (its
    // file name) because bpf-linker's rpath points there and the loader looks it up by
    // soname. It lives beside the installed binary, which needs it for as long as it exists.
    let prefix = root.join("bpf-linker-llvm");
    let lib = prefix.join("lib");
    fs::create_dir_all(&lib).with_context(|| format!("cannot create {}", lib.display()))?;
    for name in ["libLLVM.so".to_owned(), llvm.file_name()] {
        let link = lib.join(name);
        if link.symlink_metadata().is_ok() {
            fs::remove_file(&link).with_context(|| format!("cannot replace {}", link.display()))?;
        }
        symlink(&llvm.library, &link).with_context(|| format!("cannot link {}", link.display()))?;
    }
    let _ = fs::remove_file(&stamp);
    let features = format!("llvm-{}", llvm.major);
    shell::run(
        cmd(
            "cargo",
            [
                "install",
                "bpf-linker",
                "--version",
                BPF_LINKER_VERSION,
                "--locked",
                "--force",
                "--no-default-features",
                "--features",
                &features,
                "--root",
            ],
        )
        .arg(&root)
        .env("LLVM_PREFIX", &prefix),
    )
    .context("cannot build bpf-linker")?;
    fs::write(&stamp, llvm.stamp()).with_context(|| format!("cannot write {}", stamp.display()))?;
    if let LinkerState::Unusable(problem) = check_bpf_linker(&bin, &stamp, &llvm) {
        bail!("bpf-linker was built but is not usable: {problem}");
    }
    report(&piece, &format!("built into {}", bin.display()));
    warn_if_not_on_path(&root);
    Ok(())
}

/// What the check of an installed bpf-linker found.
enum LinkerState {
    /// The wanted release, built against nightly's current libLLVM.
    Usable,
    /// Usable, and it links nightly's current libLLVM, but no stamp says so yet (installed by
    /// other means): the stamp is written and the binary kept.
    UsableUnstamped,
    /// Why it must be (re)built.
    Unusable(String),
}

/// Checks the bpf-linker at `bin` the way rustc will run it: under `rustup run nightly`,
/// which puts nightly's lib folder (and so its libLLVM) on the loader's path.
fn check_bpf_linker(bin: &Path, stamp: &Path, llvm: &NightlyLlvm) -> LinkerState {
    use LinkerState::{Unusable, Usable, UsableUnstamped};
    if !bin.exists() {
        return Unusable("not installed".into());
    }
    let under_nightly = |program: &OsStr, arg: &OsStr| {
        Command::new("rustup")
            .args(["run", "nightly"])
            .arg(program)
            .arg(arg)
            .output()
    };
    let out = match under_nightly(bin.as_os_str(), OsStr::new("--version")) {
        Ok(out) => out,
        Err(err) => return Unusable(format!("{} does not start: {err}", bin.display())),
    };
    if !out.status.success() {
        return Unusable(format!(
            "{} does not run: {}",
            bin.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let version = String::from_utf8_lossy(&out.stdout);
    if !version.contains(BPF_LINKER_VERSION) {
        return Unusable(format!(
            "found {}, want {BPF_LINKER_VERSION}",
            version.trim()
        ));
    }
    // The libLLVM the loader picks must be nightly's own (same soname, same file).
    let ldd = under_nightly(OsStr::new("ldd"), bin.as_os_str())
        .map(|out| String::from_utf8_lossy(&out.stdout).into_owned())
        .unwrap_or_default();
    let links_nightly = match ldd.lines().find(|l| l.contains("libLLVM")) {
        Some(line) => {
            let linked = line
                .split_once("=>")
                .and_then(|(_, path)| path.split_whitespace().next())
                .and_then(|path| Path::new(path).canonicalize().ok());
            if linked != llvm.library.canonicalize().ok() {
                return Unusable(format!(
                    "links {}, not {}",
                    line.trim(),
                    llvm.library.display()
                ));
            }
            true
        }
        // Linked statically: only the stamp can tell which LLVM it has.
        None => false,
    };
    match fs::read_to_string(stamp) {
        Ok(found) if found == llvm.stamp() => Usable,
        Ok(found) => Unusable(format!(
            "built for {}, nightly now has {}",
            found.trim(),
            llvm.stamp().trim()
        )),
        Err(_) if links_nightly => UsableUnstamped,
        Err(_) => Unusable(format!("no record of its LLVM ({})", stamp.display())),
    }
}

fn warn_if_not_on_path(root: &Path) {
    let bin_dir = root.join("bin");
    let on_path = std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir == bin_dir));
    if !on_path {
        println!(
            "setup: warning: {} is not on PATH; rustc finds bpf-linker through PATH",
            bin_dir.display()
        );
    }
}

/// Whether dpkg has the package installed.
fn package_installed(package: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", package])
        .output()
        .is_ok_and(|out| out.status.success() && out.stdout.starts_with(b"install ok installed"))
}

fn debian_packages(check: bool, missing: &mut Vec<String>) -> Result<()> {
    const PIECE: &str = "Debian packages";
    let wanted: Vec<&str> = DEBIAN_PACKAGES
        .iter()
        .filter(|choices| !choices.iter().any(|p| package_installed(p)))
        .map(|choices| choices[0])
        .collect();
    if wanted.is_empty() {
        let n = DEBIAN_PACKAGES.len();
        report(PIECE, &format!("all {n} present, skipped"));
        return Ok(());
    }
    let list = wanted.join(" ");
    if check {
        report(PIECE, &format!("MISSING: {list}"));
        missing.push(format!("Debian packages {list} (`apt-get install {list}`)"));
        return Ok(());
    }
    if !sni_filter_lab::is_root() {
        bail!(
            "Debian packages {list} are missing and installing them needs root: run `sudo cargo xtask setup` or `apt-get install {list}`"
        );
    }
    report(PIECE, &format!("installing {list}"));
    shell::run(&mut cmd("apt-get", ["update"])).context("apt-get update failed")?;
    shell::run(
        cmd("apt-get", ["install", "-y", "--no-install-recommends"])
            .args(&wanted)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
    .with_context(|| format!("cannot install {list}"))?;
    report(PIECE, &format!("installed {list}"));
    Ok(())
}

fn python_packages(check: bool, missing: &mut Vec<String>) -> Result<()> {
    const PIECE: &str = "Python packages";
    let python = sni_filter_lab::python3();
    let imports = |module: &str| {
        Command::new(python)
            .args(["-c", &format!("import {module}")])
            .output()
            .is_ok_and(|out| out.status.success())
    };
    let wanted: Vec<&str> = PYTHON_PACKAGES
        .iter()
        .filter(|(module, _)| !imports(module))
        .map(|&(_, requirement)| requirement)
        .collect();
    if wanted.is_empty() {
        let n = PYTHON_PACKAGES.len();
        report(PIECE, &format!("all {n} present, skipped"));
        return Ok(());
    }
    let list = wanted.join(" ");
    if check {
        report(PIECE, &format!("MISSING: {list}"));
        missing.push(format!(
            "Python packages {list} (`PIP_BREAK_SYSTEM_PACKAGES=1 {python} -m pip install {list}`)"
        ));
        return Ok(());
    }
    if !sni_filter_lab::is_root() {
        bail!(
            "Python packages {list} are missing and installing them for {python} needs root: run `sudo cargo xtask setup` or `PIP_BREAK_SYSTEM_PACKAGES=1 {python} -m pip install {list}`"
        );
    }
    report(PIECE, &format!("installing {list}"));
    shell::run(
        cmd(python, ["-m", "pip", "install", "--no-input"])
            .args(&wanted)
            // Debian marks its python3 as managed by apt (PEP 668); pip then installs into
            // /usr/local, beside apt's packages, not over them.
            // pip releases without the option ignore the variable.
            .env("PIP_BREAK_SYSTEM_PACKAGES", "1")
            .env("PIP_ROOT_USER_ACTION", "ignore"),
    )
    .with_context(|| format!("cannot install {list} with pip"))?;
    let still: Vec<&str> = PYTHON_PACKAGES
        .iter()
        .filter(|(module, _)| !imports(module))
        .map(|&(module, _)| module)
        .collect();
    if !still.is_empty() {
        bail!(
            "pip installed {list} but {python} cannot import {}",
            still.join(", ")
        );
    }
    report(PIECE, &format!("installed {list}"));
    Ok(())
}

//! The Debian package itself: the release binary, the shipped configuration as conffiles, the
//! systemd unit, completions and man pages written by the built binary, assembled into a tree
//! with its control files and packed by `dpkg-deb --root-owner-group`.

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};

use crate::shell::{self, cmd};

/// The package's name, the binary's and the unit's.
pub const NAME: &str = "sni-filter";
/// The package's version: the workspace's.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// Where the binary goes; the unit's `ExecStart=` must name it.
pub const BINARY: &str = "usr/sbin/sni-filter";
/// Where the unit goes (Debian 12's systemd unit folder).
pub const UNIT: &str = "lib/systemd/system/sni-filter.service";
/// The Maintainer field unless `--maintainer` names another.
pub const MAINTAINER: &str = "sni-filter maintainers <root@localhost>";
/// Debian packages the daemon runs: `ip` and `ethtool` for preflight and diagnosis.
const RUN_DEPENDS: &str = "iproute2, ethtool";

const DESCRIPTION: &str = "\
XDP filter that drops TLS and QUIC connections by server name
 sni-filter stops the devices of a network from reaching banned applications
 at the gateway. An XDP program on the LAN-facing interfaces reads the server
 name (SNI) of every TLS ClientHello and QUIC Initial the clients send and
 drops the flows whose name matches a banned application's rule list, before
 the kernel allocates anything for the packet. The daemon loads the rules,
 attaches the program, logs to syslog and serves Prometheus metrics; the
 command line shows counters, blocked flows and which rule matches a name.
 .
 This package ships the daemon and command line, the default configuration
 and rule lists in /etc/sni-filter, a systemd unit, shell completions and
 man pages. The service is not started on installation: set the interfaces
 in /etc/sni-filter/filter.toml first.";

/// A file of the package: where it goes (relative to `/`), its bytes and mode.
struct Entry {
    path: String,
    bytes: Vec<u8>,
    mode: u32,
}

/// Builds the release binary and the package; returns the `.deb`'s path
/// (`target/debian/sni-filter_VERSION_ARCH.deb`).
pub fn build(maintainer: &str) -> Result<PathBuf> {
    let root = shell::workspace_root();
    let mut cargo = cmd(
        "cargo",
        ["build", "--release", "-p", "filter-daemon", "--bin", NAME],
    );
    shell::run(cargo.current_dir(&root))?;
    let binary = shell::target_dir().join("release").join(NAME);
    let arch = shell::output(&mut cmd("dpkg", ["--print-architecture"]))?
        .trim()
        .to_owned();
    let out_dir = shell::target_dir().join("debian");
    let stem = format!("{NAME}_{VERSION}_{arch}");
    let tree = out_dir.join(&stem);
    if tree.exists() {
        fs::remove_dir_all(&tree).with_context(|| format!("cannot empty {}", tree.display()))?;
    }

    let mut entries = shipped_files(&root)?;
    entries.extend(generated_files(&binary)?);
    entries.push(changelog(&root, maintainer)?);
    for entry in &entries {
        write(&tree.join(&entry.path), &entry.bytes, entry.mode)?;
    }
    let staged = tree.join(BINARY);
    let bytes = fs::read(&binary).with_context(|| format!("cannot read {}", binary.display()))?;
    write(&staged, &bytes, 0o755)?;
    // Symbols only: the embedded XDP object is data and stays whole.
    shell::run(&mut cmd(
        "strip",
        ["--strip-unneeded".as_ref(), staged.as_os_str()],
    ))?;

    let files = files_under(&tree)?;
    let control = control(&staged, &files, &tree, &arch, maintainer)?;
    write_control(&tree, &root, &control, &entries, &files)?;
    let deb = out_dir.join(format!("{stem}.deb"));
    shell::run(&mut cmd(
        "dpkg-deb",
        [
            "--root-owner-group".as_ref(),
            "--build".as_ref(),
            tree.as_os_str(),
            deb.as_os_str(),
        ],
    ))?;
    Ok(deb)
}

/// The files taken from the source tree as they are.
fn shipped_files(root: &Path) -> Result<Vec<Entry>> {
    let read = |rel: &str| fs::read(root.join(rel)).with_context(|| format!("cannot read {rel}"));
    let unit = read("config/sni-filter.service")?;
    let wanted = format!("ExecStart=/{BINARY} ");
    if !String::from_utf8_lossy(&unit).contains(&wanted) {
        bail!("config/sni-filter.service does not start the packaged binary: no `{wanted}` line");
    }
    let mut entries = vec![
        entry(
            "etc/sni-filter/filter.toml",
            read("config/filter.toml")?,
            0o644,
        ),
        entry(UNIT, unit, 0o644),
        // The list updates: not enabled by the package (`[updates.urls]` must be set first).
        entry(
            "lib/systemd/system/sni-filter-update-lists.service",
            read("config/sni-filter-update-lists.service")?,
            0o644,
        ),
        entry(
            "lib/systemd/system/sni-filter-update-lists.timer",
            read("config/sni-filter-update-lists.timer")?,
            0o644,
        ),
        entry(
            "usr/share/doc/sni-filter/README.md",
            read("README.md")?,
            0o644,
        ),
        entry(
            "usr/share/doc/sni-filter/copyright",
            read("config/debian/copyright")?,
            0o644,
        ),
    ];
    let lists = root.join("config/lists");
    let mut names: Vec<String> = fs::read_dir(&lists)
        .with_context(|| format!("cannot list {}", lists.display()))?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|name| Path::new(name).extension().is_some_and(|e| e == "txt"))
        .collect();
    names.sort();
    for name in names {
        let bytes = read(&format!("config/lists/{name}"))?;
        entries.push(entry(&format!("etc/sni-filter/lists/{name}"), bytes, 0o644));
    }
    Ok(entries)
}

/// Completions and gzipped man pages, written by the binary from its own definitions.
fn generated_files(binary: &Path) -> Result<Vec<Entry>> {
    let mut entries = Vec::new();
    for (shell_name, path) in [
        ("bash", "usr/share/bash-completion/completions/sni-filter"),
        ("zsh", "usr/share/zsh/vendor-completions/_sni-filter"),
        (
            "fish",
            "usr/share/fish/vendor_completions.d/sni-filter.fish",
        ),
    ] {
        let mut generate = cmd(binary.to_str().context("binary path")?, ["generate"]);
        let text = shell::output(generate.args(["completions", shell_name]))?;
        entries.push(entry(path, text.into_bytes(), 0o644));
    }
    let pages = tempfile::tempdir().context("cannot create a temporary folder")?;
    let mut generate = cmd(binary.to_str().context("binary path")?, ["generate", "man"]);
    shell::output(generate.arg(pages.path()))?;
    let mut names: Vec<String> = fs::read_dir(pages.path())?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect();
    names.sort();
    if !names.iter().any(|n| n == "sni-filter.8") {
        bail!("`sni-filter generate man` wrote no sni-filter.8 (wrote: {names:?})");
    }
    for name in names {
        let page = fs::read(pages.path().join(&name))?;
        entries.push(entry(
            &format!("usr/share/man/man8/{name}.gz"),
            gzip(&page)?,
            0o644,
        ));
    }
    Ok(entries)
}

/// The changelog Debian wants of a native package: one entry naming the commit built, dated
/// by it (the same commit gives the same bytes).
fn changelog(root: &Path, maintainer: &str) -> Result<Entry> {
    let git = |args: &[&str]| {
        let mut git = cmd("git", args);
        shell::output(git.current_dir(root)).map(|out| out.trim().to_owned())
    };
    let commit = git(&["describe", "--always", "--dirty"])
        .context("the changelog names the commit: git must run in the workspace")?;
    let date = git(&["log", "-1", "--format=%cD"])?;
    let text = format!(
        "{NAME} ({VERSION}) unstable; urgency=medium\n\n  * Built from commit {commit}.\n\n \
         -- {maintainer}  {date}\n"
    );
    Ok(entry(
        "usr/share/doc/sni-filter/changelog.gz",
        gzip(text.as_bytes())?,
        0o644,
    ))
}

/// `bytes` gzipped, with no name or time stamp inside: the same input packs to the same bytes.
fn gzip(bytes: &[u8]) -> Result<Vec<u8>> {
    use std::io::Write as _;
    use std::process::Stdio;
    let mut child = cmd("gzip", ["-9n", "-c"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot start gzip")?;
    child
        .stdin
        .take()
        .context("a piped stdin")?
        .write_all(bytes)?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!("gzip failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(out.stdout)
}

/// DEBIAN/control: the libraries' minimum versions come from `dpkg-shlibdeps`.
fn control(
    binary: &Path,
    files: &[PathBuf],
    tree: &Path,
    arch: &str,
    maintainer: &str,
) -> Result<String> {
    // dpkg-shlibdeps reads a debian/control from the folder it runs in; a stub is enough.
    let stub = tempfile::tempdir().context("cannot create a temporary folder")?;
    fs::create_dir(stub.path().join("debian"))?;
    fs::write(
        stub.path().join("debian/control"),
        format!("Source: {NAME}\n\nPackage: {NAME}\nArchitecture: any\n"),
    )?;
    let mut shlibdeps = cmd("dpkg-shlibdeps", ["-O".as_ref(), binary.as_os_str()]);
    let found = shell::output(shlibdeps.current_dir(stub.path()))
        .context("cannot find the binary's library versions (dpkg-shlibdeps is in dpkg-dev)")?;
    let libraries = found
        .lines()
        .find_map(|l| l.strip_prefix("shlibs:Depends="))
        .with_context(|| format!("dpkg-shlibdeps gave no dependencies: {found}"))?
        .trim()
        .to_owned();
    let mut kib = 0;
    for file in files {
        kib += fs::metadata(tree.join(file))?.len().div_ceil(1024);
    }
    Ok(format!(
        "Package: {NAME}\nVersion: {VERSION}\nArchitecture: {arch}\nMaintainer: {maintainer}\n\
         Installed-Size: {kib}\nDepends: {libraries}, {RUN_DEPENDS}\nSection: net\n\
         Priority: optional\nDescription: {DESCRIPTION}\n"
    ))
}

/// DEBIAN/: control, conffiles (everything under /etc), md5sums and the maintainer scripts.
fn write_control(
    tree: &Path,
    root: &Path,
    control: &str,
    entries: &[Entry],
    files: &[PathBuf],
) -> Result<()> {
    let debian = tree.join("DEBIAN");
    write(&debian.join("control"), control.as_bytes(), 0o644)?;
    let mut conffiles = String::new();
    for e in entries.iter().filter(|e| e.path.starts_with("etc/")) {
        conffiles.push('/');
        conffiles.push_str(&e.path);
        conffiles.push('\n');
    }
    write(&debian.join("conffiles"), conffiles.as_bytes(), 0o644)?;
    // dpkg keeps the conffiles' sums itself.
    let mut md5sum = cmd("md5sum", files.iter().filter(|f| !f.starts_with("etc")));
    let sums = shell::output(md5sum.current_dir(tree))?;
    write(&debian.join("md5sums"), sums.as_bytes(), 0o644)?;
    for script in ["postinst", "prerm", "postrm"] {
        let from = root.join("config/debian").join(script);
        let bytes = fs::read(&from).with_context(|| format!("cannot read {}", from.display()))?;
        write(&debian.join(script), &bytes, 0o755)?;
    }
    Ok(())
}

fn entry(path: &str, bytes: Vec<u8>, mode: u32) -> Entry {
    Entry {
        path: path.to_owned(),
        bytes,
        mode,
    }
}

/// Writes `bytes` at `path` with `mode`, creating its folders (0755).
fn write(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    let parent = path.parent().context("a file has a folder")?;
    fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
    fs::write(path, bytes).with_context(|| format!("cannot write {}", path.display()))?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))?;
    Ok(())
}

/// Every file under `tree`, relative to it, sorted; folders get mode 0755 on the way.
fn files_under(tree: &Path) -> Result<Vec<PathBuf>> {
    fn walk(tree: &Path, dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
        fs::set_permissions(dir, fs::Permissions::from_mode(0o755))?;
        for item in fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))? {
            let path = item?.path();
            if path.is_dir() {
                walk(tree, &path, out)?;
            } else {
                out.push(path.strip_prefix(tree)?.to_path_buf());
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    walk(tree, tree, &mut out)?;
    out.sort();
    Ok(out)
}

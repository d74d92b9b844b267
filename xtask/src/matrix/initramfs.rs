//! A guest's first userland: static busybox, the modules that reach the host's files, and an
//! init that mounts the host's root (read-only, under a tmpfs overlay) and runs the suite in it.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};

use super::cpio::Archive;
use super::kernels::Kernel;
use crate::shell::{self, cmd};

/// Debian's busybox-static; the dynamic busybox package installs the same path.
const BUSYBOX: &str = "/bin/busybox";

/// The virtiofs tag the host's root is exported under.
pub const HOST_ROOT_TAG: &str = "hostroot";

/// What the init needs beyond a kernel's built-ins: the PCI transport, virtiofs (a FUSE
/// file system) and overlayfs. 6.1's cloud build has all of them as modules, 6.12's only overlay.
const GUEST_MODULES: &[&str] = &["virtio_pci", "fuse", "virtiofs", "overlay"];

/// Writes the initramfs for `kernel`, whose init runs `suite` chrooted into the host's root,
/// and returns its path.
pub fn build(kernel: &Kernel, suite: &Path) -> Result<PathBuf> {
    let busybox = fs::read(BUSYBOX)
        .with_context(|| format!("cannot read {BUSYBOX} (`cargo xtask setup` installs it)"))?;
    if has_interpreter(&busybox) {
        bail!("{BUSYBOX} is dynamically linked: install busybox-static (`cargo xtask setup`)");
    }
    let modules = load_order(kernel)?;

    let mut archive = Archive::new(Vec::new());
    for dir in [
        "bin",
        "dev",
        "proc",
        "sys",
        "lib",
        "lib/modules",
        "lower",
        "rw",
        "newroot",
    ] {
        archive.directory(dir)?;
    }
    // The console init's output goes to, present before devtmpfs is mounted.
    archive.char_device("dev/console", 5, 1)?;
    archive.file("bin/busybox", 0o755, &busybox)?;
    let mut names = Vec::new();
    for module in &modules {
        let name = module_name(module);
        archive.file(
            &format!("lib/modules/{name}.ko"),
            0o644,
            &module_bytes(module)?,
        )?;
        names.push(name);
    }
    archive.file("init", 0o755, init_script(&names, suite)?.as_bytes())?;
    let bytes = archive.finish()?;

    let path = shell::target_dir()
        .join("kernel-matrix")
        .join(format!("initramfs-{}.cpio", kernel.release));
    fs::write(&path, bytes).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}

/// The init: each failure is reported on the console and ends the guest at once, so the host
/// reads why instead of waiting for its timeout.
fn init_script(modules: &[String], suite: &Path) -> Result<String> {
    let suite = suite
        .to_str()
        .with_context(|| format!("{} is not UTF-8", suite.display()))?;
    let modules = modules.join(" ");
    Ok(format!(
        r#"#!/bin/busybox sh
bb=/bin/busybox
uptime() {{ $bb cut -d' ' -f1 /proc/uptime; }}
fail() {{ echo "@@matrix init-failed $*"; $bb poweroff -f; }}
$bb mount -t proc proc /proc
$bb mount -t devtmpfs dev /dev
for m in {modules}; do
  $bb insmod /lib/modules/$m.ko || fail "insmod $m"
done
$bb mount -t virtiofs -o ro {HOST_ROOT_TAG} /lower || fail "mount virtiofs"
# Writes (test files, bpffs pins) land in guest memory; the host's files stay as they are.
$bb mount -t tmpfs rw /rw || fail "mount tmpfs"
$bb mkdir -p /rw/upper /rw/work
$bb mount -t overlay root -o lowerdir=/lower,upperdir=/rw/upper,workdir=/rw/work /newroot \
  || fail "mount overlay"
$bb mount -t proc proc /newroot/proc || fail "mount proc"
$bb mount -t sysfs sys /newroot/sys || fail "mount sysfs"
$bb mount -t bpf bpf /newroot/sys/fs/bpf || fail "mount bpffs"
$bb mount -t devtmpfs dev /newroot/dev || fail "mount devtmpfs"
$bb mount -t tmpfs tmp /newroot/tmp || fail "mount /tmp"
echo "@@matrix ready $(uptime)"
$bb chroot /newroot /bin/sh '{suite}'
echo "@@matrix exit $?"
$bb poweroff -f
"#
    ))
}

/// The module files to load, dependencies first, from the kernel's `modules.dep`.
fn load_order(kernel: &Kernel) -> Result<Vec<PathBuf>> {
    let dir = kernel.modules();
    let read = |name: &str| {
        let path = dir.join(name);
        fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))
    };
    let builtin: HashSet<String> = read("modules.builtin")?
        .lines()
        .map(|l| module_name(Path::new(l)))
        .collect();
    // module name -> (its file, the files it needs)
    let mut deps: HashMap<String, (&str, Vec<&str>)> = HashMap::new();
    let dep_text = read("modules.dep")?;
    for line in dep_text.lines() {
        let Some((file, needs)) = line.split_once(':') else {
            continue;
        };
        deps.insert(
            module_name(Path::new(file)),
            (file, needs.split_whitespace().collect()),
        );
    }

    let mut order = Vec::new();
    let mut seen = HashSet::new();
    for wanted in GUEST_MODULES {
        if builtin.contains(*wanted) {
            continue;
        }
        let (file, _) = deps.get(*wanted).with_context(|| {
            format!(
                "{} has no module {wanted}, built in or loadable",
                kernel.release
            )
        })?;
        visit(file, &deps, &mut seen, &mut order);
    }
    Ok(order.into_iter().map(|f| dir.join(f)).collect())
}

/// Depth first: a module's dependencies go into `order` before it.
fn visit<'a>(
    file: &'a str,
    deps: &HashMap<String, (&'a str, Vec<&'a str>)>,
    seen: &mut HashSet<&'a str>,
    order: &mut Vec<&'a str>,
) {
    if !seen.insert(file) {
        return;
    }
    if let Some((_, needs)) = deps.get(&module_name(Path::new(file))) {
        for need in needs {
            visit(need, deps, seen, order);
        }
    }
    order.push(file);
}

/// `kernel/fs/fuse/virtiofs.ko.xz` -> `virtiofs`; the kernel treats `-` and `_` alike.
fn module_name(file: &Path) -> String {
    let base = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let stem = base.split(".ko").next().unwrap_or_default();
    stem.replace('-', "_")
}

/// The module as busybox's insmod can load it: 6.12's are xz-compressed, which only the
/// kernel's own file-descriptor loader unpacks.
fn module_bytes(path: &Path) -> Result<Vec<u8>> {
    let name = path.to_string_lossy();
    if name.ends_with(".ko") {
        return fs::read(path).with_context(|| format!("cannot read {name}"));
    }
    if name.ends_with(".ko.xz") {
        let out = cmd("xz", ["-dc"])
            .arg(path)
            .output()
            .with_context(|| format!("cannot run xz on {name} (`cargo xtask setup`)"))?;
        if !out.status.success() {
            bail!(
                "xz cannot decompress {name}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        return Ok(out.stdout);
    }
    bail!("{name}: a module compression this initramfs does not handle")
}

/// Whether an ELF file names a program interpreter (`PT_INTERP`), i.e. is dynamically linked.
fn has_interpreter(elf: &[u8]) -> bool {
    const PT_INTERP: u32 = 3;
    let read = |at: usize, len: usize| elf.get(at..at + len);
    let (Some(phoff), Some(phentsize), Some(phnum)) = (read(0x20, 8), read(0x36, 2), read(0x38, 2))
    else {
        return false;
    };
    let phoff = u64::from_le_bytes(phoff.try_into().unwrap_or_default()) as usize;
    let phentsize = u16::from_le_bytes(phentsize.try_into().unwrap_or_default()) as usize;
    let phnum = u16::from_le_bytes(phnum.try_into().unwrap_or_default()) as usize;
    (0..phnum).any(|i| {
        read(phoff + i * phentsize, 4)
            .is_some_and(|t| u32::from_le_bytes(t.try_into().unwrap_or_default()) == PT_INTERP)
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::{has_interpreter, module_name};

    #[test]
    fn module_names_drop_folder_and_suffix() {
        assert_eq!(
            module_name(Path::new("kernel/fs/fuse/virtiofs.ko.xz")),
            "virtiofs"
        );
        assert_eq!(
            module_name(Path::new("kernel/drivers/virtio/virtio_pci_modern_dev.ko")),
            "virtio_pci_modern_dev"
        );
        assert_eq!(module_name(Path::new("a/snd-hda.ko")), "snd_hda");
    }

    #[test]
    fn the_interpreter_of_this_test_binary_is_found() {
        let exe = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        // The loader maps itself into every dynamically linked process.
        let linked_dynamically = std::fs::read_to_string("/proc/self/maps")
            .unwrap()
            .contains("ld-linux");
        assert_eq!(has_interpreter(&exe), linked_dynamically);
        assert!(!has_interpreter(b"not an ELF file"));
    }
}

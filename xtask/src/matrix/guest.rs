//! One guest: virtiofsd exporting the host's root, and QEMU (software emulation: KVM cannot run
//! these kernels here) booting the kernel with the matrix's initramfs, its console on stdout.

use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::AtomicBool;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};

use super::initramfs::HOST_ROOT_TAG;
use super::kernels::Kernel;
use super::process::{Guard, Logged};
use crate::shell::cmd;

pub const QEMU: &str = "qemu-system-x86_64";
/// Debian's qemu-system-x86 ships it here.
pub const VIRTIOFSD: &str = "/usr/lib/qemu/virtiofsd";
/// What the suite needs: the program tests run two threads, and each load of the program
/// holds the verifier's state.
const MEMORY: &str = "2G";
const CPUS: &str = "2";

/// What a guest printed, and why it did not end by itself (QEMU failed, the deadline passed)
/// if it did not.
pub struct Outcome {
    pub console: String,
    pub error: Option<anyhow::Error>,
}

/// Boots `kernel` with `initramfs` until the guest powers off; an error means no guest ran.
pub fn run(
    kernel: &Kernel,
    initramfs: &Path,
    log: &Path,
    deadline: Instant,
    interrupted: &AtomicBool,
) -> Result<Outcome> {
    // A short path: a UNIX socket's name is limited to 108 bytes, the target folder is not.
    let sockets = tempfile::Builder::new()
        .prefix("sni-filter-matrix")
        .tempdir()
        .context("cannot create a folder for virtiofsd's socket")?;
    let socket = sockets.path().join("virtiofs.sock");
    let virtiofsd_log = log.with_extension("virtiofsd.log");
    let virtiofsd_out = std::fs::File::create(&virtiofsd_log)
        .with_context(|| format!("cannot create {}", virtiofsd_log.display()))?;
    let mut virtiofsd = Guard::spawn(
        cmd(VIRTIOFSD, ["-o", "source=/", "-o", "log_level=warn"])
            // The guest sees the host's root as it is now; only the guest's overlay writes.
            .args(["-o", "cache=always", "-o", "sandbox=chroot"])
            .arg(format!("--socket-path={}", socket.display()))
            .stdin(Stdio::null())
            .stdout(virtiofsd_out.try_clone()?)
            .stderr(virtiofsd_out),
        "virtiofsd",
    )?;
    wait_for_socket(&socket, &mut virtiofsd, &virtiofsd_log)?;

    let memory = format!("memory-backend-memfd,id=mem,size={MEMORY},share=on");
    let chardev = format!("socket,id=hostroot,path={}", socket.display());
    let device = format!("vhost-user-fs-pci,chardev=hostroot,tag={HOST_ROOT_TAG}");
    let mut qemu = cmd(
        QEMU,
        [
            "-accel",
            "tcg",
            "-cpu",
            "max",
            "-smp",
            CPUS,
            "-m",
            MEMORY,
            // virtiofs maps guest memory into virtiofsd: it must be shared.
            "-object",
            &memory,
            "-numa",
            "node,memdev=mem",
            "-chardev",
            &chardev,
            "-device",
            &device,
            // No network, disks or display: nothing to probe at boot, no option ROM to run.
            "-nodefaults",
            "-no-user-config",
            "-display",
            "none",
            "-serial",
            "stdio",
            // A panic reboots at once (panic=-1), and a reboot ends QEMU.
            "-no-reboot",
            "-append",
            "console=ttyS0 quiet panic=-1",
        ],
    );
    qemu.arg("-kernel").arg(kernel.image());
    qemu.arg("-initrd").arg(initramfs);
    let guest = Logged::spawn(&mut qemu, &kernel.release, log)?;
    let (status, console) = guest.finish(deadline, interrupted);
    drop(virtiofsd);
    let error = match status {
        Ok(status) if status.success() => None,
        Ok(status) => Some(anyhow::anyhow!("{QEMU} failed ({status})")),
        Err(err) => Some(err),
    };
    Ok(Outcome { console, error })
}

/// virtiofsd listens once its socket exists; QEMU started earlier fails to connect.
fn wait_for_socket(socket: &Path, virtiofsd: &mut Guard, log: &Path) -> Result<()> {
    let until = Instant::now() + Duration::from_secs(10);
    while !socket.exists() {
        if virtiofsd.has_exited() || Instant::now() > until {
            let said = std::fs::read_to_string(log).unwrap_or_default();
            bail!("virtiofsd did not start: {}", said.trim());
        }
        thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

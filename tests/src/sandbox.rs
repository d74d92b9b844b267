//! A child process started as systemd would start the unit's service, where systemd is not
//! PID 1: the namespaces of the lab's gateway, then the [`ServiceSandbox`] of the unit.
//!
//! Everything is prepared in the parent; the forked child ([`CommandExt::pre_exec`]) only
//! makes system calls: it enters the gateway's network and mount namespaces, takes a mount
//! namespace of its own with the file system read-only but for the unit's writable paths and
//! a `/proc` mounted as `ProtectProc=`/`ProcSubset=` say, lowers its bounding set, sets
//! `no_new_privs` and installs a seccomp filter built from the unit's `SystemCallFilter=`,
//! `SystemCallErrorNumber=`, `RestrictAddressFamilies=` and `SystemCallArchitectures=native`.

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd as _, OwnedFd};
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::Command;

use anyhow::{Context as _, Result};

use crate::unit_file::ServiceSandbox;

/// `AUDIT_ARCH_X86_64`: the architecture field of `seccomp_data` for native x86-64 calls.
const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
// `struct seccomp_data`: nr at 0, arch at 4, args from 16 (the low half of args[0] on a
// little-endian machine).
const DATA_NR: u32 = 0;
const DATA_ARCH: u32 = 4;
const DATA_ARG0: u32 = 16;
const RET_ALLOW: u32 = 0x7fff_0000;
const RET_ERRNO: u32 = 0x0005_0000;
const RET_KILL_PROCESS: u32 = 0x8000_0000;
const LD_ABS_W: u16 = (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16;
const JEQ_K: u16 = (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16;
const RET_K: u16 = (libc::BPF_RET | libc::BPF_K) as u16;
/// `mount_setattr(2)` and its flags (Linux 5.12), not all in the libc crate.
const MOUNT_ATTR_RDONLY: u64 = 0x1;
const AT_RECURSIVE: libc::c_int = 0x8000;
/// Highest capability number tried when lowering the bounding set (the kernel refuses the
/// first it does not know, which ends the loop earlier).
const CAP_LAST_TRIED: libc::c_ulong = 63;

/// `struct mount_attr` of `mount_setattr(2)`.
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// What the child needs, made before the fork.
struct Prepared {
    netns: OwnedFd,
    mntns: OwnedFd,
    unshare: libc::c_int,
    runtime_dirs: Vec<CString>,
    runtime_mode: libc::mode_t,
    writable: Vec<CString>,
    read_only_root: bool,
    /// Mounts left writable under a read-only root (`/dev`, and `/sys` without
    /// `ProtectKernelTunables`), as systemd leaves the API file systems.
    api_writable: Vec<CString>,
    proc_options: Option<CString>,
    bounding_set: Vec<u8>,
    no_new_privs: bool,
    filter: Vec<libc::sock_filter>,
}

fn cstring(path: &Path) -> Result<CString> {
    CString::new(path.as_os_str().as_bytes()).context("a path with a NUL byte")
}

fn ns_of(pid: u32, ns: &str) -> Result<OwnedFd> {
    let path = format!("/proc/{pid}/ns/{ns}");
    Ok(File::open(&path)
        .with_context(|| format!("cannot open {path}"))?
        .into())
}

/// Makes `cmd` (the daemon itself, no wrapper) start in the namespaces of process `host`
/// under `sandbox`, with `runtime_dirs` (names under `/run`) standing for the unit's
/// `RuntimeDirectory=`.
pub fn confine(
    cmd: &mut Command,
    host: u32,
    sandbox: &ServiceSandbox,
    runtime_dirs: &[String],
) -> Result<()> {
    let mut unshare = libc::CLONE_NEWNS;
    if sandbox.private_uts {
        unshare |= libc::CLONE_NEWUTS;
    }
    if sandbox.private_ipc {
        unshare |= libc::CLONE_NEWIPC;
    }
    let runtime_dirs: Vec<CString> = runtime_dirs
        .iter()
        .map(|d| cstring(&Path::new("/run").join(d)))
        .collect::<Result<_>>()?;
    let mut writable: Vec<CString> = sandbox
        .read_write_paths
        .iter()
        .map(|p| cstring(p))
        .collect::<Result<_>>()?;
    writable.extend(runtime_dirs.iter().cloned());
    let mut api_writable = vec![cstring(Path::new("/dev"))?];
    if !sandbox.read_only_sys {
        api_writable.push(cstring(Path::new("/sys"))?);
    }
    let mut proc_options = Vec::new();
    if let Some(hidepid) = &sandbox.protect_proc {
        proc_options.push(format!("hidepid={hidepid}"));
    }
    if sandbox.proc_subset_pid {
        proc_options.push("subset=pid".to_owned());
    }
    let prepared = Prepared {
        netns: ns_of(host, "net")?,
        mntns: ns_of(host, "mnt")?,
        unshare,
        runtime_dirs,
        runtime_mode: sandbox.runtime_directory_mode,
        writable,
        read_only_root: sandbox.read_only_root,
        api_writable,
        proc_options: (!proc_options.is_empty())
            .then(|| CString::new(proc_options.join(",")))
            .transpose()?,
        bounding_set: sandbox.bounding_set.clone(),
        no_new_privs: sandbox.no_new_privs,
        filter: sandbox
            .syscalls
            .as_ref()
            .map(|calls| seccomp_program(calls, sandbox))
            .unwrap_or_default(),
    };
    // SAFETY: the closure runs in the forked child and only makes system calls on data
    // prepared above; it allocates nothing.
    unsafe {
        cmd.pre_exec(move || prepared.enter());
    }
    Ok(())
}

/// `Err(last OS error)` when a libc call returned -1.
fn check(rc: libc::c_int) -> io::Result<()> {
    if rc == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn set_mount_attr(path: &CString, set: u64, clear: u64) -> io::Result<()> {
    let attr = MountAttr {
        attr_set: set,
        attr_clr: clear,
        propagation: 0,
        userns_fd: 0,
    };
    // SAFETY: a valid path and a `mount_attr` of the size passed.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            libc::AT_FDCWD,
            path.as_ptr(),
            AT_RECURSIVE,
            &raw const attr,
            size_of::<MountAttr>(),
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

impl Prepared {
    /// Runs in the child between fork and exec.
    fn enter(&self) -> io::Result<()> {
        // SAFETY (all calls below): plain system calls on fds and NUL-terminated strings
        // owned by `self`, which outlives them.
        unsafe {
            check(libc::setns(self.netns.as_raw_fd(), libc::CLONE_NEWNET))?;
            check(libc::setns(self.mntns.as_raw_fd(), libc::CLONE_NEWNS))?;
            check(libc::unshare(self.unshare))?;
            let root = c"/";
            check(libc::mount(
                std::ptr::null(),
                root.as_ptr(),
                std::ptr::null(),
                libc::MS_REC | libc::MS_SLAVE,
                std::ptr::null(),
            ))?;
            for dir in &self.runtime_dirs {
                if libc::mkdir(dir.as_ptr(), self.runtime_mode) == -1
                    && io::Error::last_os_error().raw_os_error() != Some(libc::EEXIST)
                {
                    return Err(io::Error::last_os_error());
                }
            }
            if self.read_only_root {
                for path in &self.writable {
                    check(libc::mount(
                        path.as_ptr(),
                        path.as_ptr(),
                        std::ptr::null(),
                        libc::MS_BIND | libc::MS_REC,
                        std::ptr::null(),
                    ))?;
                }
                set_mount_attr(&CString::from(root), MOUNT_ATTR_RDONLY, 0)?;
                for path in self.api_writable.iter().chain(&self.writable) {
                    set_mount_attr(path, 0, MOUNT_ATTR_RDONLY)?;
                }
            }
            if let Some(options) = &self.proc_options {
                let proc = c"proc";
                check(libc::mount(
                    proc.as_ptr(),
                    c"/proc".as_ptr(),
                    proc.as_ptr(),
                    libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                    options.as_ptr().cast(),
                ))?;
            }
            if !self.bounding_set.is_empty() {
                for cap in 0..=CAP_LAST_TRIED {
                    if self
                        .bounding_set
                        .iter()
                        .any(|c| libc::c_ulong::from(*c) == cap)
                    {
                        continue;
                    }
                    if libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0) == -1 {
                        // EINVAL: past the last capability this kernel knows.
                        break;
                    }
                }
            }
            if self.no_new_privs || !self.filter.is_empty() {
                check(libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))?;
            }
            if !self.filter.is_empty() {
                let program = libc::sock_fprog {
                    len: u16::try_from(self.filter.len()).unwrap_or(u16::MAX),
                    filter: self.filter.as_ptr().cast_mut(),
                };
                check(libc::prctl(
                    libc::PR_SET_SECCOMP,
                    libc::SECCOMP_MODE_FILTER,
                    &raw const program,
                    0,
                    0,
                ))?;
            }
        }
        Ok(())
    }
}

fn op(code: u16, k: u32) -> libc::sock_filter {
    libc::sock_filter {
        code,
        jt: 0,
        jf: 0,
        k,
    }
}

/// `if A == k: run the next instruction, else skip `skip` of them`.
fn jeq_else_skip(k: u32, skip: u8) -> libc::sock_filter {
    libc::sock_filter {
        code: JEQ_K,
        jt: 0,
        jf: skip,
        k,
    }
}

/// The seccomp program: calls of another architecture kill the process (as
/// `SystemCallArchitectures=native`), `socket(2)` of a family not allowed fails with
/// `EAFNOSUPPORT` (as `RestrictAddressFamilies=`), allowed calls pass, the rest fail with
/// the unit's errno. Each test is followed by its own `ret`, so that no jump is longer than
/// the 255 instructions a classic BPF jump reaches.
fn seccomp_program(
    calls: &std::collections::BTreeSet<u32>,
    sandbox: &ServiceSandbox,
) -> Vec<libc::sock_filter> {
    let errno = |e: i32| RET_ERRNO | (e.cast_unsigned() & 0xffff);
    let mut p = vec![
        op(LD_ABS_W, DATA_ARCH),
        libc::sock_filter {
            code: JEQ_K,
            jt: 1,
            jf: 0,
            k: AUDIT_ARCH_X86_64,
        },
        op(RET_K, RET_KILL_PROCESS),
        op(LD_ABS_W, DATA_NR),
    ];
    let socket = u32::try_from(libc::SYS_socket).unwrap_or(u32::MAX);
    if let (Some(families), true) = (&sandbox.address_families, calls.contains(&socket)) {
        let skip = u8::try_from(2 * families.len() + 2).unwrap_or(u8::MAX);
        p.push(jeq_else_skip(socket, skip));
        p.push(op(LD_ABS_W, DATA_ARG0));
        for family in families {
            p.push(jeq_else_skip(family.cast_unsigned(), 1));
            p.push(op(RET_K, RET_ALLOW));
        }
        p.push(op(RET_K, errno(libc::EAFNOSUPPORT)));
        p.push(op(LD_ABS_W, DATA_NR));
    }
    for nr in calls {
        p.push(jeq_else_skip(*nr, 1));
        p.push(op(RET_K, RET_ALLOW));
    }
    p.push(op(RET_K, errno(sandbox.syscall_errno)));
    p
}

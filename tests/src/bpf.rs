//! Tiny BPF programs the lab itself attaches, written as instructions and loaded with bpf(2)
//! directly: no object file to build, nothing to keep in sync with the program under test.
//! Each stays attached as long as its link's file descriptor is open.

use std::ffi::CString;
use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd};

use anyhow::{Context as _, Result, anyhow, bail};

use crate::netns::run_in_netns;

// bpf(2) commands, program types and attach types (include/uapi/linux/bpf.h).
const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_LINK_CREATE: libc::c_long = 28;
pub(crate) const BPF_PROG_TYPE_SCHED_CLS: u32 = 3;
pub(crate) const BPF_PROG_TYPE_XDP: u32 = 6;
pub(crate) const BPF_XDP: u32 = 37;
pub(crate) const BPF_TCX_INGRESS: u32 = 46;
pub(crate) const BPF_TCX_EGRESS: u32 = 47;
/// The verifier's log, for load errors.
const LOG_SIZE: usize = 4096;

/// One eBPF instruction (`struct bpf_insn`).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub(crate) struct Insn {
    code: u8,
    /// dst register in the low nibble, src in the high one.
    regs: u8,
    off: i16,
    imm: i32,
}

/// `rD = imm` (`BPF_ALU64 | BPF_MOV | BPF_K`).
pub(crate) const fn mov64_imm(dst: u8, imm: i32) -> Insn {
    Insn {
        code: 0xb7,
        regs: dst,
        off: 0,
        imm,
    }
}

/// Calls helper `id` (`BPF_JMP | BPF_CALL`) with r1..r5 as they are.
pub(crate) const fn call(id: i32) -> Insn {
    Insn {
        code: 0x85,
        regs: 0,
        off: 0,
        imm: id,
    }
}

/// Returns r0 (`BPF_JMP | BPF_EXIT`).
pub(crate) const EXIT: Insn = Insn {
    code: 0x95,
    regs: 0,
    off: 0,
    imm: 0,
};

/// The head of `union bpf_attr` for `BPF_PROG_LOAD`.
#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

/// The head of `union bpf_attr` for `BPF_LINK_CREATE`, the tcx fields left zero.
#[repr(C)]
#[derive(Default)]
struct LinkCreateAttr {
    prog_fd: u32,
    target_ifindex: u32,
    attach_type: u32,
    flags: u32,
    relative_fd: u32,
    _pad: u32,
    expected_revision: u64,
}

fn bpf<T>(cmd: libc::c_long, attr: &mut T) -> std::io::Result<OwnedFd> {
    // SAFETY: `attr` is a live, fully initialised `#[repr(C)]` prefix of `union bpf_attr`
    // and its size is passed along, as bpf(2) requires.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            std::ptr::from_mut(attr),
            std::mem::size_of::<T>(),
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: on success these commands return a new file descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Loads a program of `prog_type` made of `insns`.
pub(crate) fn load(
    prog_type: u32,
    expected_attach_type: u32,
    name: &str,
    insns: &[Insn],
) -> Result<OwnedFd> {
    let license = c"GPL";
    let mut log = vec![0u8; LOG_SIZE];
    let mut prog_name = [0u8; 16];
    for (dst, src) in prog_name.iter_mut().zip(name.bytes().take(15)) {
        *dst = src;
    }
    let mut attr = ProgLoadAttr {
        prog_type,
        insn_cnt: insns.len() as u32,
        insns: insns.as_ptr() as u64,
        license: license.as_ptr() as u64,
        log_level: 1,
        log_size: log.len() as u32,
        log_buf: log.as_mut_ptr() as u64,
        prog_name,
        expected_attach_type,
        ..ProgLoadAttr::default()
    };
    bpf(BPF_PROG_LOAD, &mut attr).map_err(|e| {
        let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
        anyhow!(
            "cannot load the program {name}: {e}\n{}",
            String::from_utf8_lossy(&log[..end])
        )
    })
}

/// Attaches `prog` to interface `ifname` of namespace `ns` (`BPF_LINK_CREATE`); detached
/// when the returned link is closed or the interface goes.
pub(crate) fn attach(ns: &str, ifname: &str, prog: &OwnedFd, attach_type: u32) -> Result<OwnedFd> {
    run_in_netns(ns, || -> Result<OwnedFd> {
        let c_name = CString::new(ifname)?;
        // SAFETY: a valid NUL-terminated name; if_nametoindex only reads it.
        let ifindex = unsafe { libc::if_nametoindex(c_name.as_ptr()) };
        if ifindex == 0 {
            bail!("no interface {ifname}");
        }
        // The interface is looked up in the calling thread's namespace.
        let mut attr = LinkCreateAttr {
            prog_fd: prog.as_raw_fd().cast_unsigned(),
            target_ifindex: ifindex,
            attach_type,
            ..LinkCreateAttr::default()
        };
        Ok(bpf(BPF_LINK_CREATE, &mut attr)?)
    })?
    .with_context(|| format!("cannot attach a program to {ifname} in {ns}"))
}

/// An XDP program that passes every frame, attached natively to `ifname` of `ns`.
pub fn attach_xdp_pass(ns: &str, ifname: &str) -> Result<OwnedFd> {
    const XDP_PASS: i32 = filter_common::wire::XDP_PASS.cast_signed();
    let prog = load(
        BPF_PROG_TYPE_XDP,
        BPF_XDP,
        "lab_xdp_pass",
        &[mov64_imm(0, XDP_PASS), EXIT],
    )?;
    attach(ns, ifname, &prog, BPF_XDP)
}

//! A traffic generator inside the kernel: a four-instruction XDP program that redirects
//! every frame to one interface, run with `BPF_PROG_TEST_RUN` in live-frames mode
//! (`BPF_F_TEST_XDP_LIVE_FRAMES`), so that each repeat sends the frame out of that
//! interface for real. On a veth, the frame arrives at the peer's NAPI on the same CPU,
//! and whatever the peer does with it (an XDP program, the stack, iptables) is done there
//! too (on the way out of each batch, or by that CPU's ksoftirqd): the CPU's busy time
//! during a call is the cost of generating and handling the frames.
//!
//! aya has no way to load raw instructions, so this speaks `bpf(2)` itself.
//!
//! Some hosts refuse live frames (`EPERM`, whatever the capabilities); there a packet
//! socket on the same interface sends the same frames, the same way, at a lower rate.

use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd, RawFd};

use anyhow::{Context as _, Result, bail};

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_TEST_RUN: libc::c_long = 10;
const BPF_LINK_CREATE: libc::c_long = 28;
const BPF_XDP: u32 = 37;
const XDP_FLAGS_DRV_MODE: u32 = 1 << 2;
const BPF_PROG_TYPE_XDP: u32 = 6;
const BPF_F_TEST_XDP_LIVE_FRAMES: u32 = 1 << 1;
const BPF_FUNC_REDIRECT: i32 = 23;

/// One `struct bpf_insn`.
fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> [u8; 8] {
    let mut b = [0u8; 8];
    b[0] = code;
    b[1] = (src << 4) | (dst & 0x0f);
    b[2..4].copy_from_slice(&off.to_le_bytes());
    b[4..8].copy_from_slice(&imm.to_le_bytes());
    b
}

fn bpf(cmd: libc::c_long, attr: &mut [u8; 128]) -> std::io::Result<libc::c_long> {
    // SAFETY: `attr` is a zero-padded `union bpf_attr` of 128 bytes for this command.
    let rc = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr.as_mut_ptr(), attr.len() as u32) };
    if rc < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

fn put32(attr: &mut [u8; 128], at: usize, v: u32) {
    attr[at..at + 4].copy_from_slice(&v.to_ne_bytes());
}

fn put64(attr: &mut [u8; 128], at: usize, v: u64) {
    attr[at..at + 8].copy_from_slice(&v.to_ne_bytes());
}

/// Loads `return bpf_redirect(ifindex, 0)` as an XDP program of the calling thread's
/// network namespace.
pub fn redirect_program(ifindex: u32) -> Result<OwnedFd> {
    load(
        &[
            insn(0xb7, 1, 0, 0, ifindex.cast_signed()), // r1 = ifindex
            insn(0xb7, 2, 0, 0, 0),                     // r2 = 0
            insn(0x85, 0, 0, 0, BPF_FUNC_REDIRECT),
            insn(0x95, 0, 0, 0, 0), // exit
        ],
        "sfb_gen",
    )
}

/// Loads an XDP program that writes back the IPv4 TTL and header checksum of an untagged
/// frame and passes it. The generator's pages are recycled without being copied afresh,
/// and forwarding decrements the TTL in place: without this, a frame would die of old
/// age after 63 rounds.
pub fn restore_ttl_program(ttl: u8, checksum: [u8; 2]) -> Result<OwnedFd> {
    load(
        &[
            insn(0x61, 2, 1, 0, 0),               // r2 = ctx->data
            insn(0x61, 3, 1, 4, 0),               // r3 = ctx->data_end
            insn(0xbf, 4, 2, 0, 0),               // r4 = r2
            insn(0x07, 4, 0, 0, 26),              // r4 += 26
            insn(0x2d, 4, 3, 2, 0),               // if r4 > r3 goto pass
            insn(0x72, 2, 0, 22, i32::from(ttl)), // *(u8 *)(r2 + 22) = ttl
            insn(0x6a, 2, 0, 24, i32::from(u16::from_le_bytes(checksum))), // checksum
            insn(0xb7, 0, 0, 0, 2),               // pass: r0 = XDP_PASS
            insn(0x95, 0, 0, 0, 0),               // exit
        ],
        "sfb_ttl",
    )
}

/// Attaches an XDP program natively to `ifindex` (of the calling thread's namespace); it
/// stays attached while the returned link is open.
pub fn attach_native(program: &OwnedFd, ifindex: u32) -> Result<OwnedFd> {
    use std::os::fd::AsRawFd as _;
    let mut attr = [0u8; 128];
    put32(&mut attr, 0, program.as_raw_fd().cast_unsigned());
    put32(&mut attr, 4, ifindex);
    put32(&mut attr, 8, BPF_XDP);
    put32(&mut attr, 12, XDP_FLAGS_DRV_MODE);
    let fd = bpf(BPF_LINK_CREATE, &mut attr)
        .map_err(|e| anyhow::anyhow!("attaching an XDP program natively: {e}"))?;
    // SAFETY: a new file descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

fn load(insns: &[[u8; 8]], name: &str) -> Result<OwnedFd> {
    let code: Vec<u8> = insns.concat();
    let license = b"GPL\0";
    let mut attr = [0u8; 128];
    put32(&mut attr, 0, BPF_PROG_TYPE_XDP);
    put32(&mut attr, 4, (code.len() / 8) as u32);
    put64(&mut attr, 8, code.as_ptr() as u64);
    put64(&mut attr, 16, license.as_ptr() as u64);
    // BPF_F_XDP_HAS_FRAGS: a veth with an MTU of 9000 takes only programs that say so.
    put32(&mut attr, 44, 1 << 5);
    let n = name.len().min(15);
    attr[48..48 + n].copy_from_slice(&name.as_bytes()[..n]);
    let fd = bpf(BPF_PROG_LOAD, &mut attr)
        .map_err(|e| anyhow::anyhow!("loading the XDP program {name}: {e}"))?;
    // SAFETY: a new file descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// Sends `frame` `repeat` times through the generator, `batch` frames per flush. Returns
/// the kernel's time per frame (ns): the batches, and what the receiving side did with
/// them when it ran on the way out of each batch.
pub fn send(program: &OwnedFd, frame: &[u8], repeat: u32, batch: u32) -> Result<u32> {
    let mut attr = [0u8; 128];
    put32(&mut attr, 0, program.as_raw_fd().cast_unsigned());
    put32(&mut attr, 8, frame.len() as u32);
    put64(&mut attr, 16, frame.as_ptr() as u64);
    put32(&mut attr, 32, repeat);
    put32(&mut attr, 64, BPF_F_TEST_XDP_LIVE_FRAMES);
    put32(&mut attr, 72, batch);
    bpf(BPF_PROG_TEST_RUN, &mut attr).context("BPF_PROG_TEST_RUN (live frames)")?;
    Ok(u32::from_ne_bytes(
        attr[36..40].try_into().expect("four bytes"),
    ))
}

/// Whether an error of [`send`] is the kernel refusing live frames on this host.
pub fn refused(e: &anyhow::Error) -> bool {
    e.downcast_ref::<std::io::Error>()
        .is_some_and(|e| e.raw_os_error() == Some(libc::EPERM))
}

/// Sends `frame` (an Ethernet frame) `repeat` times out of interface `ifindex` of the
/// calling thread's namespace through a packet socket; a full send queue drops the frame.
pub fn send_by_socket(ifindex: u32, frame: &[u8], repeat: u32) -> Result<()> {
    if frame.len() < 14 {
        bail!("a frame of {} bytes has no Ethernet header", frame.len());
    }
    // SAFETY: socket(2) with constant arguments.
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error()).context("opening a packet socket");
    }
    // SAFETY: a new file descriptor that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: all zeroes is a valid `sockaddr_ll`.
    let mut to: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    to.sll_family = libc::AF_PACKET as u16;
    // The frame's Ethernet type, already in network order.
    to.sll_protocol = u16::from_ne_bytes([frame[12], frame[13]]);
    to.sll_ifindex = ifindex.cast_signed();
    to.sll_halen = 6;
    to.sll_addr[..6].copy_from_slice(&frame[..6]);
    for _ in 0..repeat {
        // SAFETY: a valid buffer and address of the sizes given.
        let rc = unsafe {
            libc::sendto(
                fd.as_raw_fd(),
                frame.as_ptr().cast(),
                frame.len(),
                0,
                (&raw const to).cast(),
                size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        if rc < 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::ENOBUFS) {
                return Err(e).context("sending on a packet socket");
            }
        }
    }
    Ok(())
}

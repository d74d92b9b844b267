//! The bench's network: two namespaces joined by three veth pairs, and the in-kernel
//! generator's blast on one pair, timed by the busy time of the CPU it runs on.

use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use sni_filter_lab::{Netns, run_in_netns};

use crate::bench::bpf;
use crate::bench::live;
use crate::shell::{self, cmd};

/// Frames per flush of the generator: within one NAPI budget, so the veth's ring of 256
/// never overflows.
pub(super) const BATCH: u32 = 64;
/// How long one blast of a measured round lasts.
pub(super) const BLAST_SECS: f64 = 1.0;

/// Two namespaces: `sender` sends, `gw` receives on three veth pairs: `x1` with the filter,
/// `x2` with `bench_drop`, `x3` with nothing (the stack and iptables).
pub(super) struct Topo {
    pub(super) sender: Netns,
    pub(super) gw: Netns,
    /// MAC address of `x3`, the destination of forwarded frames.
    pub(super) x3_mac: [u8; 6],
}

impl Topo {
    pub(super) fn new() -> Result<Self> {
        let pid = std::process::id();
        let sender = Netns::new(&format!("sfbench-{pid}-0-cl"))?;
        let gw = Netns::new(&format!("sfbench-{pid}-0-gw"))?;
        let (g, w) = (sender.name().to_owned(), gw.name().to_owned());
        // No IPv6: its router and listener messages would be counted among the frames.
        for ns in [&sender, &gw] {
            shell::output(ns.exec("sysctl").args([
                "-qw",
                "net.ipv6.conf.all.disable_ipv6=1",
                "net.ipv6.conf.default.disable_ipv6=1",
            ]))?;
        }
        let ip = |args: &[&str]| shell::output(&mut cmd("ip", args)).map(drop);
        for i in 1..=3 {
            let (a, x) = (format!("g{i}"), format!("x{i}"));
            ip(&[
                "-n", &g, "link", "add", &a, "mtu", "9000", "type", "veth", "peer", "name", &x,
                "mtu", "9000", "netns", &w,
            ])?;
            ip(&["-n", &g, "link", "set", &a, "up"])?;
            ip(&["-n", &w, "link", "set", &x, "up"])?;
        }
        ip(&[
            "-n", &w, "link", "add", "o1", "mtu", "9000", "type", "veth", "peer", "name", "o2",
            "mtu", "9000",
        ])?;
        for dev in ["o1", "o2"] {
            ip(&["-n", &w, "link", "set", dev, "up"])?;
        }
        ip(&["-n", &w, "addr", "add", "192.0.2.254/24", "dev", "x3"])?;
        ip(&["-n", &w, "addr", "add", "198.51.100.254/24", "dev", "o1"])?;
        shell::output(gw.exec("sysctl").args([
            "-qw",
            "net.ipv4.ip_forward=1",
            "net.ipv4.conf.all.rp_filter=0",
            "net.ipv4.conf.x3.rp_filter=0",
        ]))?;
        // GRO off: it would merge the identical hellos into one super-packet.
        shell::output(gw.exec("ethtool").args(["-K", "x3", "gro", "off"]))?;
        let link = shell::output(&mut cmd("ip", ["-n", &w, "-o", "link", "show", "x3"]))?;
        let mac = link
            .split_whitespace()
            .skip_while(|t| *t != "link/ether")
            .nth(1)
            .context("no MAC address on x3")?;
        let mut x3_mac = [0u8; 6];
        for (b, part) in x3_mac.iter_mut().zip(mac.split(':')) {
            *b = u8::from_str_radix(part, 16).context("MAC address")?;
        }
        Ok(Self { sender, gw, x3_mac })
    }

    /// A number from `ethtool -S` of an interface.
    pub(super) fn stat(&self, gw_side: bool, dev: &str, key: &str) -> Result<u64> {
        let ns = if gw_side { &self.gw } else { &self.sender };
        let out = shell::output(ns.exec("ethtool").args(["-S", dev]))?;
        out.lines()
            .find_map(|l| {
                let (k, v) = l.trim().split_once(':')?;
                (k.trim() == key).then(|| v.trim().parse().ok())?
            })
            .with_context(|| format!("no {key} in ethtool -S {dev}"))
    }
}

/// What one blast sent and how long it took.
pub(super) struct Blast {
    pub(super) sent: u64,
    /// Wall time of the calls.
    pub(super) secs: f64,
    /// The kernel's time for them (without the set-up of each call).
    pub(super) kernel_secs: f64,
    /// Time the CPU was busy (user, system, interrupts), whoever it was busy for: the
    /// generator, the NAPI poll in softirq or ksoftirqd.
    pub(super) busy_secs: f64,
    /// Frames the generator's side could not hand to the peer (its ring was full).
    pub(super) xmit_errors: u64,
}

/// How much a blast sends.
#[derive(Clone, Copy)]
pub(super) enum Amount {
    /// For about this many seconds.
    Secs(f64),
    /// Exactly this many frames.
    Frames(u32),
}

/// Sends `frame` from `g{pair}`, pinned to `cpu`.
pub(super) fn blast(
    topo: &Topo,
    pair: u8,
    frame: &[u8],
    amount: Amount,
    cpu: usize,
) -> Result<Blast> {
    let dev = format!("g{pair}");
    let errors_before = topo.stat(false, &dev, "tx_queue_0_xdp_xmit_errors")?;
    let busy_before = cpu_busy_secs(cpu)?;
    let (sent, secs, kernel_secs) =
        run_in_netns(topo.sender.name(), || -> Result<(u64, f64, f64)> {
            bpf::pin(Some(cpu))?;
            let name = std::ffi::CString::new(dev.clone())?;
            // SAFETY: a NUL-terminated name.
            let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
            if ifindex == 0 {
                bail!("no interface {dev}");
            }
            let program = live::redirect_program(ifindex)?;
            let (mut chunk, limit) = match amount {
                Amount::Frames(n) => (n, 0.0),
                Amount::Secs(s) => (BATCH, s),
            };
            let (mut sent, mut kernel) = (0u64, 0.0);
            let start = Instant::now();
            loop {
                let t = Instant::now();
                let per_frame = live::send(&program, frame, chunk, BATCH)?;
                sent += u64::from(chunk);
                kernel += f64::from(per_frame) * f64::from(chunk) / 1e9;
                if start.elapsed().as_secs_f64() >= limit {
                    break;
                }
                // Each call switches the kernel's XDP dispatcher (milliseconds): make
                // calls long enough for that to vanish.
                if t.elapsed() < Duration::from_millis(250) && chunk < 1 << 24 {
                    chunk *= 2;
                }
            }
            Ok((sent, start.elapsed().as_secs_f64(), kernel))
        })??;
    let busy_secs = cpu_busy_secs(cpu)? - busy_before;
    let xmit_errors = topo
        .stat(false, &dev, "tx_queue_0_xdp_xmit_errors")?
        .saturating_sub(errors_before);
    Ok(Blast {
        sent,
        secs,
        kernel_secs,
        busy_secs,
        xmit_errors,
    })
}

/// Seconds CPU `cpu` has spent busy since boot (/proc/stat: user, nice, system, irq,
/// softirq; not idle, I/O wait or time stolen by the hypervisor).
pub(super) fn cpu_busy_secs(cpu: usize) -> Result<f64> {
    let stat = std::fs::read_to_string("/proc/stat")?;
    let label = format!("cpu{cpu}");
    let line = stat
        .lines()
        .find(|l| l.split_whitespace().next() == Some(label.as_str()))
        .with_context(|| format!("no {label} in /proc/stat"))?;
    let f: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    let busy = f[0] + f[1] + f[2] + f[5] + f[6];
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1);
    Ok(busy as f64 / hz as f64)
}

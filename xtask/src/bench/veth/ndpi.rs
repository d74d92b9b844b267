//! nDPI's reader on a capture of the same hellos, each on a flow of its own: the cost of a
//! full DPI engine per packet, for comparison.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context as _, Result};
use serde_json::json;
use sni_filter_lab::hello::TcpSegment;

use crate::bench::frames::{self, ALLOWED};
use crate::bench::report::{Report, Table, ns};
use crate::shell::{self, cmd};

/// Hellos in the capture nDPI reads.
const PACKETS: usize = 50_000;

/// nDPI's reader on a capture of the same hellos, each on a flow of its own.
pub(super) fn ndpi(dir: &Path, report: &mut Report) -> Result<()> {
    let mut table = Table::new(
        "nDPI (ndpiReader) on a capture of the same hellos",
        &["", ""],
    );
    if let Err(e) = ensure_ndpi() {
        table.row(vec!["not run".into(), format!("{e:#}")]);
        report.set("ndpi", json!(format!("not run: {e:#}")));
        report.tables.push(table);
        return Ok(());
    }
    let pcap = dir.join("hellos.pcap");
    let mut data = Vec::with_capacity(PACKETS * 1900);
    // Global header: magic, v2.4, UTC, accuracy, snaplen 65535, Ethernet.
    data.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    data.extend_from_slice(&2u16.to_le_bytes());
    data.extend_from_slice(&4u16.to_le_bytes());
    data.extend_from_slice(&[0; 8]);
    data.extend_from_slice(&65535u32.to_le_bytes());
    data.extend_from_slice(&1u32.to_le_bytes());
    let payload = frames::hello(ALLOWED, false);
    for i in 0..PACKETS {
        let src = std::net::Ipv4Addr::new(10, (i >> 16) as u8, (i >> 8) as u8, i as u8);
        let ip = sni_filter_lab::hello::IpPair::V4 {
            src,
            dst: std::net::Ipv4Addr::new(198, 51, 100, 1),
        };
        let frame = TcpSegment::new(ip, 40000 + (i % 20000) as u16, 443).frame(&payload);
        let us = i as u32;
        data.extend_from_slice(&1_700_000_000u32.wrapping_add(us / 1_000_000).to_le_bytes());
        data.extend_from_slice(&(us % 1_000_000).to_le_bytes());
        data.extend_from_slice(&(frame.len() as u32).to_le_bytes());
        data.extend_from_slice(&(frame.len() as u32).to_le_bytes());
        data.extend_from_slice(&frame);
    }
    std::fs::write(&pcap, &data)?;
    let start = Instant::now();
    let mut child = Command::new("ndpiReader")
        .arg("-i")
        .arg(&pcap)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("cannot start ndpiReader")?;
    let mut stdout = String::new();
    std::io::Read::read_to_string(child.stdout.as_mut().context("stdout")?, &mut stdout)?;
    let (status, cpu) = wait_with_cpu(child.id())?;
    let wall = start.elapsed().as_secs_f64();
    if !status {
        report.fail("ndpi", "ndpiReader failed".into());
    }
    let tls = stdout
        .lines()
        .find(|l| l.trim_start().starts_with("TLS"))
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "));
    let cpu_ns = cpu * 1e9 / PACKETS as f64;
    table.row(vec![
        "packets (each a new flow's 1.8 KB hello)".into(),
        PACKETS.to_string(),
    ]);
    table.row(vec!["CPU ns per packet (user + system)".into(), ns(cpu_ns)]);
    table.row(vec!["wall time".into(), format!("{wall:.2} s")]);
    table.row(vec![
        "TLS line of its report".into(),
        tls.clone().unwrap_or_else(|| "none".into()),
    ]);
    table.note(
        "ndpiReader reads a pcap in user space, so its figure includes reading the file and \
         its flow table; it is the cost of classifying these hellos with nDPI, not a \
         packet-path cost like the others.",
    );
    report.set(
        "ndpi",
        json!({ "packets": PACKETS, "cpu_ns_per_packet": cpu_ns, "wall_s": wall, "tls": tls }),
    );
    report.tables.push(table);
    Ok(())
}

/// Installs Debian's `libndpi-bin` unless `ndpiReader` is there.
fn ensure_ndpi() -> Result<()> {
    if Command::new("ndpiReader")
        .arg("-h")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
    {
        return Ok(());
    }
    println!("   installing libndpi-bin for ndpiReader");
    let install = || {
        shell::output(
            cmd("apt-get", ["install", "-y", "-q", "libndpi-bin"])
                .env("DEBIAN_FRONTEND", "noninteractive"),
        )
    };
    if install().is_err() {
        shell::output(&mut cmd("apt-get", ["update", "-q"]))?;
        install()?;
    }
    Ok(())
}

/// Waits for a child and returns whether it succeeded and its CPU seconds (user + system).
fn wait_with_cpu(pid: u32) -> Result<(bool, f64)> {
    let mut status = 0;
    // SAFETY: a zeroed rusage is a valid out-parameter.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waits for our own child; both pointers are valid.
    let rc = unsafe { libc::wait4(pid.cast_signed(), &raw mut status, 0, &raw mut usage) };
    if rc < 0 {
        return Err(std::io::Error::last_os_error()).context("wait4");
    }
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    Ok((
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        secs(usage.ru_utime) + secs(usage.ru_stime),
    ))
}

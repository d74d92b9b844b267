//! The per-CPU caches of blocked verdicts: a verdict ended on one CPU is not answered from
//! another's cache, and a busy cache does not outlive the flow's idle timeout.

use filter_common::Reason;
use sni_filter_lab::hello::{TcpFlags, TcpSegment};

use super::common::program::{XDP_DROP, XDP_PASS};
use super::{RULES, blocked_flow, counters, filter};

/// Runs the rest of this thread on `cpu` alone.
fn on_cpu(cpu: usize) {
    // SAFETY: an all-zero cpu_set_t is a valid empty set; CPU_SET fills one bit of it.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: as above; `cpu` is below CPU_SETSIZE.
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: `set` is a live cpu_set_t of the size passed.
    let rc = unsafe { libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &raw const set) };
    assert_eq!(
        rc,
        0,
        "sched_setaffinity({cpu}): {}",
        std::io::Error::last_os_error()
    );
}

/// Each CPU answers a blocked flow's packets from a cache of its own; a verdict ended on
/// another CPU (a SYN reusing the ports) must end there too, and a verdict's idle timeout
/// must hold however busy the flow keeps the cache.
#[test]
fn a_verdict_ended_on_one_cpu_is_not_answered_from_anothers_cache() {
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    assert!(cpus >= 2, "needs two CPUs, has {cpus}");
    // After the SYN, data out of the new connection's order is uninspectable: passed.
    let f = filter(&format!(
        "[filter]\nflow_idle_secs = 1\nuninspectable = \"pass\"\n{RULES}"
    ));
    let before = counters(&f);
    on_cpu(0);
    let (s, later) = blocked_flow(&f);
    let data = later.frame(b"data");
    // The first later packet fills CPU 0's cache, the next ones are answered from it.
    for _ in 0..3 {
        assert_eq!(f.run_frame(&data).unwrap(), XDP_DROP);
    }
    on_cpu(1);
    let syn = TcpSegment {
        flags: TcpFlags::SYN,
        ..s.clone()
    };
    assert_eq!(f.run_frame(&syn.frame(&[])).unwrap(), XDP_PASS);
    on_cpu(0);
    let moved = |r: Reason| counters(&f)[r as usize].packets - before[r as usize].packets;
    assert_eq!(f.run_frame(&data).unwrap(), XDP_PASS);
    assert_eq!(
        moved(Reason::BlockedFlow),
        3,
        "CPU 0 still answered from its cache after the SYN on CPU 1 ended the verdict"
    );
    // Busy on one CPU, idle on the other: the idle timeout is the flow's, not the cache's.
    let (_, later) = blocked_flow(&f);
    let start = std::time::Instant::now();
    while start.elapsed() < std::time::Duration::from_millis(600) {
        assert_eq!(f.run_frame(&later.frame(b"data")).unwrap(), XDP_DROP);
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    on_cpu(1);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    on_cpu(0);
    assert_eq!(
        f.run_frame(&later.frame(b"data")).unwrap(),
        XDP_PASS,
        "the verdict outlived its idle timeout in the cache"
    );
}

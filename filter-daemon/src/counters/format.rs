//! Counters as the CLI prints them and the daemon logs them: one name per reason (the
//! shared enum), aligned columns, human units.

use std::fmt::Write as _;

use filter_common::{Counter, Reason};

/// `1.5 KiB`, `3.2 MiB`...
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    // Display only: a rounded value is what is wanted.
    #[allow(clippy::cast_precision_loss)]
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// The counters table: reason, packets, of them dropped, bytes. Zero rows are left out
/// unless `all`.
pub fn table(counters: &[Counter], all: bool) -> String {
    let mut out = format!(
        "{:<28} {:>12} {:>12} {:>12}\n",
        "reason", "packets", "dropped", "bytes"
    );
    for (reason, c) in Reason::ALL.iter().zip(counters) {
        if c.packets == 0 && !all {
            continue;
        }
        let _ = writeln!(
            out,
            "{:<28} {:>12} {:>12} {:>12}",
            reason.name(),
            c.packets,
            c.dropped,
            human_bytes(c.bytes)
        );
    }
    out
}

/// One log line of the changes since `before`: `hello_blocked=+3/3 ...` (delta/total).
pub fn summary_line(before: &[Counter], now: &[Counter]) -> String {
    let mut parts = Vec::new();
    for ((reason, b), n) in Reason::ALL.iter().zip(before).zip(now) {
        if n.packets == 0 {
            continue;
        }
        parts.push(format!(
            "{}=+{}/{}",
            reason.name(),
            n.packets - b.packets.min(n.packets),
            n.packets
        ));
    }
    if parts.is_empty() {
        "no packets seen".into()
    } else {
        parts.join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_read_as_humans_read_them() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(3 * 1024 * 1024), "3.0 MiB");
    }

    #[test]
    fn table_names_every_nonzero_reason() {
        let mut c = vec![Counter::default(); Reason::ALL.len()];
        c[Reason::HelloBlocked as usize] = Counter {
            packets: 3,
            bytes: 1536,
            dropped: 3,
        };
        let t = table(&c, false);
        assert!(t.contains("hello_blocked"), "{t}");
        assert!(t.contains("1.5 KiB"), "{t}");
        assert!(!t.contains("hello_allowed"), "{t}");
        assert_eq!(
            summary_line(&vec![Counter::default(); c.len()], &c),
            "hello_blocked=+3/3"
        );
    }
}

//! The settings the daemon writes for the program (one of two sides in force, switched by
//! one write on reload) and the inspected-ports bitmap they go with. Read-only for the program.

use aya_ebpf::{bindings::BPF_F_RDONLY_PROG, macros::map, maps::Array};
use filter_common::{PORT_WORDS, Settings};

#[map(name = "SETTINGS")]
static SETTINGS: Array<Settings> = Array::with_max_entries(2, BPF_F_RDONLY_PROG);

/// Which of the two `SETTINGS` is in force.
#[map(name = "ACTIVE")]
static ACTIVE: Array<u32> = Array::with_max_entries(1, BPF_F_RDONLY_PROG);

/// Bitmap of inspected TCP destination ports, used when `all_ports` is off.
#[map(name = "PORTS")]
static PORTS: Array<u64> = Array::with_max_entries(2 * PORT_WORDS, BPF_F_RDONLY_PROG);

/// Whether payload to this destination port is inspected.
#[inline(always)]
pub fn port_inspected(port: u16) -> bool {
    match settings() {
        Some(s) if s.all_ports != 0 => true,
        // The side of the bitmap the settings name: a reload fills the other one.
        Some(s) => PORTS
            .get(s.ports_base + u32::from(port) / 64)
            .is_some_and(|w| w & (1 << (port % 64)) != 0),
        None => true,
    }
}

/// The settings userspace wrote; `None` only before the first rule set is installed.
#[inline(always)]
pub fn settings() -> Option<&'static Settings> {
    SETTINGS.get(*ACTIVE.get(0)? & 1)
}

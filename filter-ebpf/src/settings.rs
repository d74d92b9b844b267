//! The settings the daemon writes for the program: two sides and which is in force, in the
//! one value of `SETTINGS` (see `filter_common::Sides`). Read-only for the program.

use aya_ebpf::{bindings::BPF_F_RDONLY_PROG, macros::map, maps::Array};
use filter_common::{Settings, Side, Sides};

#[map(name = "SETTINGS")]
static SETTINGS: Array<Sides> = Array::with_max_entries(1, BPF_F_RDONLY_PROG);

/// The side in force: one lookup.
#[inline(always)]
fn side() -> Option<&'static Side> {
    let sides = SETTINGS.get(0)?;
    // SAFETY: an aligned u32 of a map value; volatile: userspace switches it.
    let active = unsafe { (&raw const sides.active).read_volatile() } & 1;
    sides.side.get(active as usize)
}

/// Whether payload to this destination port is inspected.
#[inline(always)]
pub fn port_inspected(port: u16) -> bool {
    side().is_none_or(|s| s.inspects(port))
}

/// The settings in force (all zero before userspace installs the first rule set).
#[inline(always)]
pub fn settings() -> Option<&'static Settings> {
    side().map(|s| &s.settings)
}

/// Whether the filter runs in `mode = "monitor"`: nothing is dropped, reset or rewritten.
#[inline(always)]
pub fn monitoring() -> bool {
    settings().is_some_and(|s| s.monitor != 0)
}

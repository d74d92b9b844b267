//! The program's counters: the per-CPU maps they live in, opened from a loaded program or
//! from the pins of an instance, read and summed over the CPUs into one [`Snapshot`]; and
//! (in `format`) printed as the CLI shows them and the daemon logs them.

mod format;

pub use format::{human_bytes, summary_line, table};

use std::borrow::Borrow;

use aya::{
    Ebpf, Pod,
    maps::{Map, MapData, PerCpuArray},
};
use filter_common::{
    APPS_MAX, AppCounters, Counter, IFACE_SLOTS, IfaceCounters, NOTE_COUNT, REASON_COUNT, names,
};

use crate::{Error, state::Instance};

/// Counters summed over every CPU, indexed by `Reason`.
pub type Counters = Vec<Counter>;

/// An app as summaries, `status` and `/metrics` name it; its index is its slot in
/// `APP_COUNTERS`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppInfo {
    pub name: String,
    pub action: String,
}

/// The counters at one moment, each summed over every CPU.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// By reason, in `Reason::ALL` order.
    pub reasons: Vec<Counter>,
    /// The apps asked for, in slot order.
    pub apps: Vec<(AppInfo, AppCounters)>,
    /// By note, in `Note::ALL` order.
    pub notes: Vec<u64>,
    /// The interfaces asked for, by interface index.
    pub ifaces: Vec<(u32, IfaceCounters)>,
}

/// The per-CPU arrays the counters live in: borrowed from a loaded program
/// ([`CounterMaps::of`]) or opened from an instance's pins ([`CounterMaps::pinned`]).
pub struct CounterMaps<T> {
    reasons: PerCpuArray<T, Counter>,
    notes: PerCpuArray<T, u64>,
    ifaces: PerCpuArray<T, IfaceCounters>,
    apps: PerCpuArray<T, AppCounters>,
}

impl<'a> CounterMaps<&'a MapData> {
    /// The counter maps of a program loaded in this process.
    pub fn of(ebpf: &'a Ebpf) -> Result<Self, Error> {
        fn open<'a, V: Pod>(
            ebpf: &'a Ebpf,
            map: &'static str,
        ) -> Result<PerCpuArray<&'a MapData, V>, Error> {
            let data = ebpf.map(map).ok_or(Error::MapMissing { map })?;
            PerCpuArray::try_from(data).map_err(|e| Error::map(map, "opening", e))
        }
        Ok(Self {
            reasons: open(ebpf, names::COUNTERS)?,
            notes: open(ebpf, names::NOTES)?,
            ifaces: open(ebpf, names::IFACE_COUNTERS)?,
            apps: open(ebpf, names::APP_COUNTERS)?,
        })
    }
}

impl CounterMaps<MapData> {
    /// The counter maps of the filter pinned under `instance`, with or without a daemon.
    pub fn pinned(instance: &Instance) -> Result<Self, Error> {
        fn open<V: Pod>(
            instance: &Instance,
            map: &'static str,
        ) -> Result<PerCpuArray<MapData, V>, Error> {
            PerCpuArray::try_from(Map::PerCpuArray(instance.open_pinned(map)?))
                .map_err(|e| Error::map(map, format!("opening {}", instance.pin(map).display()), e))
        }
        Ok(Self {
            reasons: open(instance, names::COUNTERS)?,
            notes: open(instance, names::NOTES)?,
            ifaces: open(instance, names::IFACE_COUNTERS)?,
            apps: open(instance, names::APP_COUNTERS)?,
        })
    }
}

impl<T: Borrow<MapData>> CounterMaps<T> {
    /// Every counter, with those of `apps` (in slot order) and of the interfaces `ifindexes`.
    pub fn snapshot(&self, apps: &[AppInfo], ifindexes: &[u32]) -> Result<Snapshot, Error> {
        Ok(Snapshot {
            reasons: self.reasons()?,
            apps: self.apps(apps)?,
            notes: self.notes()?,
            ifaces: self.ifaces(ifindexes)?,
        })
    }

    /// The counters by reason.
    pub fn reasons(&self) -> Result<Counters, Error> {
        (0..REASON_COUNT)
            .map(|i| read_slot(&self.reasons, names::COUNTERS, i, add_counter))
            .collect()
    }

    /// The notes, by note.
    pub fn notes(&self) -> Result<Vec<u64>, Error> {
        (0..NOTE_COUNT)
            .map(|i| read_slot(&self.notes, names::NOTES, i, |a, c| a + c))
            .collect()
    }

    /// The counters of `apps`, the app in slot `i` of the list being app `i` of the program.
    pub fn apps(&self, apps: &[AppInfo]) -> Result<Vec<(AppInfo, AppCounters)>, Error> {
        apps.iter()
            .zip(0..APPS_MAX)
            .map(|(app, i)| {
                let c = read_slot(&self.apps, names::APP_COUNTERS, i, |a, c| AppCounters {
                    flows: a.flows + c.flows,
                    packets_dropped: a.packets_dropped + c.packets_dropped,
                    bytes_dropped: a.bytes_dropped + c.bytes_dropped,
                    resets: a.resets + c.resets,
                })?;
                Ok((app.clone(), c))
            })
            .collect()
    }

    /// The counters of the interfaces `ifindexes` (an interface counts in the slot of its
    /// index modulo `IFACE_SLOTS`).
    pub fn ifaces(&self, ifindexes: &[u32]) -> Result<Vec<(u32, IfaceCounters)>, Error> {
        ifindexes
            .iter()
            .map(|&index| {
                let slot = index % IFACE_SLOTS;
                let c = read_slot(&self.ifaces, names::IFACE_COUNTERS, slot, |a, c| {
                    IfaceCounters {
                        ipv4: a.ipv4 + c.ipv4,
                        ipv6: a.ipv6 + c.ipv6,
                        other: a.other + c.other,
                        vlan_tagged: a.vlan_tagged + c.vlan_tagged,
                        dropped: a.dropped + c.dropped,
                    }
                })?;
                Ok((index, c))
            })
            .collect()
    }
}

/// Two counters added field by field.
pub fn add_counter(a: Counter, c: &Counter) -> Counter {
    Counter {
        packets: a.packets + c.packets,
        bytes: a.bytes + c.bytes,
        dropped: a.dropped + c.dropped,
    }
}

/// Slot `i` of a per-CPU array, summed over the CPUs with `add`.
fn read_slot<T: Borrow<MapData>, V: Pod + Default>(
    array: &PerCpuArray<T, V>,
    map: &'static str,
    i: u32,
    add: impl Fn(V, &V) -> V,
) -> Result<V, Error> {
    let per_cpu = array
        .get(&i, 0)
        .map_err(|e| Error::map(map, format!("reading slot {i}"), e))?;
    Ok(per_cpu.iter().fold(V::default(), add))
}

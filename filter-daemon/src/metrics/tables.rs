//! How full the program's flow tables are, and how fresh the QUIC worker's heartbeat is, read
//! from handles of the metrics' own (by map id) so a scrape never waits on the daemon's loop.

use std::time::{Duration, Instant};

use aya::maps::{Array, HashMap, MapData};
use filter_common::{
    BlockedFlow, FlowKey, QUIC_HEARTBEAT_STALE_NS, QuicFlow, hello::HelloFlow, names,
};

use crate::{
    Error,
    filter::{Filter, monotonic_ns},
    quic::worker,
};

/// How long a count of the tables' entries is served before the tables are walked again.
/// Walking a full table of 65536 entries takes tens of milliseconds of system calls; scrapes
/// closer together than this get the same count.
pub const COUNT_REUSE: Duration = Duration::from_secs(5);

/// One table's entries and capacity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fill {
    /// The `table` label: what the table holds.
    pub table: &'static str,
    pub entries: u64,
    pub max: u64,
}

/// The flow tables and the heartbeat of one filter.
pub struct FlowTables {
    verdicts: HashMap<MapData, FlowKey, BlockedFlow>,
    hellos: HashMap<MapData, FlowKey, HelloFlow>,
    quic_flows: HashMap<MapData, FlowKey, QuicFlow>,
    heartbeat: Array<MapData, u64>,
    /// Capacities, in the order of [`FlowTables::fill`].
    max: [u64; 3],
    counted: Option<(Instant, [u64; 3])>,
}

impl FlowTables {
    pub fn open(filter: &Filter) -> Result<Self, Error> {
        let max = |name: &'static str| -> Result<u64, Error> {
            let data = MapData::from_id(filter.map_id(name)?)
                .map_err(|e| Error::map(name, "opening by id", e))?;
            let info = data
                .info()
                .map_err(|e| Error::map(name, "reading its size", e))?;
            Ok(u64::from(info.max_entries()))
        };
        Ok(Self {
            verdicts: worker::open(filter, names::VERDICTS)?,
            hellos: worker::open(filter, names::HELLOS)?,
            quic_flows: worker::open(filter, names::QUIC_FLOWS)?,
            heartbeat: worker::open(filter, names::QUIC_HEARTBEAT)?,
            max: [
                max(names::VERDICTS)?,
                max(names::HELLOS)?,
                max(names::QUIC_FLOWS)?,
            ],
            counted: None,
        })
    }

    /// Entries and capacity of the blocked flows, the hellos being read and the QUIC flows,
    /// counted at most once every [`COUNT_REUSE`].
    pub fn fill(&mut self) -> [Fill; 3] {
        let counts = match self.counted {
            Some((at, c)) if at.elapsed() < COUNT_REUSE => c,
            _ => {
                let c = [
                    count(self.verdicts.keys()),
                    count(self.hellos.keys()),
                    count(self.quic_flows.keys()),
                ];
                self.counted = Some((Instant::now(), c));
                c
            }
        };
        let tables = ["blocked_flows", "hellos", "quic_flows"];
        std::array::from_fn(|i| Fill {
            table: tables[i],
            entries: counts[i],
            max: self.max[i],
        })
    }

    /// The age of the QUIC worker's last heartbeat as the program sees it, `None` when no
    /// worker beats (the heartbeat is cleared or was never written).
    pub fn heartbeat_age(&self) -> Option<Duration> {
        let beat = self.heartbeat.get(&0, 0).ok().filter(|&b| b != 0)?;
        Some(Duration::from_nanos(monotonic_ns().saturating_sub(beat)))
    }

    /// Whether the program takes a worker to be judging QUIC: a heartbeat younger than the
    /// program's staleness bound.
    pub fn worker_alive(&self) -> bool {
        self.heartbeat_age()
            .is_some_and(|age| age.as_nanos() < u128::from(QUIC_HEARTBEAT_STALE_NS))
    }
}

/// Entries of a hash table; keys that vanish while it is walked are not counted.
fn count<K>(keys: impl Iterator<Item = Result<K, aya::maps::MapError>>) -> u64 {
    keys.flatten().count() as u64
}

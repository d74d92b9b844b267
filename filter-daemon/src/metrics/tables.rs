//! How full the program's flow tables are, read from handles of the metrics' own (by map id)
//! so a scrape never waits on the daemon's loop.

use std::time::{Duration, Instant};

use aya::maps::{HashMap, MapData};
use filter_common::{BlockedFlow, FlowKey, QuicFlow, hello::HelloFlow, names};

use crate::{Error, filter::Filter, quic::worker};

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

/// The flow tables of one filter.
pub struct FlowTables {
    verdicts: HashMap<MapData, FlowKey, BlockedFlow>,
    hellos: HashMap<MapData, FlowKey, HelloFlow>,
    quic_flows: HashMap<MapData, FlowKey, QuicFlow>,
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
}

/// Entries of a hash table; keys that vanish while it is walked are not counted.
fn count<K>(keys: impl Iterator<Item = Result<K, aya::maps::MapError>>) -> u64 {
    keys.flatten().count() as u64
}

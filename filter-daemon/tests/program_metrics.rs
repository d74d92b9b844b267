//! Group: program tests (the compiled program loaded, no namespaces; see
//! `filter-daemon/tests/README.md`).
//!
//! The flow tables' fill as `/metrics` reports it, on the real program's maps: a full table
//! of blocked flows counted exactly, how long the count takes, and the count served again
//! within `COUNT_REUSE`. Needs root (loading BPF programs).

mod common;

use std::time::Instant;

use aya::maps::{HashMap, Map, MapData};
use common::program::load_with;
use filter_common::{BlockedFlow, FlowKey, VERDICTS_DEFAULT_MAX, names};
use sni_filter::metrics::FlowTables;

#[test]
fn a_full_table_of_blocked_flows_is_counted_exactly_and_the_count_is_reused() {
    let (filter, _, _) = load_with(
        "fill",
        "[apps.x]\naction = \"drop\"\ndomains = [\"x.test\"]\n",
    );
    let mut tables = FlowTables::open(&filter).unwrap();
    let fill = tables.fill();
    assert_eq!(fill[0].table, "blocked_flows");
    assert_eq!(
        (fill[0].entries, fill[0].max),
        (0, u64::from(VERDICTS_DEFAULT_MAX))
    );

    let data = MapData::from_id(filter.map_id(names::VERDICTS).unwrap()).unwrap();
    let mut verdicts: HashMap<MapData, FlowKey, BlockedFlow> =
        HashMap::try_from(Map::HashMap(data)).unwrap();
    for i in 0..VERDICTS_DEFAULT_MAX {
        let mut key = FlowKey::default();
        key.saddr[..4].copy_from_slice(&i.to_be_bytes());
        key.family = 4;
        verdicts.insert(key, BlockedFlow::default(), 0).unwrap();
    }
    // Served from the count just made: the table filled since is not walked again yet.
    assert_eq!(tables.fill()[0].entries, 0);

    let mut fresh = FlowTables::open(&filter).unwrap();
    let start = Instant::now();
    let fill = fresh.fill();
    let took = start.elapsed();
    assert_eq!(fill[0].entries, u64::from(VERDICTS_DEFAULT_MAX));
    assert_eq!(fill[1].table, "hellos");
    assert_eq!(fill[1].entries, 0);
    println!(
        "counting {} blocked flows (and the empty hellos and QUIC tables) took {took:?}",
        fill[0].entries
    );
}

//! End to end on veth pairs between two namespaces, fed by the in-kernel generator of
//! `live.rs`: the filter attached natively next to `bench_drop` attached the same way;
//! iptables' string match (what administrators use today) on the forwarding path of the
//! same hellos; and nDPI's reader on a capture of them.
//!
//! Every pair runs on one CPU: the generator's call, the veth's NAPI poll and what the
//! receiving side does all happen on the CPU this thread is pinned to, so frames handled
//! per second of that CPU's busy time is the rate at 100 % of one CPU (generator included,
//! which the comparison with `bench_drop` or with zero iptables rules takes out).

mod end_to_end;
mod iptables;
mod ndpi;
mod topo;

use std::path::Path;

use anyhow::Result;
use serde_json::json;

use super::Mode;
use super::bpf::Floors;
use super::report::{Report, Table};
use end_to_end::end_to_end;
use iptables::iptables;
use ndpi::ndpi;
use topo::Topo;

/// The three comparisons on one topology (nDPI after it is gone); a part that fails is
/// reported as failed and the others still run.
pub fn run(
    mode: &Mode,
    floors: &mut Floors,
    dir: &Path,
    cpu: usize,
    report: &mut Report,
) -> Result<()> {
    if mode.quick {
        let mut t = Table::new("iptables, nDPI and end to end on veth", &["part", "result"]);
        for part in [
            "iptables string match (bm, kmp)",
            "nDPI (ndpiReader)",
            "end to end on veth",
        ] {
            t.row(vec![part.into(), "not run: quick mode".into()]);
        }
        report.tables.push(t);
        report.set("veth", json!("not run: quick mode"));
        report.set("iptables", json!("not run: quick mode"));
        report.set("ndpi", json!("not run: quick mode"));
        return Ok(());
    }
    let topo = Topo::new()?;
    let failed = |part: &str, r: Result<()>, report: &mut Report| {
        if let Err(e) = r {
            let mut t = Table::new(part, &["result"]);
            t.row(vec![format!("failed: {e:#}")]);
            report.tables.push(t);
            report.fail(part, format!("{e:#}"));
        }
    };
    let r = end_to_end(&topo, floors, dir, cpu, report);
    failed("end to end on veth", r, report);
    let r = iptables(&topo, dir, cpu, report);
    failed("iptables", r, report);
    drop(topo);
    let r = ndpi(dir, report);
    failed("nDPI", r, report);
    Ok(())
}

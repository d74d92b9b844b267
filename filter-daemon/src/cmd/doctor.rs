//! `sni-filter doctor IFACE...`: the checks `run` makes before attaching, printed.

use crate::{
    Error,
    preflight::{self, Level},
};

/// Returns whether nothing failed.
pub fn doctor(interfaces: &[String]) -> Result<bool, Error> {
    let mut checks = preflight::kernel();
    for name in interfaces {
        checks.extend(preflight::interface(name, filter_common::names::PROGRAM));
    }
    preflight::print(&checks);
    Ok(!checks.iter().any(|c| c.level == Level::Fail))
}

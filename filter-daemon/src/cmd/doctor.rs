//! `sni-filter doctor IFACE...`: the checks `run` makes before attaching, printed.

use crate::{
    Error,
    preflight::{self, Level},
    state::Instance,
};

/// Returns whether nothing failed.
pub fn doctor(instance: &Instance, interfaces: &[String]) -> Result<bool, Error> {
    let mut checks = preflight::kernel();
    for name in interfaces {
        checks.extend(preflight::interface(name, instance));
    }
    preflight::print(&checks);
    Ok(!checks.iter().any(|c| c.level == Level::Fail))
}

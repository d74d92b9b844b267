//! `sni-filter doctor IFACE...`: the checks `run` makes before attaching, printed, and the
//! verifier's verdict on both programs, loaded here without being attached.

use crate::{
    Error,
    filter::{Filter, VERIFIED_INSNS_BOUND, VERIFIER_LIMIT, Verification},
    preflight::{self, Check, Level},
    state::Instance,
};

/// Returns whether nothing failed.
pub fn doctor(instance: &Instance, interfaces: &[String]) -> Result<bool, Error> {
    let mut checks = preflight::gateway(interfaces, instance);
    checks.extend(verifier());
    preflight::print(&checks);
    Ok(!checks.iter().any(|c| c.level == Level::Fail))
}

/// Loads the programs into the kernel (not onto any interface; they are unloaded when this
/// returns) and reports what the verifier said of each.
fn verifier() -> Vec<Check> {
    match Filter::load(filter_common::RULES_DEFAULT_MAX) {
        Ok(filter) => filter.verification().iter().map(verification).collect(),
        Err(e) => vec![Check {
            level: Level::Fail,
            what: "verifier".into(),
            detail: format!("{e}"),
        }],
    }
}

fn verification(v: &Verification) -> Check {
    let what = format!("verifier {}", v.program);
    let took = v.took.as_secs_f64();
    let Some(n) = v.instructions else {
        return Check {
            level: Level::Warn,
            what,
            detail: format!(
                "loaded in {took:.3} s; this kernel does not report the instructions processed"
            ),
        };
    };
    let detail = format!(
        "{n} instructions processed in {took:.3} s (bound {VERIFIED_INSNS_BOUND}, limit \
         {VERIFIER_LIMIT})"
    );
    if n > VERIFIED_INSNS_BOUND {
        return Check {
            level: Level::Warn,
            what,
            detail: format!(
                "{detail}: loads, but with less margin than a reboot into another kernel needs"
            ),
        };
    }
    Check {
        level: Level::Ok,
        what,
        detail,
    }
}

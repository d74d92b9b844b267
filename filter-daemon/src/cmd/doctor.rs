//! `sni-filter doctor IFACE... [--json]`: the checks `run` makes before attaching, printed
//! (or one JSON object), and the verifier's verdict on both programs, loaded here without
//! being attached.

use serde_json::json;

use crate::{
    Error,
    filter::{Filter, VERIFIED_INSNS_BOUND, VERIFIER_LIMIT, Verification},
    preflight::{self, Check, Level},
    state::Instance,
};

/// Returns whether nothing failed.
/// The programs are loaded into the kernel (not onto any interface; they are unloaded
/// before this returns) for what the verifier says of each.
pub fn doctor(instance: &Instance, interfaces: &[String], json: bool) -> Result<bool, Error> {
    let mut checks = preflight::gateway(interfaces, instance);
    let verified =
        Filter::load(filter_common::RULES_DEFAULT_MAX).map(|f| f.verification().to_vec());
    match &verified {
        Ok(v) => checks.extend(v.iter().map(verification)),
        Err(e) => checks.push(Check {
            level: Level::Fail,
            what: "verifier".into(),
            detail: format!("{e}"),
        }),
    }
    let ok = !checks.iter().any(|c| c.level == Level::Fail);
    if json {
        let list: Vec<_> = checks
            .iter()
            .map(|c| json!({"check": c.what, "level": c.level.name(), "detail": c.detail}))
            .collect();
        let programs: Vec<_> = verified
            .iter()
            .flatten()
            .map(|v| {
                json!({
                    "program": v.program, "instructions": v.instructions,
                    "seconds": v.took.as_secs_f64(), "bound": VERIFIED_INSNS_BOUND,
                })
            })
            .collect();
        println!(
            "{}",
            json!({"ok": ok, "checks": list, "verifier": programs})
        );
    } else {
        preflight::print(&checks);
    }
    Ok(ok)
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

//! The rule set's identity: a SHA-256 over what the filter enforces (every app's compiled
//! rules and the settings that change verdicts), and the versions its lists' publishers gave.
//!
//! The hash is taken over a canonical text of the compiled rule set, never over the files:
//! reformatting the TOML, reordering or commenting a list leaves it as it is, while any
//! rule, action or verdict setting that changes moves it. Settings that say where and how
//! the filter runs but not what it decides (interfaces, XDP mode, logging, metrics, table
//! sizes kept apart) are left out, so gateways with different interfaces but the same
//! rules show the same hash. The publishers' version strings are shown beside it and are
//! not part of it: two gateways that enforce the same rules have the same hash whatever
//! the lists' headers say.

use std::fmt::Write as _;

pub use crate::versions::list_version;
use crate::{config::Config, rules::RuleSet};

/// Hex digits of the hash that FLOW records carry ([`RuleSetId::short`]).
pub const SHORT_HEX: usize = 12;

/// Which rules a filter enforces.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RuleSetId {
    /// SHA-256 of the canonical rule set, 64 lowercase hex digits.
    pub sha256: String,
    /// The lists' versions, `FILE VERSION` joined by `, ` (e.g. `tiktok.txt 2026.12.07`),
    /// in the configuration's order; empty when no list carries one.
    pub version: String,
}

impl RuleSetId {
    /// The identity of `set` as compiled from `config`.
    pub fn of(config: &Config, set: &RuleSet) -> Self {
        let digest = ring::digest::digest(&ring::digest::SHA256, canonical(config, set).as_bytes());
        let mut sha256 = String::with_capacity(64);
        for b in digest.as_ref() {
            let _ = write!(sha256, "{b:02x}");
        }
        let version = set
            .lists
            .iter()
            .filter_map(|l| {
                let v = l.version.as_ref()?;
                let file = l.path.file_name().map_or_else(
                    || l.path.display().to_string(),
                    |f| f.to_string_lossy().into_owned(),
                );
                Some(format!("{file} {v}"))
            })
            .collect::<Vec<_>>()
            .join(", ");
        Self { sha256, version }
    }

    /// The first [`SHORT_HEX`] hex digits (48 bits): what each FLOW record carries. A fleet
    /// runs a handful of rule sets at a time, so 48 bits tell them apart with room to
    /// spare, and the full hash is in SUMMARY, LIFECYCLE, `status` and `/metrics` beside it.
    pub fn short(&self) -> &str {
        &self.sha256[..SHORT_HEX.min(self.sha256.len())]
    }
}

/// `, version V` after a hash, when the lists carry a version.
pub fn version_note(version: &str) -> String {
    if version.is_empty() {
        String::new()
    } else {
        format!(", version {version}")
    }
}

/// The text the hash is taken over: one line per setting and per rule, rules sorted.
fn canonical(config: &Config, set: &RuleSet) -> String {
    let mut s = String::new();
    let ports = |p: &[u16]| {
        p.iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(",")
    };
    let _ = writeln!(s, "sni-filter rule set 1");
    let _ = writeln!(s, "mode {}", config.mode.name());
    let _ = writeln!(s, "uninspectable {:?}", config.uninspectable);
    let _ = writeln!(s, "inspected_ports {}", ports(&config.inspected_ports));
    let _ = writeln!(s, "quic {}", config.quic.name());
    let _ = writeln!(s, "quic_ports {}", ports(&config.quic_ports));
    let _ = writeln!(s, "quic_hold {}", config.quic_hold);
    let _ = writeln!(s, "flow_idle_secs {}", config.flow_idle_secs);
    for app in &set.apps {
        let _ = writeln!(
            s,
            "app {} action {} enabled {}",
            app.name,
            app.action.name(),
            app.enabled
        );
        let mut sorted = |items: Vec<String>, what: &str| {
            let mut items = items;
            items.sort();
            for i in items {
                let _ = writeln!(s, "  {what} {i}");
            }
        };
        sorted(
            app.exempt_sources.iter().map(ToString::to_string).collect(),
            "exempt",
        );
        sorted(app.interfaces.clone(), "interface");
        sorted(app.vlans.iter().map(ToString::to_string).collect(), "vlan");
        sorted(
            app.rules
                .iter()
                .map(|r| format!("{:?} {}", r.scope, r.name).to_ascii_lowercase())
                .collect(),
            "rule",
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    const LIST: &str = "\
[Adblock Plus 2.0]
! Title: Test list
! Version: 2026.12.07
! Expires: 1 day
! comment
||tiktok.com^
";

    #[test]
    fn versions_are_read_from_both_header_styles() {
        assert_eq!(list_version(LIST).as_deref(), Some("2026.12.07"));
        let hosts = "# Title: hosts\n#\n# version: 3.1\n0.0.0.0 a.example\n";
        assert_eq!(list_version(hosts).as_deref(), Some("3.1"));
        assert_eq!(list_version("# Version: 7\n").as_deref(), Some("7"));
        // Only the header counts: a version comment after the first rule is not one.
        assert_eq!(list_version("a.example\n! Version: 9\n"), None);
        assert_eq!(list_version("! Title: x\n||a.example^\n"), None);
        assert_eq!(list_version("! Version:\n"), None);
    }

    /// A configuration of one app with inline domains and one list, both written out.
    fn compiled(dir: &Path, toml: &str, list: &str) -> RuleSetId {
        std::fs::write(dir.join("l.txt"), list).unwrap();
        let cfg = Config::parse(&dir.join("f.toml"), toml).unwrap();
        RuleSetId::of(&cfg, &RuleSet::compile(&cfg).unwrap())
    }

    #[test]
    fn the_hash_follows_the_rules_not_the_files() {
        let dir = std::env::temp_dir().join(format!("sni-filter-identity-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let toml = "[apps.t]\naction = \"drop\"\ndomains = [\"a.example\"]\nlists = [\"l.txt\"]\n";
        let base = compiled(&dir, toml, LIST);
        assert_eq!(base.sha256.len(), 64);
        assert_eq!(base.version, "l.txt 2026.12.07");
        assert_eq!(base.short(), &base.sha256[..12]);

        // The same rules written otherwise: TOML spacing and comments, list comments and
        // case, a trailing dot.
        let reformatted = "# the ban\n[apps.t]\ndomains = [ \"A.example.\" ]   # inline\n\naction = 'drop'\nlists = ['l.txt']\n";
        let relisted = "! Version: 2026.12.08\n! other comment\n\n||TikTok.com^\n";
        let same = compiled(&dir, reformatted, relisted);
        assert_eq!(same.sha256, base.sha256);
        assert_eq!(same.version, "l.txt 2026.12.08", "the version is a label");

        // One list line changed, an action changed, a verdict setting changed.
        for (toml, list) in [
            (toml, LIST.replace("tiktok.com", "tiktokv.com")),
            (toml, LIST.replace("||tiktok.com^", "|tiktok.com^")),
            (&toml.replace("drop", "reject"), LIST.to_owned()),
            (
                &format!("[filter]\nmode = \"monitor\"\n{toml}"),
                LIST.to_owned(),
            ),
            (
                &format!("[filter]\nquic = \"block\"\n{toml}"),
                LIST.to_owned(),
            ),
        ] {
            let other = compiled(&dir, toml, &list);
            assert_ne!(other.sha256, base.sha256, "{toml}\n{list}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

//! Rule lists and the compiled rule set: lines of plain domains, hosts files and
//! AdGuard/uBlock syntax become normalised names per app, ready for the program's map.

use std::collections::HashMap;

use filter_common::{
    Action, AppPolicy, RULE_EXACT, RULE_SUFFIX, RULE_WILD_PARENT, RuleValue, WILDCARDS_MAX,
    name::{RuleKey, RuleTables, WILD_CHAIN_MAX, WildPattern, rule_key},
};

use crate::{
    Error,
    config::{App, Config},
};

mod index;
mod lists;
pub use index::RuleIndex;
pub use lists::{ListFile, ListInfo, read_list, skipped_line};

/// Longest name in text form (RFC 1035 §2.3.4: 255 octets on the wire, 253 in text).
const NAME_TEXT_MAX: usize = 253;
/// Longest label (RFC 1035 §2.3.4).
const LABEL_MAX: usize = 63;

/// How a rule compares with a name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// The name and every name below it.
    Suffix,
    /// The name only.
    Exact,
    /// One `*` in the leftmost label (`p16-tiktok-*.ibyteimg.com`): names whose label below
    /// the parent fits the pattern, and every name below those.
    Wildcard,
}

/// One rule read from a list or the configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    pub name: String,
    pub scope: Scope,
    /// `file:line` it came from.
    pub origin: String,
}

/// The rules of every app, in the order of the configuration.
#[derive(Debug, Default, Clone)]
pub struct RuleSet {
    pub apps: Vec<AppRules>,
    /// Duplicates, shadowed rules and skipped list lines, as `file:line: what`.
    pub warnings: Vec<String>,
    /// The lists read, in the configuration's order (a list named twice, once).
    pub lists: Vec<ListInfo>,
}

#[derive(Debug, Clone)]
pub struct AppRules {
    pub name: String,
    pub action: Action,
    /// Whether the app's rules are in use; a disabled app's names pass.
    pub enabled: bool,
    /// `APP_*` bits: which scope and exemption checks the app's matches need.
    pub flags: u8,
    pub rules: Vec<Rule>,
    /// Client networks the rules do not apply to.
    pub exempt_sources: Vec<ipnet::IpNet>,
    /// Interfaces the rules apply on (empty: all).
    pub interfaces: Vec<String>,
    /// VLAN IDs the rules apply on (empty: all).
    pub vlans: Vec<u16>,
}

/// Parses one line of a rule list. `Ok(None)` for blank lines and comments.
pub fn parse_line(line: &str) -> Result<Vec<(String, Scope)>, String> {
    let line = line.trim();
    // `!` starts AdGuard comments; `#` hosts-file and plain-list comments (also `##`
    // cosmetic filters, which do not apply to server names).
    if line.is_empty() || line.starts_with('!') || line.starts_with('#') || line.starts_with('[') {
        return Ok(Vec::new());
    }
    let line = line.split_once(" #").map_or(line, |(l, _)| l).trim();
    let mut words = line.split_whitespace();
    let first = words.next().unwrap_or_default();
    // Hosts file: an address then one or more names, each blocked exactly.
    if first.parse::<std::net::IpAddr>().is_ok() {
        let names: Vec<_> = words.collect();
        if names.is_empty() {
            return Err(format!("hosts line {line:?} has an address but no name"));
        }
        return names
            .into_iter()
            .filter(|n| {
                !matches!(
                    *n,
                    "localhost" | "localhost.localdomain" | "local" | "broadcasthost"
                )
            })
            .map(|n| Ok((normalise(n)?, Scope::Exact)))
            .collect();
    }
    if words.next().is_some() {
        return Err(format!(
            "{line:?} has more than one word and is not a hosts-file line"
        ));
    }
    if let Some(rest) = first.strip_prefix("||") {
        let name = normalise(adguard_body(rest)?)?;
        let scope = suffix_scope(&name);
        return Ok(vec![(name, scope)]);
    }
    if let Some(rest) = first.strip_prefix('|') {
        let name = normalise(adguard_body(rest)?)?;
        if name.contains('*') {
            return Err(format!("{first:?}: a wildcard cannot be an exact rule"));
        }
        return Ok(vec![(name, Scope::Exact)]);
    }
    if first.contains(['^', '$', '/']) {
        return Err(format!(
            "{first:?} is not a domain, a hosts line or an AdGuard `||name^` rule"
        ));
    }
    // `*.name` means the subdomains of name; suffix rules include them.
    let name = normalise(first.strip_prefix("*.").unwrap_or(first))?;
    let scope = suffix_scope(&name);
    Ok(vec![(name, scope)])
}

fn adguard_body(rest: &str) -> Result<&str, String> {
    let body = rest.strip_suffix('^').unwrap_or(rest);
    if body.contains(['$', '^', '/', '|']) {
        return Err(format!(
            "AdGuard rule {rest:?} uses modifiers or paths; only `||name^` and `|name^` apply to server names"
        ));
    }
    Ok(body)
}

/// Lowercase ASCII (punycode for internationalised names), no trailing dot, valid labels.
pub fn normalise(name: &str) -> Result<String, String> {
    let trimmed = name.strip_suffix('.').unwrap_or(name);
    if trimmed.contains('*') {
        let (label, parent) = trimmed
            .split_once('.')
            .ok_or_else(|| format!("{name:?}: a wildcard needs a parent name"))?;
        if parent.contains('*') || label.matches('*').count() != 1 {
            return Err(format!(
                "{name:?}: only one `*`, inside the leftmost label, is supported"
            ));
        }
        if label.len() > LABEL_MAX || !label.bytes().all(|b| b == b'*' || label_byte(b)) {
            return Err(format!(
                "{name:?} has a wildcard label that is not a host-name label with one `*`"
            ));
        }
        return Ok(format!(
            "{}.{}",
            label.to_ascii_lowercase(),
            normalise(parent)?
        ));
    }
    let ascii = if trimmed.is_ascii() {
        trimmed.to_ascii_lowercase()
    } else {
        idna::domain_to_ascii(trimmed)
            .map_err(|_| format!("{name:?} is not a valid internationalised domain name"))?
    };
    if ascii.is_empty() || ascii.len() > NAME_TEXT_MAX {
        return Err(format!(
            "{name:?} must be 1 to {NAME_TEXT_MAX} characters long"
        ));
    }
    for label in ascii.split('.') {
        if label.is_empty() || label.len() > LABEL_MAX {
            return Err(format!(
                "{name:?} has a label that is empty or over {LABEL_MAX} characters"
            ));
        }
        if !label.bytes().all(label_byte) {
            return Err(format!(
                "{name:?} has a character not allowed in a host name"
            ));
        }
    }
    Ok(ascii)
}

fn label_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

/// The scope of a normalised suffix-style rule: a `*` makes it a wildcard.
fn suffix_scope(name: &str) -> Scope {
    if name.contains('*') {
        Scope::Wildcard
    } else {
        Scope::Suffix
    }
}

/// An app's rules, inline and from its lists; the lists read are added to `set`.
fn app_rules(config: &Config, app: &App, set: &mut RuleSet) -> Result<Vec<Rule>, Error> {
    let mut rules = Vec::new();
    for (domain, line) in &app.domains {
        let origin = format!("{}:{line}", config.path.display());
        let parsed = parse_line(domain).map_err(|r| Error::config(&origin, r))?;
        if parsed.is_empty() {
            return Err(Error::config(&origin, format!("{domain:?} is not a rule")));
        }
        rules.extend(parsed.into_iter().map(|(name, scope)| Rule {
            name,
            scope,
            origin: origin.clone(),
        }));
    }
    for (list, line) in &app.lists {
        let origin = format!("{}:{line}", config.path.display());
        if !list.is_file() {
            return Err(Error::List {
                at: origin,
                reason: format!("rule list {} does not exist", list.display()),
            });
        }
        crate::signature::verify_list(&config.trusted_keys, list)?;
        let file = read_list(list)?;
        rules.extend(file.rules);
        // A list two apps share is read twice and warned about once.
        if !set.lists.iter().any(|l| &l.path == list) {
            set.warnings.extend(file.skipped);
            set.lists.push(ListInfo {
                path: list.clone(),
                version: file.version,
            });
        }
    }
    Ok(rules)
}

impl AppRules {
    /// The app's entry in the program's `APPS` map.
    pub fn policy(&self) -> AppPolicy {
        AppPolicy {
            action: self.action as u8,
            enabled: u8::from(self.enabled),
            flags: self.flags,
            _pad: [0; 5],
        }
    }
}

impl RuleSet {
    /// Reads every app's rules and checks them against each other.
    pub fn compile(config: &Config) -> Result<Self, Error> {
        let mut set = RuleSet::default();
        // name -> (app index, scope, origin) of the first rule seen, for duplicate warnings.
        let mut seen: HashMap<String, (usize, Scope, String)> = HashMap::new();
        for (index, app) in config.apps.iter().enumerate() {
            let mut kept = Vec::new();
            for rule in app_rules(config, app, &mut set)? {
                if let Some((other, _, first)) = seen.get(&rule.name) {
                    let owner = &config.apps[*other].name;
                    set.warnings.push(format!(
                        "{}: {} repeats the rule of {first} (app {owner}); the first one counts",
                        rule.origin, rule.name
                    ));
                    continue;
                }
                seen.insert(rule.name.clone(), (index, rule.scope, rule.origin.clone()));
                kept.push(rule);
            }
            let mut flags = 0;
            if !app.exempt_sources.is_empty() {
                flags |= filter_common::APP_HAS_EXEMPTIONS;
            }
            if !app.interfaces.is_empty() {
                flags |= filter_common::APP_SCOPED_IFACES;
            }
            if !app.vlans.is_empty() {
                flags |= filter_common::APP_SCOPED_VLANS;
            }
            set.apps.push(AppRules {
                name: app.name.clone(),
                action: Action::from(app.action),
                enabled: app.enabled,
                flags,
                rules: kept,
                exempt_sources: app.exempt_sources.clone(),
                interfaces: app.interfaces.clone(),
                vlans: app.vlans.clone(),
            });
        }
        // Wildcard chains and parents are checked here, so check-config reports them too.
        set.tables(0)?;
        set.warn_shadowed(&seen);
        if set.rule_count() > config.rules_max as usize {
            return Err(Error::config(
                config.path.display(),
                format!(
                    "{} rules exceed rules_max = {}",
                    set.rule_count(),
                    config.rules_max
                ),
            ));
        }
        Ok(set)
    }

    /// Warns about rules that a broader suffix rule of the same app already covers.
    fn warn_shadowed(&mut self, seen: &HashMap<String, (usize, Scope, String)>) {
        for (index, app) in self.apps.iter().enumerate() {
            for rule in &app.rules {
                let mut rest = rule.name.as_str();
                while let Some((_, parent)) = rest.split_once('.') {
                    if let Some((owner, Scope::Suffix, origin)) = seen.get(parent)
                        && *owner == index
                    {
                        self.warnings.push(format!(
                            "{}: {} is already covered by {parent} ({origin})",
                            rule.origin, rule.name
                        ));
                        break;
                    }
                    rest = parent;
                }
            }
        }
    }

    pub fn rule_count(&self) -> usize {
        self.apps.iter().map(|a| a.rules.len()).sum()
    }

    /// The map entries for a hash seed: rules by key, and the wildcard patterns.
    pub fn tables(&self, seed: u64) -> Result<Tables, Error> {
        let mut rules: HashMap<RuleKey, RuleValue> = HashMap::new();
        let mut patterns: Vec<WildPattern> = Vec::new();
        for (app, rules_of_app) in self.apps.iter().enumerate() {
            let app = app as u16;
            for r in &rules_of_app.rules {
                let (name, flags) = match r.scope {
                    Scope::Suffix => (r.name.as_str(), RULE_SUFFIX),
                    Scope::Exact => (r.name.as_str(), RULE_EXACT),
                    Scope::Wildcard => {
                        let (label, parent) = r
                            .name
                            .split_once('.')
                            .expect("normalised wildcards have a parent");
                        let (prefix, suffix) = label
                            .split_once('*')
                            .expect("normalised wildcards have a `*`");
                        let mut p = WildPattern::new(prefix.as_bytes(), suffix.as_bytes(), app, 0);
                        let parent_value = rules
                            .entry(rule_key(seed, parent.as_bytes()))
                            .or_insert(RuleValue {
                                app,
                                flags: 0,
                                wild: 0,
                                _pad: 0,
                            });
                        // Chain the new pattern in front of the parent's others.
                        p.next = parent_value.wild;
                        let mut chain = 1;
                        let mut next = p.next;
                        while next != 0 {
                            chain += 1;
                            next = patterns[usize::from(next - 1)].next;
                        }
                        if chain > WILD_CHAIN_MAX {
                            return Err(Error::config(
                                &r.origin,
                                format!("more than {WILD_CHAIN_MAX} wildcard rules under {parent}"),
                            ));
                        }
                        if patterns.len() >= WILDCARDS_MAX as usize {
                            return Err(Error::config(
                                &r.origin,
                                format!("more than {WILDCARDS_MAX} wildcard rules"),
                            ));
                        }
                        patterns.push(p);
                        parent_value.wild = patterns.len() as u16;
                        parent_value.flags |= RULE_WILD_PARENT;
                        continue;
                    }
                };
                let v = rules
                    .entry(rule_key(seed, name.as_bytes()))
                    .or_insert(RuleValue {
                        app,
                        flags: 0,
                        wild: 0,
                        _pad: 0,
                    });
                // A name that is only a wildcard parent so far takes this rule's app.
                if v.flags & (RULE_SUFFIX | RULE_EXACT) == 0 {
                    v.app = app;
                }
                v.flags |= flags;
            }
        }
        // Only the deepest label below a wildcard parent is compared with patterns (see
        // `NameMatch::finish`): a parent below another parent would hide the upper one.
        let parents: Vec<(&str, &str)> = self
            .apps
            .iter()
            .flat_map(|a| &a.rules)
            .filter(|r| r.scope == Scope::Wildcard)
            .filter_map(|r| {
                r.name
                    .split_once('.')
                    .map(|(_, parent)| (parent, r.origin.as_str()))
            })
            .collect();
        for (lower, origin) in &parents {
            if let Some((upper, _)) = parents
                .iter()
                .find(|(upper, _)| lower.ends_with(&format!(".{upper}")))
            {
                return Err(Error::config(
                    origin,
                    format!(
                        "a wildcard under {lower} cannot sit below another wildcard's parent {upper}"
                    ),
                ));
            }
        }
        Ok(Tables { rules, patterns })
    }

    /// Which app and rule would match `host`, judged exactly as the program judges it.
    pub fn lookup(&self, host: &str) -> Option<(&AppRules, &Rule)> {
        let tables = self.tables(0x5eed).ok()?;
        let mut buf = [0u8; filter_common::name::NAME_BUF];
        let bytes = host.as_bytes();
        let len = bytes.len().min(filter_common::name::NAME_MAX);
        buf[..len].copy_from_slice(&bytes[..len]);
        let v = filter_common::name::match_name(&buf, len, 0x5eed, &tables)?;
        // The app is the program's answer; the rule behind it is found by reading the rules
        // as text, which also cross-checks the hashed lookup.
        let app = self.apps.get(usize::from(v.app))?;
        let host = host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
        let rule = app
            .rules
            .iter()
            .filter(|r| rule_covers(r, &host))
            .max_by_key(|r| r.name.len())?;
        Some((app, rule))
    }
}

/// The rule tables of a rule set, as the program's maps hold them.
pub struct Tables {
    pub rules: HashMap<RuleKey, RuleValue>,
    pub patterns: Vec<WildPattern>,
}

impl RuleTables for Tables {
    fn rule(&self, key: RuleKey) -> Option<RuleValue> {
        self.rules.get(&key).copied()
    }

    fn pattern(&self, index: u16) -> Option<&WildPattern> {
        self.patterns.get(usize::from(index))
    }
}

/// Whether a rule covers a normalised host, by plain string comparison.
fn rule_covers(rule: &Rule, host: &str) -> bool {
    let below = |parent: &str| host == parent || host.ends_with(&format!(".{parent}"));
    match rule.scope {
        Scope::Exact => host == rule.name,
        Scope::Suffix => below(&rule.name),
        Scope::Wildcard => {
            let Some((label, parent)) = rule.name.split_once('.') else {
                return false;
            };
            let Some((prefix, suffix)) = label.split_once('*') else {
                return false;
            };
            let Some(rest) = host.strip_suffix(&format!(".{parent}")) else {
                return false;
            };
            let candidate = rest.rsplit('.').next().unwrap_or(rest);
            candidate.len() >= prefix.len() + suffix.len()
                && candidate.starts_with(prefix)
                && candidate.ends_with(suffix)
        }
    }
}

#[cfg(test)]
mod tests {
    use std::{fs, path::Path};

    use super::*;

    /// Each line with the rules it must give.
    fn assert_parse(cases: &[(&str, &[(&str, Scope)])]) {
        for (line, want) in cases {
            let want: Vec<(String, Scope)> =
                want.iter().map(|(n, s)| ((*n).to_owned(), *s)).collect();
            assert_eq!(parse_line(line).unwrap(), want, "{line}");
        }
    }

    #[test]
    fn list_formats_engineers_have() {
        assert_parse(&[
            ("tiktok.com", &[("tiktok.com", Scope::Suffix)]),
            ("  TikTok.COM.  # main", &[("tiktok.com", Scope::Suffix)]),
            ("*.tiktokv.com", &[("tiktokv.com", Scope::Suffix)]),
            (
                "0.0.0.0 a.tiktok.com b.tiktok.com",
                &[
                    ("a.tiktok.com", Scope::Exact),
                    ("b.tiktok.com", Scope::Exact),
                ],
            ),
            ("127.0.0.1 localhost", &[]),
            ("||musical.ly^", &[("musical.ly", Scope::Suffix)]),
            ("|byteoversea.com^", &[("byteoversea.com", Scope::Exact)]),
            ("# comment", &[]),
            ("! adguard comment", &[]),
            ("", &[]),
        ]);
    }

    #[test]
    fn wildcards_in_the_leftmost_label() {
        assert_parse(&[
            (
                "||p16-TikTok-*.ibyteimg.com^",
                &[("p16-tiktok-*.ibyteimg.com", Scope::Wildcard)],
            ),
            (
                "*-sign.ibyteimg.com",
                &[("*-sign.ibyteimg.com", Scope::Wildcard)],
            ),
        ]);
        for (line, why) in [
            ("a*b*.x.com", "only one"),
            ("a.b*.com", "only one"),
            ("*x", "parent"),
            ("|a*.x.com^", "exact"),
        ] {
            let e = parse_line(line).unwrap_err();
            assert!(e.contains(why), "{line}: {e}");
        }
    }

    #[test]
    fn nested_wildcard_parents_are_refused() {
        let cfg = Config::parse(
            Path::new("/x/f.toml"),
            "[apps.t]\naction = \"drop\"\ndomains = [\"a-*.b.com\", \"c-*.x.b.com\"]\n",
        )
        .unwrap();
        let e = RuleSet::compile(&cfg).unwrap_err().to_string();
        assert!(e.contains("below another wildcard"), "{e}");
    }

    #[test]
    fn internationalised_names_become_punycode() {
        assert_parse(&[(
            "bücher.example",
            &[("xn--bcher-kva.example", Scope::Suffix)],
        )]);
    }

    #[test]
    fn bad_lines_say_why() {
        for (line, why) in [
            ("tik tok.com", "more than one word"),
            ("||tiktok.com^$third-party", "modifiers"),
            ("tiktok..com", "label"),
            ("tik!tok.com", "character"),
            ("0.0.0.0", "no name"),
            ("example.com/path", "not a domain"),
        ] {
            let e = parse_line(line).unwrap_err();
            assert!(e.contains(why), "{line}: {e}");
        }
        let long = format!("{}.com", "a".repeat(64));
        assert!(parse_line(&long).unwrap_err().contains("63"));
    }

    #[test]
    fn published_adguard_lists_skip_what_is_not_a_name_rule() {
        let list = Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../tests/fixtures/lists/adguard.txt"
        ));
        let toml = format!(
            "[apps.t]\naction = \"drop\"\nlists = [{:?}, {:?}]\n[apps.u]\naction = \"drop\"\nlists = [{:?}]\n",
            list.display().to_string(),
            list.display().to_string(),
            list.display().to_string(),
        );
        let cfg = Config::parse(Path::new("/x/f.toml"), &toml).unwrap();
        let set = RuleSet::compile(&cfg).unwrap();
        let names: Vec<(&str, Scope)> = set.apps[0]
            .rules
            .iter()
            .map(|r| (r.name.as_str(), r.scope))
            .collect();
        assert_eq!(
            names,
            [
                ("blocked-one.example", Scope::Suffix),
                ("blocked-two.example", Scope::Suffix),
                ("exact.example", Scope::Exact),
            ]
        );
        let skipped: Vec<&String> = set
            .warnings
            .iter()
            .filter(|w| w.contains("skipped"))
            .collect();
        // One warning per line, though two apps and one app twice name the list.
        assert_eq!(skipped.len(), 3, "{:?}", set.warnings);
        for (line, why) in [(13, "exception"), (14, "modifiers"), (16, "cosmetic")] {
            let at = format!("{}:{line}: skipped: ", list.display());
            assert!(
                skipped
                    .iter()
                    .any(|w| w.starts_with(&at) && w.contains(why)),
                "{at} {why}: {skipped:?}"
            );
        }
        assert_eq!(
            set.lists,
            [ListInfo {
                path: list.to_owned(),
                version: Some("2026.12.07".into())
            }]
        );
        // Inline domains the administrator typed are still refused.
        let cfg = Config::parse(
            Path::new("/x/f.toml"),
            "[apps.t]\naction = \"drop\"\ndomains = [\"||a.example^$third-party\"]\n",
        )
        .unwrap();
        let e = RuleSet::compile(&cfg).unwrap_err().to_string();
        assert!(e.contains("/x/f.toml:3") && e.contains("modifiers"), "{e}");
    }

    #[test]
    fn lookup_judges_like_the_program() {
        let dir = std::env::temp_dir().join(format!("sni-filter-rules-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let cfg = Config::parse(
            &dir.join("f.toml"),
            "[apps.tiktok]\naction = \"drop\"\ndomains = [\"tiktok.com\", \"|exact.example^\", \"www.tiktok.com\"]\n",
        )
        .unwrap();
        let set = RuleSet::compile(&cfg).unwrap();
        assert_eq!(
            set.lookup("WWW.tiktok.com.").unwrap().1.name,
            "www.tiktok.com"
        );
        assert_eq!(set.lookup("v16.tiktok.com").unwrap().1.name, "tiktok.com");
        assert!(set.lookup("nottiktok.com").is_none());
        assert!(set.lookup("exact.example").is_some());
        assert!(set.lookup("sub.exact.example").is_none());

        assert!(
            set.warnings
                .iter()
                .any(|w| w.contains("already covered by tiktok.com")),
            "{:?}",
            set.warnings
        );
        let cfg = Config::parse(
            &dir.join("w.toml"),
            "[apps.t]\naction = \"drop\"\ndomains = [\"p16-*.ibyteimg.com\", \"ibyteimg.com\"]\n[apps.u]\naction = \"monitor\"\ndomains = [\"*-x.ibyteimg.com\"]\n",
        )
        .unwrap();
        let set = RuleSet::compile(&cfg).unwrap();
        assert_eq!(
            set.lookup("a.p16-va.ibyteimg.com").unwrap().1.name,
            "p16-*.ibyteimg.com"
        );
        // The index FLOW records use finds the same rules from the app.
        let index = RuleIndex::new(&set);
        for host in [
            "a.p16-va.ibyteimg.com",
            "q-x.ibyteimg.com",
            "other.ibyteimg.com",
        ] {
            let (app, rule) = set.lookup(host).unwrap();
            let at = set.apps.iter().position(|a| a.name == app.name).unwrap();
            assert_eq!(index.rule(&set, at, host), Some(rule), "{host}");
        }
        assert_eq!(index.rule(&set, 1, "other.ibyteimg.com"), None);
        assert_eq!(set.lookup("q-x.ibyteimg.com").unwrap().0.name, "u");
        assert_eq!(
            set.lookup("other.ibyteimg.com").unwrap().1.name,
            "ibyteimg.com"
        );
    }
}

//! Which rule of an app matched a name, found fast enough to name it in every FLOW record:
//! the program reports the app, and the rule is looked up by the name's suffixes.

use std::collections::HashMap;

use super::{Rule, RuleSet, Scope, rule_covers};

/// The rules of a rule set by name, and its wildcard rules apart.
#[derive(Debug, Clone, Default)]
pub struct RuleIndex {
    /// Name of a suffix or exact rule -> (app, rule) positions in the set.
    names: HashMap<String, (usize, usize)>,
    /// (app, rule) of every wildcard rule: at most `WILDCARDS_MAX`.
    wildcards: Vec<(usize, usize)>,
}

impl RuleIndex {
    pub fn new(set: &RuleSet) -> Self {
        let mut index = Self::default();
        for (a, app) in set.apps.iter().enumerate() {
            for (i, rule) in app.rules.iter().enumerate() {
                if rule.scope == Scope::Wildcard {
                    index.wildcards.push((a, i));
                } else {
                    index.names.entry(rule.name.clone()).or_insert((a, i));
                }
            }
        }
        index
    }

    /// The rule of app `app` that covers `host` — the longest, as [`RuleSet::lookup`]
    /// picks it — or `None` when no rule of that app does.
    pub fn rule<'a>(&self, set: &'a RuleSet, app: usize, host: &str) -> Option<&'a Rule> {
        let host = host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
        let rules = &set.apps.get(app)?.rules;
        let covering = |&(a, i): &(usize, usize)| {
            let rule = rules.get(i).filter(|r| a == app && rule_covers(r, &host))?;
            Some(rule)
        };
        let mut suffixes = std::iter::successors(Some(host.as_str()), |s| {
            s.split_once('.').map(|(_, rest)| rest)
        });
        // The first suffix found is the longest name among the plain rules.
        let named = suffixes.find_map(|s| self.names.get(s).and_then(covering));
        let wild = self.wildcards.iter().filter_map(covering);
        named.into_iter().chain(wild).max_by_key(|r| r.name.len())
    }
}

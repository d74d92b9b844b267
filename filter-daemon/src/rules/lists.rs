//! Rule list files as published: their rules line by line, the version their header
//! gives, and the lines of AdGuard/uBlock syntax that do not block a name, skipped.

use std::{
    fs,
    path::{Path, PathBuf},
};

use super::{Rule, parse_line};
use crate::Error;

/// A rule list as read: where, and the version its header gives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListInfo {
    pub path: PathBuf,
    pub version: Option<String>,
}

/// A rule list's rules, its header's version, and the lines skipped with why.
pub struct ListFile {
    pub rules: Vec<Rule>,
    pub version: Option<String>,
    /// `file:line: why` of each line skipped.
    pub skipped: Vec<String>,
}

/// Why a line of a published AdGuard/uBlock list is skipped rather than refused: these
/// rules are not about blocking a server name (an exception, a rule narrowed by modifiers
/// to some requests, a cosmetic filter for pages), and real lists mix them with `||name^`.
pub fn skipped_line(line: &str) -> Option<&'static str> {
    let line = line.trim();
    if line.starts_with("@@") {
        Some("an exception rule (`@@`) unblocks requests; exceptions are not supported")
    } else if ["##", "#@#", "#?#", "#$#"].iter().any(|c| line.contains(c)) {
        Some("a cosmetic filter applies to pages, not to server names")
    } else if line.contains('$') && !line.starts_with(['!', '#']) {
        Some("a rule with modifiers (`$...`) applies to some requests only, not to every flow")
    } else {
        None
    }
}

/// Reads a rule list, naming file and line in every error; lines of published lists that
/// do not apply to server names are skipped, each with a warning.
pub fn read_list(path: &Path) -> Result<ListFile, Error> {
    let text = fs::read_to_string(path).map_err(|source| Error::List {
        at: path.display().to_string(),
        reason: format!("cannot read: {source}"),
    })?;
    let mut list = ListFile {
        rules: Vec::new(),
        version: crate::versions::list_version(&text),
        skipped: Vec::new(),
    };
    for (i, line) in text.lines().enumerate() {
        let origin = format!("{}:{}", path.display(), i + 1);
        if let Some(why) = skipped_line(line) {
            list.skipped.push(format!("{origin}: skipped: {why}"));
            continue;
        }
        let parsed = parse_line(line).map_err(|reason| Error::List {
            at: origin.clone(),
            reason,
        })?;
        list.rules
            .extend(parsed.into_iter().map(|(name, scope)| Rule {
                name,
                scope,
                origin: origin.clone(),
            }));
    }
    Ok(list)
}

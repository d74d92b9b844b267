//! The `[signatures]` and `[updates]` sections: the minisign keys every rule list must be
//! signed with, and the URL `sni-filter update-lists` downloads each list from.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use super::App;
use crate::{
    Error,
    signature::{ListVersions, TRUSTED_KEYS_MAX, TrustedKey},
};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSignatures {
    #[serde(default)]
    pub(super) public_keys: Option<Spanned<Vec<Spanned<String>>>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawUpdates {
    /// List file (as an app's `lists` names it) = URL.
    #[serde(default)]
    pub(super) urls: std::collections::BTreeMap<String, Spanned<String>>,
}

impl super::Config {
    /// The versions of its signed lists as they are now on disk.
    pub fn list_versions(&self) -> Result<ListVersions, Error> {
        let lists = self.apps.iter().flat_map(|a| &a.lists);
        ListVersions::read(&self.trusted_keys, lists.map(|(l, _)| l.as_path()))
    }
}

/// Where `update-lists` fetches one rule list from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListSource {
    /// The list file, resolved as the apps' `lists` are.
    pub list: PathBuf,
    /// `http://` or `https://`; the signature is `URL.minisig`.
    pub url: String,
    /// The line of the configuration that names it.
    pub line: usize,
}

pub(super) fn parse_signatures(
    raw: &RawSignatures,
    at: &impl Fn(usize) -> String,
) -> Result<Vec<TrustedKey>, Error> {
    let Some(keys) = &raw.public_keys else {
        return Ok(Vec::new());
    };
    if keys.get_ref().is_empty() || keys.get_ref().len() > TRUSTED_KEYS_MAX {
        return Err(Error::config(
            at(keys.span().start),
            format!(
                "[signatures] public_keys lists {} keys; 1 or {TRUSTED_KEYS_MAX} are supported \
                 (the publisher's key, and its next one during a rotation); without signed \
                 lists, leave the key out",
                keys.get_ref().len()
            ),
        ));
    }
    keys.get_ref()
        .iter()
        .map(|k| TrustedKey::parse(k.get_ref()).map_err(|e| Error::config(at(k.span().start), e)))
        .collect()
}

pub(super) fn parse_updates(
    raw: &RawUpdates,
    apps: &[App],
    at: &impl Fn(usize) -> String,
    base: &Path,
    text: &str,
) -> Result<Vec<ListSource>, Error> {
    let mut sources = Vec::new();
    for (file, url) in &raw.urls {
        let here = at(url.span().start);
        let list = base.join(file);
        if !apps.iter().flat_map(|a| &a.lists).any(|(l, _)| *l == list) {
            return Err(Error::config(
                here,
                format!("[updates.urls] {file:?} is not a list any app names in `lists`"),
            ));
        }
        let url_text = url.get_ref().trim();
        let rest = url_text
            .strip_prefix("https://")
            .or_else(|| url_text.strip_prefix("http://"));
        if !rest.is_some_and(|r| !r.is_empty() && !r.starts_with('/') && !r.ends_with('/')) {
            return Err(Error::config(
                here,
                format!(
                    "[updates.urls] {url_text:?} for {file:?} is not an http:// or https:// URL \
                     of a file"
                ),
            ));
        }
        sources.push(ListSource {
            list,
            url: url_text.to_owned(),
            line: super::line_of(text, url.span().start),
        });
    }
    Ok(sources)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::tests::{parse, refused_at};

    const KEY: &str = "RWSBv51+K497dEzHW7/fDutmC0eajln5g9NHyiRSol0dKPXrQ3toSS6f";
    const APP: &str = "[apps.t]\naction = \"drop\"\nlists = [\"lists/t.txt\"]\n";

    #[test]
    fn keys_and_urls_are_read() {
        let c = parse(&format!(
            "{APP}[signatures]\npublic_keys = [\"{KEY}\", \" {KEY} \"]\n\
             [updates.urls]\n\"lists/t.txt\" = \"https://lists.example.org/t.txt\"\n"
        ))
        .unwrap();
        assert_eq!(c.trusted_keys.len(), 2);
        assert_eq!(c.trusted_keys[1].text, KEY);
        assert_eq!(c.list_sources.len(), 1);
        let source = &c.list_sources[0];
        assert_eq!(source.list, Path::new("/etc/sni-filter/lists/t.txt"));
        assert_eq!(
            (source.url.as_str(), source.line),
            ("https://lists.example.org/t.txt", 7)
        );
        // Neither section: lists are not signed and not downloaded.
        let c = parse(APP).unwrap();
        assert!(c.trusted_keys.is_empty() && c.list_sources.is_empty());
    }

    #[test]
    fn bad_keys_and_urls_are_refused_with_their_line() {
        for (text, line, says) in [
            (
                format!("{APP}[signatures]\npublic_keys = [\"RWQbad\"]\n"),
                5,
                "RWQbad",
            ),
            (
                format!("{APP}[signatures]\npublic_keys = []\n"),
                5,
                "1 or 2",
            ),
            (
                format!("{APP}[signatures]\npublic_keys = [\"{KEY}\", \"{KEY}\", \"{KEY}\"]\n"),
                5,
                "3 keys",
            ),
            (
                format!("{APP}[updates.urls]\n\"lists/other.txt\" = \"https://x.org/o.txt\"\n"),
                5,
                "not a list any app names",
            ),
            (
                format!("{APP}[updates.urls]\n\"lists/t.txt\" = \"ftp://x.org/t.txt\"\n"),
                5,
                "not an http",
            ),
            (
                format!("{APP}[updates.urls]\n\"lists/t.txt\" = \"https://x.org/\"\n"),
                5,
                "not an http",
            ),
            (format!("{APP}[updates]\nurl = \"x\"\n"), 5, "url"),
        ] {
            let e = refused_at(&text, line);
            assert!(e.contains(says), "{text}: {e}");
        }
    }
}

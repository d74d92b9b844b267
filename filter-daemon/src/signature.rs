//! Signed rule lists: a list `LIST` is trusted when `LIST.minisig`, a minisign signature,
//! verifies with one of the configured public keys; and a signed list is never replaced by
//! one whose published version (`! Version:` header) is older (a rollback).

use std::{
    cmp::Ordering,
    collections::BTreeMap,
    fs,
    path::{Path, PathBuf},
};

use minisign_verify::{PublicKey, Signature};

use crate::{
    Error,
    versions::{self, compare_versions, list_version},
};

/// What a list's signature file is named after: `LIST.minisig`, as `minisign -S` writes it.
pub const SIGNATURE_SUFFIX: &str = ".minisig";

/// At most the publisher's current key and the next one, during a rotation.
pub const TRUSTED_KEYS_MAX: usize = 2;

/// A minisign public key the configuration trusts, with its text as written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrustedKey {
    /// The base64 line of `minisign.pub` (`RW...`).
    pub text: String,
    key: PublicKey,
}

impl TrustedKey {
    /// A key from the second line of a `minisign.pub` file.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let key = PublicKey::from_base64(text).map_err(|e| {
            format!("{text:?} is not a minisign public key (the `RW...` line of minisign.pub): {e}")
        })?;
        Ok(Self {
            text: text.to_owned(),
            key,
        })
    }
}

/// Where the signature of `list` lies: beside it, `LIST.minisig`.
pub fn signature_path(list: &Path) -> PathBuf {
    let mut name = list.as_os_str().to_owned();
    name.push(SIGNATURE_SUFFIX);
    PathBuf::from(name)
}

/// Checks that `list` is signed by one of `keys`; with no keys configured, lists are not
/// signed and every list passes. The configuration is refused otherwise, naming the list.
pub fn verify_list(keys: &[TrustedKey], list: &Path) -> Result<(), Error> {
    if keys.is_empty() {
        return Ok(());
    }
    let content = fs::read(list).map_err(|source| Error::Read {
        path: list.to_owned(),
        source,
    })?;
    let sig_path = signature_path(list);
    let signature = match fs::read_to_string(&sig_path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(refused(
                list,
                format!(
                    "no signature {} (keys are configured in [signatures], so every list must be signed)",
                    sig_path.display()
                ),
            ));
        }
        Err(e) => return Err(refused(list, format!("{}: {e}", sig_path.display()))),
    };
    verify(keys, list, &content, &signature)
}

/// Checks `content`, the text of `list`, against `signature` (a `.minisig` file's text).
pub fn verify(
    keys: &[TrustedKey],
    list: &Path,
    content: &[u8],
    signature: &str,
) -> Result<(), Error> {
    let signature = Signature::decode(signature)
        .map_err(|e| refused(list, format!("malformed signature: {e}")))?;
    let mut reasons = Vec::new();
    for key in keys {
        // Only prehashed signatures (minisign's default since 0.8): legacy ones sign the
        // whole file with plain Ed25519, which the tool itself no longer makes by default.
        match key.key.verify(content, &signature, false) {
            Ok(()) => return Ok(()),
            Err(minisign_verify::Error::UnexpectedKeyId) => {}
            Err(minisign_verify::Error::UnexpectedAlgorithm) => {
                reasons.push("a legacy signature (sign with `minisign -S`, without -l)".into());
            }
            Err(e) => reasons.push(format!("does not verify with key {}: {e}", key.text)),
        }
    }
    if reasons.is_empty() {
        let trusted: Vec<&str> = keys.iter().map(|k| k.text.as_str()).collect();
        reasons.push(format!(
            "signed by a key that is not trusted (trusted: {})",
            trusted.join(", ")
        ));
    }
    Err(refused(list, reasons.join("; ")))
}

fn refused(list: &Path, reason: String) -> Error {
    Error::Signature {
        list: list.to_owned(),
        reason,
    }
}

/// Refuses `offered` as the new version of `list` when it is older than `loaded`. A list
/// without a version, or a version without digits, cannot be compared and is let through.
pub fn refuse_rollback(
    list: &Path,
    loaded: Option<&str>,
    offered: Option<&str>,
) -> Result<(), Error> {
    match (loaded, offered) {
        (Some(loaded), Some(offered))
            if versions::comparable(offered)
                && compare_versions(offered, loaded) == Ordering::Less =>
        {
            Err(Error::Rollback {
                list: list.to_owned(),
                loaded: loaded.to_owned(),
                offered: offered.to_owned(),
            })
        }
        _ => Ok(()),
    }
}

/// The versions of the signed lists a running daemon has loaded, so that a reload cannot
/// take an older one.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ListVersions(BTreeMap<PathBuf, String>);

impl ListVersions {
    /// The versions `lists` carry now; empty when no keys are configured (unsigned lists are
    /// the administrator's own, to change as they like).
    pub fn read<'a>(
        keys: &[TrustedKey],
        lists: impl IntoIterator<Item = &'a Path>,
    ) -> Result<Self, Error> {
        let mut versions = BTreeMap::new();
        if keys.is_empty() {
            return Ok(Self(versions));
        }
        for list in lists {
            let text = fs::read_to_string(list).map_err(|source| Error::Read {
                path: list.to_owned(),
                source,
            })?;
            if let Some(version) = list_version(&text) {
                versions.insert(list.to_owned(), version);
            }
        }
        Ok(Self(versions))
    }

    /// Refuses `offered` (the versions a reload would load) if any list goes back.
    pub fn refuse_rollback(&self, offered: &ListVersions) -> Result<(), Error> {
        for (list, version) in &offered.0 {
            refuse_rollback(list, self.get(list), Some(version))?;
        }
        Ok(())
    }

    pub fn get(&self, list: &Path) -> Option<&str> {
        self.0.get(list).map(String::as_str)
    }
}

// Versions read and compared; signatures made with minisign's format by the tests of
// `update-lists` (tests/lab_lists.rs) with the real tool, here only the refusals that need
// no key.
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_compare_on_their_numbers() {
        for (newer, older) in [
            ("2026.12.10", "2026.12.9"),
            ("1.10", "1.9"),
            ("2.0.1", "2.0"),
            ("v3", "v2.99"),
            ("2027.01.01", "2026.12.31"),
            (
                "100000000000000000000000000001",
                "100000000000000000000000000000",
            ),
        ] {
            assert_eq!(
                compare_versions(newer, older),
                Ordering::Greater,
                "{newer} > {older}"
            );
            assert_eq!(
                compare_versions(older, newer),
                Ordering::Less,
                "{older} < {newer}"
            );
        }
        for (a, b) in [
            ("1.0", "1.0"),
            ("v1.02", "1.2"),
            ("2026-12-07", "2026.12.07"),
        ] {
            assert_eq!(compare_versions(a, b), Ordering::Equal, "{a} = {b}");
        }
    }

    #[test]
    fn only_an_older_version_is_a_rollback() {
        let list = Path::new("/etc/sni-filter/lists/t.txt");
        let e = refuse_rollback(list, Some("2026.12.10"), Some("2026.12.9")).unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains("t.txt") && text.contains("2026.12.9") && text.contains("2026.12.10"),
            "{text}"
        );
        for (loaded, offered) in [
            (Some("2026.12.9"), Some("2026.12.10")),
            (Some("5"), Some("5")),
            (None, Some("1")),
            (Some("5"), None),
            (Some("5"), Some("latest")),
        ] {
            refuse_rollback(list, loaded, offered).unwrap();
        }
    }

    #[test]
    fn the_version_is_read_from_the_opening_comments() {
        assert_eq!(
            list_version("! Title: x\n! Version: 2026.12.10\nexample.com\n").as_deref(),
            Some("2026.12.10")
        );
        assert_eq!(
            list_version("[Adblock Plus 2.0]\n# VERSION:  7 \n").as_deref(),
            Some("7")
        );
        // After the first rule, a comment is not a header.
        assert_eq!(list_version("example.com\n! Version: 3\n"), None);
        assert_eq!(list_version("! Version:\n"), None);
        assert_eq!(list_version("# Versions: 3\n"), None);
    }

    #[test]
    fn keys_and_signatures_that_cannot_be_read_are_refused() {
        let e = TrustedKey::parse("RWQnot-a-key").unwrap_err();
        assert!(e.contains("RWQnot-a-key"), "{e}");
        // A key made by `minisign -G` for this test.
        let key =
            TrustedKey::parse("RWSBv51+K497dEzHW7/fDutmC0eajln5g9NHyiRSol0dKPXrQ3toSS6f").unwrap();
        let list = Path::new("lists/t.txt");
        let e = verify(
            &[key],
            list,
            b"example.com\n",
            "untrusted comment: x\nnot base64\n",
        )
        .unwrap_err();
        assert!(
            matches!(&e, Error::Signature { reason, .. } if reason.contains("malformed")),
            "{e}"
        );
        assert!(e.to_string().contains("lists/t.txt"), "{e}");
        assert_eq!(signature_path(list), Path::new("lists/t.txt.minisig"));
    }
}

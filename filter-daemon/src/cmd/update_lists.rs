//! `sni-filter update-lists --config FILE`: downloads each list `[updates.urls]` names, with
//! conditional requests (an unchanged list costs a 304), verifies its signature, compiles the
//! configuration with it, refuses a rollback, moves it in and asks the daemon to reload. On any
//! failure the last good list stays where it is.

use std::{
    fs,
    io::Write as _,
    path::{Path, PathBuf},
    time::Duration,
};

use serde::{Deserialize, Serialize};

use crate::{
    Error,
    cmd::reload::reload,
    config::{Config, ListSource},
    rules::RuleSet,
    signature::{self, signature_path},
    state::Instance,
    versions,
};

/// A list larger than this is refused: a million rules of the longest names fit four times.
const LIST_BYTES_MAX: u64 = 1 << 30;
/// A signature file is a few hundred bytes.
const SIGNATURE_BYTES_MAX: u64 = 64 << 10;
/// The whole of one request, connecting to the last byte.
const REQUEST_TIMEOUT: Duration = Duration::from_mins(5);

/// What became of one list.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    /// The server answered 304 Not Modified.
    NotModified,
    /// The server sent the list (and signature) already in place.
    Same,
    /// A new list is in place, with the version it carries.
    Updated(Option<String>),
}

/// The HTTP validators of the copy on disk, kept beside it in `LIST.fetch.json`.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
struct Validators {
    /// The URL they belong to: another URL's validators are not sent.
    url: String,
    etag: Option<String>,
    last_modified: Option<String>,
}

/// Updates every list with a URL; then, if any changed, reloads the daemon of `instance`.
pub fn update_lists(instance: &Instance, config_path: &Path) -> Result<(), Error> {
    let config = Config::load(config_path)?;
    if config.list_sources.is_empty() {
        return Err(Error::config(
            config_path.display(),
            "[updates.urls] names no list to download",
        ));
    }
    let agent = agent();
    let mut updated = false;
    let mut first_error = None;
    for source in &config.list_sources {
        let name = source.list.display();
        match update_one(&agent, &config, source) {
            Ok(Outcome::NotModified) => println!("{name}: unchanged (304)"),
            Ok(Outcome::Same) => println!("{name}: unchanged (the same content)"),
            Ok(Outcome::Updated(version)) => {
                updated = true;
                println!(
                    "{name}: updated {}",
                    version
                        .as_deref()
                        .unwrap_or("(the list has no version line)")
                );
            }
            Err(e) => {
                println!("{name}: refused, the last good list stays: {e}");
                first_error.get_or_insert(e);
            }
        }
    }
    if updated {
        match reload(instance) {
            Err(Error::NotRunning { reason, .. }) => {
                println!("no daemon to reload ({reason}): the lists take effect when it starts");
            }
            other => other?,
        }
    }
    first_error.map_or(Ok(()), Err)
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        // Every status is looked at here: 304 is the common answer, and others are named.
        .http_status_as_error(false)
        .timeout_global(Some(REQUEST_TIMEOUT))
        .user_agent(format!("sni-filter/{}", env!("CARGO_PKG_VERSION")))
        .build()
        .new_agent()
}

fn update_one(agent: &ureq::Agent, config: &Config, source: &ListSource) -> Result<Outcome, Error> {
    let list = &source.list;
    let keys = &config.trusted_keys;
    let state_path = beside(list, ".fetch.json");
    let current = fs::read(list).ok();
    // Only a copy that is whole and verifies may be answered by a 304: after an interrupted
    // or refused update, the whole list is fetched again.
    let intact = current.is_some() && signature::verify_list(keys, list).is_ok();
    let validators = read_validators(&state_path).filter(|v| intact && v.url == source.url);
    let Some((content, fresh)) = fetch(agent, &source.url, validators.as_ref(), LIST_BYTES_MAX)?
    else {
        return Ok(Outcome::NotModified);
    };
    let sig = if keys.is_empty() {
        None
    } else {
        let url = format!("{}{}", source.url, signature::SIGNATURE_SUFFIX);
        let (bytes, _) = fetch(agent, &url, None, SIGNATURE_BYTES_MAX)?
            .expect("an unconditional request has a body");
        let text = String::from_utf8(bytes).map_err(|_| Error::Signature {
            list: list.clone(),
            reason: format!("{url} is not a minisign signature (not text)"),
        })?;
        signature::verify(keys, list, &content, &text)?;
        Some(text)
    };
    let on_disk_sig = fs::read_to_string(signature_path(list)).ok();
    if intact && current.as_deref() == Some(&content) && (sig.is_none() || sig == on_disk_sig) {
        write_validators(&state_path, &fresh);
        return Ok(Outcome::Same);
    }
    let text = String::from_utf8(content).map_err(|e| {
        Error::config(
            list.display(),
            format!(
                "the downloaded list is not UTF-8 text (byte {})",
                e.utf8_error().valid_up_to()
            ),
        )
    })?;
    let offered = versions::list_version(&text);
    let loaded = current.and_then(|c| versions::list_version(&String::from_utf8_lossy(&c)));
    signature::refuse_rollback(list, loaded.as_deref(), offered.as_deref())?;
    let staged = Staged::write(list, text.as_bytes(), sig.as_deref())?;
    compile_with(config, list, &staged.list)?;
    staged.move_in()?;
    write_validators(&state_path, &fresh);
    Ok(Outcome::Updated(offered))
}

/// GETs `url`, conditionally if `validators` are given: `None` for 304 Not Modified, else the
/// body and the validators the server sent with it.
fn fetch(
    agent: &ureq::Agent,
    url: &str,
    validators: Option<&Validators>,
    limit: u64,
) -> Result<Option<(Vec<u8>, Validators)>, Error> {
    let failed = |reason: String| Error::Download {
        url: url.to_owned(),
        reason,
    };
    let mut request = agent.get(url);
    if let Some(v) = validators {
        if let Some(etag) = &v.etag {
            request = request.header("If-None-Match", etag);
        }
        if let Some(date) = &v.last_modified {
            request = request.header("If-Modified-Since", date);
        }
    }
    let mut response = request.call().map_err(|e| failed(e.to_string()))?;
    let status = response.status();
    if status.as_u16() == 304 && validators.is_some() {
        return Ok(None);
    }
    if status.as_u16() != 200 {
        return Err(failed(format!("the server answered HTTP {status}")));
    }
    let header = |name: &str| {
        let value = response.headers().get(name)?;
        value.to_str().ok().map(str::to_owned)
    };
    let fresh = Validators {
        url: url.to_owned(),
        etag: header("etag"),
        last_modified: header("last-modified"),
    };
    let body = response
        .body_mut()
        .with_config()
        .limit(limit)
        .read_to_vec()
        .map_err(|e| failed(format!("reading the body: {e}")))?;
    Ok(Some((body, fresh)))
}

/// `list` with `suffix` added to its file name.
fn beside(list: &Path, suffix: &str) -> PathBuf {
    let mut name = list.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

fn read_validators(path: &Path) -> Option<Validators> {
    serde_json::from_slice(&fs::read(path).ok()?).ok()
}

/// Keeps the validators for the next run; a failure only costs a full download then.
fn write_validators(path: &Path, validators: &Validators) {
    let json = serde_json::to_vec_pretty(validators).expect("validators serialise");
    if let Err(e) = fs::write(path, json) {
        eprintln!(
            "warning: cannot write {}: {e} (the next run downloads the whole list)",
            path.display()
        );
    }
}

/// Compiles `config` as `check-config` does, with `staged` read in place of `list`.
fn compile_with(config: &Config, list: &Path, staged: &Path) -> Result<(), Error> {
    let mut trial = config.clone();
    for (path, _) in trial.apps.iter_mut().flat_map(|a| &mut a.lists) {
        if path == list {
            staged.clone_into(path);
        }
    }
    // Errors name the downloaded copy's line: said as the list's own.
    let rename = |text: String| {
        text.replace(
            &staged.display().to_string(),
            &format!("{} (downloaded)", list.display()),
        )
    };
    match RuleSet::compile(&trial) {
        Ok(_) => Ok(()),
        Err(Error::Config { at, reason }) => Err(Error::Config {
            at: rename(at),
            reason: rename(reason),
        }),
        Err(e) => Err(e),
    }
}

/// A downloaded list (and its signature) written beside the list, not yet in place; removed
/// on drop unless moved in.
struct Staged {
    list: PathBuf,
    signature: Option<PathBuf>,
    target: PathBuf,
}

impl Staged {
    fn write(target: &Path, content: &[u8], sig: Option<&str>) -> Result<Self, Error> {
        let name = target.file_name().unwrap_or_default().to_string_lossy();
        // A hidden name in the same folder: renamed over the list, it replaces it at once.
        let list = target.with_file_name(format!(".{name}.update"));
        let staged = Self {
            signature: sig.map(|_| signature_path(&list)),
            list,
            target: target.to_owned(),
        };
        durable_write(&staged.list, content)?;
        if let (Some(path), Some(sig)) = (&staged.signature, sig) {
            durable_write(path, sig.as_bytes())?;
        }
        Ok(staged)
    }

    /// Renames the signature, then the list, over the old ones. A reader between the two
    /// renames sees a signature that does not match and refuses the list: never a list
    /// that is not the publisher's.
    fn move_in(mut self) -> Result<(), Error> {
        if let Some(sig) = self.signature.take() {
            rename(&sig, &signature_path(&self.target))?;
        }
        rename(&self.list, &self.target)?;
        self.list = PathBuf::new();
        Ok(())
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        for path in [Some(&self.list), self.signature.as_ref()]
            .into_iter()
            .flatten()
        {
            if !path.as_os_str().is_empty() {
                let _ = fs::remove_file(path);
            }
        }
    }
}

fn durable_write(path: &Path, content: &[u8]) -> Result<(), Error> {
    let write = || {
        let mut file = fs::File::create(path)?;
        file.write_all(content)?;
        // On disk before it is renamed in: a crash then leaves the old list or the new one.
        file.sync_all()
    };
    write().map_err(|source| Error::Write {
        path: path.to_owned(),
        source,
    })
}

fn rename(from: &Path, to: &Path) -> Result<(), Error> {
    fs::rename(from, to).map_err(|source| Error::Write {
        path: to.to_owned(),
        source,
    })
}

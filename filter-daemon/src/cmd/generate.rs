//! `sni-filter generate`: shell completions and man pages written from the command line's own
//! clap definitions, so what a package ships always matches what the binary accepts.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use clap_complete::Shell;

use crate::Error;

/// What to generate.
#[derive(clap::Subcommand)]
pub enum Generate {
    /// The completion script of SHELL, on standard output.
    ///
    /// Example: sni-filter generate completions bash > /usr/share/bash-completion/completions/sni-filter
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        #[arg(value_enum)]
        shell: Shell,
    },
    /// Man pages in section 8 into DIR: sni-filter.8 and one per subcommand
    /// (sni-filter-run.8, ...).
    ///
    /// Example: sni-filter generate man target/man
    Man {
        /// The folder to write them into (created if missing).
        dir: PathBuf,
    },
}

/// Writes what `what` asks for, from `cli`: the binary's whole command line.
pub fn generate(cli: clap::Command, what: &Generate) -> Result<(), Error> {
    match what {
        Generate::Completions { shell } => {
            let mut out = Vec::new();
            completions(cli, *shell, &mut out);
            std::io::stdout()
                .write_all(&out)
                .map_err(|source| Error::Write {
                    path: "standard output".into(),
                    source,
                })
        }
        Generate::Man { dir } => {
            for page in man_pages(cli, dir)? {
                println!("{}", page.display());
            }
            Ok(())
        }
    }
}

/// The completion script of `shell` for `cli`, appended to `out`.
pub fn completions(mut cli: clap::Command, shell: Shell, out: &mut Vec<u8>) {
    let name = cli.get_name().to_owned();
    clap_complete::generate(shell, &mut cli, name, out);
}

/// Writes the man page of `cli` and one per visible subcommand (at any depth) into `dir`, in
/// section 8 (system administration: the daemon and its tools need root). Returns the files.
pub fn man_pages(cli: clap::Command, dir: &Path) -> Result<Vec<PathBuf>, Error> {
    std::fs::create_dir_all(dir).map_err(|source| Error::Write {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut cli = cli.disable_help_subcommand(true);
    // Building gives each subcommand its display name ("sni-filter-run"), which names its page.
    cli.build();
    // Every page's footer names the program and its version, subcommands' pages too.
    let source = format!(
        "{} {}",
        cli.get_name(),
        cli.get_version().unwrap_or_default()
    );
    let mut pages = Vec::new();
    write_pages(cli, &source, dir, &mut pages)?;
    Ok(pages)
}

fn write_pages(
    cmd: clap::Command,
    source: &str,
    dir: &Path,
    pages: &mut Vec<PathBuf>,
) -> Result<(), Error> {
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        write_pages(sub.clone(), source, dir, pages)?;
    }
    let man = clap_mangen::Man::new(cmd)
        .section("8")
        .source(source)
        .manual("System Manager's Manual");
    let path = dir.join(man.get_filename());
    let mut text = Vec::new();
    man.render(&mut text).map_err(|source| Error::Write {
        path: path.clone(),
        source,
    })?;
    std::fs::write(&path, text).map_err(|source| Error::Write {
        path: path.clone(),
        source,
    })?;
    pages.push(path);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cli() -> clap::Command {
        clap::Command::new("tool")
            .version("1.0")
            .about("A tool.")
            .subcommand(clap::Command::new("first").about("The first."))
            .subcommand(
                clap::Command::new("second")
                    .about("The second.")
                    .subcommand(clap::Command::new("inner").about("Inside.")),
            )
            .subcommand(clap::Command::new("secret").hide(true))
    }

    #[test]
    fn man_pages_cover_every_visible_subcommand_in_section_8() {
        let dir = tempfile::tempdir().unwrap();
        let mut names: Vec<String> = man_pages(cli(), dir.path())
            .unwrap()
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(
            names,
            [
                "tool-first.8",
                "tool-second-inner.8",
                "tool-second.8",
                "tool.8"
            ]
        );
        let top = std::fs::read_to_string(dir.path().join("tool.8")).unwrap();
        assert!(top.contains(".TH tool 8"), "{top}");
        let inner = std::fs::read_to_string(dir.path().join("tool-second-inner.8")).unwrap();
        assert!(inner.contains("\"tool 1.0\""), "{inner}");
        assert!(top.contains(".SH NAME") && top.contains("first") && !top.contains("secret"));
    }

    #[test]
    fn completions_name_the_subcommands_for_each_shell() {
        for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
            let mut out = Vec::new();
            completions(cli(), shell, &mut out);
            let text = String::from_utf8(out).unwrap();
            for name in ["first", "second", "inner"] {
                assert!(text.contains(name), "{shell}: {name} missing:\n{text}");
            }
        }
    }
}

//! `cargo xtask deb`: the Debian package of sni-filter (`target/debian/`), built from the
//! release binary with `dpkg-deb`; `--install-test` then installs, checks and purges it in a
//! copy-on-write root of this system, leaving the host as it was.

mod install_test;
mod package;

use std::process::ExitCode;

use anyhow::Result;

#[derive(clap::Args)]
pub struct Args {
    /// Then install the package with `dpkg -i` in a throwaway root (an overlay of this system
    /// in a private mount namespace), run the binary, `check-config` and `systemd-analyze
    /// verify` there, purge it and check nothing of it is left. Needs root.
    #[arg(long)]
    install_test: bool,
    /// The package's Maintainer field.
    #[arg(long, default_value = package::MAINTAINER)]
    maintainer: String,
}

pub fn run(args: &Args) -> Result<ExitCode> {
    let deb = package::build(&args.maintainer)?;
    println!("built {}", deb.display());
    if args.install_test {
        install_test::run(&deb)?;
        println!("the package installs, works and purges cleanly");
    }
    Ok(ExitCode::SUCCESS)
}

/// The `package` stage of `cargo xtask test`: build the package and run its install test.
pub fn check() -> Result<()> {
    let deb = package::build(package::MAINTAINER)?;
    install_test::run(&deb)
}

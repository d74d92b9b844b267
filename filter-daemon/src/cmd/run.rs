//! `sni-filter run`: the daemon. Its life — start, serve, reload, stop — is in
//! [`crate::daemon`]; this command only hands it the options.

use crate::{Error, state::Instance};

pub use crate::daemon::RunOptions;

pub fn run(instance: &Instance, opts: &RunOptions) -> Result<(), Error> {
    crate::daemon::run(instance, opts)
}

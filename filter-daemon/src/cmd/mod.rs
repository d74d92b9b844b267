//! One module per subcommand.

pub mod check;
pub mod check_config;
pub mod run;
pub mod status;

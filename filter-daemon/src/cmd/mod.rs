//! One module per subcommand.

pub mod check;
pub mod check_config;
pub mod doctor;
pub mod flows;
pub mod generate;
pub mod reload;
pub mod replay;
pub mod run;
pub mod stats;
pub mod status;
pub mod unload;
pub mod update_lists;

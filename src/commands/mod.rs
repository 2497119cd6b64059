//! One module per subcommand.

pub(crate) mod account;
pub(crate) mod alarm;
pub(crate) mod archive;
pub(crate) mod bill_run;
mod bill_run_api;
pub(crate) mod bss;
pub(crate) mod demo;
pub(crate) mod engine_link;
pub(crate) mod engine_setup;
pub(crate) mod fraud;
pub(crate) mod import;
pub(crate) mod inventory;
pub(crate) mod load;
mod load_bss;
pub(crate) mod mediate;
pub(crate) mod order;
pub(crate) mod order_link;
pub(crate) mod payment;
pub(crate) mod rate;
pub(crate) mod rerate;
pub(crate) mod reshard;
pub(crate) mod serve;
pub(crate) mod tariff;
pub(crate) mod threshold;
pub(crate) mod usage;

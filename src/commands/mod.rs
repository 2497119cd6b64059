//! One module per subcommand.

pub(crate) mod rate;
pub(crate) mod tariff;

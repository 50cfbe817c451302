//! One module per subcommand; each parses its flags and calls the libraries.

pub mod server;
pub mod sim_nodes;

//! One module per subcommand; each parses its flags and calls the libraries.

pub mod image;
pub mod server;
pub mod shim;
pub mod sim_nodes;

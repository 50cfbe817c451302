//! Upstream's kubectl command tests (testscript files in the txtar format): parsing
//! the archive and the script lines, and running them against an `rkube server`.

#![allow(dead_code)]

pub mod parse;
pub mod script;

pub use parse::parse_archive;
pub use script::{FileReport, run_file};

//! Exit codes, one meaning each (also listed in `waddlec --help`).

/// Success.
pub const OK: u8 = 0;
/// The blueprint is invalid (or has warnings under `--strict`).
pub const INVALID: u8 = 1;
/// The command line is wrong (clap's own code).
pub const USAGE: u8 = 2;
/// `--check` found the output tree out of date.
pub const STALE: u8 = 3;
/// Reading or writing files failed.
pub const IO: u8 = 74;
/// A bug in waddlec.
pub const INTERNAL: u8 = 70;

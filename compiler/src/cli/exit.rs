//! Exit codes, one meaning each (also listed in `waddlec --help`).

/// Success.
pub const OK: u8 = 0;
/// The blueprint is invalid (or has warnings under `--strict`).
pub const INVALID: u8 = 1;
/// The command line is wrong (clap's own code).
pub const USAGE: u8 = 2;
/// `--check` found the output tree out of date.
pub const STALE: u8 = 3;
/// A secret the command needs is missing or unreadable (e.g. no Talos
/// secrets bundle yet), or `secrets init` would overwrite one.
pub const SECRETS: u8 = 4;
/// An upstream input is not pinned in the lock file (under `--locked`) or
/// does not match its pin.
pub const LOCK: u8 = 5;
/// `deploy`: the host conflicts with the blueprint (a VMID held by another
/// VM, a VM locked by a running task, the host changed under the plan), or
/// the plan held a step back on purpose (a replace without
/// `--allow-replace`, an image the tree lacks). `platform publish`: the
/// platform repository has local changes, or ignores a file to publish.
pub const CONFLICT: u8 = 6;
/// `deploy`: another deploy holds the host's lock.
pub const LOCKED: u8 = 7;
/// A remote service (Image Factory, 1Password) failed or disagreed, or a
/// host program a command needs (mmdebstrap, mke2fs, mtools, git) is
/// missing or failed.
pub const UNAVAILABLE: u8 = 69;
/// Reading or writing files failed.
pub const IO: u8 = 74;
/// A bug in waddlec.
pub const INTERNAL: u8 = 70;

//! waddlec: compiles one TOML blueprint into every artifact of the platform,
//! and puts it on the host.
//!
//! The pure stages (parse, resolve, model, render, plan, emit) are the
//! `waddlec-core` crate, re-exported here under their own names. This crate
//! is the layer that acts on the world, on top of them: `secrets` (reading
//! references, creating the Talos bundle), `net` (everything that leaves the
//! machine), `lock` (pins of upstream inputs), `build` (the build workflow:
//! secrets and upstream inputs read, then the core's stages), `bake` (disk
//! images), `deploy`, `bootstrap` and `publish`; `cli` is the only place
//! that touches the terminal. See ARCHITECTURE.md for the invariants.

pub use waddlec_core::{
    artifact, blueprint, diagnostics, emit, model, plan, render, resolve, source, yaml, Compiled,
};

pub mod bake;
pub mod bootstrap;
pub mod build;
pub mod checks;
pub mod cli;
pub mod deploy;
pub mod exit;
pub mod host;
pub mod lock;
pub mod net;
pub mod preflight;
pub mod publish;
pub mod secrets;
pub mod status;
pub mod store;
#[cfg(test)]
mod test_support;

pub use build::{compile, compile_with, CompileError, SecretSource, UpstreamSource};

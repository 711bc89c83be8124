//! The build workflow, as library functions: `compile` and `compile_with`
//! (the core's stages with secrets and upstream manifests read in between),
//! and `workflow::run`, the whole of `waddlec build` — destination checked,
//! blueprint compiled, seed disks and images made for the deployable tree,
//! then the tree compared (`--check`) or written. The CLI parses arguments,
//! implements `workflow::Ui` and prints; every way a build can fail is a
//! `BuildError` with its exit code in `exit`.

mod compile;
pub mod images;
pub mod read;
pub mod upstream;
pub mod workflow;

pub use compile::{compile, compile_with, CompileError, SecretSource, UpstreamSource};

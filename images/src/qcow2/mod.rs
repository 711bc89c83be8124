//! Raw disk image → qcow2 v3, streaming, in bounded memory, and
//! deterministic: the same raw image always gives the same qcow2 bytes.
//!
//! The images we ship (Talos, baked Debian disks) are raw disks that are
//! mostly zeros; qcow2 keeps only the clusters that hold data, and Proxmox
//! imports it (`import-from`) as long as it has no backing file and no
//! external data file. We write the one kind of qcow2 we need:
//! version 3, 64 KiB clusters, 16-bit refcounts, a 112-byte header with no
//! feature bits and no header extensions, no backing file, no external data
//! file, no compression, no encryption, no snapshots; all-zero clusters are
//! left unallocated, every other cluster is stored as it is.
//!
//! Why our own writer: `qcow2-rs` is async-only and creates images only
//! through a helper documented as being for tests; `imago` writes a feature
//! name table built from a `HashMap`, so its output differs run to run; and
//! `qemu-img` would be a run-time dependency whose output we do not control.
//! The subset above is a few hundred lines, checked against `qemu-img check`
//! and `qemu-img compare` in the tests.
//!
//! `layout` decides where everything goes from the virtual size alone,
//! `tables` encodes the metadata, `zero` spots empty clusters, `sparse`
//! skips the holes of a sparse file, `writer` streams the conversion, `file` makes it safe to run on files and
//! `write_behind` keeps the disk busy while it runs.

mod error;
mod file;
mod layout;
mod sparse;
mod tables;
mod write_behind;
mod writer;
mod zero;

pub use error::Qcow2Error;
pub use file::{convert_file, Progress};
pub use layout::CLUSTER_SIZE;
pub use writer::{convert, Qcow2Summary};

//! Disk-image toolkit for waddlec.
//!
//! Owns everything about disks as bytes: sizes and their units, and the
//! NoCloud seed disks that carry a VM's first configuration; qcow2, partition
//! tables and rootfs layers as the image pipeline grows. It knows nothing
//! about blueprints: the compiler hands it plain values.

pub mod seed_disk;
pub mod size;

pub use seed_disk::{cidata_fat, SeedDiskError};
pub use size::{ByteSize, ParseSizeError};

//! Disk-image toolkit for waddlec.
//!
//! Owns everything about disks as bytes: sizes and their units, and raw →
//! qcow2 conversion today; partition tables, seed filesystems and rootfs
//! layers as the image pipeline grows. It knows nothing about blueprints: the
//! compiler hands it plain values.

pub mod qcow2;
pub mod size;

pub use size::{ByteSize, ParseSizeError};

//! Disk-image toolkit for waddlec.
//!
//! Owns everything about disks as bytes: sizes and their units, GUIDs, GPT
//! raw disks, FAT EFI system partitions, ext4 root filesystems made from
//! tars, rootfs layers (overlay and merge), NoCloud seed disks, raw → qcow2
//! conversion, and the baked Debian VM image that puts them together. It
//! knows nothing about blueprints: the compiler hands it plain values. Host programs it drives (mmdebstrap, mke2fs)
//! are run only through `tool`.

pub mod debian;
pub mod esp;
pub mod ext4;
mod fat;
pub mod gpt;
pub mod guid;
pub mod layer;
pub mod qcow2;
pub mod seed_disk;
pub mod size;
mod tool;

pub use guid::{Guid, ParseGuidError};
pub use seed_disk::{cidata_fat, SeedDiskError};
pub use size::{ByteSize, ParseSizeError};
pub use tool::ToolError;

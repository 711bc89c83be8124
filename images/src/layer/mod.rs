//! Rootfs layers as tar streams: the overlay a caller describes, and the
//! merge of a base layer with an overlay into the one tar that becomes the
//! root filesystem.
//!
//! Layers stay tars from end to end (mmdebstrap writes one, mke2fs reads one),
//! so no tree is ever unpacked on the build host and nothing about the host's
//! filesystem (owners, times, xattr support) can leak into an image.

pub mod merge;
pub mod overlay;
mod path;

pub use merge::{merge, Layer, MergeError};
pub use overlay::{Overlay, OverlayError};
pub use path::normalize;

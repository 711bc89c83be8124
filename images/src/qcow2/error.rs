//! Why a conversion failed, in words that say what to do about it.

use std::io;
use std::path::PathBuf;

/// A conversion that did not produce an image.
#[derive(Debug, thiserror::Error)]
pub enum Qcow2Error {
    #[error(
        "the raw image is {size} bytes, not a whole number of 512-byte sectors; \
         a disk image's size must be a multiple of 512"
    )]
    UnalignedSize { size: u64 },
    #[error("the raw image is {size} bytes; qcow2 with 64 KiB clusters holds at most {max} bytes")]
    TooLarge { size: u64, max: u64 },
    #[error("the raw image ended after {read} bytes, short of its size of {expected} bytes")]
    ShortInput { read: u64, expected: u64 },
    #[error("the raw image is longer than its stated size of {expected} bytes")]
    LongInput { expected: u64 },
    #[error("cannot read the raw image: {0}")]
    Read(#[source] io::Error),
    #[error("cannot write the qcow2 image: {0}")]
    Write(#[source] io::Error),
    /// Any of the above, about a named file.
    #[error("{}: {source}", path.display())]
    File {
        path: PathBuf,
        #[source]
        source: Box<Qcow2Error>,
    },
}

impl Qcow2Error {
    /// True if reading or writing failed, as opposed to an input that cannot
    /// be a qcow2 disk at all (a size that is not whole sectors, or too large).
    pub fn is_io(&self) -> bool {
        match self {
            Qcow2Error::UnalignedSize { .. } | Qcow2Error::TooLarge { .. } => false,
            Qcow2Error::ShortInput { .. }
            | Qcow2Error::LongInput { .. }
            | Qcow2Error::Read(_)
            | Qcow2Error::Write(_) => true,
            Qcow2Error::File { source, .. } => source.is_io(),
        }
    }

    /// This error, about the file at `path`.
    pub(crate) fn at(self, path: impl Into<PathBuf>) -> Self {
        Qcow2Error::File {
            path: path.into(),
            source: Box::new(self),
        }
    }
}

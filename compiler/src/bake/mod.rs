//! Bake: the disk images a deployable build needs, made from rendered
//! artifacts and pinned upstream inputs. Runs after render, never inside
//! it: fetching and image work are I/O. Every image is named by a hash of
//! its inputs, so an unchanged input is a cache hit and no image work.

pub mod seed_disks;
pub mod talos_image;

use std::path::PathBuf;

/// One baked image, ready to upload.
#[derive(Clone, Debug, serde::Serialize)]
pub struct BakedImage {
    /// File name in the images directory (content-addressed by inputs).
    pub name: String,
    #[serde(skip)]
    pub path: PathBuf,
    /// What went in: upstream URL and its pinned sha256.
    pub inputs: Vec<(String, String)>,
}

#[derive(Debug, thiserror::Error)]
pub enum BakeError {
    #[error(transparent)]
    Fetch(#[from] crate::net::fetch::FetchError),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

//! Writing secret files: created new (never over an existing file), mode
//! 0600 from the first byte, parent directories 0700.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;

use super::SecretError;

/// Creates `path` with `contents`, mode 0600. Refuses if it exists.
pub fn create_new(path: &Path, contents: &str) -> Result<(), SecretError> {
    let shown = path.display().to_string();
    let write_error = |source| SecretError::Write {
        path: shown.clone(),
        source,
    };
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(parent)
            .map_err(write_error)?;
    }
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|source| {
            if source.kind() == std::io::ErrorKind::AlreadyExists {
                SecretError::Exists(shown.clone())
            } else {
                write_error(source)
            }
        })?;
    file.write_all(contents.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(write_error)
}

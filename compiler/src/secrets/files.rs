//! Writing secret files: mode 0600 from the first byte, parent directories
//! 0700; created new (never over an existing file), or, for short-lived
//! ones, replaced whole through a temporary file beside them.

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

/// Writes `path` with `contents`, mode 0600, replacing it whole (a new file
/// renamed over the old one): for secrets that are issued again and again,
/// like short-lived kubeconfigs.
pub fn replace(path: &Path, contents: &str) -> Result<(), SecretError> {
    let temp = path.with_file_name(format!(
        ".{}.new",
        path.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    ));
    let _ = fs::remove_file(&temp);
    create_new(&temp, contents)?;
    fs::rename(&temp, path).map_err(|source| SecretError::Write {
        path: path.display().to_string(),
        source,
    })
}

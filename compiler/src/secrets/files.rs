//! Writing secret files: mode 0600 from the first byte, parent directories
//! 0700, and atomic: the contents go into a temporary file beside the
//! target (0600, removed whatever happens), which is then linked in as a
//! new file (never over an existing one) or, for secrets that are issued
//! again and again, renamed over the old one. A reader never sees half a
//! file, and a failed write leaves nothing behind.

use std::fs;
use std::io::Write;
use std::os::unix::fs::DirBuilderExt;
use std::path::Path;

use tempfile::NamedTempFile;

use super::SecretError;

/// Creates `path` with `contents`, mode 0600. Refuses if it exists.
pub fn create_new(path: &Path, contents: &str) -> Result<(), SecretError> {
    let temp = staged(path, contents)?;
    fs::hard_link(temp.path(), path).map_err(|source| {
        if source.kind() == std::io::ErrorKind::AlreadyExists {
            SecretError::Exists(path.display().to_string())
        } else {
            write_error(path, source)
        }
    })
}

/// Writes `path` with `contents`, mode 0600, replacing it whole: for
/// secrets that are issued again and again, like short-lived kubeconfigs,
/// and for files that grow (the SSH host keys of new VMs).
pub fn replace(path: &Path, contents: &str) -> Result<(), SecretError> {
    staged(path, contents)?
        .persist(path)
        .map(drop)
        .map_err(|e| write_error(path, e.error))
}

/// `contents` in a new 0600 file beside `path` (its directory made 0700 if
/// missing), synced; removed when dropped.
fn staged(path: &Path, contents: &str) -> Result<NamedTempFile, SecretError> {
    let parent = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(parent)
        .map_err(|source| write_error(path, source))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // tempfile creates it 0600 with O_EXCL.
    let mut temp = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".new")
        .tempfile_in(parent)
        .map_err(|source| write_error(path, source))?;
    temp.write_all(contents.as_bytes())
        .and_then(|()| temp.as_file().sync_all())
        .map_err(|source| write_error(path, source))?;
    Ok(temp)
}

fn write_error(path: &Path, source: std::io::Error) -> SecretError {
    SecretError::Write {
        path: path.display().to_string(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    #[test]
    fn a_new_file_is_0600_never_over_another_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/secret.yaml");
        create_new(&path, "one").unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let sub = fs::metadata(dir.path().join("sub"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(sub & 0o777, 0o700);
        let err = create_new(&path, "two").unwrap_err();
        assert!(matches!(err, SecretError::Exists(_)), "{err}");
        assert_eq!(fs::read_to_string(&path).unwrap(), "one");
        replace(&path, "three").unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "three");
        let names: Vec<_> = fs::read_dir(dir.path().join("sub"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["secret.yaml"]);
    }
}

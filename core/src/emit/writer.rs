//! The one temp-dir-and-rename writer: a tree is written beside its
//! destination, synced, then swapped in with a single rename, so a failed or
//! interrupted build leaves the previous tree intact and readers never see a
//! half-written one.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::manifest::MANIFEST_PATH;
use crate::artifact::Artifact;

#[derive(Debug, thiserror::Error)]
#[error("cannot write {path}: {source}")]
pub struct WriteError {
    path: PathBuf,
    #[source]
    source: std::io::Error,
}

fn io_at(path: &Path) -> impl FnOnce(std::io::Error) -> WriteError + '_ {
    move |source| WriteError {
        path: path.to_path_buf(),
        source,
    }
}

/// Replaces `destination` with a directory holding exactly `artifacts`. A
/// tree with secret files is readable by its owner only (0700).
/// An existing non-empty directory is only replaced if it is a previous output
/// tree (it has a `manifest.json`): `--out` pointed at the wrong directory
/// must not delete it.
pub fn write_tree(destination: &Path, artifacts: &[Artifact]) -> Result<(), WriteError> {
    write_tree_with(destination, artifacts, &[])
}

/// [`write_tree`], plus `files` (`(path in the tree, file on disk)`) linked
/// into the tree before it is swapped in: baked images, which live in the
/// cache and are far too large to hold in memory. A hard link where the
/// cache shares the tree's filesystem, a copy otherwise.
pub fn write_tree_with(
    destination: &Path,
    artifacts: &[Artifact],
    files: &[(String, PathBuf)],
) -> Result<(), WriteError> {
    check_destination(destination)?;
    let parent = match destination.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    fs::create_dir_all(&parent).map_err(io_at(&parent))?;
    let name = destination
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "out".into());
    let staging = tempfile::Builder::new()
        .prefix(&format!(".{name}.new-"))
        .tempdir_in(&parent)
        .map_err(io_at(&parent))?;
    for artifact in artifacts {
        write_file(staging.path(), artifact)?;
    }
    for (path, source) in files {
        link_file(staging.path(), path, source)?;
    }
    let root_mode = if artifacts.iter().any(|a| a.secret) {
        0o700
    } else {
        0o755
    };
    fs::set_permissions(staging.path(), fs::Permissions::from_mode(root_mode))
        .map_err(io_at(staging.path()))?;
    let staged = staging.keep();
    swap_in(&staged, destination).inspect_err(|_| {
        let _ = fs::remove_dir_all(&staged);
    })
}

/// Whether a tree may be written at `destination`: nothing there yet, an
/// empty directory or a previous output tree. Anything else (a file, a
/// directory of someone else's) is refused before anything is touched; the
/// CLI asks before it builds, so a wrong `--out` costs no build.
pub fn check_destination(destination: &Path) -> Result<(), WriteError> {
    let refuse = |why: String| {
        Err(WriteError {
            path: destination.to_path_buf(),
            source: std::io::Error::other(why),
        })
    };
    if destination.exists() && !destination.is_dir() {
        return refuse(
            "it is a file, not a directory; refusing to replace it (give `--out` a directory)"
                .into(),
        );
    }
    let foreign = fs::read_dir(destination).is_ok_and(|mut entries| entries.next().is_some())
        && !destination.join(MANIFEST_PATH).is_file();
    if foreign {
        return refuse(format!(
            "it is a non-empty directory without {MANIFEST_PATH}, so not a waddlec output tree; refusing to replace it"
        ));
    }
    Ok(())
}

fn write_file(root: &Path, artifact: &Artifact) -> Result<(), WriteError> {
    let path = root.join(&artifact.path);
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(io_at(dir))?;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o755)).map_err(io_at(dir))?;
    }
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(artifact.mode())
        .open(&path)
        .map_err(io_at(&path))?;
    file.write_all(&artifact.contents).map_err(io_at(&path))?;
    // The umask may have narrowed the mode given at creation.
    file.set_permissions(fs::Permissions::from_mode(artifact.mode()))
        .map_err(io_at(&path))?;
    file.sync_all().map_err(io_at(&path))
}

/// Moves `staged` to `destination`. An existing destination is first renamed
/// aside, then removed; if the second rename fails it is put back.
fn link_file(root: &Path, path: &str, source: &Path) -> Result<(), WriteError> {
    let target = root.join(path);
    if let Some(dir) = target.parent() {
        fs::create_dir_all(dir).map_err(io_at(dir))?;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o755)).map_err(io_at(dir))?;
    }
    if fs::hard_link(source, &target).is_err() {
        fs::copy(source, &target).map_err(io_at(&target))?;
        fs::File::open(&target)
            .and_then(|file| file.sync_all())
            .map_err(io_at(&target))?;
    }
    Ok(())
}

fn swap_in(staged: &Path, destination: &Path) -> Result<(), WriteError> {
    if !destination.exists() {
        return fs::rename(staged, destination).map_err(io_at(destination));
    }
    let old = PathBuf::from(format!("{}.old", staged.display()));
    fs::rename(destination, &old).map_err(io_at(destination))?;
    if let Err(source) = fs::rename(staged, destination) {
        let _ = fs::rename(&old, destination);
        return Err(WriteError {
            path: destination.to_path_buf(),
            source,
        });
    }
    fs::remove_dir_all(&old).map_err(io_at(&old))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn artifact(path: &str, text: &str) -> Artifact {
        Artifact::file(path, "test", text.to_string())
    }

    #[test]
    fn refuses_to_replace_a_directory_that_is_not_an_output_tree() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("precious.toml"), "x").unwrap();
        assert!(write_tree(dir.path(), &[artifact(MANIFEST_PATH, "{}")]).is_err());
        assert!(dir.path().join("precious.toml").exists());
    }

    #[test]
    fn refuses_to_replace_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("notes.txt");
        fs::write(&file, "mine").unwrap();
        let err = write_tree(&file, &[artifact(MANIFEST_PATH, "{}")]).unwrap_err();
        assert!(err.to_string().contains("is a file"), "{err}");
        assert_eq!(fs::read_to_string(&file).unwrap(), "mine");
        assert_eq!(
            fs::read_dir(dir.path()).unwrap().count(),
            1,
            "nothing staged"
        );
    }

    #[test]
    fn replaces_the_whole_tree() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        write_tree(
            &out,
            &[
                artifact(MANIFEST_PATH, "{}"),
                artifact("a/b.txt", "1"),
                artifact("stale.txt", "x"),
            ],
        )
        .unwrap();
        write_tree(
            &out,
            &[artifact(MANIFEST_PATH, "{}"), artifact("a/b.txt", "2")],
        )
        .unwrap();
        assert_eq!(fs::read_to_string(out.join("a/b.txt")).unwrap(), "2");
        assert!(!out.join("stale.txt").exists());
        let leftovers: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(leftovers, vec![std::ffi::OsString::from("out")]);
    }

    #[test]
    fn a_failed_write_keeps_the_previous_tree() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        write_tree(
            &out,
            &[artifact(MANIFEST_PATH, "{}"), artifact("keep.txt", "old")],
        )
        .unwrap();
        // Two artifacts at one path: the second create fails mid-build.
        let err = write_tree(&out, &[artifact("x.txt", "1"), artifact("x.txt", "2")]);
        assert!(err.is_err());
        assert_eq!(fs::read_to_string(out.join("keep.txt")).unwrap(), "old");
        assert_eq!(
            fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no staging directory left behind"
        );
    }

    #[test]
    fn modes_ignore_the_umask() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        write_tree(&out, &[artifact("f", "x"), artifact("s", "y").executable()]).unwrap();
        let mode = |p: &str| fs::metadata(out.join(p)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode("f"), 0o644);
        assert_eq!(mode("s"), 0o755);
    }
}

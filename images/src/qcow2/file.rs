//! Converting a file into a file: the image is written to a temporary file
//! beside the destination, synced, given a fixed mode and renamed into
//! place, so the destination is either the previous file or the whole new
//! image, never a part of one.

use std::fs::{File, Permissions};
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use super::error::Qcow2Error;
use super::sparse::SparseFile;
use super::write_behind::write_behind;
use super::writer::{convert_disk, Qcow2Summary};

/// How far a conversion has read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Progress {
    /// Bytes of the raw image read so far.
    pub done: u64,
    /// Bytes of the raw image in all.
    pub total: u64,
}

/// Converts the raw disk image at `input` (its size is the disk's size) into
/// a qcow2 image at `output` (mode 0644), replacing any file there only once
/// the new image is complete and on disk. Holes in `input` are not read
/// (see `sparse`). `progress` is called after every chunk read.
pub fn convert_file(
    input: &Path,
    output: &Path,
    progress: impl FnMut(Progress),
) -> Result<Qcow2Summary, Qcow2Error> {
    let source = File::open(input).map_err(|err| Qcow2Error::Read(err).at(input))?;
    let total = source
        .metadata()
        .map_err(|err| Qcow2Error::Read(err).at(input))?
        .len();
    let dir = match output.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let name = output
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    let write_error = |err: io::Error| Qcow2Error::Write(err).at(output);
    let staged = tempfile::Builder::new()
        .prefix(&format!(".{name}.new-"))
        .tempfile_in(dir)
        .map_err(write_error)?;
    let disk = SparseFile::new(&source, total, progress);
    let file = staged.as_file();
    let summary = write_behind(file, |writer| convert_disk(disk, total, writer))
        .map_err(write_error)?
        .map_err(|err| match err {
            Qcow2Error::Write(_) => err.at(output),
            other => other.at(input),
        })?;
    file.set_permissions(Permissions::from_mode(0o644))
        .map_err(write_error)?;
    file.sync_all().map_err(write_error)?;
    staged
        .persist(output)
        .map_err(|err| write_error(err.error))?;
    // The rename itself is durable only once the directory is synced.
    File::open(dir)
        .and_then(|dir| dir.sync_all())
        .map_err(write_error)?;
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn writes_the_image_with_a_fixed_mode_and_reports_progress() {
        let dir = tempfile::tempdir().unwrap();
        let (raw, qcow2) = (dir.path().join("in.raw"), dir.path().join("out.qcow2"));
        fs::write(&raw, vec![7u8; 3 << 20]).unwrap();
        let mut seen = Vec::new();
        let summary = convert_file(&raw, &qcow2, |p| seen.push(p)).unwrap();
        assert_eq!(summary.virtual_size, 3 << 20);
        assert_eq!(fs::metadata(&qcow2).unwrap().len(), summary.file_size);
        let mode = fs::metadata(&qcow2).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o644);
        assert!(seen.windows(2).all(|w| w[0].done <= w[1].done));
        assert_eq!(
            seen.last().map(|p| (p.done, p.total)),
            Some((3 << 20, 3 << 20))
        );
        assert_eq!(names(dir.path()), ["in.raw", "out.qcow2"]);
    }

    #[test]
    fn a_failed_conversion_leaves_the_previous_output_and_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let (raw, qcow2) = (dir.path().join("in.raw"), dir.path().join("out.qcow2"));
        fs::write(&qcow2, b"previous").unwrap();
        fs::write(&raw, vec![1u8; 1000]).unwrap();
        let err = convert_file(&raw, &qcow2, |_| {}).unwrap_err();
        assert!(!err.is_io());
        assert!(
            err.to_string().starts_with(&raw.display().to_string()),
            "{err}"
        );
        assert!(err.to_string().contains("multiple of 512"), "{err}");
        assert_eq!(fs::read(&qcow2).unwrap(), b"previous");
        assert_eq!(names(dir.path()), ["in.raw", "out.qcow2"]);
    }

    #[test]
    fn a_missing_input_is_an_io_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let raw = dir.path().join("missing.raw");
        let err = convert_file(&raw, &dir.path().join("out.qcow2"), |_| {}).unwrap_err();
        assert!(err.is_io());
        assert!(err.to_string().contains("missing.raw"), "{err}");
        assert!(names(dir.path()).is_empty());
    }
}

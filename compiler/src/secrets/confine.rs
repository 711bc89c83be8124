//! Where a `file:` reference may be read from on this machine (rule E0130,
//! its part that needs the file system). `resolve` has already refused what
//! the blueprint's text shows (an absolute path, `~`, a path leaving the
//! blueprint's directory other than into a `secrets/` directory); here the
//! file itself counts, symbolic links followed, so a link committed beside
//! the blueprint cannot lead to `~/.ssh`. It must be under
//!
//! - the blueprint's directory,
//! - the project's `secrets/` directory (the project root being the nearest
//!   directory at or above the blueprint's that holds `blueprints/`), itself
//!   not followed if it is a link, or
//! - a directory the operator lists in `WADDLEC_SECRET_DIRS`
//!   (`:`-separated), which is how secrets kept elsewhere are allowed: link
//!   them into `secrets/` and list where the links lead.
//!
//! Only the operator's environment widens this, never the blueprint.

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};

/// The operator's extra directories secrets may be read from.
pub const DIRS_ENV: &str = "WADDLEC_SECRET_DIRS";

/// The directories (real paths) a blueprint's secret files may be in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AllowedDirs(Vec<PathBuf>);

impl AllowedDirs {
    /// For a blueprint in `base`, with `$WADDLEC_SECRET_DIRS`.
    pub fn for_blueprint(base: &Path) -> AllowedDirs {
        let extra = std::env::var_os(DIRS_ENV)
            .map(|dirs| std::env::split_paths(&dirs).collect::<Vec<_>>())
            .unwrap_or_default();
        AllowedDirs::new(base, extra)
    }

    /// For a blueprint in `base`, with `extra` directories. A directory
    /// that does not exist allows nothing.
    pub fn new(base: &Path, extra: impl IntoIterator<Item = PathBuf>) -> AllowedDirs {
        let mut dirs = Vec::new();
        if let Ok(base) = fs::canonicalize(non_empty(base)) {
            if let Some(root) = base.ancestors().find(|dir| dir.join("blueprints").is_dir()) {
                dirs.push(root.join("secrets"));
            }
            dirs.push(base);
        }
        for dir in extra.into_iter().filter(|d| !d.as_os_str().is_empty()) {
            match fs::canonicalize(&dir) {
                Ok(dir) => dirs.push(dir),
                Err(err) => tracing::warn!(
                    dir = %dir.display(),
                    "{DIRS_ENV} names a directory that cannot be used: {err}"
                ),
            }
        }
        AllowedDirs(dirs)
    }

    /// `Ok` if `path` (which need not exist yet) is really under one of
    /// the directories; otherwise where it really is.
    pub fn check(&self, path: &Path) -> Result<(), PathBuf> {
        match real_path(path) {
            Some(real) if self.0.iter().any(|dir| real.starts_with(dir)) => Ok(()),
            Some(real) => Err(real),
            None => Err(path.to_path_buf()),
        }
    }

    /// The directories, for an error message.
    pub fn describe(&self) -> String {
        self.0
            .iter()
            .map(|dir| dir.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

fn non_empty(path: &Path) -> &Path {
    if path.as_os_str().is_empty() {
        Path::new(".")
    } else {
        path
    }
}

/// Where `path` really is, symbolic links followed: its own real path, or
/// (when it does not exist yet) its nearest existing ancestor's with the
/// missing names after it. `None` when a missing part is `..` or there is
/// no existing ancestor.
fn real_path(path: &Path) -> Option<PathBuf> {
    let mut missing: Vec<OsString> = Vec::new();
    let mut current = path;
    loop {
        if let Ok(real) = fs::canonicalize(non_empty(current)) {
            return Some(
                missing
                    .iter()
                    .rev()
                    .fold(real, |path, name| path.join(name)),
            );
        }
        missing.push(current.file_name()?.to_owned());
        current = current.parent()?;
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;

    /// A project: `blueprints/` with the blueprint's directory, `secrets/`
    /// beside it, and the operator's home with an SSH key outside it.
    struct Project {
        dir: tempfile::TempDir,
    }

    impl Project {
        fn new() -> Project {
            let dir = tempfile::tempdir().unwrap();
            for sub in [
                "project/blueprints/examples",
                "project/secrets",
                "home/.ssh",
            ] {
                fs::create_dir_all(dir.path().join(sub)).unwrap();
            }
            fs::write(dir.path().join("project/secrets/cluster.yaml"), "bundle").unwrap();
            fs::write(dir.path().join("home/.ssh/id_ed25519"), "key").unwrap();
            Project { dir }
        }

        fn path(&self, relative: &str) -> PathBuf {
            self.dir.path().join(relative)
        }

        fn blueprints(&self) -> PathBuf {
            self.path("project/blueprints")
        }
    }

    #[test]
    fn the_project_secrets_and_the_blueprints_directory_are_allowed() {
        let project = Project::new();
        let allowed = AllowedDirs::new(&project.blueprints(), []);
        let base = project.blueprints();
        assert_eq!(allowed.check(&base.join("../secrets/cluster.yaml")), Ok(()));
        // Not there yet (`secrets init` creates it): still inside.
        assert_eq!(allowed.check(&base.join("../secrets/new.yaml")), Ok(()));
        assert_eq!(allowed.check(&base.join("token.txt")), Ok(()));
        // The lab example, two levels down, finds the same root.
        let lab = AllowedDirs::new(&project.path("project/blueprints/examples"), []);
        let lab_base = project.path("project/blueprints/examples");
        assert_eq!(
            lab.check(&lab_base.join("../../secrets/cluster.yaml")),
            Ok(())
        );
    }

    #[test]
    fn files_elsewhere_are_refused() {
        let project = Project::new();
        let base = project.blueprints();
        let allowed = AllowedDirs::new(&base, []);
        let key = project.path("home/.ssh/id_ed25519");
        assert!(allowed.check(&key).is_err());
        assert!(allowed.check(Path::new("/etc/passwd")).is_err());
        assert!(allowed.check(&base.join("../../../etc/passwd")).is_err());
        assert!(allowed
            .check(&base.join("../../home/.ssh/id_ed25519"))
            .is_err());
    }

    #[test]
    fn a_symlink_out_of_the_blueprints_directory_is_followed_and_refused() {
        let project = Project::new();
        let base = project.blueprints();
        symlink(project.path("home/.ssh"), base.join("keys")).unwrap();
        symlink(project.path("home/.ssh/id_ed25519"), base.join("id")).unwrap();
        let allowed = AllowedDirs::new(&base, []);
        assert_eq!(
            allowed.check(&base.join("keys/id_ed25519")),
            Err(fs::canonicalize(project.path("home/.ssh/id_ed25519")).unwrap())
        );
        assert!(allowed.check(&base.join("id")).is_err());
        // A link committed as `secrets` itself is not followed either.
        fs::remove_dir_all(project.path("project/secrets")).unwrap();
        symlink(project.path("home/.ssh"), project.path("project/secrets")).unwrap();
        let allowed = AllowedDirs::new(&base, []);
        assert!(allowed.check(&base.join("../secrets/id_ed25519")).is_err());
    }

    #[test]
    fn the_operator_widens_with_extra_directories() {
        let project = Project::new();
        let base = project.blueprints();
        symlink(project.path("home/.ssh"), base.join("keys")).unwrap();
        let allowed = AllowedDirs::new(&base, [project.path("home/.ssh")]);
        assert_eq!(allowed.check(&base.join("keys/id_ed25519")), Ok(()));
        // A directory that does not exist allows nothing.
        let allowed = AllowedDirs::new(&base, [project.path("nowhere")]);
        assert!(allowed.check(&base.join("keys/id_ed25519")).is_err());
    }
}

//! `waddlec platform publish`: the build's GitOps tree (its `platform/`
//! artifacts) committed into a checkout of the platform repository that
//! Flux syncs, as one commit, with the system `git`.
//!
//! The publish owns the top-level names it writes (the first component of
//! every published path: `clusters/`, `infrastructure/`, `README.md`…):
//! inside them, what git tracks and the new set lacks is removed, so a
//! component dropped from the blueprint disappears from the repository
//! (files git ignores stay, untouched). A top-level name the new set lacks
//! altogether is not owned any more, so it stays: removing it is the
//! operator's call. Everything else in the repository is the operator's and
//! left alone.
//! A repository with any local change is refused before anything is
//! written, so a generated commit never carries someone's uncommitted work,
//! and every other check (paths, git identity, ignore rules) also runs
//! before the first write.

mod git;
mod push;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::artifact::Artifact;
use git::Git;
pub use push::{Pushed, PushedCommit};

/// Where the build puts the GitOps tree; published without this prefix.
pub const PLATFORM_PREFIX: &str = "platform/";

/// What a publish did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Publication {
    /// The new commit, or `None` when the repository already held exactly
    /// these files (up to date: no commit).
    pub commit: Option<String>,
    /// Paths relative to the repository, sorted.
    pub added: Vec<String>,
    pub changed: Vec<String>,
    pub removed: Vec<String>,
}

impl Publication {
    /// True when the repository already held these files: no commit made.
    pub fn is_up_to_date(&self) -> bool {
        self.commit.is_none()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("there is nothing to publish: the list of files is empty")]
    Empty,
    #[error("cannot publish `{path}`: {reason}")]
    BadPath { path: String, reason: &'static str },
    #[error(
        "{} is not a git work tree ({detail}); pass the top directory of a checkout of the platform repository",
        repo.display()
    )]
    NotARepository { repo: PathBuf, detail: String },
    #[error(
        "{} is inside the git work tree {}, not its top directory; pass the top directory (the published paths are relative to it)",
        repo.display(),
        top.display()
    )]
    NotTopLevel { repo: PathBuf, top: PathBuf },
    #[error(
        "{} has local changes:\n{status}\ncommit or stash them (`git -C {} stash --include-untracked`) and publish again: a generated commit must never carry uncommitted work",
        repo.display(),
        repo.display()
    )]
    LocalChanges { repo: PathBuf, status: String },
    #[error(
        "{} ignores {} (its .gitignore or info/exclude), so the commit would lack them; remove the pattern that matches them",
        repo.display(),
        paths.join(", ")
    )]
    Ignored { repo: PathBuf, paths: Vec<String> },
    #[error(
        "{}: HEAD is detached, so there is no branch to push; check out the branch Flux syncs (`git -C {} switch main`) and publish again",
        repo.display(),
        repo.display()
    )]
    Detached { repo: PathBuf },
    #[error(
        "{}: branch `{branch}` has no upstream, so --push does not know where to push; set it (`git -C {} branch --set-upstream-to=origin/{branch}`) and publish again",
        repo.display(),
        repo.display()
    )]
    NoUpstream { repo: PathBuf, branch: String },
    #[error(
        "{}: `{}` moved since your last fetch: its {} is at {}, and {} says {}; nothing was written or pushed. Fetch and review what changed (`git -C {} pull --rebase`), then publish again",
        repo.display(),
        moved.remote,
        moved.remote_ref,
        moved.now.as_deref().unwrap_or("nothing (deleted)"),
        moved.tracking_ref,
        moved.fetched.as_deref().unwrap_or("nothing (never fetched)"),
        repo.display()
    )]
    RemoteMoved {
        repo: PathBuf,
        moved: Box<RemoteMove>,
    },
    #[error(
        "{}: branch `{branch}` does not contain {tracking_ref}, so a push would need force (never used); nothing was written or pushed. Bring them together (`git -C {} pull --rebase`) and publish again",
        repo.display(),
        repo.display()
    )]
    Diverged {
        repo: PathBuf,
        branch: String,
        tracking_ref: String,
    },
    #[error(
        "{}: `{remote}` refused the push of `{branch}` to {remote_ref}: it moved after the check (a push is never forced). The commit is made locally; fetch and rebase (`git -C {} pull --rebase`), then publish --push again to push it",
        repo.display(),
        repo.display()
    )]
    PushRejected {
        repo: PathBuf,
        remote: String,
        remote_ref: String,
        branch: String,
    },
    #[error("cannot run git: {0}; install it (`apt-get install git`)")]
    Spawn(#[source] std::io::Error),
    #[error("`git {command}` failed in {}:\n{stderr}", repo.display())]
    Git {
        repo: PathBuf,
        command: String,
        stderr: String,
    },
    #[error(
        "`git commit` failed in {}:\n{stderr}\nthe published files are written and staged there: commit them yourself, or discard them with `git -C {} reset --hard`",
        repo.display(),
        repo.display()
    )]
    Commit { repo: PathBuf, stderr: String },
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Where the remote's branch is, against where the last fetch saw it.
#[derive(Debug)]
pub struct RemoteMove {
    pub remote: String,
    pub remote_ref: String,
    pub tracking_ref: String,
    pub fetched: Option<String>,
    pub now: Option<String>,
}

/// The build's `platform/` artifacts as publishable files: the prefix
/// stripped, contents as built.
pub fn platform_files(artifacts: &[Artifact]) -> Vec<(String, Vec<u8>)> {
    artifacts
        .iter()
        .filter_map(|artifact| {
            let path = artifact.path.strip_prefix(PLATFORM_PREFIX)?;
            Some((path.to_string(), artifact.contents.clone()))
        })
        .collect()
}

/// Makes the owned part of the git work tree `repo` exactly `files`
/// (relative `/`-separated path → bytes, written 0644) and commits that as
/// one commit with `message`, authored by the user's git identity. Refuses,
/// writing nothing, a directory that is not the top of a work tree, a work
/// tree with local changes (modified, staged or untracked files) — checked
/// first, whatever the files — then an empty or malformed file list, a git
/// without an identity, and files the repository would ignore. Makes no
/// commit when nothing changed.
pub fn publish(
    repo: &Path,
    files: &[(String, Vec<u8>)],
    message: &str,
) -> Result<Publication, PublishError> {
    let git = Git::open(repo)?;
    refuse_local_changes(&git)?;
    commit(&git, files, message)
}

/// [`publish`], then the branch pushed to its upstream with the operator's
/// own `git push` (fast-forward only, never forced). Also refuses, before
/// writing anything, a detached HEAD, a branch without upstream, a remote
/// whose branch moved since the last fetch (`git ls-remote` against the
/// remote-tracking ref) and a branch that does not contain what was
/// fetched. Pushes whatever the remote lacks, so a commit an earlier
/// publish could not push goes too.
pub fn publish_and_push(
    repo: &Path,
    files: &[(String, Vec<u8>)],
    message: &str,
) -> Result<(Publication, Pushed), PublishError> {
    let git = Git::open(repo)?;
    refuse_local_changes(&git)?;
    let target = push::Target::checked(&git)?;
    let publication = commit(&git, files, message)?;
    let pushed = target.push(&git)?;
    Ok((publication, pushed))
}

fn refuse_local_changes(git: &Git) -> Result<(), PublishError> {
    let status = git.run(&["status", "--porcelain", "--untracked-files=all"], None)?;
    if status.trim().is_empty() {
        return Ok(());
    }
    Err(PublishError::LocalChanges {
        repo: git.repo(),
        status: status.trim_end().to_string(),
    })
}

/// The owned part of the work tree made exactly `files`, committed.
fn commit(
    git: &Git,
    files: &[(String, Vec<u8>)],
    message: &str,
) -> Result<Publication, PublishError> {
    let repo = git.repo();
    let repo = repo.as_path();
    let files = checked(files)?;
    let owned: BTreeSet<&str> = files.keys().filter_map(|p| p.split('/').next()).collect();
    let owned: Vec<&str> = owned.into_iter().collect();
    // `git commit` would fail after the files are written; ask first, so a
    // missing identity stops the publish with git's own message.
    git.run(&["var", "GIT_AUTHOR_IDENT"], None)?;
    git.run(&["var", "GIT_COMMITTER_IDENT"], None)?;
    git.refuse_ignored(&files.keys().copied().collect::<Vec<_>>())?;

    let tracked = git.tracked(&owned)?;
    for stale in tracked
        .iter()
        .filter(|path| !files.contains_key(path.as_str()))
    {
        remove(repo, stale)?;
    }
    for (path, contents) in &files {
        write(&repo.join(path), contents)?;
    }
    git.stage(&owned)?;
    let publication = git.staged()?;
    if publication.added.is_empty()
        && publication.changed.is_empty()
        && publication.removed.is_empty()
    {
        return Ok(publication);
    }
    git.commit(message)?;
    let commit = git.run(&["rev-parse", "HEAD"], None)?.trim().to_string();
    tracing::info!(%commit, repo = %repo.display(), "published the platform tree");
    Ok(Publication {
        commit: Some(commit),
        ..publication
    })
}

/// The files by path, every path checked to be a plain relative path that
/// neither leaves the repository, nor enters `.git`, nor is also another
/// file's directory.
fn checked(files: &[(String, Vec<u8>)]) -> Result<BTreeMap<&str, &[u8]>, PublishError> {
    if files.is_empty() {
        return Err(PublishError::Empty);
    }
    let bad = |path: &str, reason| PublishError::BadPath {
        path: path.to_string(),
        reason,
    };
    let mut checked = BTreeMap::new();
    for (path, contents) in files {
        if path
            .split('/')
            .any(|c| c.is_empty() || c == "." || c == "..")
        {
            return Err(bad(
                path,
                "not a relative path of plain names (empty, `.` or `..` component)",
            ));
        }
        if path.split('/').any(|c| c.eq_ignore_ascii_case(".git")) {
            return Err(bad(path, "`.git` belongs to git"));
        }
        if checked.insert(path.as_str(), contents.as_slice()).is_some() {
            return Err(bad(path, "listed twice"));
        }
    }
    for path in checked.keys() {
        let mut dir = *path;
        while let Some((parent, _)) = dir.rsplit_once('/') {
            if checked.contains_key(parent) {
                return Err(bad(parent, "it is a file and also a directory of another"));
            }
            dir = parent;
        }
    }
    Ok(checked)
}

/// Removes a tracked file the new set lacks, and the directories it leaves
/// empty.
fn remove(repo: &Path, path: &str) -> Result<(), PublishError> {
    let full = repo.join(path);
    fs::remove_file(&full).map_err(|source| PublishError::Io {
        action: "remove",
        path: full.clone(),
        source,
    })?;
    let mut dir = full.parent();
    while let Some(parent) = dir.filter(|d| *d != repo) {
        // Fails on a directory that still holds something: that is where
        // the cleanup stops.
        if fs::remove_dir(parent).is_err() {
            break;
        }
        dir = parent.parent();
    }
    Ok(())
}

/// Writes `contents` at `path` with mode 0644, unless the file already is
/// exactly that. A symlink in the way is replaced, never followed.
fn write(path: &Path, contents: &[u8]) -> Result<(), PublishError> {
    let io = |action| {
        move |source| PublishError::Io {
            action,
            path: path.to_path_buf(),
            source,
        }
    };
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.is_file() => {
            let same = fs::read(path).map_err(io("read"))? == contents;
            if same && meta.permissions().mode() & 0o7777 == 0o644 {
                return Ok(());
            }
        }
        Ok(meta) if meta.file_type().is_symlink() => {
            fs::remove_file(path).map_err(io("remove"))?;
        }
        _ => {}
    }
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).map_err(io("create the directory of"))?;
    }
    fs::write(path, contents).map_err(io("write"))?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o644)).map_err(io("set the mode of"))
}

/// NUL-separated git output as strings.
fn split_z(bytes: &[u8]) -> Vec<String> {
    bytes
        .split(|b| *b == 0)
        .filter(|field| !field.is_empty())
        .map(|field| String::from_utf8_lossy(field).into_owned())
        .collect()
}

#[cfg(test)]
mod tests {
    use std::process::Command;

    use super::*;

    /// A scratch repository with a local identity and the operator's own
    /// files committed (which a publish must never touch).
    fn repository() -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        git(dir.path(), &["init", "--quiet", "--initial-branch=main"]);
        git(dir.path(), &["config", "user.name", "Publish Test"]);
        git(
            dir.path(),
            &["config", "user.email", "publish@example.test"],
        );
        put(dir.path(), "LICENSE", "Apache-2.0\n");
        put(dir.path(), ".github/workflows/ci.yaml", "on: push\n");
        put(dir.path(), "docs/runbook.md", "# Runbook\n");
        git(dir.path(), &["add", "-A"]);
        git(dir.path(), &["commit", "--quiet", "-m", "operator files"]);
        dir
    }

    fn git(repo: &Path, args: &[&str]) -> String {
        let output = Command::new("git")
            .arg("-C")
            .arg(repo)
            .args(args)
            .env_remove("GIT_DIR")
            .env_remove("GIT_INDEX_FILE")
            .env_remove("GIT_WORK_TREE")
            .output()
            .expect("git runs");
        assert!(
            output.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    fn put(repo: &Path, path: &str, text: &str) {
        let full = repo.join(path);
        fs::create_dir_all(full.parent().expect("a parent")).expect("mkdir");
        fs::write(full, text).expect("write");
    }

    fn head(repo: &Path) -> String {
        git(repo, &["rev-parse", "HEAD"]).trim().to_string()
    }

    fn commits(repo: &Path) -> usize {
        git(repo, &["rev-list", "--count", "HEAD"])
            .trim()
            .parse()
            .expect("a count")
    }

    /// Every file of the work tree (`.git` aside) with its bytes and mode.
    fn snapshot(repo: &Path) -> BTreeMap<String, (Vec<u8>, u32)> {
        fn walk(root: &Path, dir: &Path, into: &mut BTreeMap<String, (Vec<u8>, u32)>) {
            for entry in fs::read_dir(dir).expect("readable") {
                let path = entry.expect("entry").path();
                let relative = path
                    .strip_prefix(root)
                    .expect("inside")
                    .display()
                    .to_string();
                if relative == ".git" {
                    continue;
                }
                if path.is_dir() {
                    walk(root, &path, into);
                } else {
                    let mode = fs::metadata(&path).expect("stat").permissions().mode();
                    into.insert(relative, (fs::read(&path).expect("read"), mode & 0o7777));
                }
            }
        }
        let mut files = BTreeMap::new();
        walk(repo, repo, &mut files);
        files
    }

    fn files(list: &[(&str, &str)]) -> Vec<(String, Vec<u8>)> {
        list.iter()
            .map(|(path, text)| (path.to_string(), text.as_bytes().to_vec()))
            .collect()
    }

    fn platform() -> Vec<(String, Vec<u8>)> {
        files(&[
            ("README.md", "# Platform\n"),
            (
                "clusters/waddle-cluster/cert-manager.yaml",
                "kind: Kustomization\n",
            ),
            (
                "infrastructure/cert-manager/helmrelease.yaml",
                "kind: HelmRelease\n",
            ),
            ("apps/spicedb/release.yaml", "kind: HelmRelease\n"),
            ("apps/zitadel/release.yaml", "kind: HelmRelease\n"),
        ])
    }

    fn strings(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn the_first_publish_commits_exactly_the_files_in_one_commit() {
        let repo = repository();
        let before = commits(repo.path());
        let published =
            publish(repo.path(), &platform(), "publish the platform").expect("publishes");

        assert_eq!(commits(repo.path()), before + 1);
        assert_eq!(
            published.commit.as_deref(),
            Some(head(repo.path()).as_str())
        );
        assert_eq!(
            published.added,
            strings(&[
                "README.md",
                "apps/spicedb/release.yaml",
                "apps/zitadel/release.yaml",
                "clusters/waddle-cluster/cert-manager.yaml",
                "infrastructure/cert-manager/helmrelease.yaml",
            ])
        );
        assert!(published.changed.is_empty() && published.removed.is_empty());
        assert_eq!(
            git(
                repo.path(),
                &["show", "--name-status", "--format=%s", "HEAD"]
            ),
            "publish the platform\n\n\
             A\tREADME.md\n\
             A\tapps/spicedb/release.yaml\n\
             A\tapps/zitadel/release.yaml\n\
             A\tclusters/waddle-cluster/cert-manager.yaml\n\
             A\tinfrastructure/cert-manager/helmrelease.yaml\n"
        );
        let tree = snapshot(repo.path());
        for (path, contents) in platform() {
            assert_eq!(tree[&path], (contents, 0o644), "{path}");
        }
        assert_eq!(tree.len(), platform().len() + 3, "{:?}", tree.keys());
        assert_eq!(git(repo.path(), &["status", "--porcelain"]), "");
    }

    #[test]
    fn a_repository_without_commits_gets_its_first_one() {
        let repo = tempfile::tempdir().expect("tempdir");
        git(repo.path(), &["init", "--quiet"]);
        git(repo.path(), &["config", "user.name", "Publish Test"]);
        git(
            repo.path(),
            &["config", "user.email", "publish@example.test"],
        );
        let published = publish(repo.path(), &platform(), "first").expect("publishes");
        assert_eq!(commits(repo.path()), 1);
        assert_eq!(published.added.len(), platform().len());
    }

    #[test]
    fn publishing_the_same_files_again_makes_no_commit() {
        let repo = repository();
        publish(repo.path(), &platform(), "first").expect("publishes");
        let (head_before, tree_before) = (head(repo.path()), snapshot(repo.path()));

        let again = publish(repo.path(), &platform(), "second").expect("publishes");

        assert!(again.is_up_to_date());
        assert_eq!(
            again,
            Publication {
                commit: None,
                added: vec![],
                changed: vec![],
                removed: vec![],
            }
        );
        assert_eq!(head(repo.path()), head_before);
        assert_eq!(snapshot(repo.path()), tree_before);
    }

    #[test]
    fn a_dropped_file_is_removed_and_a_changed_one_rewritten_in_one_commit() {
        let repo = repository();
        publish(repo.path(), &platform(), "first").expect("publishes");
        let first = head(repo.path());
        let mut next = platform();
        next.retain(|(path, _)| !path.starts_with("apps/spicedb/"));
        next[0].1 = b"# Platform, changed\n".to_vec();

        let published = publish(repo.path(), &next, "second").expect("publishes");

        assert_eq!(published.added, Vec::<String>::new());
        assert_eq!(published.changed, strings(&["README.md"]));
        assert_eq!(published.removed, strings(&["apps/spicedb/release.yaml"]));
        assert_eq!(
            git(repo.path(), &["rev-parse", "HEAD~1"]).trim(),
            first,
            "one commit on top of the first"
        );
        assert_eq!(
            git(repo.path(), &["show", "--name-status", "--format=", "HEAD"]),
            "M\tREADME.md\nD\tapps/spicedb/release.yaml\n"
        );
        // The emptied directory goes too; the operator's files stay.
        assert!(!repo.path().join("apps/spicedb").exists());
        let tree = snapshot(repo.path());
        assert_eq!(tree["README.md"].0, b"# Platform, changed\n");
        for kept in ["LICENSE", ".github/workflows/ci.yaml", "docs/runbook.md"] {
            assert!(tree.contains_key(kept), "{kept} was removed");
        }
    }

    #[test]
    fn tracked_files_inside_an_owned_directory_are_replaced_by_the_new_set() {
        let repo = repository();
        put(repo.path(), "clusters/old-cluster/flux.yaml", "kind: Old\n");
        put(
            repo.path(),
            "clusters/waddle-cluster/cert-manager.yaml",
            "old: 1\n",
        );
        git(repo.path(), &["add", "-A"]);
        git(
            repo.path(),
            &["commit", "--quiet", "-m", "hand-copied tree"],
        );

        let published = publish(repo.path(), &platform(), "publish").expect("publishes");

        assert_eq!(
            published.removed,
            strings(&["clusters/old-cluster/flux.yaml"])
        );
        assert_eq!(
            published.changed,
            strings(&["clusters/waddle-cluster/cert-manager.yaml"])
        );
        assert!(!repo.path().join("clusters/old-cluster").exists());
        assert!(repo.path().join("docs/runbook.md").is_file());
    }

    #[test]
    fn a_file_where_a_directory_goes_and_the_reverse_are_replaced() {
        let repo = repository();
        put(repo.path(), "apps", "a file named like a directory\n");
        put(
            repo.path(),
            "README.md/old.md",
            "a directory named like a file\n",
        );
        git(repo.path(), &["add", "-A"]);
        git(repo.path(), &["commit", "--quiet", "-m", "in the way"]);

        publish(repo.path(), &platform(), "publish").expect("publishes");

        assert_eq!(
            fs::read(repo.path().join("README.md")).expect("a file"),
            b"# Platform\n"
        );
        assert!(repo.path().join("apps/spicedb/release.yaml").is_file());
        assert_eq!(git(repo.path(), &["status", "--porcelain"]), "");
    }

    /// Refused with the local change named, nothing written: the work
    /// tree, the index and HEAD as they were.
    fn assert_refused(repo: &Path) {
        let (head_before, tree_before) = (head(repo), snapshot(repo));
        let status_before = git(repo, &["status", "--porcelain"]);

        let err = publish(repo, &platform(), "publish").expect_err("refused");

        assert!(matches!(err, PublishError::LocalChanges { .. }), "{err}");
        let message = err.to_string();
        assert!(message.contains("commit or stash"), "{message}");
        assert_eq!(head(repo), head_before);
        assert_eq!(snapshot(repo), tree_before);
        assert_eq!(git(repo, &["status", "--porcelain"]), status_before);
    }

    #[test]
    fn an_untracked_file_is_refused_without_writing_anything() {
        let repo = repository();
        put(repo.path(), "notes.txt", "work in progress\n");
        assert_refused(repo.path());
    }

    #[test]
    fn a_modified_tracked_file_is_refused_without_writing_anything() {
        let repo = repository();
        publish(repo.path(), &platform(), "first").expect("publishes");
        put(repo.path(), "README.md", "# Edited by hand\n");
        assert_refused(repo.path());
    }

    #[test]
    fn a_staged_change_is_refused_without_writing_anything() {
        let repo = repository();
        put(repo.path(), "docs/runbook.md", "# Runbook, staged\n");
        git(repo.path(), &["add", "docs/runbook.md"]);
        assert_refused(repo.path());
    }

    #[test]
    fn a_directory_that_is_not_a_git_work_tree_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let err = publish(dir.path(), &platform(), "publish").expect_err("refused");
        assert!(matches!(err, PublishError::NotARepository { .. }), "{err}");
        assert_eq!(fs::read_dir(dir.path()).expect("readable").count(), 0);
        let missing = dir.path().join("missing");
        let err = publish(&missing, &platform(), "publish").expect_err("refused");
        assert!(matches!(err, PublishError::NotARepository { .. }), "{err}");
    }

    #[test]
    fn a_subdirectory_of_a_work_tree_is_refused() {
        let repo = repository();
        let err = publish(&repo.path().join("docs"), &platform(), "publish").expect_err("refused");
        assert!(matches!(err, PublishError::NotTopLevel { .. }), "{err}");
        assert!(!repo.path().join("docs/clusters").exists());
    }

    #[test]
    fn paths_that_leave_the_tree_or_collide_are_refused_before_writing() {
        let repo = repository();
        let before = snapshot(repo.path());
        for bad in [
            files(&[("../escape.yaml", "x")]),
            files(&[("/etc/passwd", "x")]),
            files(&[("clusters/.git/config", "x")]),
            files(&[("a//b", "x")]),
            files(&[("apps", "x"), ("apps/b.yaml", "y")]),
            files(&[("apps/a.yaml", "x"), ("apps/a.yaml", "y")]),
            Vec::new(),
        ] {
            let err = publish(repo.path(), &bad, "publish").expect_err("refused");
            assert!(
                matches!(err, PublishError::BadPath { .. } | PublishError::Empty),
                "{bad:?}: {err}"
            );
        }
        assert_eq!(snapshot(repo.path()), before);
    }

    #[test]
    fn a_file_the_repository_ignores_is_refused_before_writing() {
        let repo = repository();
        put(repo.path(), ".gitignore", "*.md\n");
        git(repo.path(), &["add", "-A"]);
        git(repo.path(), &["commit", "--quiet", "-m", "ignore markdown"]);
        let before = snapshot(repo.path());
        let err = publish(repo.path(), &platform(), "publish").expect_err("refused");
        assert!(
            matches!(err, PublishError::Ignored { ref paths, .. } if paths == &strings(&["README.md"])),
            "{err}"
        );
        assert_eq!(snapshot(repo.path()), before);
    }

    /// `repository()` with a bare repository as `origin`, `main` pushed
    /// and tracking it; and the bare repository.
    fn repository_with_remote() -> (tempfile::TempDir, tempfile::TempDir) {
        let repo = repository();
        let remote = tempfile::tempdir().expect("tempdir");
        git(
            remote.path(),
            &["init", "--quiet", "--bare", "--initial-branch=main"],
        );
        let url = remote.path().display().to_string();
        git(repo.path(), &["remote", "add", "origin", &url]);
        git(repo.path(), &["push", "--quiet", "-u", "origin", "main"]);
        (repo, remote)
    }

    fn remote_main(remote: &Path) -> String {
        git(remote, &["rev-parse", "refs/heads/main"])
            .trim()
            .to_string()
    }

    /// Someone else's commit on the remote's `main`.
    fn push_from_elsewhere(remote: &Path) {
        let other = tempfile::tempdir().expect("tempdir");
        let url = remote.display().to_string();
        git(other.path(), &["clone", "--quiet", &url, "."]);
        git(other.path(), &["config", "user.name", "Someone Else"]);
        git(other.path(), &["config", "user.email", "else@example.test"]);
        put(other.path(), "docs/runbook.md", "# Runbook, edited\n");
        git(
            other.path(),
            &["commit", "--quiet", "-am", "edit the runbook"],
        );
        git(other.path(), &["push", "--quiet", "origin", "main"]);
    }

    #[test]
    fn push_sends_the_new_commit_to_the_upstream() {
        let (repo, remote) = repository_with_remote();
        let before = remote_main(remote.path());
        let (published, pushed) =
            publish_and_push(repo.path(), &platform(), "publish").expect("pushes");
        let commit = published.commit.expect("a commit");
        assert_eq!(remote_main(remote.path()), commit);
        assert_eq!(
            pushed,
            Pushed {
                remote: "origin".into(),
                remote_ref: "refs/heads/main".into(),
                from: Some(before),
                to: commit.clone(),
                commits: vec![PushedCommit {
                    commit: commit.clone(),
                    subject: "publish".into()
                }],
            }
        );
        // git's own bookkeeping follows: the next fetch sees no move.
        assert_eq!(
            git(repo.path(), &["rev-parse", "refs/remotes/origin/main"]).trim(),
            commit
        );
        let (again, pushed) =
            publish_and_push(repo.path(), &platform(), "publish").expect("pushes");
        assert!(again.is_up_to_date() && pushed.commits.is_empty());
    }

    #[test]
    fn push_sends_a_commit_an_earlier_publish_left_unpushed() {
        let (repo, remote) = repository_with_remote();
        let first = publish(repo.path(), &platform(), "publish").expect("publishes");
        let (again, pushed) =
            publish_and_push(repo.path(), &platform(), "publish").expect("pushes");
        assert!(again.is_up_to_date());
        assert_eq!(pushed.commits.len(), 1);
        assert_eq!(Some(remote_main(remote.path())), first.commit);
    }

    #[test]
    fn a_remote_that_moved_since_the_last_fetch_is_refused_before_writing() {
        let (repo, remote) = repository_with_remote();
        push_from_elsewhere(remote.path());
        let moved = remote_main(remote.path());
        let (head_before, tree_before) = (head(repo.path()), snapshot(repo.path()));
        let err = publish_and_push(repo.path(), &platform(), "publish").expect_err("refused");
        assert!(
            matches!(&err, PublishError::RemoteMoved { moved: m, .. } if m.now.as_ref() == Some(&moved)),
            "{err}"
        );
        assert!(
            err.to_string().contains("moved since your last fetch"),
            "{err}"
        );
        assert_eq!(head(repo.path()), head_before);
        assert_eq!(snapshot(repo.path()), tree_before);
        assert_eq!(remote_main(remote.path()), moved);
        // Fetched and rebased onto it, the publish goes through.
        git(repo.path(), &["pull", "--quiet", "--rebase"]);
        let (published, pushed) =
            publish_and_push(repo.path(), &platform(), "publish").expect("pushes");
        assert_eq!(pushed.from.as_deref(), Some(moved.as_str()));
        assert_eq!(published.commit, Some(remote_main(remote.path())));
    }

    #[test]
    fn a_branch_that_lacks_what_was_fetched_is_refused_before_writing() {
        let (repo, remote) = repository_with_remote();
        put(repo.path(), "docs/more.md", "more\n");
        git(repo.path(), &["add", "-A"]);
        git(repo.path(), &["commit", "--quiet", "-m", "more"]);
        git(repo.path(), &["push", "--quiet"]);
        git(repo.path(), &["reset", "--quiet", "--hard", "HEAD~1"]);
        let before = (head(repo.path()), remote_main(remote.path()));
        let err = publish_and_push(repo.path(), &platform(), "publish").expect_err("refused");
        assert!(matches!(err, PublishError::Diverged { .. }), "{err}");
        assert_eq!((head(repo.path()), remote_main(remote.path())), before);
    }

    #[test]
    fn push_needs_a_branch_with_an_upstream() {
        let repo = repository();
        let err = publish_and_push(repo.path(), &platform(), "publish").expect_err("refused");
        assert!(
            matches!(&err, PublishError::NoUpstream { branch, .. } if branch == "main"),
            "{err}"
        );
        git(repo.path(), &["checkout", "--quiet", "--detach"]);
        let err = publish_and_push(repo.path(), &platform(), "publish").expect_err("refused");
        assert!(matches!(err, PublishError::Detached { .. }), "{err}");
        assert_eq!(commits(repo.path()), 1, "nothing committed");
    }

    #[test]
    fn platform_files_are_the_platform_artifacts_without_the_prefix() {
        let artifacts = vec![
            Artifact::file("host/setup.sh", "script", "#!/bin/sh\n".into()),
            Artifact::file("platform/README.md", "readme", "# Platform\n".into()),
            Artifact::file("platform-notes.txt", "text", "not the tree\n".into()),
        ];
        assert_eq!(
            platform_files(&artifacts),
            files(&[("README.md", "# Platform\n")])
        );
    }
}

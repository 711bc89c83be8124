//! The system `git`, run with `-C` in the platform repository's work tree:
//! the few questions a publish asks (top directory, status, ignore rules,
//! tracked files, the index against HEAD) and the commit. Paths go in and
//! come out NUL-separated, never quoted.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use super::{split_z, Publication, PublishError};

/// Environment variables that would point `git -C repo` at another
/// repository (set, for instance, when waddlec runs inside a git hook).
const REPOSITORY_ENV: &[&str] = &[
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_INDEX_FILE",
    "GIT_OBJECT_DIRECTORY",
    "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_COMMON_DIR",
    "GIT_PREFIX",
    "GIT_IMPLICIT_WORK_TREE",
];

/// The system `git`, run in one work tree.
pub(super) struct Git {
    repo: PathBuf,
}

impl Git {
    /// Checks that `repo` is the top directory of a git work tree.
    pub(super) fn open(repo: &Path) -> Result<Self, PublishError> {
        let git = Git {
            repo: repo.to_path_buf(),
        };
        let not_a_repository = |detail: String| PublishError::NotARepository {
            repo: repo.to_path_buf(),
            detail,
        };
        if !repo.is_dir() {
            return Err(not_a_repository("no such directory".into()));
        }
        let top = match git.run(&["rev-parse", "--show-toplevel"], None) {
            Ok(top) => PathBuf::from(top.trim_end_matches('\n')),
            Err(PublishError::Git { stderr, .. }) => return Err(not_a_repository(stderr)),
            Err(err) => return Err(err),
        };
        let canonical = |path: &Path| {
            fs::canonicalize(path).map_err(|source| PublishError::Io {
                action: "resolve",
                path: path.to_path_buf(),
                source,
            })
        };
        if canonical(&top)? != canonical(repo)? {
            return Err(PublishError::NotTopLevel {
                repo: repo.to_path_buf(),
                top,
            });
        }
        Ok(git)
    }

    fn command(&self) -> Command {
        let mut command = Command::new("git");
        for name in REPOSITORY_ENV {
            command.env_remove(name);
        }
        command.arg("-C").arg(&self.repo);
        command
    }

    /// The work tree's top directory, as given.
    pub(super) fn repo(&self) -> PathBuf {
        self.repo.clone()
    }

    /// Runs git; its whole output, whatever its status.
    pub(super) fn output(
        &self,
        args: &[&str],
        stdin: Option<Vec<u8>>,
    ) -> Result<Output, PublishError> {
        let mut command = self.command();
        command
            .args(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        tracing::debug!(?args, repo = %self.repo.display(), "git");
        let mut child = command.spawn().map_err(PublishError::Spawn)?;
        // Written from a thread while stdout and stderr are drained, so a
        // long answer cannot fill a pipe and stall both sides.
        let writer = match (stdin, child.stdin.take()) {
            (Some(input), Some(mut pipe)) => {
                Some(std::thread::spawn(move || pipe.write_all(&input)))
            }
            _ => None,
        };
        let output = child.wait_with_output().map_err(PublishError::Spawn)?;
        if let Some(writer) = writer {
            // A git that exits early closes the pipe: its status says why.
            let _ = writer.join();
        }
        Ok(output)
    }

    /// Runs git; its stdout, or its stderr as the error.
    pub(super) fn run(
        &self,
        args: &[&str],
        stdin: Option<Vec<u8>>,
    ) -> Result<String, PublishError> {
        let output = self.output(args, stdin)?;
        if !output.status.success() {
            return Err(self.failed(args, &output));
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    pub(super) fn failed(&self, args: &[&str], output: &Output) -> PublishError {
        PublishError::Git {
            repo: self.repo.clone(),
            command: args.join(" "),
            stderr: String::from_utf8_lossy(&output.stderr)
                .trim_end()
                .to_string(),
        }
    }

    /// The commit `name` points at, if it exists.
    pub(super) fn commit_of(&self, name: &str) -> Result<Option<String>, PublishError> {
        let spec = format!("{name}^{{commit}}");
        let output = self.output(&["rev-parse", "--verify", "--quiet", &spec], None)?;
        Ok(output
            .status
            .success()
            .then(|| String::from_utf8_lossy(&output.stdout).trim().to_string()))
    }

    /// Whether `ancestor` is `descendant` or one of its ancestors.
    pub(super) fn is_ancestor(
        &self,
        ancestor: &str,
        descendant: &str,
    ) -> Result<bool, PublishError> {
        let args = ["merge-base", "--is-ancestor", ancestor, descendant];
        let output = self.output(&args, None)?;
        match output.status.code() {
            Some(0) => Ok(true),
            Some(1) => Ok(false),
            _ => Err(self.failed(&args, &output)),
        }
    }

    /// Refuses paths a commit would silently lack because git ignores them
    /// (tracked files are never ignored).
    pub(super) fn refuse_ignored(&self, paths: &[&str]) -> Result<(), PublishError> {
        let mut input = Vec::new();
        for path in paths {
            input.extend_from_slice(path.as_bytes());
            input.push(0);
        }
        let args = ["check-ignore", "-z", "--stdin"];
        let output = self.output(&args, Some(input))?;
        match output.status.code() {
            Some(1) => Ok(()),
            Some(0) => Err(PublishError::Ignored {
                repo: self.repo.clone(),
                paths: split_z(&output.stdout),
            }),
            _ => Err(self.failed(&args, &output)),
        }
    }

    /// The files git tracks under the owned names.
    pub(super) fn tracked(&self, owned: &[&str]) -> Result<Vec<String>, PublishError> {
        let names = literal(owned);
        let mut args = vec!["ls-files", "-z", "--"];
        args.extend(names.iter().map(String::as_str));
        Ok(split_z(self.run(&args, None)?.as_bytes()))
    }

    /// `git add -A` on the owned names only.
    pub(super) fn stage(&self, owned: &[&str]) -> Result<(), PublishError> {
        let names = literal(owned);
        let mut args = vec!["add", "-A", "--"];
        args.extend(names.iter().map(String::as_str));
        self.run(&args, None).map(drop)
    }

    /// What the index holds that HEAD does not, as a publication without a
    /// commit.
    pub(super) fn staged(&self) -> Result<Publication, PublishError> {
        let out = self.run(
            &["diff", "--cached", "--name-status", "--no-renames", "-z"],
            None,
        )?;
        let mut publication = Publication {
            commit: None,
            added: Vec::new(),
            changed: Vec::new(),
            removed: Vec::new(),
        };
        let fields = split_z(out.as_bytes());
        for pair in fields.chunks(2) {
            let [status, path] = pair else { break };
            let list = match status.as_str() {
                "A" => &mut publication.added,
                "D" => &mut publication.removed,
                _ => &mut publication.changed,
            };
            list.push(path.clone());
        }
        Ok(publication)
    }

    pub(super) fn commit(&self, message: &str) -> Result<(), PublishError> {
        let output = self.output(
            &["commit", "--quiet", "--file=-"],
            Some(message.as_bytes().to_vec()),
        )?;
        if output.status.success() {
            return Ok(());
        }
        let mut stderr = String::from_utf8_lossy(&output.stderr)
            .trim_end()
            .to_string();
        if stderr.is_empty() {
            stderr = String::from_utf8_lossy(&output.stdout)
                .trim_end()
                .to_string();
        }
        Err(PublishError::Commit {
            repo: self.repo.clone(),
            stderr,
        })
    }
}

/// Names as pathspecs that mean exactly those names, never a pattern.
fn literal(names: &[&str]) -> Vec<String> {
    names
        .iter()
        .map(|name| format!(":(literal){name}"))
        .collect()
}

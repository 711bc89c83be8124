//! `platform publish --push`: the checked-out branch pushed to its
//! upstream with the system `git push`, so the operator's own credentials
//! (ssh config and agent, credential helpers) are the only ones used.
//!
//! Checked before the publish writes anything: a branch is checked out, it
//! has an upstream, the remote's branch is still where the last fetch saw
//! it (`git ls-remote` against the remote-tracking ref) and the branch
//! contains that commit. The push itself is a plain fast-forward push,
//! never forced: should the remote move between the check and the push,
//! git refuses it and so do we.

use serde::Serialize;

use super::git::Git;
use super::{PublishError, RemoteMove};

/// Where the push goes, as the last fetch saw it.
pub(super) struct Target {
    /// The local branch (`main`).
    branch: String,
    /// The upstream's remote (`origin`).
    remote: String,
    /// The upstream's branch on the remote (`refs/heads/main`).
    remote_ref: String,
    /// The remote-tracking ref (`refs/remotes/origin/main`).
    tracking_ref: String,
    /// What the remote-tracking ref holds: the remote's branch at the last
    /// fetch (`None`: no such branch then).
    fetched: Option<String>,
}

/// What a push did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Pushed {
    /// The upstream's remote name (never its URL, which may hold a token).
    pub remote: String,
    /// The branch on the remote (`refs/heads/main`).
    pub remote_ref: String,
    /// The remote's branch before (`None`: the push created it).
    pub from: Option<String>,
    /// The remote's branch after: the work tree's HEAD.
    pub to: String,
    /// The commits the remote did not have, newest first (empty: it was
    /// already up to date, nothing was pushed).
    pub commits: Vec<PushedCommit>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PushedCommit {
    pub commit: String,
    pub subject: String,
}

impl Target {
    /// The checked-out branch's upstream, refused unless the remote's branch
    /// is where the last fetch saw it and the branch contains it.
    pub(super) fn checked(git: &Git) -> Result<Self, PublishError> {
        let branch = match git.output(&["symbolic-ref", "--quiet", "--short", "HEAD"], None)? {
            output if output.status.success() => {
                String::from_utf8_lossy(&output.stdout).trim().to_string()
            }
            _ => return Err(PublishError::Detached { repo: git.repo() }),
        };
        let upstream = git.run(
            &[
                "for-each-ref",
                "--format=%(upstream:remotename)%00%(upstream:remoteref)%00%(upstream)",
                &format!("refs/heads/{branch}"),
            ],
            None,
        )?;
        let fields: Vec<&str> = upstream.trim_end_matches('\n').split('\0').collect();
        let [remote, remote_ref, tracking_ref] = fields[..] else {
            return Err(PublishError::NoUpstream {
                repo: git.repo(),
                branch,
            });
        };
        if remote.is_empty() || remote_ref.is_empty() || tracking_ref.is_empty() {
            return Err(PublishError::NoUpstream {
                repo: git.repo(),
                branch,
            });
        }
        let target = Target {
            fetched: git.commit_of(tracking_ref)?,
            branch: branch.clone(),
            remote: remote.to_string(),
            remote_ref: remote_ref.to_string(),
            tracking_ref: tracking_ref.to_string(),
        };
        let remote_now = target.remote_commit(git)?;
        if remote_now != target.fetched {
            return Err(PublishError::RemoteMoved {
                repo: git.repo(),
                moved: Box::new(RemoteMove {
                    remote: target.remote,
                    remote_ref: target.remote_ref,
                    tracking_ref: target.tracking_ref,
                    fetched: target.fetched,
                    now: remote_now,
                }),
            });
        }
        if let Some(fetched) = &target.fetched {
            if !git.is_ancestor(fetched, "HEAD")? {
                return Err(PublishError::Diverged {
                    repo: git.repo(),
                    branch,
                    tracking_ref: target.tracking_ref,
                });
            }
        }
        Ok(target)
    }

    /// The remote's branch now, as `git ls-remote` says.
    fn remote_commit(&self, git: &Git) -> Result<Option<String>, PublishError> {
        let listing = git.run(&["ls-remote", "--", &self.remote, &self.remote_ref], None)?;
        Ok(listing.lines().find_map(|line| {
            let (commit, name) = line.split_once('\t')?;
            (name == self.remote_ref).then(|| commit.to_string())
        }))
    }

    /// Pushes HEAD to the upstream branch, fast-forward only.
    pub(super) fn push(self, git: &Git) -> Result<Pushed, PublishError> {
        let head = git.run(&["rev-parse", "HEAD"], None)?.trim().to_string();
        let range = match &self.fetched {
            Some(fetched) => format!("{fetched}..{head}"),
            None => head.clone(),
        };
        let log = git.run(&["log", "--format=%H%x00%s", &range, "--"], None)?;
        let commits: Vec<PushedCommit> = log
            .lines()
            .filter_map(|line| {
                let (commit, subject) = line.split_once('\0')?;
                Some(PushedCommit {
                    commit: commit.to_string(),
                    subject: subject.to_string(),
                })
            })
            .collect();
        if !commits.is_empty() {
            let refspec = format!("{head}:{}", self.remote_ref);
            let args = ["push", "--porcelain", "--", &self.remote, &refspec];
            let output = git.output(&args, None)?;
            if !output.status.success() {
                let report = String::from_utf8_lossy(&output.stdout);
                // `!` flags a ref the remote refused; for a fast-forward
                // push that means it moved since the check above.
                let rejected = report.lines().any(|line| {
                    line.starts_with('!')
                        && (line.contains("fetch first") || line.contains("non-fast-forward"))
                });
                if rejected {
                    return Err(PublishError::PushRejected {
                        repo: git.repo(),
                        remote: self.remote,
                        remote_ref: self.remote_ref,
                        branch: self.branch,
                    });
                }
                return Err(git.failed(&args, &output));
            }
        }
        tracing::info!(remote = %self.remote, remote_ref = %self.remote_ref, %head, commits = commits.len(), "pushed");
        Ok(Pushed {
            remote: self.remote,
            remote_ref: self.remote_ref,
            from: self.fetched,
            to: head,
            commits,
        })
    }
}

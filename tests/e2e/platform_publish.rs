//! `waddlec platform publish`: the GitOps tree committed into a scratch
//! platform repository, by the real binary on the bundled blueprint (its
//! refusals and its happy path) and by the library (how a later build's
//! changes become one commit); `--push` to a bare repository served over
//! SSH by a real sshd (the `ssh_host` lab), with the operator's own ssh
//! config.

use std::fs;
use std::path::Path;
use std::process::Command;

use waddlec::publish::{platform_files, publish};

use crate::support::ssh_host::SshHost;
use crate::support::{run, text, valid_blueprints, waddlec};

/// A platform repository with the operator's own files committed.
fn platform_repository() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path();
    git(repo, &["init", "--quiet", "--initial-branch=main"]);
    git(repo, &["config", "user.name", "Platform Operator"]);
    git(repo, &["config", "user.email", "operator@example.test"]);
    fs::create_dir_all(repo.join(".github/workflows")).unwrap();
    fs::write(repo.join(".github/workflows/lint.yaml"), "on: push\n").unwrap();
    fs::write(repo.join("LICENSE"), "Apache-2.0\n").unwrap();
    git(repo, &["add", "-A"]);
    git(repo, &["commit", "--quiet", "-m", "operator files"]);
    dir
}

fn git(repo: &Path, args: &[&str]) -> String {
    git_with(repo, args, None)
}

/// git, reaching remotes with `ssh` (`GIT_SSH_COMMAND`) when given.
fn git_with(repo: &Path, args: &[&str], ssh: Option<&str>) -> String {
    let mut command = Command::new("git");
    command
        .arg("-C")
        .arg(repo)
        .args(args)
        .env_remove("GIT_DIR")
        .env_remove("GIT_INDEX_FILE");
    if let Some(ssh) = ssh {
        command.env("GIT_SSH_COMMAND", ssh);
    }
    let output = run(&mut command);
    assert!(
        output.status.success(),
        "git {args:?}: {}",
        text(&output.stderr)
    );
    text(&output.stdout)
}

/// HEAD, the status and every file: what a refusal must leave as it was.
fn state(repo: &Path) -> (String, String, Vec<(String, Vec<u8>)>) {
    let mut files = Vec::new();
    let mut dirs = vec![repo.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.ends_with(".git") {
                continue;
            }
            if path.is_dir() {
                dirs.push(path);
            } else {
                let name = path.strip_prefix(repo).unwrap().display().to_string();
                files.push((name, fs::read(&path).unwrap()));
            }
        }
    }
    files.sort();
    (
        git(repo, &["rev-parse", "HEAD"]),
        git(repo, &["status", "--porcelain"]),
        files,
    )
}

#[test]
fn a_build_without_platform_files_is_refused() {
    let repo = platform_repository();
    let before = state(repo.path());
    let dir = tempfile::tempdir().unwrap();
    let blueprint = dir.path().join("no-platform.toml");
    let mut document: toml::Table = fs::read_to_string(&valid_blueprints()[0])
        .unwrap()
        .parse()
        .unwrap();
    document.remove("platform");
    fs::write(&blueprint, toml::to_string(&document).unwrap()).unwrap();
    let output = run(waddlec()
        .args(["platform", "publish"])
        .arg(&blueprint)
        .arg("--repo")
        .arg(repo.path()));
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("has no platform/ files, so there is nothing to publish"),
        "{stderr}"
    );
    assert_eq!(state(repo.path()), before);
}

#[test]
fn a_repository_with_local_changes_is_refused_before_anything_is_written() {
    let repo = platform_repository();
    fs::write(repo.path().join("LICENSE"), "MIT, edited by hand\n").unwrap();
    fs::write(repo.path().join("notes.md"), "work in progress\n").unwrap();
    let before = state(repo.path());
    let output = run(waddlec()
        .args(["platform", "publish"])
        .arg(&valid_blueprints()[0])
        .arg("--repo")
        .arg(repo.path())
        .args(["--format", "json"]));
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(6), "{stderr}");
    assert!(stderr.contains("has local changes"), "{stderr}");
    assert!(stderr.contains(" M LICENSE"), "{stderr}");
    assert!(stderr.contains("?? notes.md"), "{stderr}");
    assert!(stderr.contains("commit or stash them"), "{stderr}");
    assert_eq!(text(&output.stdout), "", "no report on a refusal");
    assert_eq!(state(repo.path()), before);
}

#[test]
fn a_directory_that_is_not_a_repository_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let output = run(waddlec()
        .args(["platform", "publish"])
        .arg(&valid_blueprints()[0])
        .arg("--repo")
        .arg(dir.path()));
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("is not a git work tree"), "{stderr}");
    assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn the_cli_commits_the_build_s_platform_tree_once() {
    let repo = platform_repository();
    let publish_cli = || {
        run(waddlec()
            .args(["platform", "publish"])
            .arg(&valid_blueprints()[0])
            .arg("--repo")
            .arg(repo.path())
            .args(["--format", "json"]))
    };
    let output = publish_cli();
    assert!(output.status.success(), "{}", text(&output.stderr));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert!(report["commit"].is_string(), "{report}");
    // The repository now holds exactly the review tree's platform/.
    let (_guard, out) = crate::support::build(&valid_blueprints()[0]);
    for (path, (bytes, _)) in crate::support::tree(&out.join("platform")) {
        assert_eq!(fs::read(repo.path().join(&path)).unwrap(), bytes, "{path}");
    }
    assert!(
        repo.path().join("LICENSE").is_file(),
        "the operator's files stay"
    );
    assert_eq!(git(repo.path(), &["rev-list", "--count", "HEAD"]), "2\n");
    // Nothing changed: no commit.
    let output = publish_cli();
    assert!(output.status.success(), "{}", text(&output.stderr));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["up_to_date"], true, "{report}");
    assert_eq!(git(repo.path(), &["rev-list", "--count", "HEAD"]), "2\n");
}

/// The bundled blueprint's platform files.
fn platform_tree() -> Vec<(String, Vec<u8>)> {
    platform_files(&crate::support::compiled(&valid_blueprints()[0]).artifacts)
}

#[test]
fn a_later_build_s_changes_become_one_commit() {
    let repo = platform_repository();
    let files = platform_tree();
    assert!(
        files.iter().all(|(p, _)| !p.starts_with("platform/")),
        "prefix stripped"
    );
    assert!(files.iter().any(|(p, _)| p == "apps/spicedb/postgres.yaml"));
    let first = publish(repo.path(), &files, "publish").unwrap();
    assert_eq!(
        first.commit.as_deref(),
        Some(git(repo.path(), &["rev-parse", "HEAD"]).trim())
    );
    assert!(publish(repo.path(), &files, "publish")
        .unwrap()
        .is_up_to_date());

    // A component's file dropped, another changed: exactly that, committed.
    let mut next: Vec<(String, Vec<u8>)> = files
        .into_iter()
        .filter(|(p, _)| p != "apps/spicedb/network-policy.yaml")
        .collect();
    for (path, contents) in &mut next {
        if path == "README.md" {
            contents.extend_from_slice(b"\nEdited.\n");
        }
    }
    let published = publish(repo.path(), &next, "publish").unwrap();
    assert!(published.commit.is_some());
    assert_eq!(
        git(repo.path(), &["show", "--name-status", "--format=", "HEAD"]),
        "M\tREADME.md\nD\tapps/spicedb/network-policy.yaml\n"
    );
    assert!(repo.path().join("LICENSE").is_file());
    assert_eq!(git(repo.path(), &["status", "--porcelain"]), "");
}

/// `--push` as an operator runs it: git over their own ssh (here the lab's
/// ssh config, through `GIT_SSH_COMMAND`) to a bare repository a real sshd
/// serves. The commit reaches the remote and the report says what went;
/// once someone else pushed, the publish is refused before anything is
/// written, until the operator fetched and rebased.
#[test]
fn push_reaches_the_remote_over_ssh_and_refuses_one_that_moved() {
    let host = SshHost::start();
    let ssh_command = format!("ssh -F {}", host.config.display());
    let ssh = Some(ssh_command.as_str());
    let remote = tempfile::tempdir().unwrap();
    git(
        remote.path(),
        &["init", "--quiet", "--bare", "--initial-branch=main"],
    );
    let url = format!("waddle-host:{}", remote.path().display());
    let remote_main = || {
        git(remote.path(), &["rev-parse", "main"])
            .trim()
            .to_string()
    };
    let repo = platform_repository();
    git(repo.path(), &["remote", "add", "origin", &url]);
    git_with(
        repo.path(),
        &["push", "--quiet", "-u", "origin", "main"],
        ssh,
    );
    let before = remote_main();
    let publish_push = |format: &str| {
        run(waddlec()
            .args(["platform", "publish"])
            .arg(&valid_blueprints()[0])
            .arg("--repo")
            .arg(repo.path())
            .args(["--push", "--format", format])
            .env("GIT_SSH_COMMAND", &ssh_command))
    };

    let output = publish_push("json");
    assert!(output.status.success(), "{}", text(&output.stderr));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let commit = report["commit"].as_str().unwrap().to_string();
    assert_eq!(remote_main(), commit, "the remote has the commit");
    assert_eq!(report["pushed"]["remote"], "origin", "{report}");
    assert_eq!(report["pushed"]["remote_ref"], "refs/heads/main");
    assert_eq!(report["pushed"]["from"], before.as_str());
    assert_eq!(report["pushed"]["to"], commit.as_str());
    assert_eq!(report["pushed"]["commits"][0]["commit"], commit.as_str());

    // Someone else pushes a hand edit of a published file.
    let other = tempfile::tempdir().unwrap();
    git_with(other.path(), &["clone", "--quiet", &url, "."], ssh);
    git(other.path(), &["config", "user.name", "Someone Else"]);
    git(other.path(), &["config", "user.email", "else@example.test"]);
    fs::write(other.path().join("README.md"), "edited by hand\n").unwrap();
    git(other.path(), &["commit", "--quiet", "-am", "edit by hand"]);
    git_with(other.path(), &["push", "--quiet"], ssh);
    let moved = remote_main();

    let before = state(repo.path());
    let output = publish_push("text");
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(6), "{stderr}");
    assert!(
        stderr.contains("`origin` moved since your last fetch"),
        "{stderr}"
    );
    assert!(stderr.contains(&moved), "{stderr}");
    assert!(stderr.contains("pull --rebase"), "{stderr}");
    assert_eq!(state(repo.path()), before, "nothing written");
    assert_eq!(remote_main(), moved, "nothing pushed");

    // Fetched and rebased: the publish puts the file back and pushes that.
    git_with(repo.path(), &["pull", "--quiet", "--rebase"], ssh);
    let output = publish_push("text");
    let stderr = text(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let head = git(repo.path(), &["rev-parse", "HEAD"]).trim().to_string();
    assert_eq!(remote_main(), head);
    assert_eq!(
        git(repo.path(), &["show", "--name-status", "--format=", "HEAD"]),
        "M\tREADME.md\n"
    );
    assert!(
        stderr.contains(&format!(
            "pushed 1 commit(s) to origin refs/heads/main: {moved} -> {head}"
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("  pushed   {head} Publish the platform tree")),
        "{stderr}"
    );
}

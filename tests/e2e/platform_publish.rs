//! `waddlec platform publish`: the GitOps tree committed into a scratch
//! platform repository. The CLI's refusals run the real binary on the
//! bundled blueprint; the happy path runs the library on a real build with
//! stand-in `platform/` artifacts added, since the platform renderer is not
//! merged yet. Once it is, the bundled blueprint builds `platform/` files:
//! `a_build_without_platform_files_is_refused` then needs a blueprint
//! without a GitOps tree, and the CLI's happy path gets its own test.

use std::fs;
use std::path::Path;
use std::process::Command;

use waddlec::artifact::Artifact;
use waddlec::publish::{platform_files, publish};

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
    let output = run(Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(args)
        .env_remove("GIT_DIR")
        .env_remove("GIT_INDEX_FILE"));
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
    let output = run(waddlec()
        .args(["platform", "publish"])
        .arg(&valid_blueprints()[0])
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

/// The bundled blueprint's build with the GitOps tree the platform renderer
/// will add under `platform/`.
fn build_with_platform_tree(extra: &[(&str, &str)]) -> Vec<Artifact> {
    let blueprint = &valid_blueprints()[0];
    let source = waddlec::blueprint::SourceFile {
        name: blueprint.display().to_string(),
        text: fs::read_to_string(blueprint).unwrap(),
    };
    let today = waddlec::blueprint::Date {
        year: 2000,
        month: 1,
        day: 1,
    };
    let mut artifacts = waddlec::compile(&source, today).unwrap().artifacts;
    for (path, text) in [
        ("platform/README.md", "# waddle platform\n"),
        (
            "platform/clusters/waddle-cluster/cert-manager.yaml",
            "kind: Kustomization\n",
        ),
        (
            "platform/infrastructure/cert-manager/helmrelease.yaml",
            "kind: HelmRelease\n",
        ),
    ]
    .iter()
    .chain(extra)
    {
        artifacts.push(Artifact::file(*path, "platform", text.to_string()));
    }
    artifacts
}

#[test]
fn publishes_a_build_with_a_platform_tree_through_the_library() {
    let repo = platform_repository();
    let spicedb = [(
        "platform/apps/spicedb/helmrelease.yaml",
        "kind: HelmRelease\n",
    )];
    let files = platform_files(&build_with_platform_tree(&spicedb));
    assert_eq!(
        files.len(),
        4,
        "only the platform/ artifacts, prefix stripped"
    );

    let first = publish(repo.path(), &files, "publish").unwrap();
    assert_eq!(git(repo.path(), &["rev-list", "--count", "HEAD"]), "2\n");
    assert_eq!(
        first.commit.as_deref(),
        Some(git(repo.path(), &["rev-parse", "HEAD"]).trim())
    );
    assert_eq!(
        git(repo.path(), &["ls-tree", "-r", "--name-only", "HEAD"]),
        ".github/workflows/lint.yaml\nLICENSE\nREADME.md\napps/spicedb/helmrelease.yaml\n\
         clusters/waddle-cluster/cert-manager.yaml\ninfrastructure/cert-manager/helmrelease.yaml\n"
    );
    assert_eq!(
        fs::read_to_string(repo.path().join("README.md")).unwrap(),
        "# waddle platform\n"
    );

    let again = publish(repo.path(), &files, "publish").unwrap();
    assert!(again.is_up_to_date());
    assert_eq!(git(repo.path(), &["rev-list", "--count", "HEAD"]), "2\n");

    // SpiceDB dropped from the blueprint; cert-manager's release changed.
    let mut next = platform_files(&build_with_platform_tree(&[(
        "platform/apps/README.md",
        "apps\n",
    )]));
    for (path, contents) in &mut next {
        if path == "infrastructure/cert-manager/helmrelease.yaml" {
            *contents = b"kind: HelmRelease\nversion: 2\n".to_vec();
        }
    }
    let published = publish(repo.path(), &next, "publish").unwrap();
    assert!(published.commit.is_some());
    assert_eq!(
        git(repo.path(), &["show", "--name-status", "--format=", "HEAD"]),
        "A\tapps/README.md\nD\tapps/spicedb/helmrelease.yaml\n\
         M\tinfrastructure/cert-manager/helmrelease.yaml\n"
    );
    assert!(repo.path().join("LICENSE").is_file());
    assert_eq!(git(repo.path(), &["status", "--porcelain"]), "");
}

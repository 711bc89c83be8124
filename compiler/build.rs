//! Build script: the version `waddlec --version` prints, with the git commit
//! the binary was built from when there is one (`0.1.0 (aa99600)`), else the
//! package version alone (a build from a source tarball, or without git).
//! Only `--version` shows it: rendered artifacts never contain it, so
//! rebuilding at another commit changes no output.

use std::path::Path;
use std::process::Command;

fn main() {
    let version = env!("CARGO_PKG_VERSION");
    // (Only if git tracks this file: a tarball unpacked inside some other
    // repository must not take that repository's commit.)
    let tracked = git(&["ls-files", "--error-unmatch", "build.rs"]).is_some();
    let commit = tracked
        .then(|| git(&["rev-parse", "--short", "HEAD"]))
        .flatten();
    let long = match commit {
        Some(commit) => {
            // Rebuild when HEAD moves: a checkout or a commit.
            for path in ["HEAD", "packed-refs"] {
                rerun_if_changed(path);
            }
            if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
                rerun_if_changed(&branch);
            }
            format!("{version} ({commit})")
        }
        None => version.to_string(),
    };
    println!("cargo:rustc-env=WADDLEC_LONG_VERSION={long}");
    println!("cargo:rerun-if-changed=build.rs");
}

/// `git ARGS` run in the package directory; its trimmed output, if it ran
/// and succeeded.
fn git(args: &[&str]) -> Option<String> {
    let output = Command::new("git")
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()?;
    let text = String::from_utf8(output.stdout).ok()?;
    (output.status.success() && !text.trim().is_empty()).then(|| text.trim().to_string())
}

/// Watches a file of the git directory (`HEAD`, `refs/heads/x`); in a
/// worktree, `--git-path` finds the shared refs.
fn rerun_if_changed(git_path: &str) {
    if let Some(path) = git(&[
        "rev-parse",
        "--path-format=absolute",
        "--git-path",
        git_path,
    ]) {
        if Path::new(&path).exists() {
            println!("cargo:rerun-if-changed={path}");
        }
    }
}

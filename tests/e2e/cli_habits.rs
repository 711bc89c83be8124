//! The habits of command-line tools: the blueprint found from any directory
//! (going up, `-C`, `$WADDLEC_BLUEPRINT`), `--version` naming the commit,
//! `-v` about waddlec rather than its libraries, and shell completions and
//! manual pages generated from the clap definitions.

use std::fs;
use std::process::Command;

use crate::support::{repo_root, require, run, text, waddlec};

/// A project in a temp dir: the lab blueprint as `blueprints/waddle.toml`,
/// and an empty `a/b/` below the root.
fn project() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir_all(dir.path().join("blueprints")).unwrap();
    fs::create_dir_all(dir.path().join("a/b")).unwrap();
    fs::copy(
        repo_root().join("blueprints/examples/lab.toml"),
        dir.path().join("blueprints/waddle.toml"),
    )
    .unwrap();
    dir
}

#[test]
fn build_from_a_subdirectory_writes_to_the_project_root() {
    let project = project();
    let output = run(waddlec()
        .arg("build")
        .current_dir(project.path().join("a/b")));
    let stderr = text(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("to ../../out"), "{stderr}");
    assert!(project.path().join("out/manifest.json").is_file());
    assert!(!project.path().join("a/b/out").exists());
    // -C: as if started there; the tree just written is current.
    let output = run(waddlec()
        .args(["build", "--check", "-C"])
        .arg(project.path().join("a"))
        .current_dir("/"));
    assert!(output.status.success(), "{}", text(&output.stderr));
    // A path given on the command line is taken from where waddlec runs.
    let output = run(waddlec()
        .args(["build", "--out", "here"])
        .current_dir(project.path().join("a/b")));
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(project.path().join("a/b/here/manifest.json").is_file());
}

#[test]
fn outside_a_project_the_error_says_where_it_looked() {
    let outside = tempfile::tempdir().unwrap();
    let output = run(waddlec()
        .arg("validate")
        .env_remove("WADDLEC_BLUEPRINT")
        .current_dir(outside.path()));
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(74), "{stderr}");
    assert!(stderr.contains("blueprints/waddle.toml"), "{stderr}");
    assert!(
        stderr.contains(&outside.path().display().to_string()),
        "{stderr}"
    );
    assert!(stderr.contains("WADDLEC_BLUEPRINT"), "{stderr}");
    // Commands that read no blueprint run anywhere.
    let output = run(waddlec().arg("explain").current_dir(outside.path()));
    assert!(output.status.success(), "{}", text(&output.stderr));
    // The environment names the blueprint, relative to where waddlec runs.
    let project = project();
    let output = run(waddlec()
        .arg("validate")
        .env("WADDLEC_BLUEPRINT", "blueprints/waddle.toml")
        .current_dir(project.path()));
    assert!(output.status.success(), "{}", text(&output.stderr));
}

#[test]
fn version_names_the_commit_built_from() {
    let output = run(waddlec().arg("--version"));
    let stdout = text(&output.stdout);
    assert!(output.status.success());
    let version = concat!("waddlec ", env!("CARGO_PKG_VERSION"));
    let commit = Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(repo_root())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| text(&o.stdout).trim().to_string());
    match commit {
        Some(commit) => assert_eq!(stdout.trim(), format!("{version} ({commit})")),
        None => assert_eq!(stdout.trim(), version),
    }
}

#[test]
fn most_verbose_logging_is_waddlecs_own() {
    let blueprint = repo_root().join("blueprints/waddle.toml");
    let log = |args: &[&str], rust_log: Option<&str>| {
        let dir = tempfile::tempdir().unwrap();
        let mut command = waddlec();
        command.args(args).arg("build").arg(&blueprint);
        command.arg("--out").arg(dir.path().join("out"));
        match rust_log {
            Some(filter) => command.env("RUST_LOG", filter),
            None => command.env_remove("RUST_LOG"),
        };
        let output = run(&mut command);
        assert!(output.status.success(), "{}", text(&output.stderr));
        text(&output.stderr)
    };
    // What the template engine says when asked to, which -vvv must not show.
    let handlebars = log(&[], Some("handlebars=trace"));
    assert!(handlebars.lines().count() > 10, "{handlebars}");
    let ours = log(&["-vvv"], None);
    assert!(ours.contains("parsing"), "{ours}");
    let leaked: Vec<&str> = ours
        .lines()
        .filter(|line| handlebars.lines().any(|h| h == *line))
        .collect();
    assert!(leaked.is_empty(), "library logs at -vvv: {leaked:#?}");
}

#[test]
fn completions_for_every_shell_and_bash_parses_them() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let output = run(waddlec().args(["completions", shell]));
        let script = text(&output.stdout);
        assert!(output.status.success(), "{shell}: {}", text(&output.stderr));
        assert!(
            script.contains("waddlec") && script.contains("kubeconfig"),
            "{shell}"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("waddlec.bash");
    fs::write(&script, run(waddlec().args(["completions", "bash"])).stdout).unwrap();
    let check = run(Command::new("bash").arg("-n").arg(&script));
    assert!(check.status.success(), "{}", text(&check.stderr));
}

#[test]
fn manual_pages_are_clean_roff_naming_every_subcommand() {
    require("groff");
    let output = run(waddlec().arg("man"));
    let page = text(&output.stdout);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(page.contains(".TH waddlec 1"), "{page}");
    for sub in [
        "build", "validate", "deploy", "cluster", "platform", "image", "man",
    ] {
        assert!(
            page.contains(&format!("waddlec\\-{sub}(1)")),
            "{sub}:\n{page}"
        );
    }
    assert_groff_clean(&page);
    let dir = tempfile::tempdir().unwrap();
    let output = run(waddlec().args(["man", "--out-dir"]).arg(dir.path()));
    assert!(output.status.success(), "{}", text(&output.stderr));
    for name in ["waddlec.1", "waddlec-build.1", "waddlec-secrets-init.1"] {
        let page = fs::read_to_string(dir.path().join(name)).unwrap();
        assert_groff_clean(&page);
    }
}

/// `groff -man` formats the page with every warning on, and warns nothing.
fn assert_groff_clean(page: &str) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("page.1");
    fs::write(&path, page).unwrap();
    let output = run(Command::new("groff")
        .args(["-man", "-Tutf8", "-ww", "-z"])
        .arg(&path));
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert_eq!(text(&output.stderr), "", "{}", path.display());
}

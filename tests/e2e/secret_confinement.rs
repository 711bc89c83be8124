//! Secret references reach only what the operator keeps for the platform
//! (E0130): what the blueprint's text shows is refused where it is written,
//! and a `file:` reference whose file really lies elsewhere (a symbolic
//! link out of the project) is refused when it is read, unless the operator
//! lists that directory in `WADDLEC_SECRET_DIRS`.

use std::fs;
use std::os::unix::fs::symlink;

use crate::support::talos_lab::{SecretLab, GITHUB_SECRET, GITHUB_SECRET_ENV};
use crate::support::{repo_root, run, text, valid_blueprints, waddlec};

#[test]
fn hostile_references_are_refused_where_they_are_written() {
    let dir = tempfile::tempdir().unwrap();
    let base = fs::read_to_string(repo_root().join("blueprints/waddle.toml")).unwrap();
    let token = "api_token = \"op://waddle-platform/proxmox-api-token/credential\"";
    let bundle = "secrets = \"file:../secrets/waddle-cluster.yaml\"";
    let cases = [
        (
            "host.api_token",
            token,
            "api_token = \"file:/home/x/.ssh/id_ed25519\"",
        ),
        (
            "host.api_token",
            token,
            "api_token = \"file:../../../etc/passwd\"",
        ),
        ("host.api_token", token, "api_token = \"env:HOME\""),
        (
            "talos.secrets",
            bundle,
            "secrets = \"file:~/.ssh/id_ed25519\"",
        ),
    ];
    for (key, from, to) in cases {
        let file = dir.path().join("blueprint.toml");
        fs::write(&file, base.replacen(from, to, 1)).unwrap();
        let line = base.lines().position(|l| l == from).unwrap() + 1;
        let output = run(waddlec().args(["validate", "--format", "json"]).arg(&file));
        assert_eq!(output.status.code(), Some(1), "{to}");
        let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        let found = json["diagnostics"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["code"] == "E0130" && d["line"] == line && d["path"] == key);
        assert!(found, "{to}: {}", json["diagnostics"]);
    }
}

#[test]
fn a_link_out_of_the_project_is_refused_unless_the_operator_allows_its_target() {
    let lab = SecretLab::new(&valid_blueprints()[0]);
    let elsewhere = tempfile::tempdir().unwrap();
    // `secrets/` beside the blueprint is allowed, but it leads elsewhere.
    symlink(elsewhere.path(), lab.path("secrets")).unwrap();
    let waddlec_in_lab = || {
        let mut command = waddlec();
        command
            .current_dir(lab.path("."))
            .env(GITHUB_SECRET_ENV, GITHUB_SECRET)
            .env("WADDLEC_CACHE_DIR", lab.path("cache"));
        command
    };
    for args in [
        &["secrets", "init", "blueprint.toml"][..],
        &["build", "blueprint.toml", "--with-secrets", "--no-images"][..],
    ] {
        let output = run(waddlec_in_lab().args(args));
        let stderr = text(&output.stderr);
        assert_eq!(output.status.code(), Some(4), "{args:?}: {stderr}");
        for needle in [
            "`talos.secrets`",
            "file:secrets/cluster.yaml",
            "WADDLEC_SECRET_DIRS",
            "E0130",
        ] {
            assert!(
                stderr.contains(needle),
                "{args:?}: `{needle}` in:\n{stderr}"
            );
        }
    }
    assert_eq!(
        fs::read_dir(elsewhere.path()).unwrap().count(),
        0,
        "nothing written there"
    );
    assert!(!lab.path("dist").exists(), "nothing built");
    // The operator allows the directory the link leads to.
    let output = run(waddlec_in_lab()
        .env("WADDLEC_SECRET_DIRS", elsewhere.path())
        .args(["secrets", "init", "blueprint.toml"]));
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(elsewhere.path().join("cluster.yaml").is_file());
}

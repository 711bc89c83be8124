//! Secret references reach only what the operator keeps for the platform
//! (E0130): what the blueprint's text shows is refused where it is written,
//! and a `file:` reference whose file really lies elsewhere (a symbolic
//! link out of the project) is refused when it is read, unless the operator
//! lists that directory in `WADDLEC_SECRET_DIRS`. A bundle kept in
//! 1Password or encrypted with age shows no value either: not in any
//! output at any verbosity, not in an error, not on `op`'s command line.

use std::fs;
use std::os::unix::fs::symlink;

use crate::support::op_stand_in::OpStandIn;
use crate::support::talos_lab::{secret_values, SecretLab, GITHUB_SECRET, GITHUB_SECRET_ENV};
use crate::support::{repo_root, require, run, text, valid_blueprints, waddlec};

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

/// What `secrets init`, builds at every verbosity and a refused build (a
/// wrong age identity) print, for a bundle in 1Password and one in age.
#[test]
fn no_value_of_a_bundle_in_1password_or_age_reaches_any_output() {
    require("python3");
    require("age-keygen");
    let op = OpStandIn::with_vault("infra");
    let in_op = SecretLab::new(&valid_blueprints()[0]);
    in_op.keep_talos_secrets("op://infra/talos/cluster.yaml", None);

    let in_age = SecretLab::new(&valid_blueprints()[0]);
    let identity = |name: &str| {
        let path = in_age.path(name);
        assert!(run(std::process::Command::new("age-keygen")
            .arg("-o")
            .arg(&path))
        .status
        .success());
        fs::read_to_string(path).unwrap()
    };
    let (mine, other) = (identity("mine.txt"), identity("other.txt"));
    let recipient = mine
        .lines()
        .find_map(|l| l.strip_prefix("# public key: "))
        .unwrap()
        .to_string();
    let mut age = toml::Table::new();
    age.insert(
        "recipients".into(),
        vec![toml::Value::from(recipient)].into(),
    );
    age.insert("identity".into(), "env:WADDLE_TEST_AGE".into());
    in_age.keep_talos_secrets("age:cluster.yaml.age", Some(age));

    let mut output = String::new();
    let mut record = |out: std::process::Output| {
        output.push_str(&text(&out.stdout));
        output.push_str(&text(&out.stderr));
        out.status.code()
    };
    let age_env = [("WADDLE_TEST_AGE", mine.as_str())];
    let init = ["secrets", "init", "blueprint.toml", "-vvv"];
    assert_eq!(record(in_op.waddlec_with(&init, &op.env())), Some(0));
    assert_eq!(record(in_age.waddlec_with(&init, &age_env)), Some(0));
    for verbosity in ["-v", "-vvv"] {
        for format in ["text", "json"] {
            let args = [
                "build",
                "blueprint.toml",
                "--with-secrets",
                "--no-images",
                "--out",
                "dist",
                "--format",
                format,
                verbosity,
            ];
            assert_eq!(record(in_op.waddlec_with(&args, &op.env())), Some(0));
            assert_eq!(record(in_age.waddlec_with(&args, &age_env)), Some(0));
        }
    }
    let refused = [
        "build",
        "blueprint.toml",
        "--with-secrets",
        "--no-images",
        "-vvv",
    ];
    let wrong = [("WADDLE_TEST_AGE", other.as_str())];
    assert_eq!(record(in_age.waddlec_with(&refused, &wrong)), Some(4));
    // A second init, refused, in both.
    assert_eq!(record(in_op.waddlec_with(&init, &op.env())), Some(4));
    assert_eq!(record(in_age.waddlec_with(&init, &age_env)), Some(4));

    let stored = |item: &str| op.document("infra", item).unwrap().1;
    let from_op = [
        stored("talos"),
        stored("talos-admin"),
        stored("talos-ssh-host-keys"),
    ];
    let decrypted = |name: &str| {
        let out = run(std::process::Command::new("age")
            .args(["-d", "-i"])
            .arg(in_age.path("mine.txt"))
            .arg(in_age.path(name)));
        text(&out.stdout)
    };
    let from_age = [
        decrypted("cluster.yaml.age"),
        decrypted("cluster.admin.yaml.age"),
        decrypted("cluster.ssh-host-keys.yaml.age"),
    ];
    let texts: Vec<&str> = from_op
        .iter()
        .chain(&from_age)
        .map(String::as_str)
        .collect();
    let mut secrets = secret_values(&texts);
    assert!(secrets.len() > 60, "{} values", secrets.len());
    for key in [&mine, &other] {
        secrets.extend(
            key.lines()
                .filter(|l| l.starts_with("AGE-SECRET-KEY-"))
                .map(String::from),
        );
    }
    let calls = op.calls();
    assert!(
        calls.contains("argv [\"document\", \"create\", \"-\""),
        "{calls}"
    );
    for secret in &secrets {
        assert!(
            !output.contains(secret.as_str()),
            "a secret value reached the output"
        );
        assert!(
            !calls.contains(secret.as_str()),
            "a secret value reached op's command line"
        );
    }
    assert!(
        output.contains("reading the Talos secrets bundle"),
        "-vvv says something"
    );
}

/// The client configs `kubeconfig` and `talosconfig` write or merge into
/// the operator's files carry keys (the admin's, a fresh client key, the
/// operator's other clusters'): none of them reaches any output, at any
/// verbosity, nor does a key of a file that is refused.
#[test]
fn no_key_of_a_client_config_reaches_any_output() {
    let lab = SecretLab::new(&valid_blueprints()[0]);
    lab.init();
    let kube = lab.path("home/kube");
    let talos = lab.path("home/talos");
    fs::create_dir_all(lab.path("home")).unwrap();
    let their_token = "dGhlaXItb3duLWNsdXN0ZXItdG9rZW4tdmFsdWU=";
    fs::write(
        &kube,
        format!("users:\n- name: theirs\n  user: {{token: {their_token}}}\n"),
    )
    .unwrap();
    let env = [
        ("KUBECONFIG", kube.to_str().unwrap()),
        ("TALOSCONFIG", talos.to_str().unwrap()),
    ];
    let mut output = String::new();
    for verbosity in ["-v", "-vvv"] {
        for args in [
            vec!["kubeconfig", "blueprint.toml", "--merge", verbosity],
            vec!["kubeconfig", "blueprint.toml", verbosity],
            vec!["talosconfig", "blueprint.toml", "--merge", verbosity],
            vec!["talosconfig", "blueprint.toml", verbosity],
        ] {
            let out = lab.waddlec_with(&args, &env);
            assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
            output.push_str(&text(&out.stdout));
            output.push_str(&text(&out.stderr));
        }
    }
    // Refused: a broken file full of keys.
    let broken = lab.path("home/broken");
    fs::write(&broken, format!("clusters: [{their_token}\n")).unwrap();
    let out = lab.waddlec_with(
        &["kubeconfig", "blueprint.toml", "--merge", "-vvv"],
        &[("KUBECONFIG", broken.to_str().unwrap())],
    );
    assert_eq!(out.status.code(), Some(74), "{}", text(&out.stderr));
    output.push_str(&text(&out.stdout));
    output.push_str(&text(&out.stderr));

    let read = |path: &std::path::Path| fs::read_to_string(path).unwrap();
    let merged_kube: serde_json::Value = serde_saphyr::from_str(&read(&kube)).unwrap();
    let own_kube: serde_json::Value =
        serde_saphyr::from_str(&read(&lab.path("secrets/kubeconfig"))).unwrap();
    let client_keys: Vec<String> = [&merged_kube, &own_kube]
        .iter()
        .flat_map(|config| config["users"].as_array().unwrap().clone())
        .filter_map(|user| user["user"]["client-key-data"].as_str().map(String::from))
        .map(|key| format!("client-key-data: {key}\n"))
        .collect();
    assert_eq!(client_keys.len(), 2);
    let mut texts: Vec<String> = vec![
        read(&lab.path("secrets/cluster.yaml")),
        read(&lab.path("secrets/cluster.admin.yaml")),
    ];
    texts.extend(client_keys);
    let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
    let mut secrets = secret_values(&texts);
    secrets.push(their_token.to_string());
    assert!(secrets.len() > 60, "{} values", secrets.len());
    for secret in &secrets {
        assert!(
            !output.contains(secret.as_str()),
            "a secret value reached the output"
        );
    }
    assert!(output.contains("merged into"), "{output}");
}

//! The build as a whole: determinism, the committed review tree, `--check`,
//! atomic replacement, the manifest, the schema, exit codes.

use std::fs;

use crate::support::{
    build, cluster_blueprints, host_only_blueprints, repo_root, run, text, tree, valid_blueprints,
    waddlec,
};

#[test]
fn builds_are_byte_identical_whatever_the_cwd_umask_locale_or_out_dir() {
    for blueprint in valid_blueprints() {
        let (_a, first) = build(&blueprint);
        let other = tempfile::tempdir().unwrap();
        let out = other.path().join("elsewhere/deeper");
        let output = run(waddlec()
            .current_dir(other.path())
            .env("LC_ALL", "tr_TR.UTF-8")
            .env("LANG", "tr_TR.UTF-8")
            .env("TZ", "Pacific/Kiritimati")
            .arg("build")
            .arg(&blueprint)
            .arg("--out")
            .arg(&out));
        assert!(output.status.success(), "{}", text(&output.stderr));
        // A restrictive umask must not change modes either.
        let third = other.path().join("umask");
        let output = run(std::process::Command::new("sh")
            .arg("-c")
            .arg("umask 077 && exec \"$0\" build \"$1\" --out \"$2\"")
            .arg(env!("CARGO_BIN_EXE_waddlec"))
            .arg(&blueprint)
            .arg(&third));
        assert!(output.status.success(), "{}", text(&output.stderr));
        let reference = tree(&first);
        assert!(reference.contains_key("manifest.json"));
        assert_eq!(
            reference,
            tree(&out),
            "{}: output differs by cwd/locale/out dir",
            blueprint.display()
        );
        assert_eq!(
            reference,
            tree(&third),
            "{}: output differs under umask 077",
            blueprint.display()
        );
    }
}

#[test]
fn manifest_lists_every_artifact_with_its_hash_and_size() {
    use sha2::Digest;
    let (_guard, out) = build(&valid_blueprints()[0]);
    let manifest: serde_json::Value =
        serde_json::from_slice(&fs::read(out.join("manifest.json")).unwrap()).unwrap();
    let entries = manifest["artifacts"].as_array().unwrap();
    let files = tree(&out);
    assert_eq!(
        entries.len(),
        files.len() - 1,
        "every file but the manifest is listed"
    );
    for entry in entries {
        let path = entry["path"].as_str().unwrap();
        let (bytes, _) = &files[path];
        assert_eq!(
            entry["bytes"].as_u64().unwrap(),
            bytes.len() as u64,
            "{path}"
        );
        assert_eq!(
            entry["sha256"].as_str().unwrap(),
            hex::encode(sha2::Sha256::digest(bytes)),
            "{path}"
        );
        assert!(!entry["kind"].as_str().unwrap().is_empty());
    }
    let paths: Vec<_> = entries
        .iter()
        .map(|e| e["path"].as_str().unwrap())
        .collect();
    let mut sorted = paths.clone();
    sorted.sort();
    assert_eq!(paths, sorted, "manifest is sorted by path");
    assert!(
        !text(&fs::read(out.join("manifest.json")).unwrap()).contains("/tmp"),
        "no absolute paths"
    );
}

#[test]
fn format_json_prints_the_manifest() {
    let dir = tempfile::tempdir().unwrap();
    let output = run(waddlec()
        .arg("build")
        .arg(&valid_blueprints()[0])
        .arg("--out")
        .arg(dir.path().join("o"))
        .args(["--format", "json"]));
    assert!(output.status.success());
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).expect("stdout is JSON");
    assert_eq!(json["ok"], true);
    assert!(json["manifest"]["artifacts"]
        .as_array()
        .is_some_and(|a| !a.is_empty()));
}

#[test]
fn committed_review_tree_is_up_to_date() {
    let output = run(waddlec()
        .current_dir(repo_root())
        .args(["build", "--check"]));
    assert!(
        output.status.success(),
        "out/ is stale; run `waddlec build`:\n{}",
        text(&output.stderr)
    );
}

#[test]
fn check_reports_a_stale_tree_with_a_diff() {
    let blueprint = &valid_blueprints()[0];
    let (_guard, out) = build(blueprint);
    let cfg = out.join("vms/haproxy/haproxy.cfg");
    let edited = text(&fs::read(&cfg).unwrap()).replace("timeout connect 5s", "timeout connect 9s");
    fs::write(&cfg, edited).unwrap();
    fs::write(out.join("stray.txt"), "x").unwrap();
    let output = run(waddlec()
        .arg("build")
        .arg(blueprint)
        .arg("--out")
        .arg(&out)
        .arg("--check"));
    assert_eq!(output.status.code(), Some(3));
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("-    timeout connect 9s") && stderr.contains("+    timeout connect 5s"),
        "{stderr}"
    );
    assert!(
        stderr.contains("not produced by this blueprint: stray.txt"),
        "{stderr}"
    );
    // --check never writes.
    assert!(text(&fs::read(&cfg).unwrap()).contains("9s"));
}

#[test]
fn an_invalid_blueprint_leaves_the_previous_tree_intact() {
    let (guard, out) = build(&valid_blueprints()[0]);
    let before = tree(&out);
    let broken = guard.path().join("broken.toml");
    let source = text(&fs::read(&valid_blueprints()[0]).unwrap()).replace("id = 101", "id = 100");
    fs::write(&broken, source).unwrap();
    let output = run(waddlec().arg("build").arg(&broken).arg("--out").arg(&out));
    assert_eq!(output.status.code(), Some(1), "{}", text(&output.stderr));
    assert_eq!(before, tree(&out));
    let leftovers: Vec<_> = fs::read_dir(guard.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(
        leftovers.iter().all(|n| !n.starts_with('.')),
        "no staging dirs left: {leftovers:?}"
    );
}

/// TOML → JSON as an editor's schema check sees it (dates as strings).
fn toml_to_json(value: toml::Value) -> serde_json::Value {
    match value {
        toml::Value::String(s) => s.into(),
        toml::Value::Integer(i) => i.into(),
        toml::Value::Float(f) => f.into(),
        toml::Value::Boolean(b) => b.into(),
        toml::Value::Datetime(d) => d.to_string().into(),
        toml::Value::Array(a) => a.into_iter().map(toml_to_json).collect(),
        toml::Value::Table(t) => t
            .into_iter()
            .map(|(k, v)| (k, toml_to_json(v)))
            .collect::<serde_json::Map<_, _>>()
            .into(),
    }
}

#[test]
fn committed_schema_is_current_and_accepts_the_shipped_blueprints() {
    let output = run(waddlec().arg("schema"));
    assert!(output.status.success());
    let committed = fs::read(repo_root().join("blueprints/blueprint.schema.json")).unwrap();
    assert_eq!(text(&output.stdout), text(&committed), "blueprints/blueprint.schema.json is stale: run `waddlec schema > blueprints/blueprint.schema.json`");
    let schema: serde_json::Value = serde_json::from_slice(&committed).unwrap();
    let validator = jsonschema::validator_for(&schema).expect("schema compiles");
    for blueprint in valid_blueprints()
        .into_iter()
        .chain(host_only_blueprints())
        .chain(cluster_blueprints())
    {
        let document: toml::Value = toml::from_str(&text(&fs::read(&blueprint).unwrap())).unwrap();
        let json = toml_to_json(document);
        let errors: Vec<String> = validator
            .iter_errors(&json)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        assert!(errors.is_empty(), "{}: {errors:#?}", blueprint.display());
    }
    // The schema is strict too: an unknown key is flagged by editors.
    let mut document: toml::Value =
        toml::from_str(&text(&fs::read(&valid_blueprints()[0]).unwrap())).unwrap();
    document["project"]
        .as_table_mut()
        .unwrap()
        .insert("domian".into(), "x".into());
    assert!(!validator.is_valid(&toml_to_json(document)));
}

/// `[versions]` pins what the blueprint uses: a host with Debian VMs and
/// Teleport builds without a Talos, Kubernetes, Cilium or platform pin, and
/// a pin a used component needs is refused naming that component.
#[test]
fn a_blueprint_pins_only_the_versions_its_components_use() {
    for blueprint in host_only_blueprints() {
        let (_guard, out) = build(&blueprint);
        let manifest = text(&fs::read(out.join("manifest.json")).unwrap());
        for absent in ["\"talos/", "\"cluster/", "\"platform/"] {
            assert!(!manifest.contains(absent), "{absent} in {manifest}");
        }
        let source = text(&fs::read(&blueprint).unwrap());
        let dir = tempfile::tempdir().unwrap();
        let unpinned = dir.path().join("unpinned.toml");
        fs::write(&unpinned, source.replace("teleport = \"18.2.1\"\n", "")).unwrap();
        let output = run(waddlec()
            .args(["validate", "--format", "json"])
            .arg(&unpinned));
        assert_eq!(output.status.code(), Some(1), "{}", text(&output.stderr));
        let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        assert_eq!(
            json["diagnostics"][0]["message"],
            "`versions.teleport` is missing: Teleport (`[teleport]`) needs it",
            "{json:#}"
        );
    }
}

#[test]
fn exit_codes_mean_one_thing_each() {
    let usage = run(waddlec().arg("build").arg("--no-such-flag"));
    assert_eq!(usage.status.code(), Some(2));
    let missing = run(waddlec().arg("validate").arg("/nonexistent/blueprint.toml"));
    assert_eq!(missing.status.code(), Some(74));
    assert!(text(&missing.stderr).contains("cannot read blueprint"));
    let explain = run(waddlec().args(["explain", "E0102"]));
    assert!(explain.status.success() && text(&explain.stdout).contains("duplicate-address"));
    assert_eq!(
        run(waddlec().args(["explain", "E9999"])).status.code(),
        Some(2)
    );
    let help = run(waddlec().arg("--help"));
    assert!(text(&help.stdout).contains("Exit codes:"));
}

#[test]
fn expired_temporary_rules_warn_and_fail_under_strict() {
    let blueprint = &valid_blueprints()[0];
    let later = |strict: bool| {
        let mut command = waddlec();
        command
            .env("WADDLEC_TODAY", "2099-01-01")
            .arg("validate")
            .arg(blueprint);
        if strict {
            command.arg("--strict");
        }
        run(&mut command)
    };
    let lenient = later(false);
    assert!(lenient.status.success());
    assert!(
        text(&lenient.stderr).contains("W0201"),
        "{}",
        text(&lenient.stderr)
    );
    assert_eq!(later(true).status.code(), Some(1));
}

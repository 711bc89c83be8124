//! The corpus of invalid blueprints in tests/blueprints/invalid/. Each file
//! starts with `# expect: CODE LINE FIELD`: validating it must exit 1 with a
//! diagnostic of that code at that line whose path or message names FIELD,
//! both as JSON and in the text a person reads.

use std::fs;

use crate::support::{repo_root, run, text, waddlec};

struct Expectation {
    code: String,
    line: u64,
    field: String,
}

fn expectation(source: &str) -> Option<Expectation> {
    let header = source.lines().next()?.strip_prefix("# expect: ")?;
    let mut parts = header.splitn(3, ' ');
    Some(Expectation {
        code: parts.next()?.to_string(),
        line: parts.next()?.parse().ok()?,
        field: parts.next()?.trim().to_string(),
    })
}

#[test]
fn every_invalid_blueprint_is_refused_at_the_right_place() {
    let dir = repo_root().join("tests/blueprints/invalid");
    let mut files: Vec<_> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 20,
        "the corpus has at least 20 blueprints, found {}",
        files.len()
    );
    let mut failures = Vec::new();
    for file in &files {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        let source = fs::read_to_string(file).unwrap();
        let expected = expectation(&source)
            .unwrap_or_else(|| panic!("{name}: first line must be `# expect: CODE LINE FIELD`"));
        let output = run(waddlec().args(["validate", "--format", "json"]).arg(file));
        if output.status.code() != Some(1) {
            failures.push(format!(
                "{name}: exit {:?}, expected 1",
                output.status.code()
            ));
            continue;
        }
        let json: serde_json::Value = serde_json::from_slice(&output.stdout)
            .unwrap_or_else(|e| panic!("{name}: stdout is not JSON: {e}"));
        let found = json["diagnostics"].as_array().unwrap().iter().any(|d| {
            let names_field = d["path"]
                .as_str()
                .is_some_and(|p| p.contains(&expected.field))
                || d["message"]
                    .as_str()
                    .is_some_and(|m| m.contains(&expected.field));
            d["code"] == expected.code.as_str() && d["line"] == expected.line && names_field
        });
        if !found {
            failures.push(format!(
                "{name}: expected {} at line {} naming `{}`, got {}",
                expected.code, expected.line, expected.field, json["diagnostics"]
            ));
            continue;
        }
        // The human report carries the same location.
        let human = run(waddlec().arg("validate").arg(file));
        let stderr = text(&human.stderr);
        let location = format!("{}:{}:", file.display(), expected.line);
        if !stderr.contains(&location) || !stderr.contains(&expected.code) {
            failures.push(format!(
                "{name}: text report lacks `{location}` or {}:\n{stderr}",
                expected.code
            ));
        }
        if stderr.contains("panicked") {
            failures.push(format!("{name}: panic"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn literal_secrets_never_reach_the_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let base = fs::read_to_string(repo_root().join("blueprints/waddle.toml")).unwrap();
    let secret = "s3cr3t-Token-Value-42";
    let cases = [
        base.replace(
            "op://waddle-platform/proxmox-api-token/credential",
            &format!("root@pam!deploy={secret}"),
        ),
        // A syntax error on a secret's line must not print it either.
        base.replace(
            "\"op://waddle-platform/proxmox-api-token/credential\"",
            &format!("\"{secret}"),
        ),
        // The secret on a context line just above a syntax error.
        base.replace(
            "op://waddle-platform/proxmox-api-token/credential",
            &format!("root@pam!x={secret}"),
        )
        .replace("disk_storage = \"vmdata\"", "disk_storage = \"vmdata"),
        // Inside an inline table whose line starts with another key.
        base.replace(
            "client_secret = \"op://waddle-platform/github-oauth/client-secret\"",
            &format!("bogus = {{ nope = 1, client_secret = \"{secret}\" }}"),
        ),
    ];
    for (i, case) in cases.iter().enumerate() {
        let file = dir.path().join(format!("secret-{i}.toml"));
        fs::write(&file, case).unwrap();
        for format in ["text", "json"] {
            let output = run(waddlec().args(["validate", "--format", format]).arg(&file));
            assert_eq!(output.status.code(), Some(1), "case {i}");
            let all = format!("{}{}", text(&output.stdout), text(&output.stderr));
            assert!(
                !all.contains(secret),
                "case {i} ({format}) leaked the secret:\n{all}"
            );
        }
    }
}

/// The rendered diagnostic is part of the product: pin a few exactly.
#[test]
fn rendered_diagnostics_are_stable() {
    for file in [
        "13-vm-claims-host-public-address.toml",
        "23-wildcard-without-dot.toml",
        "05-literal-secret.toml",
    ] {
        let output = run(waddlec()
            .current_dir(repo_root())
            .arg("validate")
            .arg(format!("tests/blueprints/invalid/{file}")));
        assert_eq!(output.status.code(), Some(1));
        insta::assert_snapshot!(file, text(&output.stderr));
    }
}

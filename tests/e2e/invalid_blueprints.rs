//! The corpus of invalid blueprints in tests/blueprints/invalid/. Each file
//! starts with `# expect: CODE LINE FIELD`: validating it must exit 1 with a
//! diagnostic of that code at that line whose path or message names FIELD,
//! both as JSON and in the text a person reads. A warning's blueprint
//! (`W…`) is validated with `--strict`, which makes it fatal.

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

/// `waddlec validate`, with `--strict` when the expected finding is a
/// warning (the only way a warning fails validation).
fn validate(expected_code: &str) -> std::process::Command {
    let mut command = waddlec();
    command.arg("validate");
    if expected_code.starts_with('W') {
        command.arg("--strict");
    }
    command
}

/// The corpus's blueprints, sorted.
fn corpus() -> Vec<std::path::PathBuf> {
    let dir = repo_root().join("tests/blueprints/invalid");
    let mut files: Vec<_> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    files
}

#[test]
fn every_invalid_blueprint_is_refused_at_the_right_place() {
    let files = corpus();
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
        let output = run(validate(&expected.code)
            .args(["--format", "json"])
            .arg(file));
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
        let human = run(validate(&expected.code).arg(file));
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

/// The rendered diagnostic is part of the product: every blueprint of the
/// corpus has its human report (miette, no colour) pinned exactly, so a
/// change of wording, location or help is reviewed as a snapshot diff.
#[test]
fn rendered_diagnostics_are_stable() {
    let files = corpus();
    for file in &files {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        let expected = expectation(&fs::read_to_string(file).unwrap())
            .unwrap_or_else(|| panic!("{name}: first line must be `# expect: CODE LINE FIELD`"));
        let output = run(validate(&expected.code)
            .current_dir(repo_root())
            .arg(format!("tests/blueprints/invalid/{name}")));
        assert_eq!(output.status.code(), Some(1), "{name}");
        let stderr = text(&output.stderr);
        // Every finding says how to go on: its own help, or its rule's.
        let findings = stderr.matches("  × ").count() + stderr.matches("error[").count();
        assert!(
            stderr.matches("help: ").count() >= findings,
            "{name}: a finding without help:\n{stderr}"
        );
        insta::assert_snapshot!(name.as_str(), stderr);
    }
}

/// A blueprint that is not UTF-8 is an invalid blueprint (exit 1), reported
/// at its first bad byte, never an I/O error without a location.
#[test]
fn a_blueprint_that_is_not_utf8_is_refused_at_its_first_bad_byte() {
    let dir = tempfile::tempdir().unwrap();
    let base = fs::read_to_string(repo_root().join("blueprints/waddle.toml")).unwrap();
    let line = base
        .lines()
        .position(|l| l.starts_with("email = "))
        .unwrap()
        + 1;
    // `é` in Latin-1: one byte 0xE9, not UTF-8.
    let mut bytes = Vec::new();
    let mut offset = 0;
    for (i, text) in base.split_inclusive('\n').enumerate() {
        if i + 1 == line {
            offset = bytes.len() + "email = \"".len();
            bytes.extend_from_slice(b"email = \"caf\xE9@waddle.social\"\n");
        } else {
            bytes.extend_from_slice(text.as_bytes());
        }
    }
    let offset = offset + "caf".len();
    let file = dir.path().join("latin1.toml");
    fs::write(&file, &bytes).unwrap();
    for command in ["validate", "build"] {
        let out = dir.path().join("out");
        let mut waddlec = waddlec();
        waddlec.arg(command).arg(&file);
        if command == "build" {
            waddlec.arg("--out").arg(&out);
        }
        let output = run(&mut waddlec);
        let stderr = text(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{command}: {stderr}");
        let location = format!("{}:{line}:13", file.display());
        assert!(
            stderr.contains(&location),
            "{command}: no {location}:\n{stderr}"
        );
        assert!(
            stderr.contains(&format!("byte 0xE9 at offset {offset} is not UTF-8")),
            "{command}: {stderr}"
        );
        assert!(stderr.contains("E0001"), "{command}: {stderr}");
        assert!(!out.exists(), "{command} wrote a tree");
    }
}

/// `build --out FILE` refuses before building and leaves the file alone
/// (it used to rename the file away, then fail).
#[test]
fn build_refuses_an_out_that_is_a_file_and_touches_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("notes.txt");
    fs::write(&file, "my notes\n").unwrap();
    let output = run(waddlec()
        .arg("build")
        .arg(repo_root().join("blueprints/waddle.toml"))
        .arg("--out")
        .arg(&file));
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("is a file, not a directory"), "{stderr}");
    assert_eq!(fs::read_to_string(&file).unwrap(), "my notes\n");
    let entries: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(entries, vec![std::ffi::OsString::from("notes.txt")]);
}

/// The write end of a pipe whose reader has exited: every write to it fails
/// with EPIPE, as when `| head -1` has read its line and gone.
fn closed_pipe() -> std::process::Stdio {
    let mut reader = std::process::Command::new("true")
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let writer = reader.stdin.take().unwrap();
    assert!(reader.wait().unwrap().success());
    std::process::Stdio::from(writer)
}

/// `waddlec build -v 2>&1 | head -1`: a reader that goes away must not make
/// waddlec panic (exit 101); the build finishes and exits with its own code.
#[test]
fn a_closed_output_pipe_does_not_stop_or_crash_a_build() {
    let dir = tempfile::tempdir().unwrap();
    let blueprint = repo_root().join("blueprints/waddle.toml");
    // With an open stderr the same build does log, so the closed pipe below
    // is really written to.
    let logged = run(waddlec()
        .args(["build", "-v", "--out"])
        .arg(dir.path().join("logged"))
        .arg(&blueprint));
    assert_eq!(logged.status.code(), Some(0), "{}", text(&logged.stderr));
    assert!(
        !logged.stderr.is_empty(),
        "-v logs nothing to write to a pipe"
    );
    let out = dir.path().join("out");
    let status = waddlec()
        .args(["build", "-v", "--out"])
        .arg(&out)
        .arg(&blueprint)
        .stdout(closed_pipe())
        .stderr(closed_pipe())
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(0), "{status:?}");
    assert!(out.join("manifest.json").is_file());
    // A failing command keeps its own exit code too.
    let status = waddlec()
        .args(["validate", "-v"])
        .arg(repo_root().join("tests/blueprints/invalid/02-unknown-key.toml"))
        .stdout(closed_pipe())
        .stderr(closed_pipe())
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(1), "{status:?}");
}

//! Where the Talos bundle is kept (`talos.secrets`, `[talos.age]`): the
//! model's store for each spelling, and each mistake refused at its line
//! under its rule, a pasted age identity without its value or line shown.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test here

use std::path::PathBuf;

use waddlec_core::blueprint::{Date, SourceFile};
use waddlec_core::diagnostics::{report, Diagnostic};
use waddlec_core::model::{BundleStore, SecretRef};
use waddlec_core::{check, CompileError};

const TODAY: Date = Date {
    year: 2000,
    month: 1,
    day: 1,
};

const FILE: &str = "secrets = \"file:../secrets/waddle-cluster.yaml\"";
/// The line of `FILE` in the bundled blueprint.
const LINE: usize = 104;
const RECIPIENT: &str = "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p";
const IDENTITY: &str = "AGE-SECRET-KEY-1GFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPQ4EGAEX";

/// The bundled blueprint with its `talos.secrets` line replaced.
fn with_secrets(line: &str) -> SourceFile {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let text = std::fs::read_to_string(root.join("blueprints/waddle.toml")).unwrap();
    assert_eq!(text.lines().nth(LINE - 1), Some(FILE));
    SourceFile {
        name: "waddle.toml".into(),
        text: text.replacen(FILE, line, 1),
    }
}

fn store(source: &SourceFile) -> BundleStore {
    match check(source, TODAY) {
        Ok(checked) => checked.model.talos.unwrap().secrets,
        Err(CompileError::Invalid(d)) => {
            panic!("{}", report::render_text(source, &d.sorted(), false))
        }
        Err(other) => panic!("{other}"),
    }
}

/// The one finding of a refused blueprint, and its line.
fn finding(source: &SourceFile) -> (Diagnostic, usize) {
    let Err(CompileError::Invalid(found)) = check(source, TODAY) else {
        panic!("accepted: {}", source.text);
    };
    let found = found.sorted();
    assert_eq!(found.len(), 1, "{found:#?}");
    let diagnostic = found.into_iter().next().unwrap();
    let (line, _) = report::line_col(&source.text, diagnostic.span.start);
    (diagnostic, line)
}

#[test]
fn each_spelling_is_its_store() {
    assert_eq!(
        store(&with_secrets(FILE)),
        BundleStore::File("../secrets/waddle-cluster.yaml".into())
    );
    assert_eq!(
        store(&with_secrets(
            "secrets = \"op://infra/talos bundle/cluster.yaml\""
        )),
        BundleStore::OnePassword {
            vault: "infra".into(),
            item: "talos bundle".into(),
            file: "cluster.yaml".into(),
        }
    );
    let age = format!(
        "secrets = \"age:waddle-cluster.yaml.age\"\n\
         age = {{ recipients = [\"{RECIPIENT}\"], identity = \"env:WADDLE_AGE_IDENTITY\" }}"
    );
    let BundleStore::Age {
        path,
        recipients,
        identity,
    } = store(&with_secrets(&age))
    else {
        panic!("not an age store");
    };
    assert_eq!(path, "waddle-cluster.yaml.age");
    assert_eq!(recipients.len(), 1);
    assert_eq!(recipients[0].as_str(), RECIPIENT);
    assert_eq!(identity, SecretRef::Env("WADDLE_AGE_IDENTITY".into()));
}

#[test]
fn mistakes_are_refused_at_their_line_under_their_rule() {
    let identity = "identity = \"op://infra/age/identity\"";
    let cases = [
        // An age bundle needs to say whom it is for.
        ("secrets = \"age:c.yaml.age\"".to_string(), "E0003", "talos.age", LINE),
        // A table that would mislead: the bundle is not encrypted.
        (
            format!("{FILE}\nage = {{ recipients = [\"{RECIPIENT}\"], {identity} }}"),
            "E0132",
            "talos.age",
            LINE + 1,
        ),
        (
            format!("secrets = \"age:c.yaml.age\"\nage = {{ recipients = [], {identity} }}"),
            "E0125",
            "talos.age.recipients",
            LINE + 1,
        ),
        (
            format!(
                "secrets = \"age:c.yaml.age\"\nage = {{ recipients = [\"age1short\"], {identity} }}"
            ),
            "E0004",
            "talos.age.recipients[0]",
            LINE + 1,
        ),
        // What `secrets init` cannot write.
        ("secrets = \"env:WADDLE_TALOS\"".to_string(), "E0004", "talos.secrets", LINE),
        // An age file follows a `file:` path's rule.
        (
            format!("secrets = \"age:~/c.age\"\nage = {{ recipients = [\"{RECIPIENT}\"], {identity} }}"),
            "E0130",
            "talos.secrets",
            LINE,
        ),
        (
            format!(
                "secrets = \"age:c.age\"\nage = {{ recipients = [\"{RECIPIENT}\"], identity = \"env:HOME\" }}"
            ),
            "E0130",
            "talos.age.identity",
            LINE + 1,
        ),
    ];
    for (line, code, path, at) in cases {
        let (diagnostic, found_at) = finding(&with_secrets(&line));
        assert_eq!(diagnostic.rule.code, code, "{line}: {diagnostic:?}");
        assert_eq!(diagnostic.path.as_deref(), Some(path), "{line}");
        assert_eq!(found_at, at, "{line}");
        assert!(
            diagnostic.help.is_some() || code == "E0004",
            "{line}: no help"
        );
    }
}

#[test]
fn a_pasted_identity_is_refused_without_showing_it() {
    for line in [
        format!(
            "secrets = \"age:c.age\"\nage = {{ recipients = [\"{IDENTITY}\"], identity = \"env:WADDLE_AGE\" }}"
        ),
        format!(
            "secrets = \"age:c.age\"\nage = {{ recipients = [\"{RECIPIENT}\"], identity = \"{IDENTITY}\" }}"
        ),
    ] {
        let source = with_secrets(&line);
        let (diagnostic, _) = finding(&source);
        assert!(diagnostic.hide_source, "{diagnostic:?}");
        let shown = report::render_text(&source, &[diagnostic], false);
        assert!(!shown.contains("GFPYYSJZ"), "{shown}");
    }
}

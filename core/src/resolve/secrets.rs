//! Where secret references may reach (E0130), as far as the blueprint's
//! text tells: a `file:` path relative, without `~`, staying in the
//! blueprint's directory or going up only into a `secrets/` directory; an
//! `env:` name in waddlec's own `WADDLE_` namespace; every reference one
//! line. The blueprint is reviewed input, but what it names is read on the
//! operator's machine and copied into the deployable tree, so it must not
//! name the operator's own files or variables. Where a file really is
//! (symbolic links followed) is checked when it is read, by the `waddlec`
//! crate's `secrets`, against the directories the operator allows.

use super::Checker;
use crate::blueprint::{Blueprint, BundleRef, Located, SecretRef, Span};
use crate::diagnostics::rules;

/// The prefix of every environment variable a blueprint may read.
pub const ENV_PREFIX: &str = "WADDLE_";

/// How a reference is written, for the help of a refused one.
const HELP: &str = "write `file:NAME` beside the blueprint, `file:../secrets/NAME`, or \
     `env:WADDLE_NAME`; a file kept elsewhere is linked into `secrets/` and its directory \
     listed in `WADDLEC_SECRET_DIRS`";

/// Every secret reference of the blueprint, with its key (also what
/// `waddlec preflight` reads, one check each).
pub fn references(blueprint: &Blueprint) -> Vec<(&'static str, &Located<SecretRef>)> {
    let mut references = Vec::new();
    if let Some(host) = &blueprint.host {
        references.push(("host.api_token", &host.api_token));
    }
    if let Some(cluster) = &blueprint.cluster {
        references.push(("cluster.api_token", &cluster.api_token));
    }
    if let Some(age) = blueprint.talos.as_ref().and_then(|t| t.age.as_ref()) {
        references.push(("talos.age.identity", &age.identity));
    }
    if let Some(flux) = &blueprint.flux {
        references.push(("flux.deploy_key", &flux.deploy_key));
    }
    if let Some(connect) = &blueprint.onepassword_connect {
        references.push(("onepassword_connect.credentials", &connect.credentials));
        references.push(("onepassword_connect.token", &connect.token));
    }
    if let Some(github) = blueprint.teleport.as_ref().and_then(|t| t.github.as_ref()) {
        references.push(("teleport.github.client_secret", &github.client_secret));
    }
    if let Some(artifacts) = &blueprint.artifacts {
        references.push(("artifacts.access_key_id", &artifacts.access_key_id));
        references.push(("artifacts.secret_access_key", &artifacts.secret_access_key));
    }
    references
}

pub fn check_references(checker: &mut Checker, blueprint: &Blueprint) {
    let mut refused: Vec<(&str, Span, String)> = references(blueprint)
        .into_iter()
        .filter_map(|(path, reference)| {
            check_reference(reference)
                .err()
                .map(|reason| (path, reference.span(), reason))
        })
        .collect();
    if let Some(talos) = &blueprint.talos {
        if let Err(reason) = check_bundle(&talos.secrets) {
            refused.push(("talos.secrets", talos.secrets.span(), reason));
        }
    }
    for (path, span, reason) in refused {
        let diagnostic = checker.error(
            &rules::UNCONFINED_SECRET,
            span,
            path,
            format!("`{path}` {reason}"),
        );
        diagnostic.label = "here".into();
        diagnostic.help = Some(HELP.into());
    }
}

/// [`check_reference`] for where the Talos bundle is kept: an `age:` path
/// follows the rule of a `file:` one (it is read and written beside the
/// blueprint the same way, only encrypted).
fn check_bundle(reference: &BundleRef) -> Result<(), String> {
    if reference.to_string().chars().any(char::is_control) {
        return Err("is more than one line (it holds a newline or control character)".into());
    }
    match reference {
        BundleRef::OnePassword { .. } => Ok(()),
        BundleRef::File(path) | BundleRef::Age(path) => check_file_path(path),
    }
}

/// Why a reference reaches outside what a blueprint may read, if it does.
pub fn check_reference(reference: &SecretRef) -> Result<(), String> {
    if reference.to_string().chars().any(char::is_control) {
        return Err("is more than one line (it holds a newline or control character)".into());
    }
    match reference {
        SecretRef::OnePassword { .. } => Ok(()),
        SecretRef::Env(name) => check_env_name(name),
        SecretRef::File(path) => check_file_path(path),
    }
}

/// `WADDLE_` and capitals, digits and `_`.
fn check_env_name(name: &str) -> Result<(), String> {
    let ok = name.len() > ENV_PREFIX.len()
        && name.starts_with(ENV_PREFIX)
        && name
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "reads the environment variable `{name}`; a blueprint reads only waddlec's own, \
             named `{ENV_PREFIX}` and capitals, digits and `_`, never the operator's (`HOME`, \
             `AWS_SECRET_ACCESS_KEY`)"
        ))
    }
}

/// Relative, no `~`, and either below the blueprint's directory or up into
/// a `secrets/` directory (`../secrets/x`, `../../secrets/x`).
fn check_file_path(path: &str) -> Result<(), String> {
    if path.starts_with('~') {
        return Err(format!(
            "reads `{path}` in a home directory; waddlec never expands `~`, and a blueprint \
             reads no file of the operator's own"
        ));
    }
    if path.starts_with('/') {
        return Err(format!(
            "reads the absolute path `{path}`; a secret file is named relative to the blueprint"
        ));
    }
    if path.contains('\\') {
        return Err(format!(
            "reads `{path}`, which has a backslash; separate names with `/`"
        ));
    }
    let mut ups = 0;
    let mut first = None;
    for part in path.split('/').filter(|p| !p.is_empty() && *p != ".") {
        match (part, first) {
            ("..", None) => ups += 1,
            ("..", Some(_)) => {
                return Err(format!(
                    "reads `{path}`, which goes back up with `..` after a name; write the \
                     path without it"
                ))
            }
            (_, None) => first = Some(part),
            (_, Some(_)) => {}
        }
    }
    match first {
        None => Err(format!("reads `{path}`, which names no file")),
        Some(name) if ups > 0 && name != "secrets" => Err(format!(
            "reads `{path}`, outside the blueprint's directory and not in a `secrets/` \
             directory above it"
        )),
        Some(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str) -> SecretRef {
        SecretRef::File(path.into())
    }

    #[test]
    fn files_stay_beside_the_blueprint_or_in_a_secrets_directory() {
        for good in [
            "../secrets/waddle-cluster.yaml",
            "../../secrets/lab.yaml",
            "secrets/cluster.yaml",
            "token.txt",
            "./secrets/x",
            "../secrets/sub/x",
        ] {
            assert_eq!(check_reference(&file(good)), Ok(()), "{good}");
        }
        for bad in [
            "/home/x/.ssh/id_ed25519",
            "~/.ssh/id_ed25519",
            "~root/.ssh/id_ed25519",
            "../../../etc/passwd",
            "../.ssh/id_ed25519",
            "secrets/../../x",
            "..",
            "a\\b",
            "x\ny",
        ] {
            assert!(check_reference(&file(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn environment_names_are_waddles_own() {
        let env = |name: &str| SecretRef::Env(name.into());
        for good in ["WADDLE_PVE_TOKEN", "WADDLE_TEST_1"] {
            assert_eq!(check_reference(&env(good)), Ok(()), "{good}");
        }
        for bad in [
            "HOME",
            "AWS_SECRET_ACCESS_KEY",
            "WADDLE_",
            "waddle_token",
            "WADDLEC_SECRET_DIRS",
            "Waddle_X",
        ] {
            assert!(check_reference(&env(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn one_password_references_are_one_line() {
        let op = |field: &str| SecretRef::OnePassword {
            vault: "v".into(),
            item: "i".into(),
            field: field.into(),
        };
        assert_eq!(check_reference(&op("private key")), Ok(()));
        assert!(check_reference(&op("a\nb")).is_err());
    }

    /// A secret field added to the document without being listed here
    /// would escape the check: every one the document declares is listed
    /// for the bundled blueprint, which has them all once its bundle is
    /// age-encrypted (for `talos.age.identity`) and it has an artifact
    /// store.
    #[test]
    fn every_secret_field_of_the_document_is_listed() {
        let fields = include_str!("../blueprint/document.rs")
            .matches("Located<SecretRef>")
            .count();
        let text = include_str!("../../../blueprints/waddle.toml").replacen(
            "secrets = \"file:../secrets/waddle-cluster.yaml\"",
            "secrets = \"age:waddle-cluster.yaml.age\"\n\
             age = { recipients = [], identity = \"env:WADDLE_AGE_IDENTITY\" }",
            1,
        ) + "\n[artifacts]\nendpoint = \"https://s3.fr-par.scw.cloud\"\nregion = \"fr-par\"\n\
             bucket = \"b-1\"\naccess_key_id = \"env:WADDLE_A\"\nsecret_access_key = \"env:WADDLE_B\"\n";
        let source = crate::source::SourceFile {
            name: "waddle.toml".into(),
            text,
        };
        let blueprint = crate::blueprint::parse(&source).expect("the bundled blueprint parses");
        assert!(blueprint.talos.as_ref().unwrap().age.is_some());
        assert!(blueprint.artifacts.is_some());
        // `cluster.api_token` stands in for `host.api_token` in a cluster.
        assert_eq!(references(&blueprint).len() + 1, fields);
        let cluster = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../blueprints/examples/three-hosts.toml"
        ))
        .expect("the cluster example is readable");
        let source = crate::source::SourceFile {
            name: "three-hosts.toml".into(),
            text: cluster,
        };
        let blueprint = crate::blueprint::parse(&source).expect("the cluster example parses");
        assert!(references(&blueprint)
            .iter()
            .any(|(key, _)| *key == "cluster.api_token"));
    }
}

//! The Talos bundle kept elsewhere than in plain files (`talos.secrets`):
//! in 1Password as Document items, through the `op` stand-in that checks
//! op 2's documented grammar (`tests/support/op_stand_in.py`), and in git
//! as age-encrypted files, decrypted by the reference `age` too. Each is
//! created by `secrets init` (once: never again over what exists), and
//! `build --with-secrets` from it gives the same bytes as from the same
//! secrets in files (and `kubeconfig` signs with it). A wrong age identity is a clear error with exit 4.

use std::collections::BTreeMap;
use std::fs;
use std::process::Command;

use crate::support::op_stand_in::OpStandIn;
use crate::support::talos_lab::SecretLab;
use crate::support::{require, run, text, tree, valid_blueprints};

const VAULT: &str = "infra";
const ITEM: &str = "waddle-talos";
const OP_BUNDLE: &str = "op://infra/waddle-talos/cluster.yaml";
const AGE_ENV: &str = "WADDLE_TEST_AGE_IDENTITY";

/// The three documents of a store: bundle, admin identity, SSH host keys.
const KINDS: [&str; 3] = ["", "admin", "ssh-host-keys"];

/// `build --with-secrets` of `lab` into `out`, with `env`.
fn build(lab: &SecretLab, out: &str, env: &[(&str, &str)]) -> BTreeMap<String, (Vec<u8>, u32)> {
    let mut files = tree(&lab.build_with_secrets_env(out, env));
    // The manifest names the blueprint by its hash, and the blueprints
    // differ in `talos.secrets`; its list of artifacts must not.
    let manifest = files.remove("manifest.json").unwrap();
    let manifest: serde_json::Value = serde_json::from_slice(&manifest.0).unwrap();
    files.insert(
        "manifest.json artifacts".into(),
        (manifest["artifacts"].to_string().into_bytes(), 0),
    );
    files
}

/// The same secrets as plain files of a lab of their own (`secrets/cluster*.yaml`):
/// what a `file:` store would hold.
fn file_lab(texts: &[String; 3]) -> SecretLab {
    let lab = SecretLab::new(&valid_blueprints()[0]);
    fs::create_dir_all(lab.path("secrets")).unwrap();
    for (kind, contents) in KINDS.iter().zip(texts) {
        let name = if kind.is_empty() {
            "secrets/cluster.yaml".to_string()
        } else {
            format!("secrets/cluster.{kind}.yaml")
        };
        fs::write(lab.path(&name), contents).unwrap();
    }
    lab
}

/// A new age identity file (`age-keygen`) and its recipient.
fn age_identity(dir: &std::path::Path, name: &str) -> (String, String) {
    let path = dir.join(name);
    let output = run(Command::new("age-keygen").arg("-o").arg(&path));
    assert!(output.status.success(), "{}", text(&output.stderr));
    let identity = fs::read_to_string(&path).unwrap();
    let output = run(Command::new("age-keygen").arg("-y").arg(&path));
    (identity, text(&output.stdout).trim().to_string())
}

#[test]
fn a_bundle_in_1password_is_made_once_and_builds_what_files_build() {
    require("python3");
    let op = OpStandIn::with_vault(VAULT);
    let lab = SecretLab::new(&valid_blueprints()[0]);
    lab.keep_talos_secrets(OP_BUNDLE, None);

    let output = lab.waddlec_with(&["secrets", "init", "blueprint.toml"], &op.env());
    let stderr = text(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains(OP_BUNDLE), "{stderr}");
    assert!(!lab.path("secrets").exists(), "nothing written to disk");
    // One Document item each, their files named as beside a file bundle.
    let texts: [String; 3] = KINDS.map(|kind| {
        let (item, file) = if kind.is_empty() {
            (ITEM.to_string(), "cluster.yaml".to_string())
        } else {
            (format!("{ITEM}-{kind}"), format!("cluster.{kind}.yaml"))
        };
        let (name, contents) = op
            .document(VAULT, &item)
            .unwrap_or_else(|| panic!("no document {item}"));
        assert_eq!(name, file);
        contents
    });
    assert!(texts[0].contains("trustdinfo:"), "the bundle is talosctl's");
    let calls = op.calls();
    assert_eq!(calls.matches("from stdin").count(), 3, "{calls}");
    // The reference reads the bundle's file with `op read`, as documented.
    let read = run(Command::new("op").envs(op.env()).args(["read", OP_BUNDLE]));
    assert_eq!(text(&read.stdout), texts[0]);

    // Never again over what exists, in 1Password as in files.
    let output = lab.waddlec_with(&["secrets", "init", "blueprint.toml"], &op.env());
    assert_eq!(output.status.code(), Some(4), "{}", text(&output.stderr));
    assert!(text(&output.stderr).contains("never overwrites"));
    let import = lab.path("import.yaml");
    fs::write(&import, &texts[0]).unwrap();
    let output = lab.waddlec_with(
        &[
            "secrets",
            "init",
            "blueprint.toml",
            "--import",
            import.to_str().unwrap(),
        ],
        &op.env(),
    );
    assert_eq!(output.status.code(), Some(4), "{}", text(&output.stderr));
    assert_eq!(op.document(VAULT, ITEM).unwrap().1, texts[0]);

    // Read back, byte for byte what the same secrets in files give.
    let from_op = build(&lab, "dist", &op.env());
    assert_eq!(from_op, build(&file_lab(&texts), "dist", &[]));
    // The other readers of the bundle take it from there too.
    let output = lab.waddlec_with(
        &[
            "kubeconfig",
            "blueprint.toml",
            "--ttl",
            "1h",
            "--out",
            "admin.kubeconfig",
        ],
        &op.env(),
    );
    assert!(output.status.success(), "{}", text(&output.stderr));
    let bundle: serde_json::Value = serde_saphyr::from_str(&texts[0]).unwrap();
    let ca = bundle["certs"]["k8s"]["crt"].as_str().unwrap();
    assert!(fs::read_to_string(lab.path("admin.kubeconfig"))
        .unwrap()
        .contains(ca));

    // A VM without a key gets one; the others keep theirs (`op document edit`).
    let keys: serde_json::Value = serde_saphyr::from_str(&texts[2]).unwrap();
    let mut fewer = keys.clone();
    let hosts = fewer["hosts"].as_object_mut().unwrap();
    let removed = hosts.keys().next().unwrap().clone();
    hosts.remove(&removed);
    op.set_document(
        VAULT,
        &format!("{ITEM}-ssh-host-keys"),
        &serde_saphyr::to_string(&fewer).unwrap(),
    );
    let output = lab.waddlec_with(&["secrets", "init", "blueprint.toml"], &op.env());
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(text(&output.stderr).contains(&removed));
    let again: serde_json::Value = serde_saphyr::from_str(
        &op.document(VAULT, &format!("{ITEM}-ssh-host-keys"))
            .unwrap()
            .1,
    )
    .unwrap();
    for (vm, key) in fewer["hosts"].as_object().unwrap() {
        assert_eq!(&again["hosts"][vm], key, "{vm} keeps its key");
    }
    assert_ne!(
        again["hosts"][&removed], keys["hosts"][&removed],
        "a new key"
    );
    assert!(
        op.calls().contains("\"document\", \"edit\""),
        "{}",
        op.calls()
    );
}

#[test]
fn an_age_store_is_read_with_its_identity_and_refused_with_another() {
    require("age");
    let lab = SecretLab::new(&valid_blueprints()[0]);
    let keys = tempfile::tempdir().unwrap();
    let (identity, recipient) = age_identity(keys.path(), "operator.txt");
    let (other, _) = age_identity(keys.path(), "other.txt");
    let mut age = toml::Table::new();
    age.insert(
        "recipients".into(),
        vec![toml::Value::from(recipient)].into(),
    );
    age.insert("identity".into(), format!("env:{AGE_ENV}").into());
    lab.keep_talos_secrets("age:talos/cluster.yaml.age", Some(age));
    let env = [(AGE_ENV, identity.as_str())];

    let output = lab.waddlec_with(&["secrets", "init", "blueprint.toml"], &env);
    assert!(output.status.success(), "{}", text(&output.stderr));
    // Encrypted, armored text, fit for git; the reference `age` decrypts it.
    let texts: [String; 3] = KINDS.map(|kind| {
        let name = if kind.is_empty() {
            "talos/cluster.yaml.age".to_string()
        } else {
            format!("talos/cluster.{kind}.yaml.age")
        };
        let armored = fs::read_to_string(lab.path(&name)).unwrap();
        assert!(
            armored.starts_with("-----BEGIN AGE ENCRYPTED FILE-----"),
            "{name}"
        );
        let output = run(Command::new("age")
            .arg("-d")
            .arg("-i")
            .arg(keys.path().join("operator.txt"))
            .arg(lab.path(&name)));
        assert!(output.status.success(), "{name}: {}", text(&output.stderr));
        let plain = text(&output.stdout);
        assert!(!plain.is_empty() && !armored.contains(plain.lines().nth(1).unwrap()));
        plain
    });
    assert!(texts[0].contains("trustdinfo:"));

    let output = lab.waddlec_with(&["secrets", "init", "blueprint.toml"], &env);
    assert_eq!(output.status.code(), Some(4), "{}", text(&output.stderr));

    assert_eq!(
        build(&lab, "dist", &env),
        build(&file_lab(&texts), "dist", &[])
    );

    // Another identity: exit 4, saying which file and which identity,
    // showing neither key.
    let output = lab.waddlec_with(
        &[
            "build",
            "blueprint.toml",
            "--with-secrets",
            "--no-images",
            "--out",
            "other",
        ],
        &[(AGE_ENV, other.as_str())],
    );
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(4), "{stderr}");
    for needle in [
        "cannot decrypt",
        "cluster.yaml.age",
        &format!("env:{AGE_ENV}"),
        "not encrypted to that identity",
    ] {
        assert!(stderr.contains(needle), "`{needle}` in {stderr}");
    }
    for key in [&identity, &other] {
        let secret = key
            .lines()
            .find(|l| l.starts_with("AGE-SECRET-KEY-"))
            .unwrap();
        assert!(!stderr.contains(secret) && !text(&output.stdout).contains(secret));
    }
    assert!(!lab.path("other").exists());
    // No identity at all.
    let output = lab.waddlec(&["build", "blueprint.toml", "--with-secrets", "--no-images"]);
    assert_eq!(output.status.code(), Some(4));
    assert!(
        text(&output.stderr).contains(AGE_ENV),
        "{}",
        text(&output.stderr)
    );
}

/// The stand-in holds waddlec to op's documented grammar: what op would
/// refuse, it refuses, so a test passing against it says something.
#[test]
fn the_op_stand_in_refuses_what_op_would() {
    require("python3");
    let op = OpStandIn::with_vault(VAULT);
    let refused = [
        &["document", "create", "--vault", VAULT, "--title", "t"][..],
        &[
            "document", "create", "-", "--vault", VAULT, "--title", "t", "--bogus", "x",
        ],
        &["document", "get", "t", "u", "--vault", VAULT],
        &["document", "edit", "t", "--vault", VAULT],
        &["document", "get", "missing", "--vault", VAULT],
        &["document", "get", "t", "--vault", "no-such-vault"],
        &["read", "op://infra/t"],
    ];
    for args in refused {
        let output = run(Command::new("op").envs(op.env()).args(args));
        assert_eq!(output.status.code(), Some(1), "{args:?}");
        assert!(text(&output.stderr).starts_with("[ERROR] "), "{args:?}");
    }
}

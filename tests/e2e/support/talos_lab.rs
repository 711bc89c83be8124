//! The Talos secret lab and the Talos schema check. A lab is a blueprint
//! copied into a temp dir whose secrets resolve there (the Talos bundle
//! under `secrets/`, the GitHub client secret from the environment) with
//! the upstream manifests it embeds already cached and pinned; the schema
//! is Talos 1.12's machine-config schema from `tests/data/schemas/talos/`.

use std::fs;
use std::path::{Path, PathBuf};

use super::{artifacts, run, schema_file, seed_upstream, text, waddlec};

pub const GITHUB_SECRET_ENV: &str = "WADDLE_TEST_GITHUB_CLIENT_SECRET";
pub const GITHUB_SECRET: &str = "gh-secret-c0ffee-0123456789abcdef";

/// A blueprint copied into a temp dir whose secrets resolve locally: the
/// Talos bundle under `secrets/`, the GitHub secret from the environment.
pub struct SecretLab {
    dir: tempfile::TempDir,
    /// The lab's copy of the blueprint.
    pub blueprint: PathBuf,
}

impl SecretLab {
    pub fn new(original: &Path) -> Self {
        Self::edited(original, |_| {})
    }

    /// A lab whose blueprint is `original` changed by `edit` (before its
    /// secrets are pointed at the lab).
    pub fn edited(original: &Path, edit: impl FnOnce(&mut toml::Table)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut document: toml::Table = fs::read_to_string(original).unwrap().parse().unwrap();
        edit(&mut document);
        if let Some(talos) = document.get_mut("talos").and_then(|t| t.as_table_mut()) {
            talos.insert("secrets".into(), "file:secrets/cluster.yaml".into());
        }
        if let Some(github) = document
            .get_mut("teleport")
            .and_then(|t| t.get_mut("github"))
            .and_then(|g| g.as_table_mut())
        {
            github.insert(
                "client_secret".into(),
                format!("env:{GITHUB_SECRET_ENV}").into(),
            );
        }
        let blueprint = dir.path().join("blueprint.toml");
        fs::write(&blueprint, toml::to_string(&document).unwrap()).unwrap();
        seed_upstream(&blueprint, &dir.path().join("cache"));
        SecretLab { dir, blueprint }
    }

    pub fn path(&self, relative: &str) -> PathBuf {
        self.dir.path().join(relative)
    }

    pub fn waddlec(&self, args: &[&str]) -> std::process::Output {
        self.waddlec_with(args, &[])
    }

    /// [`SecretLab::waddlec`] with more environment (`op` on the `PATH`,
    /// an age identity).
    pub fn waddlec_with(&self, args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
        run(waddlec()
            .current_dir(self.dir.path())
            .env(GITHUB_SECRET_ENV, GITHUB_SECRET)
            .env("WADDLEC_CACHE_DIR", self.dir.path().join("cache"))
            .envs(env.iter().copied())
            .args(args))
    }

    /// Keeps the Talos bundle where `secrets` says (`op://…`, `age:…`),
    /// with the `[talos.age]` table `age` if given.
    pub fn keep_talos_secrets(&self, secrets: &str, age: Option<toml::Table>) {
        let mut document: toml::Table = fs::read_to_string(&self.blueprint)
            .unwrap()
            .parse()
            .unwrap();
        let talos = document["talos"].as_table_mut().unwrap();
        talos.insert("secrets".into(), secrets.into());
        if let Some(age) = age {
            talos.insert("age".into(), age.into());
        }
        fs::write(&self.blueprint, toml::to_string(&document).unwrap()).unwrap();
    }

    pub fn init(&self) {
        let output = self.waddlec(&["secrets", "init", "blueprint.toml"]);
        assert!(output.status.success(), "{}", text(&output.stderr));
    }

    /// `build --with-secrets --no-images` into `out` (relative to the lab);
    /// returns the tree's path.
    pub fn build_with_secrets(&self, out: &str) -> PathBuf {
        self.build_with_secrets_env(out, &[])
    }

    /// [`SecretLab::build_with_secrets`] with more environment.
    pub fn build_with_secrets_env(&self, out: &str, env: &[(&str, &str)]) -> PathBuf {
        let output = self.waddlec_with(
            &[
                "build",
                "blueprint.toml",
                "--with-secrets",
                "--no-images",
                "--out",
                out,
            ],
            env,
        );
        assert!(output.status.success(), "{}", text(&output.stderr));
        self.path(out)
    }

    /// The Talos secrets bundle `secrets init` wrote.
    pub fn bundle(&self) -> serde_json::Value {
        yaml_documents(&fs::read_to_string(self.path("secrets/cluster.yaml")).unwrap()).remove(0)
    }

    /// The bundle and admin identity `secrets init` wrote, as waddlec
    /// reads them.
    pub fn credentials(&self) -> waddlec::secrets::talos::TalosCredentials {
        let read = |path: &str| {
            waddlec::secrets::Secret::new(fs::read_to_string(self.path(path)).unwrap())
        };
        waddlec::secrets::talos::TalosCredentials {
            bundle: waddlec::secrets::talos_bundle::parse(&read("secrets/cluster.yaml"), "bundle")
                .unwrap(),
            admin: waddlec::secrets::talos_admin::parse(
                &read("secrets/cluster.admin.yaml"),
                "admin",
            )
            .unwrap(),
        }
    }

    /// The Talos admin identity `secrets init` wrote.
    pub fn admin(&self) -> serde_json::Value {
        yaml_documents(&fs::read_to_string(self.path("secrets/cluster.admin.yaml")).unwrap())
            .remove(0)
    }
}

/// Every value a secret YAML document holds (the bundle, the admin
/// identity, the SSH host keys), for scanning what must not hold them:
/// each string leaf, and each line of 16 or more characters of what they
/// hold inside (PEM bodies, whole or base64-decoded), since a leak may be
/// decoded or split.
pub fn secret_values(texts: &[&str]) -> Vec<String> {
    fn leaves(value: &serde_json::Value, into: &mut Vec<String>) {
        match value {
            serde_json::Value::String(s) => into.push(s.clone()),
            serde_json::Value::Array(items) => items.iter().for_each(|v| leaves(v, into)),
            serde_json::Value::Object(map) => map.values().for_each(|v| leaves(v, into)),
            _ => {}
        }
    }
    let mut values = Vec::new();
    for text in texts {
        for document in yaml_documents(text) {
            leaves(&document, &mut values);
        }
    }
    let mut inner = Vec::new();
    for value in &values {
        let decoded = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, value)
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
            .unwrap_or_default();
        for text in [value.as_str(), decoded.as_str()] {
            inner.extend(
                text.lines()
                    .filter(|l| !l.starts_with("-----") && l.len() >= 16)
                    .map(String::from),
            );
        }
    }
    values.extend(inner);
    // Public halves are not secret.
    values.retain(|v| !v.starts_with("ssh-ed25519 ") && v.len() >= 16);
    values
}

/// Every document of a YAML stream, as JSON.
pub fn yaml_documents(text: &str) -> Vec<serde_json::Value> {
    serde_saphyr::from_multiple::<serde_json::Value>(text).unwrap()
}

/// A validator for one document of a Talos 1.12 machine config.
pub fn talos_schema() -> jsonschema::Validator {
    let path = schema_file("talos/config.schema.json");
    let schema: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(&path).unwrap()).unwrap();
    jsonschema::draft202012::new(&schema).unwrap()
}

/// Every machine config of a tree, found by its kind in the manifest.
pub fn machine_configs(out: &Path) -> Vec<(String, String)> {
    artifacts(out, "talos-machine-config")
        .into_iter()
        .map(|path| {
            let config = fs::read_to_string(out.join(&path)).unwrap();
            (path, config)
        })
        .collect()
}

/// Fails unless every document of `config` (the machine config at `path`)
/// validates; returns each document's kind (its version for v1alpha1).
pub fn assert_valid(validator: &jsonschema::Validator, path: &str, config: &str) -> Vec<String> {
    let mut kinds = Vec::new();
    for (index, document) in yaml_documents(config).iter().enumerate() {
        let errors: Vec<String> = validator
            .iter_errors(document)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        assert!(
            errors.is_empty(),
            "{path} document {index} breaks the Talos schema:\n{}",
            errors.join("\n")
        );
        kinds.push(
            document["kind"]
                .as_str()
                .unwrap_or(document["version"].as_str().unwrap_or("?"))
                .to_string(),
        );
    }
    kinds
}

//! Kubernetes manifests checked strictly (every schema refuses unknown
//! fields) against the schemas of Kubernetes 1.35 and of the custom
//! resources at their pinned versions. A kind without a schema fails until
//! one is added.
//!
//! - Custom resources: `tests/data/schemas/k8s-crds/<group>/<kind>_<version>.json`
//!   (kubeconform's layout). CRD schemas leave `metadata` open, so it is
//!   checked against the core `ObjectMeta` as well.
//! - Core kinds: `v1.35.0-local-strict/` of the PyPI wheel
//!   `kubernetes-validate` 1.37.0, fetched once with pip and verified by
//!   its sha256. Self-contained extracts of those files (kubeconform's
//!   `v1.35.0-standalone-strict/` layout) are not kept in the repository:
//!   the ones tried had `$defs` that stop one level down (a Job's
//!   `PodTemplateSpec`, even `ObjectMeta`'s `Time`, were dangling references).

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, OnceLock};

use serde_json::{json, Value};

use super::{run, schema_file, sha256_hex, text};

const WHEEL: &str = "kubernetes-validate==1.37.0";
const WHEEL_SHA256: &str = "85136d018a27b50ec7fc049d902bfa5193f5976807e6c0f408e3ab6fe078cad9";
const CORE: &str = "kubernetes_validate/kubernetes-json-schema/v1.35.0-local-strict";

/// The core 1.35 schemas, fetched and unpacked on first use.
fn core_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let base = Path::new(env!("CARGO_TARGET_TMPDIR")).join("kubernetes-validate-1.37.0");
        let dir = base.join(CORE);
        if dir.join("_definitions.json").is_file() {
            return dir;
        }
        let download = tempfile::tempdir().unwrap();
        let output = run(Command::new("python3")
            .args(["-m", "pip", "download", "--no-deps", "--only-binary=:all:", WHEEL, "-d"])
            .arg(download.path()));
        assert!(
            output.status.success(),
            "cannot fetch {WHEEL} from PyPI (apt install python3-pip): {}",
            text(&output.stderr)
        );
        let wheel = fs::read_dir(download.path()).unwrap().next().unwrap().unwrap().path();
        let sha = sha256_hex(&fs::read(&wheel).unwrap());
        assert_eq!(sha, WHEEL_SHA256, "{} is not the pinned wheel", wheel.display());
        let staging = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
        let script = format!(
            "import sys, zipfile\nz = zipfile.ZipFile(sys.argv[1])\nz.extractall(sys.argv[2], [n for n in z.namelist() if n.startswith('{CORE}/')])"
        );
        let output = run(Command::new("python3")
            .args(["-c", &script])
            .arg(&wheel)
            .arg(staging.path()));
        assert!(output.status.success(), "{}", text(&output.stderr));
        fs::create_dir_all(base.parent().unwrap()).unwrap();
        let _ = fs::remove_dir_all(&base);
        fs::rename(staging.keep(), &base).unwrap();
        dir
    })
}

/// Serves the core files' shared `/api/_definitions.json`.
struct Definitions(Arc<Value>);

impl jsonschema::Retrieve for Definitions {
    fn retrieve(
        &self,
        uri: &jsonschema::Uri<String>,
    ) -> Result<Value, Box<dyn std::error::Error + Send + Sync>> {
        if uri.path().as_str().ends_with("/_definitions.json") {
            Ok((*self.0).clone())
        } else {
            Err(format!("no schema at {uri}").into())
        }
    }
}

pub struct Schemas {
    crds: PathBuf,
    definitions: Arc<Value>,
    validators: HashMap<PathBuf, jsonschema::Validator>,
    object_meta: jsonschema::Validator,
}

impl Schemas {
    pub fn new() -> Self {
        let definitions: Value = serde_json::from_str(
            &fs::read_to_string(core_dir().join("_definitions.json")).unwrap(),
        )
        .unwrap();
        let definitions = Arc::new(definitions);
        let object_meta = jsonschema::options()
            .with_retriever(Definitions(definitions.clone()))
            .build(&json!({
                "$id": "https://kubernetes.io/api/objectmeta.json",
                "$ref": "/api/_definitions.json#/$defs/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
            }))
            .unwrap();
        Schemas {
            crds: schema_file("k8s-crds"),
            definitions,
            validators: HashMap::new(),
            object_meta,
        }
    }

    /// The schema file of `apiVersion`/`kind`: core, then custom resources.
    fn schema_path(&self, api_version: &str, kind: &str) -> Option<(PathBuf, bool)> {
        let kind = kind.to_lowercase();
        let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
        let suffix = match group {
            "" => format!("-{version}"),
            group => format!("-{}-{version}", group.split('.').next().unwrap()),
        };
        let core = core_dir().join(format!("{kind}{suffix}.json"));
        if core.is_file() {
            return Some((core, false));
        }
        let custom = self.crds.join(format!("{group}/{kind}_{version}.json"));
        custom.is_file().then_some((custom, true))
    }

    /// Every problem of one object, as `Kind/name: path: message`.
    pub fn check(&mut self, object: &Value) -> Vec<String> {
        let api_version = object["apiVersion"].as_str().unwrap_or_default();
        let kind = object["kind"].as_str().unwrap_or_default();
        let name = object["metadata"]["name"].as_str().unwrap_or("?");
        let at = format!("{kind}/{name} ({api_version})");
        let Some((path, custom)) = self.schema_path(api_version, kind) else {
            return vec![format!(
                "{at}: no schema in tests/data/schemas/k8s-crds for this kind"
            )];
        };
        let definitions = &self.definitions;
        let validator = self.validators.entry(path.clone()).or_insert_with(|| {
            let mut schema: Value =
                serde_json::from_str(&fs::read_to_string(&path).unwrap()).unwrap();
            // Core files refer to `/api/_definitions.json`: give them a base.
            schema["$id"] = json!(format!(
                "https://kubernetes.io/api/{}",
                path.file_name().unwrap().to_string_lossy()
            ));
            jsonschema::options()
                .with_retriever(Definitions(definitions.clone()))
                .build(&schema)
                .unwrap()
        });
        let mut problems: Vec<String> = validator
            .iter_errors(object)
            .map(|e| format!("{at}: {}: {e}", e.instance_path()))
            .collect();
        if custom {
            // CRD schemas leave the root open (kubeconform's conversion
            // exempts it): only apiVersion, kind, metadata and the
            // schema's own properties may be there.
            let schema: Value = serde_json::from_str(&fs::read_to_string(&path).unwrap()).unwrap();
            for key in object.as_object().into_iter().flat_map(|o| o.keys()) {
                let known = ["apiVersion", "kind", "metadata"].contains(&key.as_str())
                    || schema["properties"].get(key).is_some();
                if !known {
                    problems.push(format!("{at}: /{key}: not a field of {kind}"));
                }
            }
            if !object["metadata"].is_object() {
                problems.push(format!("{at}: /metadata: missing"));
            }
            problems.extend(
                self.object_meta
                    .iter_errors(&object["metadata"])
                    .map(|e| format!("{at}: /metadata{}: {e}", e.instance_path())),
            );
        }
        problems
    }

    /// Every problem of every document of a YAML stream (empty documents,
    /// such as comment-only placeholders, are skipped).
    pub fn check_stream(&mut self, text: &str) -> Vec<String> {
        documents(text)
            .iter()
            .flat_map(|object| self.check(object))
            .collect()
    }
}

/// The non-empty documents of a YAML stream, as JSON values.
pub fn documents(text: &str) -> Vec<Value> {
    serde_saphyr::from_multiple::<Value>(text)
        .unwrap_or_else(|e| panic!("not YAML: {e}\n{text}"))
        .into_iter()
        .filter(|v| !v.is_null())
        .collect()
}

/// Every object key path of a document, skipping free-form maps whose keys
/// are data (labels, annotations, ConfigMap and Secret data, selectors).
fn key_paths(value: &Value, prefix: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    const FREE_FORM: &[&str] = &["labels", "annotations", "data", "matchLabels"];
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                prefix.push(key.clone());
                out.push(prefix.clone());
                if !FREE_FORM.contains(&key.as_str()) {
                    key_paths(child, prefix, out);
                }
                prefix.pop();
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                prefix.push(i.to_string());
                key_paths(item, prefix, out);
                prefix.pop();
            }
        }
        _ => {}
    }
}

/// `document` with the key at `path` renamed by a typo.
fn misspell(document: &Value, path: &[String]) -> Value {
    let mut copy = document.clone();
    let mut node = &mut copy;
    for part in &path[..path.len() - 1] {
        node = match node {
            Value::Array(items) => &mut items[part.parse::<usize>().unwrap()],
            other => &mut other[part.as_str()],
        };
    }
    let map = node.as_object_mut().unwrap();
    let last = &path[path.len() - 1];
    let value = map.remove(last).unwrap();
    map.insert(format!("{last}x"), value);
    copy
}

/// Renames every field of every object of `files` (name, YAML stream) in
/// turn and validates the result: returns how many fields were tried and
/// the typos the schemas accepted. Fields under a key of `data` (maps whose
/// keys are data, not fields) are not tried.
pub fn typo_sweep(files: &[(String, String)], data: &[&str]) -> (usize, Vec<String>) {
    let mut schemas = Schemas::new();
    let mut checked = 0;
    let mut missed = Vec::new();
    for (name, contents) in files {
        for document in documents(contents) {
            let mut paths = Vec::new();
            key_paths(&document, &mut Vec::new(), &mut paths);
            for path in paths {
                // apiVersion/kind select the schema rather than being checked by it.
                if path.len() == 1 && (path[0] == "apiVersion" || path[0] == "kind") {
                    continue;
                }
                if path[..path.len() - 1]
                    .iter()
                    .any(|p| data.contains(&p.as_str()))
                {
                    continue;
                }
                checked += 1;
                if schemas.check(&misspell(&document, &path)).is_empty() {
                    missed.push(format!("{name} {}: {}", document["kind"], path.join(".")));
                }
            }
        }
    }
    (checked, missed)
}
